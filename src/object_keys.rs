//! How file names become object keys: every file name on its way to or from an object key
//! passes here (the fs core above, the recovery CLI beside it; crypto below).
//!
//! A volume stores names as they are, or (created with `--encrypt-names`) each path component
//! encrypted with AES-SIV under its parent directory's path ([`crate::crypto::names`]). An
//! encrypted component too long for a key component is replaced by a fixed-length stand-in,
//! and the full encrypted name is kept in a side object `<stand-in>.name` beside it.

use std::ffi::OsStr;

use crate::crypto::MasterKey;
use crate::crypto::names::{
    MAX_ENCRYPTED_COMPONENT, NameCipher, is_long_name_stand_in, long_name_stand_in,
};

/// The name, at the root of a volume, under which s3cryptfs keeps its own objects. It never
/// appears in the mounted tree, and users cannot create it.
pub const RESERVED_NAME: &str = ".s3cryptfs";

/// Where a new file's version goes when it has to be finished before it is complete (a
/// descriptor wants to seek, resize or read it back): under this hidden prefix, never under
/// the file's name, until the whole file is saved there. `fsck` lists what a crash left.
pub const PENDING_PREFIX: &str = ".s3cryptfs/pending/";

/// A fresh key under [`PENDING_PREFIX`].
pub fn pending_key() -> String {
    let mut id = [0u8; 16];
    crate::crypto::keys::os_random(&mut id);
    format!("{PENDING_PREFIX}{}", hex::encode(id))
}

/// Where a mount records a save that another mount's save may have replaced unseen (on a
/// server that ignores conditional writes); `fsck` lists them.
pub const LOST_UPDATES_PREFIX: &str = ".s3cryptfs/lost-updates/";

/// A fresh key under [`LOST_UPDATES_PREFIX`]: the time (for sorting), then a random id.
pub fn lost_update_key() -> String {
    let mut id = [0u8; 8];
    crate::crypto::keys::os_random(&mut id);
    let secs = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0);
    format!("{LOST_UPDATES_PREFIX}{secs}-{}", hex::encode(id))
}

/// Suffix of the side object that holds a long encrypted name.
pub const SIDE_OBJECT_SUFFIX: &str = ".name";

/// How the names of one volume become key components.
#[derive(Debug, Clone)]
pub enum NameCodec {
    /// Names are key components as they are.
    Plain,
    /// Each component encrypted under its parent directory's path.
    Encrypted(NameCipher),
}

/// A name's key component, and for a long encrypted name the side object that keeps it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Encoded {
    pub component: String,
    /// The full encrypted name, to be stored as `<component>.name` next to the entry.
    pub side_body: Option<String>,
}

/// What a listed key component is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Listed {
    Name(String),
    /// A long-name stand-in: its name is in the side object `<stand-in>.name`.
    LongName,
    /// A side object (never an entry of its own).
    SideObject,
    /// Not a name this volume can show (logged by the caller where it matters).
    Hidden,
}

impl NameCodec {
    pub fn new(encrypt_names: bool, master: &MasterKey) -> Self {
        if encrypt_names {
            NameCodec::Encrypted(NameCipher::new(master))
        } else {
            NameCodec::Plain
        }
    }

    pub fn encrypts(&self) -> bool {
        matches!(self, NameCodec::Encrypted(_))
    }

    /// The key component of `name` (already checked by [`to_key_component`]) in the
    /// directory whose plaintext path (relative to the volume, `""` for the root) is
    /// `dir_path`.
    pub fn encode(&self, dir_path: &str, name: &str) -> Encoded {
        match self {
            NameCodec::Plain => Encoded {
                component: name.to_string(),
                side_body: None,
            },
            NameCodec::Encrypted(cipher) => {
                let encrypted = cipher.encrypt_component(dir_path, name);
                if encrypted.len() <= MAX_ENCRYPTED_COMPONENT {
                    Encoded {
                        component: encrypted,
                        side_body: None,
                    }
                } else {
                    Encoded {
                        component: long_name_stand_in(&encrypted),
                        side_body: Some(encrypted),
                    }
                }
            }
        }
    }

