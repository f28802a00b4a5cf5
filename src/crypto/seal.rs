//! Encryption: the per-segment sealer and the streaming encryptor.

use super::header::{Header, ObjectKind};
use super::keys::{MasterKey, ObjectKeys, os_random};
use super::layout::{Layout, MAX_SEGMENTS};
use super::segment_keys::{SegmentKeys, SegmentTag};

/// Seals the segments of one object version, strictly in order.
///
/// Holds the per-object keys, the nonce prefix and the index of the next
/// segment. The index only moves forward; `seal_last` consumes the sealer.
/// Together with a fresh random salt per object version this is what makes
/// it impossible to encrypt two plaintexts under the same
/// (key, nonce, counter) through this API.
pub struct SegmentSealer {
    keys: SegmentKeys,
    nonce_prefix: [u8; 7],
    next_index: u64,
}

impl SegmentSealer {
    fn new(keys: SegmentKeys, nonce_prefix: [u8; 7], first_index: u64) -> Self {
        SegmentSealer {
            keys,
            nonce_prefix,
            next_index: first_index,
        }
    }

    /// Index of the segment the next seal will produce.
    pub fn next_index(&self) -> u64 {
        self.next_index
    }

    fn seal(&mut self, segment: &mut [u8], last: bool) -> SegmentTag {
        // A non-last segment must leave room for the last one, so its index is
        // at most 2^32 - 2; the last segment's index is at most 2^32 - 1.
        let limit = if last { MAX_SEGMENTS } else { MAX_SEGMENTS - 1 };
        assert!(
            self.next_index < limit,
            "object exceeds the maximum of 2^32 segments"
        );
        let index = self.next_index as u32;
        let iv = ObjectKeys::segment_iv(&self.nonce_prefix, index, last);
        let tag = self.keys.seal(&iv, segment);
        self.next_index += 1;
        tag
    }

    /// Encrypts a segment that is known not to be the last one, in place,
    /// and returns its tag.
    fn seal_next(&mut self, segment: &mut [u8]) -> SegmentTag {
        self.seal(segment, false)
    }

    /// Encrypts the final segment (last flag set) in place and returns its
    /// tag. Takes `self` by value: nothing can be sealed afterwards.
    fn seal_last(mut self, segment: &mut [u8]) -> SegmentTag {
        self.seal(segment, true)
    }
}

/// Streaming encryptor over caller-provided output buffers.
///
/// Typical use for a multipart upload with parts of `limit` bytes (a
/// multiple of [`Layout::ciphertext_segment_size`]):
///
/// ```
/// # use s3cryptfs::crypto::*;
/// # let master = MasterKey::generate();
/// # let layout = Layout::new(4096).unwrap();
/// # let mut input: &[u8] = &[7u8; 20000];
/// # let mut parts: Vec<Vec<u8>> = Vec::new();
/// let limit = 2 * layout.ciphertext_segment_size() as usize;
/// let mut enc = StreamEncryptor::new(&master, layout, ObjectKind::File);
/// let mut out = Vec::with_capacity(limit);
/// enc.start(&mut out);
/// while !input.is_empty() {
///     let n = enc.write(&mut out, input, limit);
///     input = &input[n..];
///     if enc.is_buffer_full(&out, limit) {
///         parts.push(out.clone()); // upload as a part
///         out.clear();
///     }
/// }
/// enc.finish(&mut out);
/// parts.push(out);
/// let object = parts.concat();
/// assert_eq!(decrypt_to_vec(&master, layout, &object).unwrap().1, vec![7u8; 20000]);
/// ```
///
/// `finish` consumes the encryptor, so sealing after the last segment does
/// not compile:
///
/// ```compile_fail,E0382
/// # use s3cryptfs::crypto::*;
/// # let master = MasterKey::generate();
/// let mut enc = StreamEncryptor::new(&master, Layout::default(), ObjectKind::File);
/// let mut out = Vec::new();
/// enc.start(&mut out);
/// enc.finish(&mut out);
/// enc.write(&mut out, b"more", 65568); // error: use of moved value
/// ```
pub struct StreamEncryptor {
    header: Header,
    layout: Layout,
    sealer: SegmentSealer,
    started: bool,
    /// Plaintext bytes of the current (unsealed) segment, at the end of `out`.
    pending: usize,
    plaintext_len: u64,
}

impl StreamEncryptor {
    /// A new object version with a fresh random salt and nonce prefix from
    /// the OS RNG.
    pub fn new(master: &MasterKey, layout: Layout, kind: ObjectKind) -> Self {
        let mut salt = [0u8; 32];
        os_random(&mut salt);
        if layout.format() == 1 {
            let mut nonce_prefix = [0u8; 7];
            os_random(&mut nonce_prefix);
            Self::build(master, layout, kind, salt, nonce_prefix)
        } else {
            Self::build_v2(master, Header::new_v2(kind, layout, salt, epoch_nonce()), 0)
        }
    }

