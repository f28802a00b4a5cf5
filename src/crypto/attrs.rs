//! POSIX attributes (type and permission bits, owner, group, mtime) sealed for S3 user
//! metadata.
//!
//! Listings never carry user metadata, so attributes cannot live in the object body without a
//! GET per `stat`; a HEAD returns them. They are encrypted and authenticated like everything
//! else the provider holds: a blob of
//!
//! ```text
//! version (1) | salt (16) | AES-256-CTR(attributes, 28 bytes) | HMAC-SHA256 tag (32)
//! ```
//!
//! base64url-encoded (no padding). The keys are HKDF-SHA256(master key, salt,
//! "s3cryptfs v1 attributes"); a fresh random salt per blob means each key pair encrypts
//! exactly one message, so a fixed all-zero IV never repeats under one key. The tag covers
//! the version byte (through the IV) and the ciphertext; the salt is bound through the keys.
//!
//! The blob is not bound to its object key: a provider can move a blob from one object to
//! another, which gives no more than moving the objects themselves does (documented in
//! docs/FORMAT.md). Decryption never depends on it: the object body stays self-contained.

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use super::error::CryptoError;
use super::keys::{MasterKey, ObjectKeys, os_random};

/// The S3 user-metadata name (`x-amz-meta-<name>`) that holds the sealed attributes.
pub const ATTRS_METADATA_NAME: &str = "s3cf-attrs";

const VERSION: u8 = 1;
const SALT_LEN: usize = 16;
const BODY_LEN: usize = 28;
const TAG_LEN: usize = 32;
const INFO: &[u8] = b"s3cryptfs v1 attributes";

/// What a file's object records about it besides its contents.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PosixAttrs {
    /// `st_mode`: file type bits (`S_IFREG`, `S_IFDIR`, `S_IFLNK`) and permission bits.
    pub mode: u32,
    pub uid: u32,
    pub gid: u32,
    /// Modification time, nanosecond precision; may be before 1970.
    pub mtime: SystemTime,
}

impl PosixAttrs {
    /// Just the file type bits of `mode`.
    pub fn file_type(&self) -> u32 {
        self.mode & libc::S_IFMT
    }

    /// Just the permission bits (including setuid/setgid/sticky).
    pub fn permissions(&self) -> u16 {
        (self.mode & 0o7777) as u16
    }

    fn to_bytes(self) -> [u8; BODY_LEN] {
        let (secs, nanos) = split_time(self.mtime);
        let mut b = [0u8; BODY_LEN];
        b[0..4].copy_from_slice(&self.mode.to_be_bytes());
        b[4..8].copy_from_slice(&self.uid.to_be_bytes());
        b[8..12].copy_from_slice(&self.gid.to_be_bytes());
        b[12..20].copy_from_slice(&secs.to_be_bytes());
        b[20..24].copy_from_slice(&nanos.to_be_bytes());
        // b[24..28]: reserved, zero.
        b
    }

    fn from_bytes(b: &[u8; BODY_LEN]) -> Result<Self, CryptoError> {
        let u32_at = |i: usize| u32::from_be_bytes(b[i..i + 4].try_into().expect("4 bytes"));
        let secs = i64::from_be_bytes(b[12..20].try_into().expect("8 bytes"));
        let nanos = u32_at(20);
        if nanos >= 1_000_000_000 || b[24..28] != [0; 4] {
            return Err(CryptoError::CorruptHeader(
                "invalid attribute fields".into(),
            ));
        }
        Ok(Self {
            mode: u32_at(0),
            uid: u32_at(4),
            gid: u32_at(8),
            mtime: join_time(secs, nanos),
        })
    }
}

/// Encrypts and authenticates `attrs` for the object's user metadata.
pub fn seal_attrs(master: &MasterKey, attrs: &PosixAttrs) -> String {
    let mut salt = [0u8; SALT_LEN];
    os_random(&mut salt);
    let keys = ObjectKeys::derive_labeled(master, &salt, INFO);
    let iv = iv();
    let mut body = attrs.to_bytes();
    keys.apply_keystream(&iv, &mut body);
    let tag = keys.tag(&iv, &body);
    let mut blob = Vec::with_capacity(1 + SALT_LEN + BODY_LEN + TAG_LEN);
    blob.push(VERSION);
    blob.extend_from_slice(&salt);
    blob.extend_from_slice(&body);
    blob.extend_from_slice(&tag);
    URL_SAFE_NO_PAD.encode(blob)
}

