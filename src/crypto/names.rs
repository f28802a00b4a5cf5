//! Deterministic encryption of file and directory names (volumes created
//! with `--encrypt-names`). See "Name encryption" in `docs/FORMAT.md`.
//!
//! Each path component is encrypted on its own with AES-SIV (RFC 5297,
//! AES-CMAC-SIV with two 256-bit keys), under a key derived from the volume
//! master key with its own HKDF label, and with the plaintext path of the
//! parent directory as associated data. The result is encoded as unpadded
//! base64url, which is safe in S3 keys and never contains `/`.
//!
//! Deterministic means: the same name in the same directory always gives the
//! same encrypted component, so a lookup is a single key computation and no
//! listing. The price is that the storage provider can see when two objects
//! in one directory have equal names at different times (e.g. a file deleted
//! and created again); it cannot see equal names in *different* directories,
//! because the parent path is bound into each ciphertext.
//!
//! # Parent paths
//!
//! The parent is named by its plaintext path relative to the volume root, in
//! canonical form: components joined by single `/`, no leading or trailing
//! `/`, and `""` for the root. So `docs/a.txt` is stored as
//! `E("", "docs") / E("docs", "a.txt")`, and a file in the root directory as
//! `E("", name)`.
//!
//! # Long names
//!
//! An encrypted component is `ceil((16 + n) * 4 / 3)` characters for an
//! `n`-byte name, so names of more than 175 bytes encrypt to more than
//! [`MAX_ENCRYPTED_COMPONENT`] (255) characters. The caller then uses
//! [`long_name_stand_in`] as the component in every S3 key instead
//! (the file's object, a directory's prefix and its marker, and the keys of
//! everything below it), and keeps the full encrypted component in a side
//! object next to it:
//!
//! ```text
//! <parent prefix>/<stand-in>          the object or directory prefix itself
//! <parent prefix>/<stand-in>.name     body: the full encrypted component (ASCII)
//! ```
//!
//! `.` is neither in the base64url alphabet nor in a stand-in, so side
//! objects never look like an entry and listings skip them. To show a
//! stand-in entry, the caller reads the side object, checks that
//! `long_name_stand_in(body) == stand-in` (the hash binds the side object to
//! the entry, so the side object itself needs no further protection), and
//! then decrypts `body` with [`NameCipher::decrypt_component`] as usual, which
//! authenticates it. Rename and delete move or delete the side object
//! together with the entry; the side object is written first, so a crash in
//! between leaves an orphan side object, never an entry without its name.

use std::fmt;

use aes_siv::KeyInit;
use aes_siv::siv::Aes256Siv;
use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use hkdf::Hkdf;
use sha2::{Digest, Sha256};
use zeroize::{Zeroize, ZeroizeOnDrop};

use super::keys::MasterKey;

/// HKDF info string of the name-encryption key. Distinct from every other
/// label, so the name key is independent of the object and key-wrap keys.
pub(crate) const NAME_KEY_INFO: &[u8] = b"s3cryptfs v1 name encryption";

/// Longest encrypted component (in bytes, all ASCII) that is used as it is
/// in an S3 key; longer ones are replaced by [`long_name_stand_in`].
pub const MAX_ENCRYPTED_COMPONENT: usize = 255;

/// Prefix of a long-name stand-in. `~` is outside the base64url alphabet,
/// so no normal encrypted component starts with it (nor with `.`, which
/// keeps the reserved `.s3cryptfs` name free as well).
pub const LONG_NAME_PREFIX: &str = "~L";

/// Length of a stand-in: the prefix and 43 base64url characters of a
/// SHA-256 digest.
pub const LONG_NAME_STAND_IN_LEN: usize = 2 + 43;

/// Length of the SIV (synthetic IV and tag) that starts every ciphertext.
const SIV_LEN: usize = 16;