    /// Format 2: continues `base` (an existing object's header) with a new
    /// epoch from segment `from_segment`, the base's last segment, which the
    /// caller re-seals first (its plaintext, then the appended bytes). The
    /// segments before it stay as they are and can be copied. The new
    /// header is [`StreamEncryptor::header`]; nothing is written by `start`.
    /// `None` if `base` is format 1, its epoch table is full, or
    /// `from_segment` is 0 (nothing to keep).
    pub fn append(master: &MasterKey, base: &Header, from_segment: u64) -> Option<Self> {
        let first = u32::try_from(from_segment).ok().filter(|f| *f > 0)?;
        let header = base.with_epoch(first, epoch_nonce())?;
        Some(Self::build_v2(master, header, from_segment))
    }

    /// A format-2 encryptor from a fixed epoch nonce, for known-answer tests. Not in
    /// release builds: used for real data it would reuse keys and nonces across objects.
    #[cfg(any(test, feature = "test-support"))]
    #[doc(hidden)]
    pub fn with_fixed_epoch(
        master: &MasterKey,
        layout: Layout,
        kind: ObjectKind,
        salt: [u8; 32],
        epoch_nonce: [u8; 16],
    ) -> Self {
        Self::build_v2(master, Header::new_v2(kind, layout, salt, epoch_nonce), 0)
    }

    /// [`StreamEncryptor::append`] with a fixed epoch nonce, for known-answer tests. Not in
    /// release builds.
    #[cfg(any(test, feature = "test-support"))]
    #[doc(hidden)]
    pub fn append_with_fixed_epoch(
        master: &MasterKey,
        base: &Header,
        from_segment: u64,
        epoch_nonce: [u8; 16],
    ) -> Option<Self> {
        let first = u32::try_from(from_segment).ok().filter(|f| *f > 0)?;
        let header = base.with_epoch(first, epoch_nonce)?;
        Some(Self::build_v2(master, header, from_segment))
    }

    /// Seals in the last epoch of `header`, from segment `from_segment`.
    fn build_v2(master: &MasterKey, header: Header, from_segment: u64) -> Self {
        let layout = header.layout();
        let epoch = *header.epochs().last().expect("format 2 has an epoch");
        let keys = SegmentKeys::derive_epoch(
            master,
            layout,
            header.salt(),
            &header.prefix(),
            epoch.first_segment,
            &epoch.nonce,
        );
        StreamEncryptor {
            header,
            layout,
            sealer: SegmentSealer::new(keys, [0; 7], from_segment),
            // An append starts past the header, which its caller places.
            started: from_segment > 0,
            pending: 0,
            plaintext_len: layout.segment_plaintext_start(from_segment),
        }
    }

    /// ONLY for known-answer tests: uses the given salt and nonce prefix
    /// instead of fresh randomness. Using it for real data would reuse
    /// keys and nonces across objects and break confidentiality. Not in release builds.
    #[cfg(any(test, feature = "test-support"))]
    #[doc(hidden)]
    pub fn with_fixed_randomness(
        master: &MasterKey,
        layout: Layout,
        kind: ObjectKind,
        salt: [u8; 32],
        nonce_prefix: [u8; 7],
    ) -> Self {
        Self::build(master, layout, kind, salt, nonce_prefix)
    }

    fn build(
        master: &MasterKey,
        layout: Layout,
        kind: ObjectKind,
        salt: [u8; 32],
        nonce_prefix: [u8; 7],
    ) -> Self {
        let header = Header::new(kind, layout, salt, nonce_prefix);
        let keys = SegmentKeys::derive_object(master, &salt, &header.prefix());
        StreamEncryptor {
            header,
            layout,
            sealer: SegmentSealer::new(keys, nonce_prefix, 0),
            started: false,
            pending: 0,
            plaintext_len: 0,
        }
    }

    /// Writes the 48-byte header into the empty `out`. Must be called once,
    /// before anything else.
    pub fn start(&mut self, out: &mut Vec<u8>) {
        assert!(!self.started, "StreamEncryptor::start called twice");
        assert!(
            out.is_empty(),
            "StreamEncryptor::start needs an empty buffer"
        );
        out.extend_from_slice(&self.header.to_bytes());
        self.started = true;
    }