/// Verifies and decrypts a blob made by [`seal_attrs`] with the same master key.
pub fn open_attrs(master: &MasterKey, sealed: &str) -> Result<PosixAttrs, CryptoError> {
    let blob = URL_SAFE_NO_PAD
        .decode(sealed.trim())
        .map_err(|_| CryptoError::CorruptHeader("attributes are not base64url".into()))?;
    if blob.len() != 1 + SALT_LEN + BODY_LEN + TAG_LEN {
        return Err(CryptoError::Truncated);
    }
    if blob[0] != VERSION {
        return Err(CryptoError::UnsupportedVersion(blob[0]));
    }
    let salt = &blob[1..1 + SALT_LEN];
    let body_at = 1 + SALT_LEN;
    let mut body: [u8; BODY_LEN] = blob[body_at..body_at + BODY_LEN]
        .try_into()
        .expect("length checked");
    let tag = &blob[body_at + BODY_LEN..];
    let keys = ObjectKeys::derive_labeled(master, salt, INFO);
    let iv = iv();
    if !keys.verify(&iv, &body, tag) {
        return Err(CryptoError::TagMismatch { segment: 0 });
    }
    keys.apply_keystream(&iv, &mut body);
    PosixAttrs::from_bytes(&body)
}

/// The CTR IV: the version byte, then zeros (one message per key, see the module docs).
fn iv() -> [u8; 16] {
    let mut iv = [0u8; 16];
    iv[0] = VERSION;
    iv
}

fn split_time(t: SystemTime) -> (i64, u32) {
    match t.duration_since(UNIX_EPOCH) {
        Ok(d) => (d.as_secs() as i64, d.subsec_nanos()),
        Err(e) => {
            // Before 1970: floor to whole seconds, nanoseconds count forward.
            let d = e.duration();
            let secs = -(d.as_secs() as i64);
            match d.subsec_nanos() {
                0 => (secs, 0),
                n => (secs - 1, 1_000_000_000 - n),
            }
        }
    }
}

fn join_time(secs: i64, nanos: u32) -> SystemTime {
    if secs >= 0 {
        UNIX_EPOCH + Duration::new(secs as u64, nanos)
    } else {
        UNIX_EPOCH - Duration::from_secs(secs.unsigned_abs()) + Duration::from_nanos(nanos.into())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> PosixAttrs {
        PosixAttrs {
            mode: libc::S_IFREG | 0o640,
            uid: 1000,
            gid: 100,
            mtime: UNIX_EPOCH + Duration::new(1_700_000_000, 123_456_789),
        }
    }

    #[test]
    fn round_trip_with_nanoseconds_and_old_times() {
        let key = MasterKey::from_bytes([5; 32]);
        for mtime in [
            sample().mtime,
            UNIX_EPOCH,
            UNIX_EPOCH - Duration::new(86_400, 1),
            UNIX_EPOCH - Duration::from_secs(3),
        ] {
            let attrs = PosixAttrs { mtime, ..sample() };
            assert_eq!(open_attrs(&key, &seal_attrs(&key, &attrs)).unwrap(), attrs);
        }
    }

    #[test]
    fn fresh_salt_per_blob() {
        let key = MasterKey::from_bytes([5; 32]);
        assert_ne!(seal_attrs(&key, &sample()), seal_attrs(&key, &sample()));
    }

    #[test]
    fn tampering_and_wrong_keys_are_refused() {
        let key = MasterKey::from_bytes([5; 32]);
        let sealed = seal_attrs(&key, &sample());
        let blob = URL_SAFE_NO_PAD.decode(&sealed).unwrap();
        for i in 0..blob.len() {
            let mut bad = blob.clone();
            bad[i] ^= 0x01;
            assert!(
                open_attrs(&key, &URL_SAFE_NO_PAD.encode(&bad)).is_err(),
                "flipped byte {i} accepted"
            );
        }
        assert!(open_attrs(&key, &sealed[..sealed.len() - 2]).is_err());
        assert!(open_attrs(&key, "not base64 !").is_err());
        let other = MasterKey::from_bytes([6; 32]);
        assert!(matches!(
            open_attrs(&other, &sealed),
            Err(CryptoError::TagMismatch { .. })
        ));
    }
}