    /// The name a listed component shows under in the directory `dir_path`.
    pub fn classify(&self, dir_path: &str, component: &str, parent_is_root: bool) -> Listed {
        match self {
            NameCodec::Plain => match from_key_component(component, parent_is_root) {
                Some(name) => Listed::Name(name.to_string()),
                None => Listed::Hidden,
            },
            NameCodec::Encrypted(cipher) => {
                if let Some(stand_in) = component.strip_suffix(SIDE_OBJECT_SUFFIX)
                    && is_long_name_stand_in(stand_in)
                {
                    return Listed::SideObject;
                }
                if is_long_name_stand_in(component) {
                    return Listed::LongName;
                }
                match cipher.decrypt_component(dir_path, component) {
                    Ok(name) if name.len() <= MAX_NAME_BYTES => Listed::Name(name),
                    _ => Listed::Hidden,
                }
            }
        }
    }

    /// The name behind a long-name stand-in, from its side object's body: the body must hash
    /// to the stand-in and decrypt under `dir_path`.
    pub fn decode_long(&self, dir_path: &str, stand_in: &str, side_body: &[u8]) -> Option<String> {
        let NameCodec::Encrypted(cipher) = self else {
            return None;
        };
        let body = std::str::from_utf8(side_body).ok()?.trim();
        if long_name_stand_in(body) != stand_in {
            return None;
        }
        cipher
            .decrypt_component(dir_path, body)
            .ok()
            .filter(|n| n.len() <= MAX_NAME_BYTES)
    }
}

/// The key of the side object of a long-name `stand_in` in the directory `dir_prefix`.
pub fn side_object_key(dir_prefix: &str, stand_in: &str) -> String {
    format!("{dir_prefix}{stand_in}{SIDE_OBJECT_SUFFIX}")
}

/// The plaintext path of `name` in the directory `dir_path`.
pub fn join_path(dir_path: &str, name: &str) -> String {
    if dir_path.is_empty() {
        name.to_string()
    } else {
        format!("{dir_path}/{name}")
    }
}

/// POSIX's limit on one path component.
pub const MAX_NAME_BYTES: usize = 255;
/// S3's limit on a whole key.
pub const MAX_KEY_BYTES: usize = 1024;

/// Checks a name coming from the kernel and returns it as the key component, or an errno.
/// `.`/`..`, empty names and names with `/` or NUL never reach S3.
pub fn to_key_component(name: &OsStr, parent_is_root: bool) -> Result<&str, i32> {
    let name = name.to_str().ok_or(libc::EILSEQ)?; // S3 keys are UTF-8
    if name.len() > MAX_NAME_BYTES {
        return Err(libc::ENAMETOOLONG);
    }
    if name.is_empty() || name == "." || name == ".." || name.contains(['/', '\0']) {
        return Err(libc::EINVAL);
    }
    if parent_is_root && name == RESERVED_NAME {
        return Err(libc::EPERM);
    }
    Ok(name)
}

/// The key of a file `name` in the directory whose prefix is `dir_prefix`; ENAMETOOLONG if the
/// whole key (with the volume prefix) would pass S3's limit.
pub fn file_key(dir_prefix: &str, name: &str, volume_prefix_len: usize) -> Result<String, i32> {
    let key = format!("{dir_prefix}{name}");
    if volume_prefix_len + key.len() + 1 > MAX_KEY_BYTES {
        return Err(libc::ENAMETOOLONG);
    }
    Ok(key)
}

/// The prefix (ending in `/`) of a directory `name` in `dir_prefix`.
pub fn dir_prefix(dir_prefix: &str, name: &str) -> String {
    format!("{dir_prefix}{name}/")
}

