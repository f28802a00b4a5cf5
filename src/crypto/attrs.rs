//! POSIX attributes (type and permission bits, owner, group, mtime, ctime, atime) sealed for
//! S3 user metadata.
//!
//! Listings never carry user metadata, so attributes cannot live in the object body without a
//! GET per `stat`; they ride in the metadata, which the GET of an object's header returns too.
//! They are encrypted and authenticated like everything else the provider holds: a blob of
//!
//! ```text
//! version (1) | salt (16) | AES-256-CTR(attributes, 52 bytes; 28 before version 3) | HMAC-SHA256 tag (32)
//! ```
//!
//! base64url-encoded (no padding). A fresh random salt per blob means each key pair encrypts
//! exactly one message, so a fixed IV (the version byte, then zeros) never repeats under one
//! key. The tag covers the version byte (through the IV) and the ciphertext; the salt and the
//! binding are bound through the keys.
//!
//! Version 3 adds the ctime and atime to the body of version 2; both bind the blob to its
//! object: the keys are HKDF-SHA256(master key, salt, "s3cryptfs v2 attributes" || the
//! object's header bytes 0..8 (kind and format, as in its keys) || the object's header salt).
//! A provider that moves a blob to another object, or replays one recorded for an earlier
//! version (every new version has a new salt), gets a blob that does not verify. A
//! server-side copy (rename) keeps the body and so the binding. Version 4 (written for
//! objects sent in one request) has version 3's body and binds the body's MD5 digest too
//! ("s3cryptfs v4 attributes" || header bytes 0..8 || header salt || digest), so that a HEAD,
//! whose ETag is that digest, can check the binding without reading the header.
//! Version 1 (older builds) used "s3cryptfs v1 attributes" and no binding: such blobs are
//! read only by [`open_unbound_attrs`], for the rule docs/SEMANTICS.md gives them.

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use super::error::CryptoError;
use super::header::{Header, ObjectKind};
use super::keys::{MasterKey, ObjectKeys, os_random};
use super::layout::Layout;

/// The S3 user-metadata name (`x-amz-meta-<name>`) that holds the sealed attributes.
pub const ATTRS_METADATA_NAME: &str = "s3cf-attrs";

/// The S3 user-metadata name (`x-amz-meta-<name>`) that names what a version-4 value is bound
/// to: the header's bytes 0..8 and salt, then the body's MD5 digest, base64url. Not trusted
/// on its own: a HEAD believes the value only if the ETag is that digest and the value
/// verifies with it (docs/FORMAT.md §9a); otherwise the header is read.
pub const BINDING_METADATA_NAME: &str = "s3cf-bound-to";
/// A binding in user metadata: the header's bytes 0..8 and salt, then the body's MD5 digest.
const BINDING_LEN: usize = 40 + 16;

/// The blob version written for an object whose whole body is known when its attributes are
/// sealed (a single-request upload, a symlink, a special file, a directory marker): bound to
/// its header and to the MD5 digest of its body, which a server gives as such an object's
/// ETag, so that a HEAD can check the binding without reading the header.
const DIGEST_VERSION: u8 = 4;
/// The blob version written for other objects (multipart uploads): bound to the header, with
/// the ctime and atime.
const VERSION: u8 = 3;
/// Blobs of the builds before ctime and atime were recorded: bound, both read as the mtime.
const NO_CTIME_VERSION: u8 = 2;
/// Blobs of older builds, bound to nothing.
const UNBOUND_VERSION: u8 = 1;
const SALT_LEN: usize = 16;
/// The body of a version-3 blob; versions 1 and 2 end before the ctime.
const BODY_LEN: usize = 52;
const OLD_BODY_LEN: usize = 28;
const TAG_LEN: usize = 32;
const BLOB_LEN: usize = 1 + SALT_LEN + BODY_LEN + TAG_LEN;

/// The body length of a blob of `version`.
fn body_len(version: u8) -> usize {
    if version >= VERSION {
        BODY_LEN
    } else {
        OLD_BODY_LEN
    }
}
const INFO: &[u8] = b"s3cryptfs v2 attributes";
const DIGEST_INFO: &[u8] = b"s3cryptfs v4 attributes";
/// The length of an MD5 digest.
const DIGEST_LEN: usize = 16;
const UNBOUND_INFO: &[u8] = b"s3cryptfs v1 attributes";