/// Why an encrypted component could not be turned back into a name.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum NameError {
    /// Not unpadded base64url (or not its canonical form).
    #[error("encrypted name is not valid base64url")]
    BadEncoding,
    /// Shorter than the 16-byte SIV plus one byte of name.
    #[error("encrypted name is too short")]
    TooShort,
    /// The SIV did not verify: wrong key, wrong parent directory (the
    /// object was moved or copied there from elsewhere), or modified.
    #[error("encrypted name failed authentication (wrong key, wrong directory or tampered)")]
    AuthenticationFailed,
    /// Authentic, but the plaintext is not UTF-8.
    #[error("decrypted name is not UTF-8")]
    NotUtf8,
    /// Authentic, but the plaintext is `""`, `.`, `..`, or contains `/` or
    /// NUL.
    #[error("decrypted name is not a valid path component")]
    InvalidName,
}

/// Encrypts and decrypts path components of one volume.
///
/// Holds the 64-byte AES-SIV key (CMAC key || CTR key) derived from the
/// master key. Zeroized on drop; `Debug` is redacted. Cheap to clone; all
/// methods take `&self`, so one instance can be shared between threads.
#[derive(Clone, Zeroize, ZeroizeOnDrop)]
pub struct NameCipher {
    key: [u8; 64],
}

impl fmt::Debug for NameCipher {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("NameCipher(<redacted>)")
    }
}

impl NameCipher {
    /// `key = HKDF-SHA256(ikm = master key, salt = none,
    /// info = "s3cryptfs v1 name encryption", L = 64)`.
    pub fn new(master: &MasterKey) -> Self {
        let hk = Hkdf::<Sha256>::new(None, master.expose());
        let mut c = NameCipher { key: [0u8; 64] };
        hk.expand(NAME_KEY_INFO, &mut c.key)
            .expect("64 bytes is a valid HKDF-SHA256 output length");
        c
    }

    /// A fresh AES-SIV instance. Built per call because the `aes-siv` API
    /// needs `&mut self`; it costs two AES key schedules, and the instance
    /// zeroizes its keys when dropped.
    fn siv(&self) -> Aes256Siv {
        Aes256Siv::new_from_slice(&self.key).expect("AES-SIV-256 takes a 64-byte key")
    }

    /// Encrypts `name`, a component of the directory `parent_path`, to
    /// unpadded base64url. Deterministic: equal inputs give equal outputs.
    ///
    /// `name` must be a valid component (non-empty, not `.` or `..`, no `/`
    /// or NUL) and `parent_path` canonical (see the module docs); both are
    /// checked in debug builds only. Callers filter names before this point,
    /// and an invalid name would fail [`NameCipher::decrypt_component`].
    ///
    /// The result may exceed [`MAX_ENCRYPTED_COMPONENT`]; see
    /// [`long_name_stand_in`].
    pub fn encrypt_component(&self, parent_path: &str, name: &str) -> String {
        debug_assert!(is_valid_component(name), "invalid name {name:?}");
        debug_assert!(
            is_canonical_parent(parent_path),
            "non-canonical parent path {parent_path:?}"
        );
        self.encrypt_raw(parent_path, name.as_bytes())
    }

    fn encrypt_raw(&self, parent_path: &str, name: &[u8]) -> String {
        let ct = self
            .siv()
            .encrypt([parent_path.as_bytes()], name)
            .expect("one associated-data element is within the AES-SIV limit");
        URL_SAFE_NO_PAD.encode(ct)
    }

    /// Decrypts a component produced by [`NameCipher::encrypt_component`]
    /// for the same `parent_path`. Fails if `encoded` is not canonical
    /// unpadded base64url, is too short, does not authenticate (other key,
    /// other parent, modified), or decrypts to something that is not a valid
    /// UTF-8 path component. A long-name stand-in is not an encrypted
    /// component and fails with [`NameError::BadEncoding`].
    pub fn decrypt_component(&self, parent_path: &str, encoded: &str) -> Result<String, NameError> {
        let ct = URL_SAFE_NO_PAD
            .decode(encoded)
            .map_err(|_| NameError::BadEncoding)?;
        if ct.len() <= SIV_LEN {
            return Err(NameError::TooShort);
        }
        let pt = self
            .siv()
            .decrypt([parent_path.as_bytes()], &ct)
            .map_err(|_| NameError::AuthenticationFailed)?;
        let name = String::from_utf8(pt).map_err(|_| NameError::NotUtf8)?;
        if !is_valid_component(&name) {
            return Err(NameError::InvalidName);
        }
        Ok(name)
    }
}