/// The name a listed key or common prefix shows under in its directory, or `None` when it
/// cannot be shown (empty components such as `a//b`, `.`/`..`, names too long for POSIX,
/// our own objects at the root).
pub fn from_key_component(component: &str, parent_is_root: bool) -> Option<&str> {
    let ok = !component.is_empty()
        && component != "."
        && component != ".."
        && !component.contains('\0')
        && component.len() <= MAX_NAME_BYTES
        && !(parent_is_root && component == RESERVED_NAME);
    ok.then_some(component)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rejects_what_must_not_reach_s3() {
        fn check(n: &str) -> Result<&str, i32> {
            to_key_component(OsStr::new(n), false)
        }
        assert_eq!(check("."), Err(libc::EINVAL));
        assert_eq!(check(".."), Err(libc::EINVAL));
        assert_eq!(check(""), Err(libc::EINVAL));
        assert_eq!(check("a\0b"), Err(libc::EINVAL));
        use std::os::unix::ffi::OsStrExt;
        assert_eq!(
            to_key_component(OsStr::from_bytes(b"latin1 \xe9t\xe9"), false),
            Err(libc::EILSEQ)
        );
        assert_eq!(check(&"x".repeat(256)), Err(libc::ENAMETOOLONG));
        assert_eq!(check(&"x".repeat(255)), Ok(&*"x".repeat(255)));
        assert_eq!(check("spaces ü #%?+\\"), Ok("spaces ü #%?+\\"));
        assert_eq!(
            to_key_component(OsStr::new(".s3cryptfs"), true),
            Err(libc::EPERM)
        );
        assert!(to_key_component(OsStr::new(".s3cryptfs"), false).is_ok());
    }

    #[test]
    fn keys_respect_the_s3_limit() {
        let long = "d/".repeat(400);
        assert_eq!(
            file_key(&long, &"n".repeat(255), 0),
            Err(libc::ENAMETOOLONG)
        );
        assert_eq!(file_key("a/", "b", 0), Ok("a/b".to_string()));
        assert_eq!(dir_prefix("a/", "b"), "a/b/");
    }

    #[test]
    fn encrypted_names_round_trip_and_hide_what_does_not_decrypt() {
        let codec = NameCodec::new(true, &MasterKey::from_bytes([3; 32]));
        let short = codec.encode("a/b", "report.pdf");
        assert!(short.side_body.is_none());
        assert!(!short.component.contains("report"));
        assert_eq!(
            codec.classify("a/b", &short.component, false),
            Listed::Name("report.pdf".into())
        );
        // The parent is bound in: the same component elsewhere does not decrypt.
        assert_eq!(codec.classify("a", &short.component, false), Listed::Hidden);
        assert_eq!(codec.classify("", "plain-name", true), Listed::Hidden);
        assert_eq!(codec.classify("", ".s3cryptfs", true), Listed::Hidden);
        let long_name = "l".repeat(255);
        let long = codec.encode("", &long_name);
        let body = long.side_body.clone().unwrap();
        assert!(long.component.len() < 64);
        assert_eq!(codec.classify("", &long.component, true), Listed::LongName);
        let side = format!("{}{SIDE_OBJECT_SUFFIX}", long.component);
        assert_eq!(codec.classify("", &side, true), Listed::SideObject);
        assert_eq!(
            codec.decode_long("", &long.component, body.as_bytes()),
            Some(long_name)
        );
        // A side object that does not hash to its stand-in, or under another parent, fails.
        let other = codec.encode("", &"m".repeat(255)).side_body.unwrap();
        assert_eq!(
            codec.decode_long("", &long.component, other.as_bytes()),
            None
        );
        assert_eq!(
            codec.decode_long("x", &long.component, body.as_bytes()),
            None
        );
        let plain = NameCodec::Plain;
        assert_eq!(plain.encode("d", "n").component, "n");
        assert_eq!(plain.classify("d", "n", false), Listed::Name("n".into()));
    }

    #[test]
    fn hides_unshowable_listed_names() {
        assert_eq!(from_key_component("", false), None);
        assert_eq!(from_key_component("..", false), None);
        assert_eq!(from_key_component(".s3cryptfs", true), None);
        assert_eq!(from_key_component("ok", true), Some("ok"));
    }
}
