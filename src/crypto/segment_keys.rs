//! The keys one run of segments is sealed under, in either segment cipher: AES-256-CTR with
//! HMAC-SHA256 (object formats 1 and 2) or AES-256-GCM (format 3). Everything above this
//! file asks for "seal segment i" and "open segment i" and never sees which cipher it is.

use std::sync::Arc;

use aws_lc_rs::aead::{AES_256_GCM, Aad, LessSafeKey, Nonce, UnboundKey};
use zeroize::Zeroizing;

use super::keys::{MasterKey, ObjectKeys, epoch_key_material};
use super::layout::{Layout, MAX_TAG_LEN};

/// HKDF info prefix of a format-3 epoch's GCM key.
pub(crate) const GCM_EPOCH_KEY_INFO: &[u8] = b"s3cryptfs v3 epoch key";

/// A segment's tag, as long as its cipher makes it (32 bytes for HMAC-SHA256, 16 for GCM).
pub(crate) struct SegmentTag {
    bytes: [u8; MAX_TAG_LEN],
    len: usize,
}

impl AsRef<[u8]> for SegmentTag {
    fn as_ref(&self) -> &[u8] {
        &self.bytes[..self.len]
    }
}

/// The keys of one epoch of an object (format 1: of the whole object).
#[derive(Clone)]
pub(crate) enum SegmentKeys {
    /// Formats 1 and 2: AES-256-CTR keystream, HMAC-SHA256(iv || ciphertext) tag.
    CtrHmac(ObjectKeys),
    /// Format 3: AES-256-GCM, no associated data. AWS-LC's key (its context is cleansed when
    /// freed). Shared: one key serves every segment of the epoch.
    Gcm(Arc<LessSafeKey>),
}

impl SegmentKeys {
    /// The keys of format 1's single run of segments.
    pub(crate) fn derive_object(
        master: &MasterKey,
        salt: &[u8; 32],
        header_prefix: &[u8; 8],
    ) -> Self {
        SegmentKeys::CtrHmac(ObjectKeys::derive(master, salt, header_prefix))
    }

    /// The keys of one epoch of a format-2 (CTR+HMAC) or format-3 (GCM) object. A format-3
    /// epoch's key is HKDF-SHA256(ikm = master, salt = header salt,
    /// info = "s3cryptfs v3 epoch key" || header[0..7] || 0 || first segment u32 BE
    /// || epoch nonce) -> 32 bytes: the same inputs as a format-2 epoch's keys under a label
    /// of its own, so a format-2 and a format-3 epoch never share a key.
    pub(crate) fn derive_epoch(
        master: &MasterKey,
        layout: Layout,
        salt: &[u8; 32],
        header_prefix: &[u8; 8],
        first_segment: u32,
        nonce: &[u8; 16],
    ) -> Self {
        if !layout.is_gcm() {
            let keys = ObjectKeys::derive_epoch(master, salt, header_prefix, first_segment, nonce);
            return SegmentKeys::CtrHmac(keys);
        }
        let mut okm = Zeroizing::new([0u8; 32]);
        let inputs = (master, salt, header_prefix, first_segment, nonce);
        epoch_key_material(GCM_EPOCH_KEY_INFO, inputs, &mut okm[..]);
        let key = UnboundKey::new(&AES_256_GCM, &okm[..]).expect("a 32-byte AES-256-GCM key");
        SegmentKeys::Gcm(Arc::new(LessSafeKey::new(key)))
    }

    /// The tag length of this cipher.
    pub(crate) fn tag_len(&self) -> usize {
        match self {
            SegmentKeys::CtrHmac(_) => 32,
            SegmentKeys::Gcm(_) => 16,
        }
    }

    /// Encrypts `segment` in place and returns its tag. `iv` is the segment's 16-byte IV
    /// ([`ObjectKeys::segment_iv`]); GCM's 96-bit nonce is its first 12 bytes (nonce prefix,
    /// index, last flag), unique per segment of an epoch as the CTR IV is.
    pub(crate) fn seal(&self, iv: &[u8; 16], segment: &mut [u8]) -> SegmentTag {
        let mut bytes = [0u8; MAX_TAG_LEN];
        let len = match self {
            SegmentKeys::CtrHmac(keys) => {
                keys.apply_keystream(iv, segment);
                bytes.copy_from_slice(&keys.tag(iv, segment));
                32
            }
            SegmentKeys::Gcm(key) => {
                let tag = key
                    .seal_in_place_separate_tag(gcm_nonce(iv), Aad::empty(), segment)
                    .expect("a segment is far below GCM's 64 GiB per nonce");
                bytes[..16].copy_from_slice(tag.as_ref());
                16
            }
        };
        SegmentTag { bytes, len }
    }

