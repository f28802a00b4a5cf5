//! Size and offset arithmetic of the segmented object format.
//!
//! Notation: `S` = plaintext segment size, `T` = tag length (32 bytes in
//! formats 1 and 2, 16 in format 3), `C = S + T` = ciphertext segment size,
//! `H` = header length. Segment 0 holds `S - H` plaintext bytes so
//! that, together with the header, it occupies exactly `C` ciphertext bytes;
//! ciphertext segment `i` therefore starts at `i * C` (segment 0's
//! ciphertext itself starts at `H`). `H` depends on the volume's object
//! format: 48 bytes in format 1, 368 in formats 2 and 3 (their table of epochs).

use std::ops::Range;

use super::error::CryptoError;

/// Length of the object header in bytes (format 1).
pub const HEADER_LEN: usize = 48;
/// Epochs a format-2 header can list (each append adds one; a full table
/// makes the next change rewrite the object under a new salt).
pub const MAX_EPOCHS: usize = 16;
/// One epoch entry: first segment (u32) and the epoch nonce (16 bytes).
pub const EPOCH_ENTRY_LEN: usize = 20;
/// Length of a format-2 (and format-3) object header.
pub const HEADER_LEN_V2: usize = HEADER_LEN + MAX_EPOCHS * EPOCH_ENTRY_LEN;
/// The object formats this build reads (and the newest, which it writes).
pub const OBJECT_FORMATS: [u8; 3] = [1, 2, 3];
/// Length of the authentication tag after every segment in formats 1 and 2
/// (HMAC-SHA256).
pub const TAG_LEN: usize = 32;
/// Length of the tag after every segment in format 3 (AES-256-GCM).
pub const GCM_TAG_LEN: usize = 16;
/// The longest tag of any format.
pub const MAX_TAG_LEN: usize = TAG_LEN;
/// Smallest allowed plaintext segment size.
pub const MIN_SEGMENT_SIZE: u32 = 4096;
/// Largest allowed plaintext segment size (16 MiB).
pub const MAX_SEGMENT_SIZE: u32 = 16 << 20;
/// Largest number of segments in one object (the index is a u32 in the IV).
pub const MAX_SEGMENTS: u64 = 1 << 32;

/// The segment geometry of a volume: segment size and object format.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Layout {
    segment_size: u32,
    format: u8,
}

impl Layout {
    /// The default plaintext segment size (64 KiB).
    pub const DEFAULT_SEGMENT_SIZE: u32 = 65536;

    /// A format-1 layout with plaintext segment size `S`, which must be a
    /// power of two in `4096..=16 MiB`.
    pub fn new(plaintext_segment_size: u32) -> Result<Self, CryptoError> {
        Self::with_format(plaintext_segment_size, 1)
    }

    /// A layout of object format `format` (1, 2 or 3).
    pub fn with_format(plaintext_segment_size: u32, format: u8) -> Result<Self, CryptoError> {
        let s = plaintext_segment_size;
        if !s.is_power_of_two() || !(MIN_SEGMENT_SIZE..=MAX_SEGMENT_SIZE).contains(&s) {
            return Err(CryptoError::InvalidConfig(format!(
                "segment size {s} is not a power of two between {MIN_SEGMENT_SIZE} and {MAX_SEGMENT_SIZE}"
            )));
        }
        if !OBJECT_FORMATS.contains(&format) {
            return Err(CryptoError::UnsupportedVersion(format));
        }
        Ok(Layout {
            segment_size: s,
            format,
        })
    }

    /// The object format version (header byte 4).
    pub fn format(&self) -> u8 {
        self.format
    }

    /// Whether objects carry a table of epochs (formats 2 and 3), which lets an append keep
    /// what an object already has.
    pub fn has_epochs(&self) -> bool {
        self.format >= 2
    }

    /// Whether segments are sealed with AES-256-GCM (format 3) rather than AES-256-CTR and
    /// HMAC-SHA256.
    pub fn is_gcm(&self) -> bool {
        self.format == 3
    }