    /// Appends plaintext from `data` to `out`, encrypting each segment in
    /// place (AES-CTR directly over the bytes in `out`, tag appended) as soon
    /// as it is known not to be the last one, i.e. it is full and at least
    /// one more plaintext byte exists.
    ///
    /// Never allocates if `out` has capacity for `out_limit` bytes. Stops
    /// when `out.len()` reaches `out_limit` with every segment in it sealed,
    /// and returns how many bytes of `data` it consumed (possibly 0 when the
    /// buffer is full). The caller then hands `out` off (e.g. uploads it as a
    /// part), clears it, and calls `write` again with the rest; see
    /// [`StreamEncryptor::is_buffer_full`]. A segment never spans two buffers.
    ///
    /// Bytes of `data` that were not consumed must be written before
    /// [`StreamEncryptor::finish`]: the segment before them was already
    /// sealed as not-last.
    ///
    /// # Panics
    /// If `out_limit` is not a positive multiple of the ciphertext segment
    /// size, if `start` was not called, or past 2^32 segments.
    pub fn write(&mut self, out: &mut Vec<u8>, data: &[u8], out_limit: usize) -> usize {
        assert!(self.started, "StreamEncryptor::start must be called first");
        let c = self.layout.ciphertext_segment_size() as usize;
        assert!(
            out_limit > 0 && out_limit.is_multiple_of(c),
            "out_limit {out_limit} is not a positive multiple of the ciphertext segment size {c}"
        );
        assert!(
            out.len() >= self.pending,
            "output buffer lost the current segment's bytes"
        );
        let mut consumed = 0;
        loop {
            let cap = self
                .layout
                .segment_plaintext_capacity(self.sealer.next_index());
            if self.pending == cap {
                if consumed == data.len() {
                    // Full, but it may still turn out to be the last segment.
                    break;
                }
                let start = out.len() - cap;
                let tag = self.sealer.seal_next(&mut out[start..]);
                out.extend_from_slice(tag.as_ref());
                self.pending = 0;
                continue;
            }
            if self.pending == 0 && out.len() >= out_limit {
                break;
            }
            if consumed == data.len() {
                break;
            }
            let n = (cap - self.pending).min(data.len() - consumed);
            out.extend_from_slice(&data[consumed..consumed + n]);
            self.pending += n;
            consumed += n;
        }
        self.plaintext_len += consumed as u64;
        consumed
    }

    /// True when `out` has reached `out_limit` and everything in it is
    /// sealed: the caller must hand it off before writing more.
    pub fn is_buffer_full(&self, out: &[u8], out_limit: usize) -> bool {
        self.pending == 0 && out.len() >= out_limit
    }

    /// Plaintext bytes that `write` can take into `out` without making it a whole part of
    /// `out_limit` bytes: a write of at most this many never fills the buffer (its last
    /// segment, even when full, waits unsealed for more input or `finish`).
    pub fn room_in_part(&self, out: &[u8], out_limit: usize) -> usize {
        let c = self.layout.ciphertext_segment_size() as usize;
        // The header (in the first part) and the sealed segments fill whole segment slots.
        let slots_used = (out.len() - self.pending) / c;
        let slots = (out_limit / c).saturating_sub(slots_used);
        if slots == 0 {
            return 0;
        }
        // Only segment 0 is short (it holds the header).
        let first = self
            .layout
            .segment_plaintext_capacity(self.sealer.next_index());
        let others = self.layout.plaintext_segment_size() as usize * (slots - 1);
        first + others - self.pending
    }

    /// Seals the final segment (possibly empty, possibly full) with the last
    /// flag, appending its tag to `out`; `out` needs room for at most one
    /// more tag (plus the header for an empty object). Consumes the
    /// encryptor: nothing can be sealed afterwards.
    ///
    /// # Panics
    /// If `start` was not called, or if `write` left input unconsumed that
    /// was never written (the previous segment was sealed as not-last).
    pub fn finish(self, out: &mut Vec<u8>) {
        assert!(self.started, "StreamEncryptor::start must be called first");
        assert!(
            !(self.pending == 0 && self.sealer.next_index() > 0),
            "StreamEncryptor::finish: input that write() did not consume was never written"
        );
        assert!(out.len() >= self.pending);
        let start = out.len() - self.pending;
        let tag = self.sealer.seal_last(&mut out[start..]);
        out.extend_from_slice(tag.as_ref());
    }

    /// Plaintext bytes consumed so far.
    pub fn plaintext_len(&self) -> u64 {
        self.plaintext_len
    }

    /// The header this encryptor writes.
    pub fn header(&self) -> &Header {
        &self.header
    }
}

/// Encrypts a whole object in memory (for small objects and tests).
/// A fresh random epoch nonce; never all zeros (zeros mark an unused entry).
fn epoch_nonce() -> [u8; 16] {
    let mut nonce = [0u8; 16];
    while nonce == [0; 16] {
        os_random(&mut nonce);
    }
    nonce
}

pub fn encrypt_to_vec(
    master: &MasterKey,
    layout: Layout,
    kind: ObjectKind,
    plaintext: &[u8],
) -> Vec<u8> {
    let total = layout.ciphertext_size(plaintext.len() as u64) as usize;
    let c = layout.ciphertext_segment_size() as usize;
    let limit = total.div_ceil(c) * c;
    let mut out = Vec::with_capacity(total);
    let mut enc = StreamEncryptor::new(master, layout, kind);
    enc.start(&mut out);
    let n = enc.write(&mut out, plaintext, limit);
    debug_assert_eq!(n, plaintext.len());
    enc.finish(&mut out);
    debug_assert_eq!(out.len(), total);
    debug_assert!(out.len() >= layout.header_len() + layout.tag_len());
    out
}