/// What a blob is bound to: the header of the object it describes, as far as it identifies
/// that object version (bytes 0..8 with the kind, and the salt).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct AttrsBinding {
    prefix: [u8; 8],
    salt: [u8; 32],
    /// The MD5 digest of the object's whole body (its ETag as a single-request upload), when
    /// it was known as the attributes were sealed.
    body_md5: Option<[u8; DIGEST_LEN]>,
}

impl AttrsBinding {
    pub fn of(header: &Header) -> Self {
        Self {
            prefix: header.prefix(),
            salt: *header.salt(),
            body_md5: None,
        }
    }

    /// The binding of an object whose header is `header` and whose metadata names `named`
    /// ([`BINDING_METADATA_NAME`]): that header, and the body digest the name gives. The
    /// digest is not trusted: a version-4 value verifies only with the one it was sealed
    /// for, together with this header.
    pub fn of_object(header: &Header, named: Option<&str>) -> Self {
        let named_md5 = named
            .and_then(|value| Self::from_metadata(value, header.layout()).ok())
            .and_then(|(binding, _)| binding.body_md5);
        match named_md5 {
            Some(md5) => Self::of(header).with_body_md5(md5),
            None => Self::of(header),
        }
    }

    /// The binding to this header and to a body whose MD5 digest is `md5`.
    pub fn with_body_md5(self, md5: [u8; DIGEST_LEN]) -> Self {
        Self {
            body_md5: Some(md5),
            ..self
        }
    }

    /// The MD5 digest of the body this binding names, if it names one.
    pub fn body_md5(&self) -> Option<[u8; DIGEST_LEN]> {
        self.body_md5
    }

    /// The binding as it is recorded in user metadata ([`BINDING_METADATA_NAME`]): the header
    /// bytes, then the body's digest. `None` without a digest (nothing to look up by HEAD).
    pub fn to_metadata(&self) -> Option<String> {
        let md5 = self.body_md5?;
        let mut bytes = [0u8; BINDING_LEN];
        bytes[..8].copy_from_slice(&self.prefix);
        bytes[8..40].copy_from_slice(&self.salt);
        bytes[40..].copy_from_slice(&md5);
        Some(URL_SAFE_NO_PAD.encode(bytes))
    }

    /// The binding an object's user metadata names, and the object kind it gives, checked
    /// against the volume's `layout` as a header's first bytes are. Only a claim until a value
    /// verifies with it and the ETag (or the header read) agrees.
    pub fn from_metadata(value: &str, layout: Layout) -> Result<(Self, ObjectKind), CryptoError> {
        // Checked before decoding: the server sized it.
        if value.len() > 2 * BINDING_LEN {
            return Err(CryptoError::Truncated);
        }
        let bytes = URL_SAFE_NO_PAD
            .decode(value.trim())
            .map_err(|_| CryptoError::CorruptHeader("the binding is not base64url".into()))?;
        if bytes.len() != BINDING_LEN {
            return Err(CryptoError::CorruptHeader(format!(
                "the binding has {} bytes, not {BINDING_LEN}",
                bytes.len()
            )));
        }
        let kind = Header::check_identity(&bytes, layout)?;
        let binding = Self {
            prefix: bytes[..8].try_into().expect("8 bytes"),
            salt: bytes[8..40].try_into().expect("32 bytes"),
            body_md5: Some(bytes[40..].try_into().expect("16 bytes")),
        };
        Ok((binding, kind))
    }

    /// The keys of a blob of `version` (3 and 2: the header; 4: the header and the body's
    /// digest, which the binding must then name).
    fn keys(
        &self,
        master: &MasterKey,
        blob_salt: &[u8],
        version: u8,
    ) -> Result<ObjectKeys, CryptoError> {
        let mut info = Vec::with_capacity(DIGEST_INFO.len() + 8 + 32 + DIGEST_LEN);
        if version == DIGEST_VERSION {
            let md5 = self.body_md5.ok_or_else(|| {
                CryptoError::CorruptHeader("the value is bound to a body digest not known".into())
            })?;
            info.extend_from_slice(DIGEST_INFO);
            info.extend_from_slice(&self.prefix);
            info.extend_from_slice(&self.salt);
            info.extend_from_slice(&md5);
        } else {
            info.extend_from_slice(INFO);
            info.extend_from_slice(&self.prefix);
            info.extend_from_slice(&self.salt);
        }
        Ok(ObjectKeys::derive_labeled(master, blob_salt, &info))
    }

    /// The blob version sealed for this binding.
    fn version(&self) -> u8 {
        if self.body_md5.is_some() {
            DIGEST_VERSION
        } else {
            VERSION
        }
    }
}

