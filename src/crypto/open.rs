//! Decryption: authenticate, then decrypt, one segment at a time.

use super::error::CryptoError;
use super::header::{Epoch, Header, ObjectKind};
use super::keys::{MasterKey, ObjectKeys};
use super::layout::Layout;
use super::segment_keys::SegmentKeys;

/// Decrypts the segments of one object version, in any order.
/// What one segment was verified under (see [`ObjectDecryptor::segment_identity`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct SegmentIdentity {
    header_prefix: [u8; 8],
    salt: [u8; 32],
    nonce_prefix: [u8; 7],
    epoch: Epoch,
    index: u64,
    last: bool,
}

pub struct ObjectDecryptor {
    header: Header,
    layout: Layout,
    /// Per epoch, its first segment and keys (format 1: one, from segment 0).
    keys: Vec<(u64, SegmentKeys)>,
    plaintext_size: u64,
    segment_count: u64,
}

impl ObjectDecryptor {
    /// Parses the header (the first `HEADER_LEN` bytes of the object; extra
    /// bytes are ignored) and derives the object keys. `ciphertext_size` is
    /// the object's total size (from a listing or HEAD), checked with
    /// [`Layout::plaintext_size`].
    pub fn new(
        master: &MasterKey,
        layout: Layout,
        header: &[u8],
        ciphertext_size: u64,
    ) -> Result<Self, CryptoError> {
        let plaintext_size = layout.plaintext_size(ciphertext_size)?;
        let header = Header::parse(header, layout)?;
        let segment_count = layout.segment_count(plaintext_size);
        let keys = if layout.format() == 1 {
            vec![(
                0,
                SegmentKeys::derive_object(master, header.salt(), &header.prefix()),
            )]
        } else {
            let mut keys = Vec::with_capacity(header.epochs().len());
            for epoch in header.epochs() {
                if u64::from(epoch.first_segment) >= segment_count {
                    // An epoch past the end: the object was cut short.
                    return Err(CryptoError::Truncated);
                }
                keys.push((
                    u64::from(epoch.first_segment),
                    SegmentKeys::derive_epoch(
                        master,
                        layout,
                        header.salt(),
                        &header.prefix(),
                        epoch.first_segment,
                        &epoch.nonce,
                    ),
                ));
            }
            keys
        };
        Ok(ObjectDecryptor {
            header,
            layout,
            keys,
            plaintext_size,
            segment_count,
        })
    }

    /// The object kind from the header. Note: the header is authenticated
    /// only indirectly (it feeds the key derivation), so trust it once a
    /// segment has opened successfully.
    pub fn kind(&self) -> ObjectKind {
        self.header.kind()
    }

    /// The parsed header the segments are verified under.
    pub fn header(&self) -> &Header {
        &self.header
    }

    /// Plaintext size implied by the ciphertext size.
    pub fn plaintext_size(&self) -> u64 {
        self.plaintext_size
    }

    /// Number of segments of the object.
    pub fn segment_count(&self) -> u64 {
        self.segment_count
    }

    /// What segment `index` is verified under: the inputs of its keys and IV. The writers keep
    /// one plaintext per identity (never two plaintexts under one key, nonce and counter), and
    /// no one without the key can make a segment verify under it, so a plaintext verified
    /// under an identity can be reused wherever the same identity verifies again, whatever
    /// the server says about versions (ETags).
    pub fn segment_identity(&self, index: u64) -> SegmentIdentity {
        let epoch = self
            .header
            .epochs()
            .iter()
            .rev()
            .find(|e| u64::from(e.first_segment) <= index)
            .copied()
            .unwrap_or_default();
        SegmentIdentity {
            header_prefix: self.header.prefix(),
            salt: *self.header.salt(),
            nonce_prefix: *self.header.nonce_prefix(),
            epoch,
            index,
            last: index + 1 == self.segment_count,
        }
    }

    /// Authenticates and decrypts segment `index` in place.
    ///
    /// `segment` must be exactly the ciphertext+tag bytes of the segment
    /// ([`Layout::segment_ciphertext_range`]). The tag is verified (in
    /// constant time) before anything is decrypted; returns the plaintext
    /// length, the plaintext being `segment[..len]`. A wrong length, or an
    /// index past the last segment, is `Truncated`; a bad tag is
    /// `TagMismatch { segment: index }`, and `segment` then holds no plaintext (formats 1
    /// and 2 leave it as it was, format 3 clears it).
    pub fn open_segment(&self, index: u64, segment: &mut [u8]) -> Result<usize, CryptoError> {
        if index >= self.segment_count {
            return Err(CryptoError::Truncated);
        }
        let expected = self
            .layout
            .segment_ciphertext_range(index, self.plaintext_size);
        if segment.len() as u64 != expected.end - expected.start
            || segment.len() < self.layout.tag_len()
        {
            return Err(CryptoError::Truncated);
        }
        let last = index + 1 == self.segment_count;
        let iv = ObjectKeys::segment_iv(self.header.nonce_prefix(), index as u32, last);
        let keys = self
            .keys
            .iter()
            .rev()
            .find(|(first, _)| *first <= index)
            .map(|(_, k)| k)
            .expect("the first epoch starts at segment 0");
        keys.open(&iv, segment)
            .ok_or(CryptoError::TagMismatch { segment: index })
    }
}

/// Decrypts a whole object held in memory, authenticating every segment.
pub fn decrypt_to_vec(
    master: &MasterKey,
    layout: Layout,
    object: &[u8],
) -> Result<(ObjectKind, Vec<u8>), CryptoError> {
    let dec = ObjectDecryptor::new(master, layout, object, object.len() as u64)?;
    debug_assert!(object.len() >= layout.header_len());
    let mut plaintext = Vec::with_capacity(dec.plaintext_size() as usize);
    let mut scratch = vec![0u8; layout.ciphertext_segment_size() as usize];
    for i in 0..dec.segment_count() {
        let r = layout.segment_ciphertext_range(i, dec.plaintext_size());
        let seg = &mut scratch[..(r.end - r.start) as usize];
        seg.copy_from_slice(&object[r.start as usize..r.end as usize]);
        let n = dec.open_segment(i, seg)?;
        plaintext.extend_from_slice(&seg[..n]);
    }
    Ok((dec.kind(), plaintext))
}
