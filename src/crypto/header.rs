//! The object header: 48 bytes in format 1, 368 in formats 2 and 3 (the same bytes;
//! format 3 seals its segments with AES-256-GCM).
//!
//! ```text
//! offset len  field
//!      0   4  magic "S3CF"
//!      4   1  format version (1, 2 or 3)
//!      5   1  object kind (1 = regular file, 2 = symlink, 3 = directory marker)
//!      6   1  log2(plaintext segment size)
//!      7   1  format 1: reserved, 0; formats 2, 3: number of epochs (1..=16)
//!      8  32  salt (random per object, kept by appends in formats 2, 3)
//!     40   7  format 1: nonce prefix (random per object version); formats 2, 3: 0
//!     47   1  reserved, 0
//!     48 320  formats 2, 3 only: 16 epoch entries of first segment (u32) and
//!             epoch nonce (16 random bytes); entries past the count are 0
//! ```

use super::error::CryptoError;
use super::layout::{EPOCH_ENTRY_LEN, HEADER_LEN, Layout, MAX_EPOCHS};

/// Magic bytes at the start of every object.
pub const MAGIC: [u8; 4] = *b"S3CF";
/// The newest object format version, which new volumes get.
pub const FORMAT_VERSION: u8 = 3;

/// What an object holds.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ObjectKind {
    /// A regular file's contents.
    File,
    /// A symlink target.
    Symlink,
    /// A directory's marker: no contents; it gives the directory's attributes an object to
    /// be bound to.
    Directory,
}

impl ObjectKind {
    fn to_byte(self) -> u8 {
        match self {
            ObjectKind::File => 1,
            ObjectKind::Symlink => 2,
            ObjectKind::Directory => 3,
        }
    }

    fn from_byte(b: u8) -> Option<Self> {
        match b {
            1 => Some(ObjectKind::File),
            2 => Some(ObjectKind::Symlink),
            3 => Some(ObjectKind::Directory),
            _ => None,
        }
    }
}

/// A run of segments sealed by one writer under keys of its own (format 2):
/// the segments from `first_segment` up to the next epoch's first.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Default)]
pub struct Epoch {
    pub first_segment: u32,
    pub nonce: [u8; 16],
}

/// A parsed (or about to be written) object header.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Header {
    kind: ObjectKind,
    layout: Layout,
    salt: [u8; 32],
    nonce_prefix: [u8; 7],
    epochs: [Epoch; MAX_EPOCHS],
    epoch_count: usize,
}

impl Header {
    /// A format-1 header.
    pub(crate) fn new(
        kind: ObjectKind,
        layout: Layout,
        salt: [u8; 32],
        nonce_prefix: [u8; 7],
    ) -> Self {
        debug_assert_eq!(layout.format(), 1);
        Header {
            kind,
            layout,
            salt,
            nonce_prefix,
            epochs: [Epoch::default(); MAX_EPOCHS],
            epoch_count: 0,
        }
    }

    /// A format-2 or format-3 header with its first epoch (from segment 0).
    pub(crate) fn new_v2(
        kind: ObjectKind,
        layout: Layout,
        salt: [u8; 32],
        epoch_nonce: [u8; 16],
    ) -> Self {
        debug_assert!(layout.has_epochs());
        let mut epochs = [Epoch::default(); MAX_EPOCHS];
        epochs[0] = Epoch {
            first_segment: 0,
            nonce: epoch_nonce,
        };
        Header {
            kind,
            layout,
            salt,
            nonce_prefix: [0; 7],
            epochs,
            epoch_count: 1,
        }
    }

    /// This header with a new epoch starting at `first_segment` (format 2).
    /// An epoch that starts there already (it held only the old last
    /// segment, which the new one re-seals) is replaced. `None` when the
    /// table is full or `first_segment` lies before the last epoch.
    pub(crate) fn with_epoch(&self, first_segment: u32, nonce: [u8; 16]) -> Option<Header> {
        if !self.layout.has_epochs() {
            return None;
        }
        let mut h = *self;
        let last = h.epochs[h.epoch_count - 1];
        let at = if last.first_segment == first_segment {
            h.epoch_count - 1
        } else if last.first_segment < first_segment && h.epoch_count < MAX_EPOCHS {
            h.epoch_count += 1;
            h.epoch_count - 1
        } else {
            return None;
        };
        h.epochs[at] = Epoch {
            first_segment,
            nonce,
        };
        Some(h)
    }

    /// The epochs of a format-2 header, in order (empty in format 1).
    pub fn epochs(&self) -> &[Epoch] {
        &self.epochs[..self.epoch_count]
    }