/// What a file's object records about it besides its contents.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PosixAttrs {
    /// `st_mode`: file type bits (`S_IFREG`, `S_IFDIR`, `S_IFLNK`) and permission bits.
    pub mode: u32,
    pub uid: u32,
    pub gid: u32,
    /// Modification time, nanosecond precision; may be before 1970.
    pub mtime: SystemTime,
    /// Status change time: moves with every change of contents, mode, owner, times or name.
    pub ctime: SystemTime,
    /// Access time: only what `utimes` sets (the mount is `noatime`: reads do not move it).
    pub atime: SystemTime,
}

impl PosixAttrs {
    /// Just the file type bits of `mode`.
    pub fn file_type(&self) -> u32 {
        self.mode & libc::S_IFMT
    }

    /// The contents changed at `now`: mtime and ctime move.
    pub fn touch(&mut self, now: SystemTime) {
        self.mtime = now;
        self.ctime = now;
    }

    /// Just the permission bits (including setuid/setgid/sticky).
    pub fn permissions(&self) -> u16 {
        (self.mode & 0o7777) as u16
    }

    /// The body of a blob of `version`: mode, uid, gid, mtime, 4 reserved zero bytes, then
    /// (version 3) the ctime and the atime.
    fn to_bytes(self, version: u8) -> Vec<u8> {
        let mut b = Vec::with_capacity(BODY_LEN);
        b.extend_from_slice(&self.mode.to_be_bytes());
        b.extend_from_slice(&self.uid.to_be_bytes());
        b.extend_from_slice(&self.gid.to_be_bytes());
        put_time(&mut b, self.mtime);
        b.extend_from_slice(&[0; 4]); // reserved
        if version >= VERSION {
            put_time(&mut b, self.ctime);
            put_time(&mut b, self.atime);
        }
        b
    }

    fn from_bytes(b: &[u8]) -> Result<Self, CryptoError> {
        let u32_at = |i: usize| u32::from_be_bytes(b[i..i + 4].try_into().expect("4 bytes"));
        let invalid = || CryptoError::CorruptHeader("invalid attribute fields".into());
        if b[24..28] != [0; 4] {
            return Err(invalid());
        }
        let mtime = time_at(b, 12).ok_or_else(invalid)?;
        let (ctime, atime) = match b.len() {
            BODY_LEN => (
                time_at(b, 28).ok_or_else(invalid)?,
                time_at(b, 40).ok_or_else(invalid)?,
            ),
            _ => (mtime, mtime), // not recorded before version 3
        };
        Ok(Self {
            mode: u32_at(0),
            uid: u32_at(4),
            gid: u32_at(8),
            mtime,
            ctime,
            atime,
        })
    }
}

/// Encrypts and authenticates `attrs` for the user metadata of the object `binding` names.
pub fn seal_attrs(master: &MasterKey, attrs: &PosixAttrs, binding: &AttrsBinding) -> String {
    let salt = fresh_salt();
    let version = binding.version();
    let keys = binding
        .keys(master, &salt, version)
        .expect("the binding names what its version needs");
    seal_blob(version, &salt, &keys, attrs)
}

/// The user metadata that records `attrs` for the object version `binding` names: the sealed
/// attributes and the binding they are sealed to.
pub fn attrs_metadata(
    master: &MasterKey,
    attrs: &PosixAttrs,
    binding: &AttrsBinding,
) -> Vec<(String, String)> {
    let sealed = (
        ATTRS_METADATA_NAME.to_string(),
        seal_attrs(master, attrs, binding),
    );
    match binding.to_metadata() {
        Some(named) => vec![sealed, (BINDING_METADATA_NAME.to_string(), named)],
        None => vec![sealed],
    }
}

/// [`seal_attrs`] with a given salt and blob version (3, or 2 as the builds before ctime
/// wrote), for the known-answer vectors of docs/FORMAT.md §9a. Not in release builds: a salt
/// used twice would encrypt two bodies under one key and IV.
#[cfg(any(test, feature = "test-support"))]
#[doc(hidden)]
pub fn seal_attrs_with_salt(
    master: &MasterKey,
    attrs: &PosixAttrs,
    binding: &AttrsBinding,
    salt: [u8; SALT_LEN],
    version: u8,
) -> String {
    assert!(matches!(
        version,
        DIGEST_VERSION | VERSION | NO_CTIME_VERSION
    ));
    let keys = binding
        .keys(master, &salt, version)
        .expect("a version-4 value needs a body digest");
    seal_blob(version, &salt, &keys, attrs)
}

