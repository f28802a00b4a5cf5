//! The 48-byte object header.
//!
//! ```text
//! offset len  field
//!      0   4  magic "S3CF"
//!      4   1  format version (1)
//!      5   1  object kind (1 = regular file, 2 = symlink)
//!      6   1  log2(plaintext segment size)
//!      7   1  reserved, 0
//!      8  32  salt (random per object version)
//!     40   7  nonce prefix (random per object version)
//!     47   1  reserved, 0
//! ```

use super::error::CryptoError;
use super::layout::{HEADER_LEN, Layout};

/// Magic bytes at the start of every object.
pub const MAGIC: [u8; 4] = *b"S3CF";
/// The object format version this build writes.
pub const FORMAT_VERSION: u8 = 1;

/// What an object holds.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ObjectKind {
    /// A regular file's contents.
    File,
    /// A symlink target.
    Symlink,
}

impl ObjectKind {
    fn to_byte(self) -> u8 {
        match self {
            ObjectKind::File => 1,
            ObjectKind::Symlink => 2,
        }
    }

    fn from_byte(b: u8) -> Option<Self> {
        match b {
            1 => Some(ObjectKind::File),
            2 => Some(ObjectKind::Symlink),
            _ => None,
        }
    }
}

/// A parsed (or about to be written) object header.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Header {
    kind: ObjectKind,
    layout: Layout,
    salt: [u8; 32],
    nonce_prefix: [u8; 7],
}

impl Header {
    pub(crate) fn new(
        kind: ObjectKind,
        layout: Layout,
        salt: [u8; 32],
        nonce_prefix: [u8; 7],
    ) -> Self {
        Header {
            kind,
            layout,
            salt,
            nonce_prefix,
        }
    }

    /// Parses the first `HEADER_LEN` bytes of `bytes` (extra bytes are
    /// ignored) and checks that the segment size matches the volume's
    /// `layout`.
    ///
    /// Errors: `Truncated` if fewer than 48 bytes; `NotOurFormat` on bad magic;
    /// `UnsupportedVersion`; `CorruptHeader` for an unknown kind, a segment
    /// size differing from `layout`, or non-zero reserved bytes.
    pub fn parse(bytes: &[u8], layout: Layout) -> Result<Header, CryptoError> {
        if bytes.len() < HEADER_LEN {
            return Err(CryptoError::Truncated);
        }
        let h = &bytes[..HEADER_LEN];
        if h[0..4] != MAGIC {
            return Err(CryptoError::NotOurFormat);
        }
        if h[4] != FORMAT_VERSION {
            return Err(CryptoError::UnsupportedVersion(h[4]));
        }
        let kind = ObjectKind::from_byte(h[5])
            .ok_or_else(|| CryptoError::CorruptHeader(format!("unknown object kind {}", h[5])))?;
        if h[6] != layout.segment_size_log2() {
            return Err(CryptoError::CorruptHeader(format!(
                "segment size 2^{} does not match the volume's 2^{}",
                h[6],
                layout.segment_size_log2()
            )));
        }
        if h[7] != 0 || h[47] != 0 {
            return Err(CryptoError::CorruptHeader(
                "reserved bytes are not zero".into(),
            ));
        }
        let mut salt = [0u8; 32];
        salt.copy_from_slice(&h[8..40]);
        let mut nonce_prefix = [0u8; 7];
        nonce_prefix.copy_from_slice(&h[40..47]);
        Ok(Header {
            kind,
            layout,
            salt,
            nonce_prefix,
        })
    }

    /// The 48 header bytes.
    pub fn to_bytes(&self) -> [u8; HEADER_LEN] {
        let mut h = [0u8; HEADER_LEN];
        h[0..4].copy_from_slice(&MAGIC);
        h[4] = FORMAT_VERSION;
        h[5] = self.kind.to_byte();
        h[6] = self.layout.segment_size_log2();
        h[8..40].copy_from_slice(&self.salt);
        h[40..47].copy_from_slice(&self.nonce_prefix);
        h
    }

    /// The object kind.
    pub fn kind(&self) -> ObjectKind {
        self.kind
    }

    /// The volume layout this header was checked against.
    pub fn layout(&self) -> Layout {
        self.layout
    }

    pub(crate) fn salt(&self) -> &[u8; 32] {
        &self.salt
    }

    pub(crate) fn nonce_prefix(&self) -> &[u8; 7] {
        &self.nonce_prefix
    }

    /// `header[0..8]`: magic, version, kind, log2(S), reserved. Bound into
    /// the key derivation.
    pub(crate) fn prefix(&self) -> [u8; 8] {
        let b = self.to_bytes();
        let mut p = [0u8; 8];
        p.copy_from_slice(&b[..8]);
        p
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip_and_errors() {
        let l = Layout::new(4096).unwrap();
        let h = Header::new(ObjectKind::Symlink, l, [9; 32], [3; 7]);
        let b = h.to_bytes();
        assert_eq!(&b[..8], b"S3CF\x01\x02\x0c\x00");
        assert_eq!(Header::parse(&b, l).unwrap(), h);
        assert!(matches!(
            Header::parse(&b, Layout::default()),
            Err(CryptoError::CorruptHeader(_))
        ));
        assert!(matches!(
            Header::parse(&b[..47], l),
            Err(CryptoError::Truncated)
        ));
        let mut x = b;
        x[47] = 1;
        assert!(matches!(
            Header::parse(&x, l),
            Err(CryptoError::CorruptHeader(_))
        ));
        let mut x = b;
        x[7] = 1;
        assert!(matches!(
            Header::parse(&x, l),
            Err(CryptoError::CorruptHeader(_))
        ));
        let mut x = b;
        x[5] = 3;
        assert!(matches!(
            Header::parse(&x, l),
            Err(CryptoError::CorruptHeader(_))
        ));
        let mut x = b;
        x[4] = 2;
        assert!(matches!(
            Header::parse(&x, l),
            Err(CryptoError::UnsupportedVersion(2))
        ));
        let mut x = b;
        x[0] = b's';
        assert!(matches!(
            Header::parse(&x, l),
            Err(CryptoError::NotOurFormat)
        ));
    }
}