    /// Parses the first `HEADER_LEN` bytes of `bytes` (extra bytes are
    /// ignored) and checks that the segment size matches the volume's
    /// `layout`.
    ///
    /// Errors: `Truncated` if fewer than 48 bytes; `NotOurFormat` on bad magic;
    /// `UnsupportedVersion`; `CorruptHeader` for an unknown kind, a segment
    /// size differing from `layout`, or non-zero reserved bytes.
    /// Checks what the first 8 bytes of a header say (magic, format, kind, segment size)
    /// against `layout`, and returns the kind. `bytes` holds at least 8 bytes.
    pub(crate) fn check_identity(bytes: &[u8], layout: Layout) -> Result<ObjectKind, CryptoError> {
        if bytes[0..4] != MAGIC {
            return Err(CryptoError::NotOurFormat);
        }
        if bytes[4] != layout.format() {
            return Err(CryptoError::UnsupportedVersion(bytes[4]));
        }
        let kind = ObjectKind::from_byte(bytes[5]).ok_or_else(|| {
            CryptoError::CorruptHeader(format!("unknown object kind {}", bytes[5]))
        })?;
        if bytes[6] != layout.segment_size_log2() {
            return Err(CryptoError::CorruptHeader(format!(
                "segment size 2^{} does not match the volume's 2^{}",
                bytes[6],
                layout.segment_size_log2()
            )));
        }
        Ok(kind)
    }

    pub fn parse(bytes: &[u8], layout: Layout) -> Result<Header, CryptoError> {
        if bytes.len() < HEADER_LEN {
            return Err(CryptoError::Truncated);
        }
        let kind = Self::check_identity(bytes, layout)?;
        if bytes.len() < layout.header_len() {
            return Err(CryptoError::Truncated);
        }
        let h = &bytes[..layout.header_len()];
        let corrupt = |why: &str| Err(CryptoError::CorruptHeader(why.into()));
        let mut salt = [0u8; 32];
        salt.copy_from_slice(&h[8..40]);
        let mut nonce_prefix = [0u8; 7];
        nonce_prefix.copy_from_slice(&h[40..47]);
        let mut epochs = [Epoch::default(); MAX_EPOCHS];
        let mut epoch_count = 0;
        if layout.format() == 1 {
            if h[7] != 0 || h[47] != 0 {
                return corrupt("reserved bytes are not zero");
            }
        } else {
            epoch_count = usize::from(h[7]);
            if !(1..=MAX_EPOCHS).contains(&epoch_count) {
                return corrupt("epoch count out of range");
            }
            if h[40..48].iter().any(|b| *b != 0) {
                return corrupt("reserved bytes are not zero");
            }
            for (i, entry) in h[HEADER_LEN..].chunks_exact(EPOCH_ENTRY_LEN).enumerate() {
                let first_segment = u32::from_be_bytes(entry[..4].try_into().expect("4 bytes"));
                let mut nonce = [0u8; 16];
                nonce.copy_from_slice(&entry[4..]);
                if i >= epoch_count {
                    if entry.iter().any(|b| *b != 0) {
                        return corrupt("unused epoch entries are not zero");
                    }
                    continue;
                }
                let in_order = if i == 0 {
                    first_segment == 0
                } else {
                    first_segment > epochs[i - 1].first_segment
                };
                if !in_order || nonce == [0; 16] {
                    return corrupt("epoch table out of order");
                }
                epochs[i] = Epoch {
                    first_segment,
                    nonce,
                };
            }
        }
        Ok(Header {
            kind,
            layout,
            salt,
            nonce_prefix,
            epochs,
            epoch_count,
        })
    }

    /// The header bytes (`layout.header_len()` of them).
    pub fn to_bytes(&self) -> Vec<u8> {
        let mut h = vec![0u8; self.layout.header_len()];
        h[0..4].copy_from_slice(&MAGIC);
        h[4] = self.layout.format();
        h[5] = self.kind.to_byte();
        h[6] = self.layout.segment_size_log2();
        h[8..40].copy_from_slice(&self.salt);
        if self.layout.format() == 1 {
            h[40..47].copy_from_slice(&self.nonce_prefix);
        } else {
            h[7] = self.epoch_count as u8;
            for (epoch, entry) in self
                .epochs()
                .iter()
                .zip(h[HEADER_LEN..].chunks_exact_mut(EPOCH_ENTRY_LEN))
            {
                entry[..4].copy_from_slice(&epoch.first_segment.to_be_bytes());
                entry[4..].copy_from_slice(&epoch.nonce);
            }
        }
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

    /// `header[0..8]`: magic, version, kind, log2(S), and byte 7 (reserved
    /// in format 1; in format 2 the epoch count, which the epoch keys leave
    /// out: an append changes it, the earlier epochs' keys must not change).
    /// Bound into the key derivation.
    pub(crate) fn prefix(&self) -> [u8; 8] {
        let b = self.to_bytes();
        let mut p = [0u8; 8];
        p.copy_from_slice(&b[..8]);
        if self.layout.has_epochs() {
            p[7] = 0;
        }
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
        let mut x = b.clone();
        x[47] = 1;
        assert!(matches!(
            Header::parse(&x, l),
            Err(CryptoError::CorruptHeader(_))
        ));
        let mut x = b.clone();
        x[7] = 1;
        assert!(matches!(
            Header::parse(&x, l),
            Err(CryptoError::CorruptHeader(_))
        ));
        let mut x = b.clone();
        x[5] = 4;
        assert!(matches!(
            Header::parse(&x, l),
            Err(CryptoError::CorruptHeader(_))
        ));
        let mut x = b.clone();
        x[4] = 2;
        assert!(matches!(
            Header::parse(&x, l),
            Err(CryptoError::UnsupportedVersion(2))
        ));
        let mut x = b.clone();
        x[0] = b's';
        assert!(matches!(
            Header::parse(&x, l),
            Err(CryptoError::NotOurFormat)
        ));
    }
}