fn fresh_salt() -> [u8; SALT_LEN] {
    let mut salt = [0u8; SALT_LEN];
    os_random(&mut salt);
    salt
}

/// The encoded blob of `attrs` under `keys` (derived from `salt`), as version `version`.
fn seal_blob(version: u8, salt: &[u8; SALT_LEN], keys: &ObjectKeys, attrs: &PosixAttrs) -> String {
    let iv = iv(version);
    let mut body = attrs.to_bytes(version);
    keys.apply_keystream(&iv, &mut body);
    let tag = keys.tag(&iv, &body);
    let mut blob = Vec::with_capacity(BLOB_LEN);
    blob.push(version);
    blob.extend_from_slice(salt);
    blob.extend_from_slice(&body);
    blob.extend_from_slice(&tag);
    URL_SAFE_NO_PAD.encode(blob)
}

/// Verifies and decrypts a blob made by [`seal_attrs`] for the object `binding` names.
/// A blob of an older build (bound to nothing) is [`CryptoError::UnboundAttributes`].
pub fn open_attrs(
    master: &MasterKey,
    sealed: &str,
    binding: &AttrsBinding,
) -> Result<PosixAttrs, CryptoError> {
    let blob = decode(sealed)?;
    match blob[0] {
        v @ (DIGEST_VERSION | VERSION | NO_CTIME_VERSION) => {
            open_blob(&blob, &binding.keys(master, salt_of(&blob), v)?)
        }
        UNBOUND_VERSION => Err(CryptoError::UnboundAttributes),
        v => Err(CryptoError::UnsupportedVersion(v)),
    }
}

/// Verifies and decrypts a blob of an older build (version 1, bound to no object): only for
/// binding them to their objects once the user says the bucket can be trusted (`fsck
/// --bind-attributes`).
pub fn open_unbound_attrs(master: &MasterKey, sealed: &str) -> Result<PosixAttrs, CryptoError> {
    let blob = decode(sealed)?;
    match blob[0] {
        UNBOUND_VERSION => open_blob(
            &blob,
            &ObjectKeys::derive_labeled(master, salt_of(&blob), UNBOUND_INFO),
        ),
        v => Err(CryptoError::UnsupportedVersion(v)),
    }
}

/// A blob as older builds wrote them (version 1, bound to nothing), for tests of what is
/// done with those.
#[cfg(any(test, feature = "test-support"))]
#[doc(hidden)]
pub fn seal_unbound_attrs(master: &MasterKey, attrs: &PosixAttrs) -> String {
    let salt = fresh_salt();
    let keys = ObjectKeys::derive_labeled(master, &salt, UNBOUND_INFO);
    seal_blob(UNBOUND_VERSION, &salt, &keys, attrs)
}

fn decode(sealed: &str) -> Result<Vec<u8>, CryptoError> {
    // Checked before decoding: the server sized it.
    if sealed.len() > 2 * BLOB_LEN {
        return Err(CryptoError::Truncated);
    }
    let blob = URL_SAFE_NO_PAD
        .decode(sealed.trim())
        .map_err(|_| CryptoError::CorruptHeader("attributes are not base64url".into()))?;
    match blob.first() {
        Some(&version) if blob.len() == 1 + SALT_LEN + body_len(version) + TAG_LEN => Ok(blob),
        _ => Err(CryptoError::Truncated),
    }
}

fn salt_of(blob: &[u8]) -> &[u8] {
    &blob[1..1 + SALT_LEN]
}

fn open_blob(blob: &[u8], keys: &ObjectKeys) -> Result<PosixAttrs, CryptoError> {
    let body_at = 1 + SALT_LEN;
    let len = body_len(blob[0]);
    let mut body = blob[body_at..body_at + len].to_vec();
    let tag = &blob[body_at + len..];
    let iv = iv(blob[0]);
    if !keys.verify(&iv, &body, tag) {
        return Err(CryptoError::TagMismatch { segment: 0 });
    }
    keys.apply_keystream(&iv, &mut body);
    PosixAttrs::from_bytes(&body)
}

/// The CTR IV: the version byte, then zeros (one message per key, see the module docs).
fn iv(version: u8) -> [u8; 16] {
    let mut iv = [0u8; 16];
    iv[0] = version;
    iv
}

fn put_time(out: &mut Vec<u8>, t: SystemTime) {
    let (secs, nanos) = split_time(t);
    out.extend_from_slice(&secs.to_be_bytes());
    out.extend_from_slice(&nanos.to_be_bytes());
}