/// A valid single path component: non-empty, not `.` or `..`, no `/`, no
/// NUL.
fn is_valid_component(name: &str) -> bool {
    !name.is_empty() && name != "." && name != ".." && !name.contains(['/', '\0'])
}

/// `""`, or valid components joined by single `/`.
fn is_canonical_parent(path: &str) -> bool {
    path.is_empty() || path.split('/').all(is_valid_component)
}

/// The fixed-length component that replaces an encrypted component longer
/// than [`MAX_ENCRYPTED_COMPONENT`]: `"~L"` followed by the unpadded
/// base64url SHA-256 of `encoded`, 45 characters in all. See the module docs
/// for the side object that keeps the full encrypted name.
pub fn long_name_stand_in(encoded: &str) -> String {
    let digest = Sha256::digest(encoded.as_bytes());
    let mut s = String::with_capacity(LONG_NAME_STAND_IN_LEN);
    s.push_str(LONG_NAME_PREFIX);
    URL_SAFE_NO_PAD.encode_string(digest, &mut s);
    s
}

/// Whether `component` has the exact form of a [`long_name_stand_in`]
/// output (prefix, then the canonical encoding of 32 bytes). Never true for
/// an output of [`NameCipher::encrypt_component`].
pub fn is_long_name_stand_in(component: &str) -> bool {
    let Some(hash) = component.strip_prefix(LONG_NAME_PREFIX) else {
        return false;
    };
    let mut digest = [0u8; 32];
    component.len() == LONG_NAME_STAND_IN_LEN
        && matches!(URL_SAFE_NO_PAD.decode_slice(hash, &mut digest), Ok(32))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cipher() -> NameCipher {
        NameCipher::new(&MasterKey::from_bytes(std::array::from_fn(|i| i as u8)))
    }

    fn is_base64url(s: &str) -> bool {
        s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
    }

    #[test]
    fn round_trips() {
        let c = cipher();
        let long255 = "x".repeat(255);
        let unicode255 = format!("{}{}", "é".repeat(126), "abc"); // 252 + 3 bytes
        assert_eq!(unicode255.len(), 255);
        let names = [
            "a",
            "hello.txt",
            ".hidden",
            "...",
            "with space and ~!@#$%^&*()",
            "Grüße, 世界 🚀",
            "back\\slash",
            "\u{1}ctrl\n",
            long255.as_str(),
            unicode255.as_str(),
        ];
        for parent in ["", "a", "a/b", "Grüße/世界", "deep/er/still/.hidden"] {
            for name in names {
                let e = c.encrypt_component(parent, name);
                assert!(is_base64url(&e), "{e}");
                assert!(!e.contains('/') && !e.contains('='));
                assert_eq!(e.len(), (4 * (16 + name.len())).div_ceil(3));
                assert_eq!(c.decrypt_component(parent, &e).unwrap(), name);
                assert!(!is_long_name_stand_in(&e));
            }
        }
    }

    #[test]
    fn length_limit_boundary() {
        let c = cipher();
        assert_eq!(c.encrypt_component("", &"n".repeat(175)).len(), 255);
        assert_eq!(c.encrypt_component("", &"n".repeat(176)).len(), 256);
        assert_eq!(c.encrypt_component("", &"n".repeat(255)).len(), 362);
    }

    #[test]
    fn deterministic_and_key_dependent() {
        let c = cipher();
        let a = c.encrypt_component("dir", "file");
        assert_eq!(a, c.encrypt_component("dir", "file"));
        assert_eq!(a, c.clone().encrypt_component("dir", "file"));
        assert_ne!(a, c.encrypt_component("dir", "file2"));
        assert_ne!(a, c.encrypt_component("dir", "File"));
        let other = NameCipher::new(&MasterKey::from_bytes([7u8; 32]));
        let b = other.encrypt_component("dir", "file");
        assert_ne!(a, b);
        assert_eq!(
            other.decrypt_component("dir", &a),
            Err(NameError::AuthenticationFailed)
        );
    }

    #[test]
    fn parent_is_bound() {
        let c = cipher();
        let parents = ["", "a", "b", "a/b", "a/b/c", "ab", "A"];
        let encs: Vec<String> = parents
            .iter()
            .map(|p| c.encrypt_component(p, "same"))
            .collect();
        for i in 0..encs.len() {
            for j in 0..encs.len() {
                if i == j {
                    continue;
                }
                assert_ne!(encs[i], encs[j], "{} vs {}", parents[i], parents[j]);
                assert_eq!(
                    c.decrypt_component(parents[j], &encs[i]),
                    Err(NameError::AuthenticationFailed),
                    "moved from {:?} to {:?}",
                    parents[i],
                    parents[j]
                );
            }
        }
    }

    #[test]
    fn every_byte_flip_is_rejected() {
        let c = cipher();
        let e = c.encrypt_component("some/dir", "short.txt");
        let raw = URL_SAFE_NO_PAD.decode(&e).unwrap();
        // Every bit of the decoded ciphertext (SIV and body).
        for i in 0..raw.len() {
            for bit in 0..8 {
                let mut t = raw.clone();
                t[i] ^= 1 << bit;
                let s = URL_SAFE_NO_PAD.encode(&t);
                assert_eq!(
                    c.decrypt_component("some/dir", &s),
                    Err(NameError::AuthenticationFailed),
                    "byte {i} bit {bit}"
                );
            }
        }
        // Every position of the encoded text, replaced by every other
        // alphabet character and a few outsiders.
        let alphabet: Vec<char> =
            "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_+/=.~ "
                .chars()
                .collect();
        for i in 0..e.len() {
            for &ch in &alphabet {
                if e.as_bytes()[i] == ch as u8 {
                    continue;
                }
                let mut t = e.clone().into_bytes();
                t[i] = ch as u8;
                let t = String::from_utf8(t).unwrap();
                assert!(c.decrypt_component("some/dir", &t).is_err(), "{t}");
            }
        }
        // Truncation and extension.
        for n in 0..e.len() {
            assert!(c.decrypt_component("some/dir", &e[..n]).is_err(), "{n}");
        }
        for extra in ["A", "AA", "AAA", "AAAA"] {
            assert!(
                c.decrypt_component("some/dir", &format!("{e}{extra}"))
                    .is_err()
            );
        }
        assert_eq!(c.decrypt_component("some/dir", &e).unwrap(), "short.txt");
    }

    #[test]
    fn malformed_encodings() {
        let c = cipher();
        let e = c.encrypt_component("", "name");
        assert_eq!(c.decrypt_component("", ""), Err(NameError::TooShort));
        assert_eq!(
            c.decrypt_component("", &URL_SAFE_NO_PAD.encode([0u8; 16])),
            Err(NameError::TooShort)
        );
        assert_eq!(
            c.decrypt_component("", &URL_SAFE_NO_PAD.encode([0u8; 17])),
            Err(NameError::AuthenticationFailed)
        );
        for bad in [
            format!("{e}="),
            e.replace(|_: char| true, "+"),
            format!("a/{e}"),
            "A".to_string(), // 5 bits: never a whole byte
            long_name_stand_in(&e),
        ] {
            assert_eq!(
                c.decrypt_component("", &bad),
                Err(NameError::BadEncoding),
                "{bad}"
            );
        }
        // Standard-alphabet characters are rejected even where the
        // url-safe ones would decode.
        let raw = URL_SAFE_NO_PAD.decode(&e).unwrap();
        let std = base64::engine::general_purpose::STANDARD_NO_PAD.encode(&raw);
        if std != e {
            assert_eq!(c.decrypt_component("", &std), Err(NameError::BadEncoding));
        }
    }

    #[test]
    fn invalid_plaintexts_are_rejected() {
        let c = cipher();
        for (pt, want) in [
            (&b""[..], NameError::InvalidName),
            (b".", NameError::InvalidName),
            (b"..", NameError::InvalidName),
            (b"a/b", NameError::InvalidName),
            (b"/", NameError::InvalidName),
            (b"a\0b", NameError::InvalidName),
            (b"\0", NameError::InvalidName),
            (b"\xff\xfe", NameError::NotUtf8),
            (b"ok\xc3", NameError::NotUtf8),
        ] {
            let e = c.encrypt_raw("p", pt);
            let got = c.decrypt_component("p", &e);
            // The empty plaintext is caught by the length check first.
            if pt.is_empty() {
                assert_eq!(got, Err(NameError::TooShort));
            } else {
                assert_eq!(got, Err(want), "{pt:?}");
            }
        }
    }

    #[test]
    fn valid_component_and_parent_checks() {
        for ok in ["a", "...", ".a", "a.", " ", "é"] {
            assert!(is_valid_component(ok), "{ok:?}");
        }
        for bad in ["", ".", "..", "a/b", "/", "a\0"] {
            assert!(!is_valid_component(bad), "{bad:?}");
        }
        for ok in ["", "a", "a/b", "a/.b/c"] {
            assert!(is_canonical_parent(ok), "{ok:?}");
        }
        for bad in ["/", "/a", "a/", "a//b", "./a", "a/../b", "a/."] {
            assert!(!is_canonical_parent(bad), "{bad:?}");
        }
    }

    #[test]
    #[cfg(debug_assertions)]
    #[should_panic(expected = "invalid name")]
    fn encrypting_an_invalid_name_panics_in_debug() {
        cipher().encrypt_component("", "a/b");
    }

    #[test]
    fn long_name_stand_ins() {
        let c = cipher();
        let e = c.encrypt_component("d", &"é".repeat(127));
        assert!(e.len() > MAX_ENCRYPTED_COMPONENT);
        let s = long_name_stand_in(&e);
        assert_eq!(s.len(), LONG_NAME_STAND_IN_LEN);
        assert!(s.len() <= MAX_ENCRYPTED_COMPONENT);
        assert!(s.starts_with("~L"));
        assert!(is_base64url(&s[2..]));
        assert!(!s.contains('/') && !s.contains('.'));
        assert!(is_long_name_stand_in(&s));
        assert_eq!(s, long_name_stand_in(&e), "deterministic");
        // Same long name in another directory: another stand-in.
        let e2 = c.encrypt_component("d2", &"é".repeat(127));
        assert_ne!(long_name_stand_in(&e2), s);
        assert_eq!(
            URL_SAFE_NO_PAD.decode(&s[2..]).unwrap(),
            Sha256::digest(e.as_bytes()).to_vec()
        );
        // The stand-in's first character is outside the alphabet of normal
        // encodings, so the two can never be equal.
        assert!(!is_base64url(&s));
        assert!(!is_base64url(LONG_NAME_PREFIX));
        for n in 1..200 {
            let e = c.encrypt_component("", &"z".repeat(n));
            assert!(!is_long_name_stand_in(&e));
            assert!(!e.starts_with('~') && !e.starts_with('.'));
        }
        // Near misses are not stand-ins.
        let mut longer = s.clone();
        longer.push('A');
        for near in [
            String::new(),
            "~L".to_string(),
            s[..44].to_string(),
            longer,
            format!("~l{}", &s[2..]),
            format!("L~{}", &s[2..]),
            format!("~L{}+", &s[2..44]),
            format!("~L{}=", &s[2..44]),
            // 43 characters whose last one has non-zero trailing bits
            format!("~L{}B", &s[2..44]),
            s[2..].to_string(),
        ] {
            if near == s {
                continue;
            }
            assert!(!is_long_name_stand_in(&near), "{near}");
        }
    }

    #[test]
    fn debug_is_redacted() {
        let c = NameCipher::new(&MasterKey::from_bytes([0xab; 32]));
        let s = format!("{c:?} {c:#?}");
        assert!(s.contains("redacted"), "{s}");
        assert!(!s.chars().any(|ch| ch.is_ascii_digit()), "{s}");
    }

    #[test]
    fn key_is_separate_from_master_and_zeroizable() {
        let m = MasterKey::from_bytes([0x11; 32]);
        let mut c = NameCipher::new(&m);
        assert_ne!(&c.key[..32], m.expose());
        assert_ne!(c.key, [0u8; 64]);
        c.zeroize();
        assert_eq!(c.key, [0u8; 64]);
    }
}