    /// `T`: 32 bytes (HMAC-SHA256) in formats 1 and 2, 16 (GCM) in format 3.
    pub fn tag_len(&self) -> usize {
        if self.is_gcm() { GCM_TAG_LEN } else { TAG_LEN }
    }

    fn t(&self) -> u64 {
        self.tag_len() as u64
    }

    /// `H`: 48 bytes in format 1, 368 in formats 2 and 3.
    pub fn header_len(&self) -> usize {
        if self.format == 1 {
            HEADER_LEN
        } else {
            HEADER_LEN_V2
        }
    }

    fn h(&self) -> u64 {
        self.header_len() as u64
    }

    /// `log2(S)`, as stored in the header.
    pub(crate) fn segment_size_log2(&self) -> u8 {
        self.segment_size.trailing_zeros() as u8
    }

    /// `S`.
    pub fn plaintext_segment_size(&self) -> u32 {
        self.segment_size
    }

    /// `C = S + T`.
    pub fn ciphertext_segment_size(&self) -> u64 {
        u64::from(self.segment_size) + self.t()
    }

    fn s(&self) -> u64 {
        u64::from(self.segment_size)
    }

    /// Number of segments of a plaintext of `plaintext_size` bytes:
    /// 1 if it is empty, else `ceil((P + H) / S)`.
    pub fn segment_count(&self, plaintext_size: u64) -> u64 {
        if plaintext_size == 0 {
            1
        } else {
            (plaintext_size + self.h()).div_ceil(self.s())
        }
    }

    /// `H + P + n * T`.
    pub fn ciphertext_size(&self, plaintext_size: u64) -> u64 {
        self.h() + plaintext_size + self.segment_count(plaintext_size) * self.t()
    }

    /// Inverse of [`Layout::ciphertext_size`]; `ImpossibleSize` if no
    /// plaintext has a ciphertext of this size.
    pub fn plaintext_size(&self, ciphertext_size: u64) -> Result<u64, CryptoError> {
        let total = ciphertext_size;
        let t = self.t();
        if total < self.h() + t {
            return Err(CryptoError::ImpossibleSize(total));
        }
        let c = self.ciphertext_segment_size();
        let n = total.div_ceil(c);
        if n > MAX_SEGMENTS {
            return Err(CryptoError::ImpossibleSize(total));
        }
        if n > 1 && total - (n - 1) * c <= t {
            // The last segment would be a bare tag: only a lone segment may be empty.
            return Err(CryptoError::ImpossibleSize(total));
        }
        Ok(total - self.h() - n * t)
    }

    /// Plaintext bytes a full segment `index` holds: `S - H` for segment 0,
    /// `S` for the others.
    pub fn segment_plaintext_capacity(&self, index: u64) -> usize {
        if index == 0 {
            self.segment_size as usize - self.header_len()
        } else {
            self.segment_size as usize
        }
    }

    /// Plaintext offset where segment `index` starts (unclipped).
    pub fn segment_plaintext_start(&self, index: u64) -> u64 {
        if index == 0 {
            0
        } else {
            index * self.s() - self.h()
        }
    }

    /// Index of the segment that holds plaintext byte `plaintext_offset`.
    pub fn segment_of(&self, plaintext_offset: u64) -> u64 {
        (plaintext_offset + self.h()) / self.s()
    }

    /// The plaintext bytes of segment `index` in an object of
    /// `plaintext_size` bytes (empty, at the end, if there is no such segment).
    pub fn segment_plaintext_range(&self, index: u64, plaintext_size: u64) -> Range<u64> {
        let start = self.segment_plaintext_start(index).min(plaintext_size);
        let end = (self.segment_plaintext_start(index)
            + self.segment_plaintext_capacity(index) as u64)
            .min(plaintext_size);
        start..end
    }

