//! The name-transform layer: every file name on its way to or from an object key passes here.
//!
//! Today names are stored as they are; filename encryption (a per-volume choice) will be a
//! second implementation of the same two directions, not a change to the filesystem.

use std::ffi::OsStr;

use crate::volume::RESERVED_NAME;

/// POSIX's limit on one path component.
pub const MAX_NAME_BYTES: usize = 255;
/// S3's limit on a whole key.
pub const MAX_KEY_BYTES: usize = 1024;

/// Checks a name coming from the kernel and returns it as the key component, or an errno.
/// `.`/`..`, empty names and names with `/` or NUL never reach S3.
pub fn to_key_component(name: &OsStr, parent_is_root: bool) -> Result<&str, i32> {
    let name = name.to_str().ok_or(libc::EINVAL)?; // S3 keys are UTF-8
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
    fn hides_unshowable_listed_names() {
        assert_eq!(from_key_component("", false), None);
        assert_eq!(from_key_component("..", false), None);
        assert_eq!(from_key_component(".s3cryptfs", true), None);
        assert_eq!(from_key_component("ok", true), Some("ok"));
    }
}