/// The time at `at` (seconds i64, nanoseconds u32 below 10^9), if valid.
fn time_at(b: &[u8], at: usize) -> Option<SystemTime> {
    let secs = i64::from_be_bytes(b[at..at + 8].try_into().ok()?);
    let nanos = u32::from_be_bytes(b[at + 8..at + 12].try_into().ok()?);
    (nanos < 1_000_000_000).then(|| join_time(secs, nanos))
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
    use crate::crypto::{Layout, ObjectKind, StreamEncryptor};

    fn sample() -> PosixAttrs {
        PosixAttrs {
            mode: libc::S_IFREG | 0o640,
            uid: 1000,
            gid: 100,
            mtime: UNIX_EPOCH + Duration::new(1_700_000_000, 123_456_789),
            ctime: UNIX_EPOCH + Duration::new(1_700_000_100, 5),
            atime: UNIX_EPOCH + Duration::new(1_600_000_000, 7),
        }
    }

    /// The binding of a fresh object of `kind`.
    fn binding(key: &MasterKey, kind: ObjectKind) -> AttrsBinding {
        let layout = Layout::with_format(65536, 2).unwrap();
        AttrsBinding::of(StreamEncryptor::new(key, layout, kind).header())
    }

    #[test]
    fn the_binding_in_metadata_names_the_header_its_kind_and_the_body_digest() {
        let key = MasterKey::from_bytes([5; 32]);
        let layout = Layout::with_format(65536, 2).unwrap();
        for kind in [ObjectKind::File, ObjectKind::Symlink, ObjectKind::Directory] {
            let encryptor = StreamEncryptor::new(&key, layout, kind);
            let binding = AttrsBinding::of(encryptor.header()).with_body_md5([9; 16]);
            let value = binding.to_metadata().expect("a digest to name");
            assert_eq!(
                AttrsBinding::from_metadata(&value, layout).unwrap(),
                (binding, kind)
            );
            // Sealed for the digest: version 4, which opens only with that digest.
            let sealed = seal_attrs(&key, &sample(), &binding);
            assert_eq!(decode(&sealed).unwrap()[0], DIGEST_VERSION);
            assert_eq!(open_attrs(&key, &sealed, &binding).unwrap(), sample());
            let header_only = AttrsBinding::of(encryptor.header());
            assert!(open_attrs(&key, &sealed, &header_only).is_err());
            let other_body = header_only.with_body_md5([8; 16]);
            assert!(open_attrs(&key, &sealed, &other_body).is_err());
            // Without a digest nothing is named, and version 3 is sealed.
            assert_eq!(header_only.to_metadata(), None);
            let sealed = seal_attrs(&key, &sample(), &header_only);
            assert_eq!(decode(&sealed).unwrap()[0], VERSION);
            assert_eq!(open_attrs(&key, &sealed, &header_only).unwrap(), sample());
            // A version-3 value ignores a digest the binding may name.
            assert_eq!(open_attrs(&key, &sealed, &binding).unwrap(), sample());
        }
    }

    #[test]
    fn a_binding_in_metadata_that_is_not_this_volumes_header_is_refused() {
        let key = MasterKey::from_bytes([5; 32]);
        let layout = Layout::with_format(65536, 2).unwrap();
        let mut named = StreamEncryptor::new(&key, layout, ObjectKind::File)
            .header()
            .to_bytes()[..40]
            .to_vec();
        named.extend_from_slice(&[7; 16]);
        let encode = |bytes: &[u8]| URL_SAFE_NO_PAD.encode(bytes);
        let changed = |at: usize, to: u8| {
            let mut b = named.clone();
            b[at] = to;
            encode(&b)
        };
        let refused = [
            changed(0, b'X'),                     // magic
            changed(4, 9),                        // format
            changed(5, 77),                       // kind
            changed(6, 12),                       // segment size
            encode(&named[..BINDING_LEN - 1]),    // short
            encode(&[&named[..], &[0]].concat()), // long
            "not base64url!".to_string(),         // garbage
            "A".repeat(4 * BINDING_LEN),          // too long to decode
        ];
        for value in refused {
            assert!(
                AttrsBinding::from_metadata(&value, layout).is_err(),
                "{value} accepted"
            );
        }
        // Another volume layout (format 3) does not take a format-2 header.
        let format3 = Layout::with_format(65536, 3).unwrap();
        assert!(AttrsBinding::from_metadata(&encode(&named), format3).is_err());
        assert!(AttrsBinding::from_metadata(&encode(&named), layout).is_ok());
    }

    #[test]
    fn round_trip_with_nanoseconds_and_old_times() {
        let key = MasterKey::from_bytes([5; 32]);
        let object = binding(&key, ObjectKind::File);
        for mtime in [
            sample().mtime,
            UNIX_EPOCH,
            UNIX_EPOCH - Duration::new(86_400, 1),
            UNIX_EPOCH - Duration::from_secs(3),
        ] {
            let attrs = PosixAttrs {
                mtime,
                ctime: mtime + Duration::from_nanos(1),
                atime: mtime,
                ..sample()
            };
            let sealed = seal_attrs(&key, &attrs, &object);
            assert_eq!(open_attrs(&key, &sealed, &object).unwrap(), attrs);
        }
    }

    #[test]
    fn version_2_blobs_read_with_the_mtime_as_ctime() {
        let key = MasterKey::from_bytes([5; 32]);
        let object = binding(&key, ObjectKind::File);
        let sealed = seal_attrs_with_salt(&key, &sample(), &object, [9; 16], NO_CTIME_VERSION);
        let got = open_attrs(&key, &sealed, &object).unwrap();
        let want = PosixAttrs {
            ctime: sample().mtime,
            atime: sample().mtime,
            ..sample()
        };
        assert_eq!(got, want);
        // A version byte changed to 3 (so the length no longer fits) does not open.
        let mut blob = URL_SAFE_NO_PAD.decode(&sealed).unwrap();
        blob[0] = VERSION;
        let relabelled = URL_SAFE_NO_PAD.encode(&blob);
        assert!(open_attrs(&key, &relabelled, &object).is_err());
    }

    #[test]
    fn fresh_salt_per_blob() {
        let key = MasterKey::from_bytes([5; 32]);
        let object = binding(&key, ObjectKind::File);
        assert_ne!(
            seal_attrs(&key, &sample(), &object),
            seal_attrs(&key, &sample(), &object)
        );
    }

    #[test]
    fn a_blob_verifies_only_for_its_object() {
        let key = MasterKey::from_bytes([5; 32]);
        let (mine, other) = (
            binding(&key, ObjectKind::File),
            binding(&key, ObjectKind::File),
        );
        let sealed = seal_attrs(&key, &sample(), &mine);
        assert!(matches!(
            open_attrs(&key, &sealed, &other),
            Err(CryptoError::TagMismatch { .. })
        ));
        // Same salt, another kind: the kind is bound too.
        let mut as_symlink = mine;
        as_symlink.prefix[5] = 2;
        assert!(open_attrs(&key, &sealed, &as_symlink).is_err());
    }

    #[test]
    fn blobs_of_older_builds_are_told_apart() {
        let key = MasterKey::from_bytes([5; 32]);
        let old = seal_unbound_attrs(&key, &sample());
        let object = binding(&key, ObjectKind::File);
        assert!(matches!(
            open_attrs(&key, &old, &object),
            Err(CryptoError::UnboundAttributes)
        ));
        // No ctime or atime in version 1: the mtime stands in.
        let want = PosixAttrs {
            ctime: sample().mtime,
            atime: sample().mtime,
            ..sample()
        };
        assert_eq!(open_unbound_attrs(&key, &old).unwrap(), want);
        let bound = seal_attrs(&key, &sample(), &object);
        assert!(
            open_unbound_attrs(&key, &bound).is_err(),
            "a bound blob is never read unbound"
        );
    }

    #[test]
    fn tampering_and_wrong_keys_are_refused() {
        let key = MasterKey::from_bytes([5; 32]);
        let object = binding(&key, ObjectKind::File);
        let sealed = seal_attrs(&key, &sample(), &object);
        let blob = URL_SAFE_NO_PAD.decode(&sealed).unwrap();
        for i in 0..blob.len() {
            let mut bad = blob.clone();
            bad[i] ^= 0x01;
            assert!(
                open_attrs(&key, &URL_SAFE_NO_PAD.encode(&bad), &object).is_err(),
                "flipped byte {i} accepted"
            );
        }
        assert!(open_attrs(&key, &sealed[..sealed.len() - 2], &object).is_err());
        assert!(open_attrs(&key, "not base64 !", &object).is_err());
        assert!(open_attrs(&key, &"A".repeat(1 << 20), &object).is_err());
        let other = MasterKey::from_bytes([6; 32]);
        assert!(matches!(
            open_attrs(&other, &sealed, &object),
            Err(CryptoError::TagMismatch { .. })
        ));
    }
}