    /// The ciphertext+tag bytes of segment `index` within the object; for
    /// segment 0 it starts at `HEADER_LEN`. Empty (at the end) if the object
    /// has no such segment.
    pub fn segment_ciphertext_range(&self, index: u64, plaintext_size: u64) -> Range<u64> {
        let total = self.ciphertext_size(plaintext_size);
        if index >= self.segment_count(plaintext_size) {
            return total..total;
        }
        let c = self.ciphertext_segment_size();
        let start = if index == 0 { self.h() } else { index * c };
        let end = ((index + 1) * c).min(total);
        start..end
    }

    /// For reading plaintext bytes `range` of an object of `plaintext_size`
    /// bytes: the segment indices to fetch, and the ciphertext byte range
    /// covering exactly those segments (starting at `HEADER_LEN` when
    /// segment 0 is included). The range is first clipped to the object; an
    /// empty result is `(0..0, 0..0)`.
    pub fn ciphertext_range_for(
        &self,
        range: Range<u64>,
        plaintext_size: u64,
    ) -> (Range<u64>, Range<u64>) {
        let start = range.start.min(plaintext_size);
        let end = range.end.min(plaintext_size);
        if start >= end {
            return (0..0, 0..0);
        }
        let first = self.segment_of(start);
        let last = self.segment_of(end - 1);
        let ct = self.segment_ciphertext_range(first, plaintext_size).start
            ..self.segment_ciphertext_range(last, plaintext_size).end;
        (first..last + 1, ct)
    }
}

/// How an append reuses an object of `plaintext_size` bytes (formats 2 and 3): every
/// segment before the last is kept byte for byte; the last segment's
/// plaintext is re-sealed (no longer last) in a new epoch, followed by the
/// appended bytes.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AppendPlan {
    /// The segment the new epoch starts with (the old last segment).
    pub from_segment: u64,
    /// Ciphertext bytes kept as they are: from the end of the header to the
    /// start of `from_segment`.
    pub kept: Range<u64>,
    /// Plaintext bytes of the old last segment, to be sealed again.
    pub resealed: Range<u64>,
}

impl Layout {
    /// `None` for format 1 and for objects of one segment (nothing to keep).
    pub fn append_plan(&self, plaintext_size: u64) -> Option<AppendPlan> {
        let count = self.segment_count(plaintext_size);
        if !self.has_epochs() || count < 2 {
            return None;
        }
        let last = count - 1;
        Some(AppendPlan {
            from_segment: last,
            kept: self.h()..self.segment_ciphertext_range(last, plaintext_size).start,
            resealed: self.segment_plaintext_range(last, plaintext_size),
        })
    }
}

impl Default for Layout {
    fn default() -> Self {
        Layout {
            segment_size: Self::DEFAULT_SEGMENT_SIZE,
            format: 1,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rejects_bad_segment_sizes() {
        for s in [0, 1, 2048, 4095, 4097, 65535, 3 << 12, 32 << 20, u32::MAX] {
            assert!(Layout::new(s).is_err(), "{s}");
        }
        for s in [4096, 8192, 65536, 16 << 20] {
            assert_eq!(Layout::new(s).unwrap().plaintext_segment_size(), s);
        }
    }

    #[test]
    fn worked_example() {
        // The example used in docs/FORMAT.md.
        let l = Layout::new(65536).unwrap();
        assert_eq!(l.segment_count(0), 1);
        assert_eq!(l.ciphertext_size(0), 80);
        assert_eq!(l.segment_count(100_000), 2);
        assert_eq!(l.ciphertext_size(100_000), 100_112);
        assert_eq!(l.plaintext_size(100_112).unwrap(), 100_000);
        assert_eq!(l.segment_count(65488), 1);
        assert_eq!(l.ciphertext_size(65488), 65568);
        assert_eq!(l.segment_count(65489), 2);
        assert_eq!(l.ciphertext_size(65489), 65601);
        assert!(l.plaintext_size(65569).is_err());
        assert!(l.plaintext_size(65600).is_err());
        assert_eq!(l.segment_ciphertext_range(1, 100_000), 65568..100_112);
        assert_eq!(l.segment_plaintext_range(1, 100_000), 65488..100_000);
        assert_eq!(l.segment_of(65487), 0);
        assert_eq!(l.segment_of(65488), 1);
    }
}