    /// Verifies and decrypts `segment` (ciphertext followed by its tag) in place; the
    /// plaintext length, or `None` if the tag does not verify. Nothing unverified is ever
    /// left readable: CTR+HMAC checks before decrypting, and AWS-LC's GCM clears the buffer
    /// when the tag fails.
    pub(crate) fn open(&self, iv: &[u8; 16], segment: &mut [u8]) -> Option<usize> {
        let ct_len = segment.len().checked_sub(self.tag_len())?;
        match self {
            SegmentKeys::CtrHmac(keys) => {
                let (ct, tag) = segment.split_at_mut(ct_len);
                if !keys.verify(iv, ct, tag) {
                    return None;
                }
                keys.apply_keystream(iv, ct);
            }
            SegmentKeys::Gcm(key) => {
                key.open_in_place(gcm_nonce(iv), Aad::empty(), segment)
                    .ok()?;
            }
        }
        Some(ct_len)
    }
}

fn gcm_nonce(iv: &[u8; 16]) -> Nonce {
    let mut nonce = [0u8; 12];
    nonce.copy_from_slice(&iv[..12]);
    Nonce::assume_unique_for_key(nonce)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn v3() -> Layout {
        Layout::with_format(4096, 3).unwrap()
    }

    fn gcm() -> SegmentKeys {
        SegmentKeys::derive_epoch(
            &MasterKey::from_bytes([1; 32]),
            v3(),
            &[2; 32],
            b"S3CF\x03\x01\x10\x00",
            0,
            &[3; 16],
        )
    }

    #[test]
    fn gcm_round_trip_and_every_bit_counts() {
        let keys = gcm();
        let iv = ObjectKeys::segment_iv(&[0; 7], 5, false);
        let mut segment = vec![0x42u8; 1000];
        let tag = keys.seal(&iv, &mut segment);
        segment.extend_from_slice(tag.as_ref());
        assert_eq!(segment.len(), 1016);
        let sealed = segment.clone();
        assert_eq!(keys.open(&iv, &mut segment), Some(1000));
        assert!(segment[..1000].iter().all(|b| *b == 0x42));

        // Any flipped bit, another index, or the last flag: refused, and the buffer holds
        // no plaintext afterwards.
        for bit in [0, 7999, 8000, 8127] {
            let mut bad = sealed.clone();
            bad[bit / 8] ^= 1 << (bit % 8);
            assert_eq!(keys.open(&iv, &mut bad), None, "bit {bit}");
            assert!(!bad.windows(4).any(|w| w == [0x42; 4]));
        }
        for other in [
            ObjectKeys::segment_iv(&[0; 7], 6, false),
            ObjectKeys::segment_iv(&[0; 7], 5, true),
        ] {
            assert_eq!(keys.open(&other, &mut sealed.clone()), None);
        }
        // Shorter than a tag: refused, not a panic.
        assert_eq!(keys.open(&iv, &mut [0u8; 15]), None);
    }

    #[test]
    fn gcm_keys_are_apart_per_epoch() {
        let master = MasterKey::from_bytes([1; 32]);
        let iv = ObjectKeys::segment_iv(&[0; 7], 0, true);
        let seal = |first: u32, nonce: [u8; 16]| {
            let keys = SegmentKeys::derive_epoch(
                &master,
                v3(),
                &[2; 32],
                b"S3CF\x03\x01\x10\x00",
                first,
                &nonce,
            );
            let mut s = vec![0u8; 64];
            let tag = keys.seal(&iv, &mut s);
            s.extend_from_slice(tag.as_ref());
            s
        };
        let base = seal(0, [3; 16]);
        assert_ne!(base, seal(1, [3; 16]));
        assert_ne!(base, seal(0, [4; 16]));
        assert_eq!(base, seal(0, [3; 16]));
    }
}
