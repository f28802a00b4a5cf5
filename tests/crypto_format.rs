//! Integration tests of the encrypted object format (see docs/FORMAT.md).

use std::ops::Range;
use std::path::PathBuf;
use std::sync::atomic::{AtomicUsize, Ordering};

use proptest::prelude::*;
use s3cryptfs::crypto::*;

fn master(b: u8) -> MasterKey {
    MasterKey::from_bytes([b; 32])
}

fn l4k() -> Layout {
    Layout::new(4096).unwrap()
}

fn pattern(len: usize) -> Vec<u8> {
    (0..len).map(|i| (i % 251) as u8).collect()
}

/// Encrypts with the streaming API: `data` is fed in chunks of the given
/// sizes (cycled), buffers are handed off at the given limits (cycled,
/// multiples of C). Returns the handed-off buffers.
fn stream_encrypt(
    m: &MasterKey,
    layout: Layout,
    data: &[u8],
    chunks: &[usize],
    limit_segments: &[usize],
) -> Vec<Vec<u8>> {
    let c = layout.ciphertext_segment_size() as usize;
    let max_limit = limit_segments.iter().max().unwrap() * c;
    let mut parts = Vec::new();
    let mut enc = StreamEncryptor::new(m, layout, ObjectKind::File);
    let mut out = Vec::with_capacity(max_limit);
    let cap = out.capacity();
    enc.start(&mut out);
    let mut li = 0;
    let mut limit = limit_segments[0] * c;
    let mut rest = data;
    let mut ci = 0;
    while !rest.is_empty() {
        let take = chunks[ci % chunks.len()].clamp(1, rest.len());
        ci += 1;
        let mut chunk = &rest[..take];
        while !chunk.is_empty() {
            let room = enc.room_in_part(&out, limit);
            let n = enc.write(&mut out, chunk, limit);
            assert!(out.len() <= limit);
            // The room said beforehand whether this write would fill the part.
            assert_eq!(
                enc.is_buffer_full(&out, limit),
                chunk.len() > room,
                "room {room}, wrote {} of {}",
                n,
                chunk.len()
            );
            chunk = &chunk[n..];
            if enc.is_buffer_full(&out, limit) {
                assert_eq!(out.len(), limit);
                parts.push(std::mem::take(&mut out));
                out = Vec::with_capacity(max_limit);
                li += 1;
                limit = limit_segments[li % limit_segments.len()] * c;
            } else {
                assert!(
                    chunk.is_empty(),
                    "write stopped early without a full buffer"
                );
            }
        }
        rest = &rest[take..];
    }
    assert_eq!(enc.plaintext_len(), data.len() as u64);
    enc.finish(&mut out);
    assert!(out.len() <= limit);
    assert_eq!(out.capacity(), cap, "the encryptor reallocated the buffer");
    parts.push(out);
    parts
}

fn edge_sizes(s: usize) -> Vec<usize> {
    vec![
        0,
        1,
        s - 48 - 1,
        s - 48,
        s - 48 + 1,
        s - 1,
        s,
        s + 1,
        2 * s - 48,
        2 * s,
        5 * s + 123,
    ]
}

#[test]
fn round_trip_edge_sizes() {
    for s in [4096u32, Layout::DEFAULT_SEGMENT_SIZE] {
        let layout = Layout::new(s).unwrap();
        let m = MasterKey::generate();
        for p in edge_sizes(s as usize) {
            let data = pattern(p);
            let ct = encrypt_to_vec(&m, layout, ObjectKind::File, &data);
            assert_eq!(
                ct.len() as u64,
                layout.ciphertext_size(p as u64),
                "S={s} P={p}"
            );
            assert_eq!(layout.plaintext_size(ct.len() as u64).unwrap(), p as u64);
            let (kind, back) = decrypt_to_vec(&m, layout, &ct).unwrap();
            assert_eq!(kind, ObjectKind::File);
            assert_eq!(back, data, "S={s} P={p}");
            // Streaming with odd chunks and small buffers gives the same sizes.
            let parts = stream_encrypt(&m, layout, &data, &[7, 1000, 3], &[1, 2]);
            let joined = parts.concat();
            assert_eq!(joined.len(), ct.len());
            assert_eq!(decrypt_to_vec(&m, layout, &joined).unwrap().1, data);
        }
    }
}

#[test]
fn empty_object_is_80_bytes_and_symlink_kind_round_trips() {
    let m = master(1);
    let ct = encrypt_to_vec(&m, Layout::default(), ObjectKind::Symlink, b"");
    assert_eq!(ct.len(), 80);
    let (k, p) = decrypt_to_vec(&m, Layout::default(), &ct).unwrap();
    assert_eq!((k, p.len()), (ObjectKind::Symlink, 0));
    let ct = encrypt_to_vec(&m, Layout::default(), ObjectKind::Symlink, b"../target");
    assert_eq!(
        decrypt_to_vec(&m, Layout::default(), &ct).unwrap(),
        (ObjectKind::Symlink, b"../target".to_vec())
    );
}

#[test]
fn exactly_full_last_segment_is_marked_last() {
    // P = S - 48 fills segment 0 exactly: one segment, C bytes, no empty
    // trailing segment; same for 2S - 48 (two full segments).
    let layout = l4k();
    let m = master(2);
    for (p, n) in [(4096 - 48, 1u64), (2 * 4096 - 48, 2)] {
        assert_eq!(layout.segment_count(p), n);
        let ct = encrypt_to_vec(&m, layout, ObjectKind::File, &pattern(p as usize));
        assert_eq!(ct.len() as u64, n * layout.ciphertext_segment_size());
        assert!(decrypt_to_vec(&m, layout, &ct).is_ok());
    }
}

#[test]
fn many_segments_with_default_layout() {
    let layout = Layout::default();
    let m = MasterKey::generate();
    let data: Vec<u8> = (0..(3 << 20) + 12345)
        .map(|i| (i * 7 % 256) as u8)
        .collect();
    let parts = stream_encrypt(&m, layout, &data, &[65536 * 3 + 17], &[16]);
    assert!(parts.len() > 3);
    let joined = parts.concat();
    assert_eq!(
        joined.len() as u64,
        layout.ciphertext_size(data.len() as u64)
    );
    assert_eq!(decrypt_to_vec(&m, layout, &joined).unwrap().1, data);
}

#[test]
#[should_panic(expected = "multiple of the ciphertext segment size")]
fn out_limit_must_be_multiple_of_c() {
    let m = master(3);
    let mut enc = StreamEncryptor::new(&m, l4k(), ObjectKind::File);
    let mut out = Vec::new();
    enc.start(&mut out);
    enc.write(&mut out, b"x", 4096);
}

/// Reads plaintext `range` of `object` the way the read path does: fetch
/// the ciphertext range for the covering segments, open each one.
fn read_range(m: &MasterKey, layout: Layout, object: &[u8], range: Range<u64>) -> Vec<u8> {
    let dec = ObjectDecryptor::new(m, layout, &object[..HEADER_LEN], object.len() as u64).unwrap();
    let p = dec.plaintext_size();
    let (segs, ct) = layout.ciphertext_range_for(range.clone(), p);
    let fetched = &object[ct.start as usize..ct.end as usize];
    let mut plain = Vec::new();
    let mut first_plain = None;
    for i in segs {
        let r = layout.segment_ciphertext_range(i, p);
        let mut seg = fetched[(r.start - ct.start) as usize..(r.end - ct.start) as usize].to_vec();
        let n = dec.open_segment(i, &mut seg).unwrap();
        let pr = layout.segment_plaintext_range(i, p);
        assert_eq!(n as u64, pr.end - pr.start);
        first_plain.get_or_insert(pr.start);
        plain.extend_from_slice(&seg[..n]);
    }
    let start = range.start.min(p);
    let end = range.end.min(p).max(start);
    if start == end {
        return Vec::new();
    }
    let base = first_plain.unwrap();
    plain[(start - base) as usize..(end - base) as usize].to_vec()
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(64))]

    #[test]
    fn prop_stream_round_trip(
        p in 0usize..30_000,
        chunks in prop::collection::vec(1usize..9000, 1..6),
        limits in prop::collection::vec(1usize..4, 1..4),
        seed in any::<u8>(),
    ) {
        let layout = l4k();
        let m = master(seed);
        let data: Vec<u8> = (0..p).map(|i| (i as u8) ^ seed).collect();
        let parts = stream_encrypt(&m, layout, &data, &chunks, &limits);
        let c = layout.ciphertext_segment_size() as usize;
        for part in &parts[..parts.len() - 1] {
            prop_assert_eq!(part.len() % c, 0);
        }
        let joined = parts.concat();
        let whole = encrypt_to_vec(&m, layout, ObjectKind::File, &data);
        prop_assert_eq!(joined.len(), whole.len());
        prop_assert_eq!(decrypt_to_vec(&m, layout, &joined).unwrap().1, data);
    }

    #[test]
    fn prop_range_reads(
        p in 0usize..25_000,
        a in 0u64..26_000,
        len in 0u64..12_000,
    ) {
        let layout = l4k();
        let m = master(9);
        let data = pattern(p);
        let object = encrypt_to_vec(&m, layout, ObjectKind::File, &data);
        let got = read_range(&m, layout, &object, a..a + len);
        let s = (a as usize).min(p);
        let e = ((a + len) as usize).min(p).max(s);
        prop_assert_eq!(got, data[s..e].to_vec());
    }

    #[test]
    fn prop_size_forward_inverse(p in 0u64..(1u64 << 44), log_s in 12u32..=24) {
        let layout = Layout::new(1 << log_s).unwrap();
        let t = layout.ciphertext_size(p);
        prop_assert_eq!(layout.plaintext_size(t).unwrap(), p);
        prop_assert_eq!(layout.segment_count(p), t.div_ceil(layout.ciphertext_segment_size()));
    }

    #[test]
    fn prop_size_inverse_forward(t in 0u64..(1u64 << 44), log_s in 12u32..=24) {
        let layout = Layout::new(1 << log_s).unwrap();
        match layout.plaintext_size(t) {
            Ok(p) => prop_assert_eq!(layout.ciphertext_size(p), t),
            Err(CryptoError::ImpossibleSize(x)) => prop_assert_eq!(x, t),
            Err(e) => prop_assert!(false, "unexpected error {e}"),
        }
    }

    #[test]
    fn prop_segment_ranges_tile_the_object(p in 0u64..50_000) {
        let layout = l4k();
        let n = layout.segment_count(p);
        let mut next_plain = 0;
        let mut next_ct = HEADER_LEN as u64;
        for i in 0..n {
            let pr = layout.segment_plaintext_range(i, p);
            let cr = layout.segment_ciphertext_range(i, p);
            prop_assert_eq!(pr.start, next_plain);
            prop_assert_eq!(cr.start, next_ct);
            prop_assert_eq!(cr.end - cr.start, pr.end - pr.start + TAG_LEN as u64);
            prop_assert!(i == 0 || cr.start == i * layout.ciphertext_segment_size());
            prop_assert!(pr.end > pr.start || (p == 0 && n == 1));
            for off in [pr.start, pr.end.saturating_sub(1)] {
                if off < p {
                    prop_assert_eq!(layout.segment_of(off), i);
                }
            }
            next_plain = pr.end;
            next_ct = cr.end;
        }
        prop_assert_eq!(next_plain, p);
        prop_assert_eq!(next_ct, layout.ciphertext_size(p));
    }
}

#[test]
fn impossible_sizes_rejected() {
    for layout in [l4k(), Layout::default()] {
        let c = layout.ciphertext_segment_size();
        let bad = [
            0,
            1,
            47,
            HEADER_LEN as u64,
            (HEADER_LEN + TAG_LEN - 1) as u64,
            c + 1,
            c + TAG_LEN as u64,
            5 * c + 1,
            5 * c + 32,
        ];
        for t in bad {
            assert!(
                matches!(layout.plaintext_size(t), Err(CryptoError::ImpossibleSize(x)) if x == t),
                "{t}"
            );
        }
        assert_eq!(layout.plaintext_size(80).unwrap(), 0);
        assert_eq!(layout.plaintext_size(c + 33).unwrap(), c + 33 - 48 - 64);
        // More than 2^32 segments.
        assert!(layout.plaintext_size((1u64 << 32) * c + 100).is_err());
        assert!(layout.plaintext_size((1u64 << 32) * c).is_ok());
    }
    let m = master(4);
    let header = encrypt_to_vec(&m, l4k(), ObjectKind::File, b"abc");
    assert!(matches!(
        ObjectDecryptor::new(&m, l4k(), &header, 4096 + 32 + 10),
        Err(CryptoError::ImpossibleSize(_))
    ));
}

// ---------------------------------------------------------------- tampering

/// 3 segments with S = 4096.
fn three_segment_object(m: &MasterKey) -> (Vec<u8>, Vec<u8>) {
    let data = pattern(2 * 4096 + 100);
    let ct = encrypt_to_vec(m, l4k(), ObjectKind::File, &data);
    assert_eq!(l4k().segment_count(data.len() as u64), 3);
    (data, ct)
}

#[test]
fn every_single_bit_flip_is_rejected() {
    let m = master(5);
    let layout = l4k();
    let (_, ct) = three_segment_object(&m);
    // Header bits: the whole object must be rejected.
    let mut x = ct.clone();
    for byte in 0..HEADER_LEN {
        for bit in 0..8 {
            x[byte] ^= 1 << bit;
            assert!(
                decrypt_to_vec(&m, layout, &x).is_err(),
                "header byte {byte} bit {bit}"
            );
            x[byte] ^= 1 << bit;
        }
    }
    // Body bits: the header is intact, so the decryptor is the same; the
    // segment holding the flipped bit must fail and stay undecrypted. (The
    // other segments are untouched by the flip, so checking that one segment
    // is equivalent to decrypt_to_vec and keeps the test fast.)
    let dec = ObjectDecryptor::new(&m, layout, &ct, ct.len() as u64).unwrap();
    let p = dec.plaintext_size();
    let check_segment = |i: u64| {
        let r = layout.segment_ciphertext_range(i, p);
        let mut seg = ct[r.start as usize..r.end as usize].to_vec();
        for byte in 0..seg.len() {
            for bit in 0..8 {
                seg[byte] ^= 1 << bit;
                let mut work = seg.clone();
                let res = dec.open_segment(i, &mut work);
                assert!(
                    matches!(res, Err(CryptoError::TagMismatch { segment }) if segment == i),
                    "segment {i} byte {byte} bit {bit}: {res:?}"
                );
                assert_eq!(work, seg, "plaintext released");
                seg[byte] ^= 1 << bit;
            }
        }
    };
    std::thread::scope(|s| {
        for i in 0..dec.segment_count() {
            let check = &check_segment;
            s.spawn(move || check(i));
        }
    });
    // And a sample of body flips through the whole-object API.
    for byte in (HEADER_LEN..ct.len()).step_by(97) {
        x[byte] ^= 4;
        assert!(decrypt_to_vec(&m, layout, &x).is_err(), "byte {byte}");
        x[byte] ^= 4;
    }
}

#[test]
fn failed_segment_releases_no_plaintext() {
    let m = master(6);
    let (_, ct) = three_segment_object(&m);
    let layout = l4k();
    let dec = ObjectDecryptor::new(&m, layout, &ct, ct.len() as u64).unwrap();
    let r = layout.segment_ciphertext_range(1, dec.plaintext_size());
    let mut seg = ct[r.start as usize..r.end as usize].to_vec();
    seg[10] ^= 0x80;
    let before = seg.clone();
    assert!(matches!(
        dec.open_segment(1, &mut seg),
        Err(CryptoError::TagMismatch { segment: 1 })
    ));
    assert_eq!(seg, before, "buffer was decrypted despite a bad tag");
    // Wrong lengths and indexes.
    let mut short = ct[r.start as usize..r.end as usize - 1].to_vec();
    assert!(matches!(
        dec.open_segment(1, &mut short),
        Err(CryptoError::Truncated)
    ));
    let mut seg = ct[r.start as usize..r.end as usize].to_vec();
    assert!(matches!(
        dec.open_segment(3, &mut seg),
        Err(CryptoError::Truncated)
    ));
    // Right bytes, wrong index.
    assert!(matches!(
        dec.open_segment(2, &mut seg),
        Err(CryptoError::Truncated) | Err(CryptoError::TagMismatch { .. })
    ));
}

#[test]
fn every_truncation_is_rejected() {
    let m = master(7);
    let (_, ct) = three_segment_object(&m);
    for len in 0..ct.len() {
        assert!(
            decrypt_to_vec(&m, l4k(), &ct[..len]).is_err(),
            "truncated to {len} accepted"
        );
    }
    // Dropping the whole last segment leaves a valid-looking size whose last
    // segment was sealed as not-last.
    let c = l4k().ciphertext_segment_size() as usize;
    assert!(matches!(
        decrypt_to_vec(&m, l4k(), &ct[..2 * c]),
        Err(CryptoError::TagMismatch { segment: 1 })
    ));
    assert!(matches!(
        decrypt_to_vec(&m, l4k(), &ct[..c]),
        Err(CryptoError::TagMismatch { segment: 0 })
    ));
}

fn five_segment_object(m: &MasterKey) -> Vec<u8> {
    let data = pattern(4 * 4096 - 48 + 100);
    assert_eq!(l4k().segment_count(data.len() as u64), 5);
    encrypt_to_vec(m, l4k(), ObjectKind::File, &data)
}

#[test]
fn reordered_or_duplicated_segments_are_rejected() {
    let m = master(8);
    let ct = five_segment_object(&m);
    let c = l4k().ciphertext_segment_size() as usize;
    let seg = |i: usize| ct[i * c..(i + 1) * c].to_vec();
    // swap 1 and 2
    let mut x = ct.clone();
    x[c..2 * c].copy_from_slice(&seg(2));
    x[2 * c..3 * c].copy_from_slice(&seg(1));
    assert!(matches!(
        decrypt_to_vec(&m, l4k(), &x),
        Err(CryptoError::TagMismatch { segment: 1 })
    ));
    // segment 1 duplicated over segment 2
    let mut x = ct.clone();
    x[2 * c..3 * c].copy_from_slice(&seg(1));
    assert!(matches!(
        decrypt_to_vec(&m, l4k(), &x),
        Err(CryptoError::TagMismatch { segment: 2 })
    ));
    // segment 1 inserted twice (object grows by C)
    let mut x = ct[..2 * c].to_vec();
    x.extend_from_slice(&seg(1));
    x.extend_from_slice(&ct[2 * c..]);
    assert!(matches!(
        decrypt_to_vec(&m, l4k(), &x),
        Err(CryptoError::TagMismatch { segment: 2 })
    ));
    // a full segment moved to the end
    let mut x = ct.clone();
    x.extend_from_slice(&seg(3));
    assert!(decrypt_to_vec(&m, l4k(), &x).is_err());
}

#[test]
fn appended_garbage_is_rejected() {
    let m = master(10);
    for ct in [
        three_segment_object(&m).1,
        encrypt_to_vec(&m, l4k(), ObjectKind::File, b""),
    ] {
        for extra in [1usize, 31, 32, 33, 100, 4128, 4129] {
            let mut x = ct.clone();
            x.extend(std::iter::repeat_n(0u8, extra));
            assert!(decrypt_to_vec(&m, l4k(), &x).is_err(), "+{extra}");
        }
    }
}

#[test]
fn header_corruption_gives_the_right_error() {
    let m = master(11);
    let ct = encrypt_to_vec(&m, l4k(), ObjectKind::File, b"some file contents");
    let edit = |i: usize, v: u8| {
        let mut x = ct.clone();
        x[i] = v;
        decrypt_to_vec(&m, l4k(), &x)
    };
    assert!(matches!(edit(0, b'X'), Err(CryptoError::NotOurFormat)));
    assert!(matches!(edit(3, b'G'), Err(CryptoError::NotOurFormat)));
    assert!(matches!(
        edit(4, 2),
        Err(CryptoError::UnsupportedVersion(2))
    ));
    assert!(matches!(
        edit(4, 0),
        Err(CryptoError::UnsupportedVersion(0))
    ));
    assert!(matches!(edit(5, 0), Err(CryptoError::CorruptHeader(_))));
    assert!(matches!(edit(5, 4), Err(CryptoError::CorruptHeader(_))));
    // A valid but different kind changes the keys: tag mismatch.
    assert!(matches!(
        edit(5, 3),
        Err(CryptoError::TagMismatch { segment: 0 })
    ));
    assert!(matches!(
        edit(5, 2),
        Err(CryptoError::TagMismatch { segment: 0 })
    ));
    assert!(matches!(edit(6, 13), Err(CryptoError::CorruptHeader(_))));
    assert!(matches!(edit(7, 1), Err(CryptoError::CorruptHeader(_))));
    assert!(matches!(edit(47, 1), Err(CryptoError::CorruptHeader(_))));
    assert!(matches!(
        edit(8, ct[8] ^ 1),
        Err(CryptoError::TagMismatch { segment: 0 })
    ));
    assert!(matches!(
        edit(40, ct[40] ^ 1),
        Err(CryptoError::TagMismatch { segment: 0 })
    ));
    // Reading with the wrong volume segment size.
    assert!(decrypt_to_vec(&m, Layout::new(8192).unwrap(), &ct).is_err());
    // Too short to hold a header.
    assert!(matches!(
        ObjectDecryptor::new(&m, l4k(), &ct[..40], ct.len() as u64),
        Err(CryptoError::Truncated)
    ));
}

#[test]
fn wrong_key_and_other_volume_are_rejected() {
    let (_, ct) = three_segment_object(&master(12));
    assert!(matches!(
        decrypt_to_vec(&master(13), l4k(), &ct),
        Err(CryptoError::TagMismatch { segment: 0 })
    ));
    let other = MasterKey::generate();
    let foreign = encrypt_to_vec(&other, l4k(), ObjectKind::File, b"from another volume");
    assert!(matches!(
        decrypt_to_vec(&master(12), l4k(), &foreign),
        Err(CryptoError::TagMismatch { segment: 0 })
    ));
}

#[test]
fn segments_cannot_move_between_objects() {
    let m = master(14);
    let a = five_segment_object(&m);
    let b = five_segment_object(&m);
    let c = l4k().ciphertext_segment_size() as usize;
    let mut x = a.clone();
    x[c..2 * c].copy_from_slice(&b[c..2 * c]);
    assert!(matches!(
        decrypt_to_vec(&m, l4k(), &x),
        Err(CryptoError::TagMismatch { segment: 1 })
    ));
    // Header of b on the body of a.
    let mut x = a.clone();
    x[..HEADER_LEN].copy_from_slice(&b[..HEADER_LEN]);
    assert!(matches!(
        decrypt_to_vec(&m, l4k(), &x),
        Err(CryptoError::TagMismatch { segment: 0 })
    ));
}

#[test]
fn encryptions_use_fresh_randomness() {
    let m = master(15);
    let data = pattern(5000);
    let a = encrypt_to_vec(&m, l4k(), ObjectKind::File, &data);
    let b = encrypt_to_vec(&m, l4k(), ObjectKind::File, &data);
    assert_eq!(a[..8], b[..8]);
    assert_ne!(a[8..40], b[8..40], "salt reused");
    assert_ne!(a[40..47], b[40..47], "nonce prefix reused");
    assert_ne!(a[HEADER_LEN..], b[HEADER_LEN..]);
    let k1 = MasterKey::generate();
    let k2 = MasterKey::generate();
    assert_ne!(k1.expose(), k2.expose());
}

// ------------------------------------------------------------ known answers

const KAT_MASTER: [u8; 32] = [
    0x00, 0x01, 0x02, 0x03, 0x04, 0x05, 0x06, 0x07, 0x08, 0x09, 0x0a, 0x0b, 0x0c, 0x0d, 0x0e, 0x0f,
    0x10, 0x11, 0x12, 0x13, 0x14, 0x15, 0x16, 0x17, 0x18, 0x19, 0x1a, 0x1b, 0x1c, 0x1d, 0x1e, 0x1f,
];
const KAT_SALT: [u8; 32] = [0xa5; 32];
const KAT_NONCE: [u8; 7] = [0xf0, 0xf1, 0xf2, 0xf3, 0xf4, 0xf5, 0xf6];

fn kat_encrypt(plaintext: &[u8]) -> Vec<u8> {
    let layout = l4k();
    let m = MasterKey::from_bytes(KAT_MASTER);
    let mut enc =
        StreamEncryptor::with_fixed_randomness(&m, layout, ObjectKind::File, KAT_SALT, KAT_NONCE);
    let mut out = Vec::new();
    enc.start(&mut out);
    let c = layout.ciphertext_segment_size() as usize;
    let n = enc.write(&mut out, plaintext, 4 * c);
    assert_eq!(n, plaintext.len());
    enc.finish(&mut out);
    out
}

/// Re-derives a one-segment object directly from the primitives, without
/// the crate's code paths, following docs/FORMAT.md.
fn manual_single_segment(plaintext: &[u8]) -> Vec<u8> {
    use aes::cipher::{KeyIvInit, StreamCipher};
    use hmac::{KeyInit, Mac};
    let mut header = Vec::new();
    header.extend_from_slice(b"S3CF");
    header.extend_from_slice(&[1, 1, 12, 0]);
    header.extend_from_slice(&KAT_SALT);
    header.extend_from_slice(&KAT_NONCE);
    header.push(0);
    let hk = hkdf::Hkdf::<sha2::Sha256>::new(Some(&KAT_SALT), &KAT_MASTER);
    let mut info = b"s3cryptfs v1 object keys".to_vec();
    info.extend_from_slice(&header[..8]);
    let mut okm = [0u8; 64];
    hk.expand(&info, &mut okm).unwrap();
    let mut iv = [0u8; 16];
    iv[..7].copy_from_slice(&KAT_NONCE);
    iv[11] = 1; // index 0, last
    let mut ct = plaintext.to_vec();
    let mut cipher = ctr::Ctr32BE::<aes::Aes256>::new_from_slices(&okm[..32], &iv).unwrap();
    cipher.apply_keystream(&mut ct);
    let mut mac = <hmac::Hmac<sha2::Sha256> as KeyInit>::new_from_slice(&okm[32..]).unwrap();
    mac.update(&iv);
    mac.update(&ct);
    let tag = mac.finalize().into_bytes();
    [header, ct, tag.to_vec()].concat()
}

const KAT_EMPTY_HEX: &str = "5333434601010c00a5a5a5a5a5a5a5a5a5a5a5a5a5a5a5a5a5a5a5a5a5a5a5a5a5a5a5a5a5a5a5a5f0f1f2f3f4f5f600053241164d22d547039bc736b4bd2d34321631cf4253d298401f67cc76d2db9c";
const KAT_HELLO_HEX: &str = "5333434601010c00a5a5a5a5a5a5a5a5a5a5a5a5a5a5a5a5a5a5a5a5a5a5a5a5a5a5a5a5a5a5a5a5f0f1f2f3f4f5f600bc262f081150522e16fbda31254f3a1eba4790a950208d68b97d5d89177e8672f41b013666";
const KAT_5000_SHA256: &str = "f647fced461e94f1f151b3e18ba20e5fea345a28021e90a8f98ca89d55b29167";

#[test]
fn known_answer_vectors() {
    use sha2::Digest;
    let empty = kat_encrypt(b"");
    let hello = kat_encrypt(b"hello");
    let big = kat_encrypt(&pattern(5000));
    assert_eq!(empty, manual_single_segment(b""));
    assert_eq!(hello, manual_single_segment(b"hello"));
    assert_eq!(empty.len(), 80);
    assert_eq!(hello.len(), 85);
    assert_eq!(big.len(), 48 + 5000 + 2 * 32);
    // Second segment of the 5000-byte object, re-derived by hand: IV index 1, last.
    {
        use aes::cipher::{KeyIvInit, StreamCipher};
        use hmac::{KeyInit, Mac};
        let hk = hkdf::Hkdf::<sha2::Sha256>::new(Some(&KAT_SALT), &KAT_MASTER);
        let mut info = b"s3cryptfs v1 object keys".to_vec();
        info.extend_from_slice(&big[..8]);
        let mut okm = [0u8; 64];
        hk.expand(&info, &mut okm).unwrap();
        let mut iv = [0u8; 16];
        iv[..7].copy_from_slice(&KAT_NONCE);
        iv[7..11].copy_from_slice(&1u32.to_be_bytes());
        iv[11] = 1;
        let seg = &big[4128..];
        let (ct, tag) = seg.split_at(seg.len() - 32);
        let mut mac = <hmac::Hmac<sha2::Sha256> as KeyInit>::new_from_slice(&okm[32..]).unwrap();
        mac.update(&iv);
        mac.update(ct);
        mac.verify_slice(tag).unwrap();
        let mut pt = ct.to_vec();
        ctr::Ctr32BE::<aes::Aes256>::new_from_slices(&okm[..32], &iv)
            .unwrap()
            .apply_keystream(&mut pt);
        assert_eq!(pt, pattern(5000)[4048..].to_vec());
    }
    let big_sha = hex::encode(sha2::Sha256::digest(&big));
    assert_eq!(hex::encode(&empty), KAT_EMPTY_HEX);
    assert_eq!(hex::encode(&hello), KAT_HELLO_HEX);
    assert_eq!(big_sha, KAT_5000_SHA256);
    let m = MasterKey::from_bytes(KAT_MASTER);
    assert_eq!(decrypt_to_vec(&m, l4k(), &big).unwrap().1, pattern(5000));
}

// ------------------------------------------------------- name known answers

const KAT_NAME_KEY_HEX: &str = "12afb5bf71132372a51bcf6af64f7385c035dcce6ec4e2e6f41a00bc1bd8e5dae9593de0bd7ad5fbc6f02d06302079ece3c17b690b87ced1e7fb294cf78a55c1";
/// (parent, name, component), as in docs/FORMAT.md section 14.7.
const KAT_NAMES: [(&str, &str, &str); 3] = [
    ("", "hello.txt", "BGqS0aGIQjyrE4U6XUtLOzyUJQfcOg2d4A"),
    ("docs", "hello.txt", "8E1Hmno6KZlSriod0oYupBY-fCNjwJlA6Q"),
    (
        "docs/2026",
        "Grüße 世界.md",
        "XMNlj01kyjqjgYbnZ6ggtzxtNkVBCbFmgYqB8ow-9s_v",
    ),
];
/// (parent, name, component length, stand-in); the name is 200 × "n".
const KAT_LONG_NAME: (&str, (usize, &str), usize, &str) = (
    "",
    (200, "n"),
    288,
    "~LdJ2AG1OeARpeg_AXcBUJKpHjAX9Bcb15L1ybvq08puk",
);

/// The vectors of docs/FORMAT.md section 14.7: the name key (hex), the
/// table rows (parent, name, component) and the long-name rows (parent,
/// name, component length, stand-in).
#[allow(clippy::type_complexity)]
fn name_vectors_from_format_md() -> (
    String,
    Vec<(String, String, String)>,
    Vec<(String, String, usize, String)>,
) {
    let doc = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/docs/FORMAT.md"))
        .expect("docs/FORMAT.md");
    let start = doc
        .find("## 14. Name encryption")
        .expect("FORMAT.md has the name encryption section");
    let section = &doc[start..];
    let section = &section[..section[3..].find("\n## ").map_or(section.len(), |i| i + 3)];
    let kat = &section[section.find("### 14.7").expect("section 14.7")..];
    let json = |cell: &str| -> String {
        serde_json::from_str(cell.trim_matches('`')).unwrap_or_else(|e| panic!("{cell}: {e}"))
    };
    let mut key = String::new();
    let mut rows = Vec::new();
    let mut long = Vec::new();
    for line in kat.lines() {
        if let Some(hex) = line.strip_prefix("name-key: ") {
            key.push_str(hex.trim());
            continue;
        }
        if !line.starts_with("| `") {
            continue;
        }
        let cells: Vec<&str> = line.trim_matches('|').split('|').map(str::trim).collect();
        match cells[..] {
            [parent, name, component] => {
                rows.push((json(parent), json(name), component.trim_matches('`').into()))
            }
            [parent, name, len, stand_in] => {
                // name is written as `N × "s"`
                let (count, unit) = name.split_once(" × ").expect("N × \"s\"");
                let name = json(unit).repeat(count.parse().unwrap());
                long.push((
                    json(parent),
                    name,
                    len.parse().unwrap(),
                    stand_in.trim_matches('`').into(),
                ));
            }
            _ => panic!("unexpected table row {line:?}"),
        }
    }
    (key, rows, long)
}

#[test]
fn name_known_answer_vectors() {
    use base64::Engine;
    use base64::engine::general_purpose::URL_SAFE_NO_PAD;
    // FORMAT.md states the same vectors as this file.
    let (doc_key, doc_rows, doc_long) = name_vectors_from_format_md();
    assert_eq!(doc_key, KAT_NAME_KEY_HEX);
    let rows: Vec<(String, String, String)> = KAT_NAMES
        .iter()
        .map(|&(p, n, c)| (p.into(), n.into(), c.into()))
        .collect();
    assert_eq!(doc_rows, rows);
    let (lp, (count, unit), llen, lstand) = KAT_LONG_NAME;
    let ln = &*unit.repeat(count);
    assert_eq!(
        doc_long,
        vec![(lp.to_string(), ln.to_string(), llen, lstand.to_string())]
    );

    // The code produces them, and decrypts them.
    let c = NameCipher::new(&MasterKey::from_bytes(KAT_MASTER));
    for (parent, name, component) in KAT_NAMES {
        assert_eq!(c.encrypt_component(parent, name), component, "{name}");
        assert_eq!(c.decrypt_component(parent, component).unwrap(), name);
        assert!(component.len() <= MAX_ENCRYPTED_COMPONENT);
    }
    let long = c.encrypt_component(lp, ln);
    assert_eq!(long.len(), llen);
    assert!(long.len() > MAX_ENCRYPTED_COMPONENT);
    assert_eq!(long_name_stand_in(&long), lstand);
    assert!(is_long_name_stand_in(lstand));
    assert_eq!(c.decrypt_component(lp, &long).unwrap(), ln);

    // Re-derived from the primitives, following FORMAT.md rather than the
    // crate's code paths.
    let hk = hkdf::Hkdf::<sha2::Sha256>::new(None, &KAT_MASTER);
    let mut name_key = [0u8; 64];
    hk.expand(b"s3cryptfs v1 name encryption", &mut name_key)
        .unwrap();
    assert_eq!(hex::encode(name_key), KAT_NAME_KEY_HEX);
    use aes_siv::KeyInit;
    let mut siv = aes_siv::siv::Aes256Siv::new_from_slice(&name_key).unwrap();
    for (parent, name, component) in KAT_NAMES {
        let sealed = siv.encrypt([parent.as_bytes()], name.as_bytes()).unwrap();
        assert_eq!(sealed.len(), 16 + name.len());
        assert_eq!(URL_SAFE_NO_PAD.encode(&sealed), component);
    }
    let sealed = siv.encrypt([lp.as_bytes()], ln.as_bytes()).unwrap();
    let full = URL_SAFE_NO_PAD.encode(&sealed);
    assert_eq!(full, long);
    use sha2::Digest;
    let stand_in = format!(
        "~L{}",
        URL_SAFE_NO_PAD.encode(sha2::Sha256::digest(full.as_bytes()))
    );
    assert_eq!(stand_in, lstand);
    // Another volume's key reads none of them.
    let other = NameCipher::new(&MasterKey::from_bytes([0x5a; 32]));
    for (parent, _, component) in KAT_NAMES {
        assert_eq!(
            other.decrypt_component(parent, component),
            Err(NameError::AuthenticationFailed)
        );
    }
}

// ------------------------------------------------------------ keys, volume

static COUNTER: AtomicUsize = AtomicUsize::new(0);

fn temp_dir() -> PathBuf {
    let d = std::env::temp_dir().join(format!(
        "s3cryptfs-crypto-test-{}-{}",
        std::process::id(),
        COUNTER.fetch_add(1, Ordering::Relaxed)
    ));
    std::fs::create_dir_all(&d).unwrap();
    d
}

#[test]
fn key_files() {
    use std::os::unix::fs::PermissionsExt;
    let dir = temp_dir();
    // Random-looking bytes (32 printable ones would be a typed password, refused).
    let raw: [u8; 32] = std::array::from_fn(|i| (i as u8).wrapping_mul(37) ^ 0x80);
    std::fs::write(dir.join("raw"), raw).unwrap();
    std::fs::write(dir.join("hex"), format!("{}\n", hex::encode(raw))).unwrap();
    std::fs::write(dir.join("hex_crlf"), format!("{}\r\n", hex::encode(raw))).unwrap();
    std::fs::write(dir.join("short"), [1u8; 31]).unwrap();
    std::fs::write(dir.join("long"), [1u8; 33]).unwrap();
    std::fs::write(dir.join("hex63"), &hex::encode(raw)[..63]).unwrap();
    std::fs::write(dir.join("hex66"), format!("{}00", hex::encode(raw))).unwrap();
    std::fs::write(dir.join("nothex"), "zz".repeat(32)).unwrap();
    let a = UserKey::from_key_file(&dir.join("raw")).unwrap();
    let b = UserKey::from_key_file(&dir.join("hex")).unwrap();
    let c = UserKey::from_key_file(&dir.join("hex_crlf")).unwrap();
    // Same key: a volume created with one unlocks with the others.
    let (cfg, mk) = VolumeConfig::create(&a, KeySource::KeyFile, 4096, false).unwrap();
    assert_eq!(cfg.unlock(&b).unwrap().expose(), mk.expose());
    assert_eq!(cfg.unlock(&c).unwrap().expose(), mk.expose());
    for bad in ["short", "long", "hex63", "hex66", "nothex", "missing"] {
        assert!(
            matches!(
                UserKey::from_key_file(&dir.join(bad)),
                Err(CryptoError::InvalidKeyMaterial(_))
            ),
            "{bad}"
        );
    }
    // generate_key_file: 64 hex + newline, mode 0600, refuses to overwrite.
    let path = dir.join("generated.key");
    UserKey::generate_key_file(&path).unwrap();
    let text = std::fs::read_to_string(&path).unwrap();
    assert_eq!(text.len(), 65);
    assert!(text.ends_with('\n'));
    assert!(text[..64].bytes().all(|b| b.is_ascii_hexdigit()));
    let mode = std::fs::metadata(&path).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode, 0o600);
    assert!(UserKey::generate_key_file(&path).is_err());
    assert_eq!(std::fs::read_to_string(&path).unwrap(), text, "overwritten");
    UserKey::from_key_file(&path).unwrap();
    // systemd credential directory lookup
    std::fs::write(dir.join("s3cryptfs.key"), &text).unwrap();
    let cred = UserKey::from_credentials_dir(&dir, "s3cryptfs.key").unwrap();
    let file = UserKey::from_key_file(&path).unwrap();
    let (cfg, _) = VolumeConfig::create(&file, KeySource::KeyFile, 4096, false).unwrap();
    cfg.unlock(&cred).unwrap();
    assert!(UserKey::from_credentials_dir(&dir, "../x").is_err());
    assert!(UserKey::from_credentials_dir(&dir, "").is_err());
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn debug_output_has_no_key_bytes() {
    let mk = MasterKey::from_bytes([0xab; 32]);
    let s = format!("{mk:?} {mk:#?}");
    assert!(s.contains("redacted"));
    assert!(!s.to_lowercase().contains("ab, ") && !s.contains("171") && !s.contains("abab"));
    let uk = UserKey::from_key_bytes(&[0xcd; 32]).unwrap();
    let s = format!("{uk:?} {uk:#?}");
    assert!(s.contains("redacted"));
    assert!(!s.contains("205") && !s.contains("cdcd"));
}

#[test]
fn volume_create_unlock_rewrap() {
    let k1 = UserKey::from_key_bytes(&[1u8; 32]).unwrap();
    let k2 = UserKey::from_key_bytes(&[2u8; 32]).unwrap();
    let (cfg, mk) = VolumeConfig::create(&k1, KeySource::KeyFile, 65536, true).unwrap();
    assert_eq!(cfg.format_version, 3);
    assert_eq!(cfg.volume_id.len(), 32);
    assert_eq!(
        cfg.layout().unwrap(),
        Layout::with_format(65536, 3).unwrap()
    );
    // Volumes made by earlier builds (formats 1 and 2) still open, in their format.
    for format in [1, 2] {
        let (old, old_mk) =
            VolumeConfig::create_with_format(&k1, KeySource::KeyFile, 65536, true, format).unwrap();
        assert_eq!(
            old.layout().unwrap(),
            Layout::with_format(65536, format as u8).unwrap()
        );
        let parsed = VolumeConfig::from_json(&old.to_json()).unwrap();
        assert_eq!(parsed.unlock(&k1).unwrap().expose(), old_mk.expose());
    }
    let parsed = VolumeConfig::from_json(&cfg.to_json()).unwrap();
    assert_eq!(parsed.unlock(&k1).unwrap().expose(), mk.expose());
    assert!(matches!(parsed.unlock(&k2), Err(CryptoError::WrongKey)));
    // Data written before a rekey stays readable after it.
    let obj = encrypt_to_vec(&mk, cfg.layout().unwrap(), ObjectKind::File, b"kept");
    let re = parsed.rewrap(&k1, &k2, KeySource::KeyFile).unwrap();
    assert_eq!(re.volume_id, cfg.volume_id);
    assert_ne!(
        re.key_slots[0].wrapped_master_key,
        cfg.key_slots[0].wrapped_master_key
    );
    let re = VolumeConfig::from_json(&re.to_json()).unwrap();
    let mk2 = re.unlock(&k2).unwrap();
    assert_eq!(mk2.expose(), mk.expose());
    assert_eq!(
        decrypt_to_vec(&mk2, re.layout().unwrap(), &obj).unwrap().1,
        b"kept"
    );
    assert!(matches!(re.unlock(&k1), Err(CryptoError::WrongKey)));
    assert!(matches!(
        cfg.rewrap(&k2, &k1, KeySource::KeyFile),
        Err(CryptoError::WrongKey)
    ));
    // Two volumes get different ids and master keys.
    let (cfg2, mk3) = VolumeConfig::create(&k1, KeySource::KeyFile, 65536, true).unwrap();
    assert_ne!(cfg2.volume_id, cfg.volume_id);
    assert_ne!(mk3.expose(), mk.expose());
    assert!(VolumeConfig::create(&k1, KeySource::KeyFile, 5000, true).is_err());
}

#[test]
fn volume_tampering_is_detected() {
    let k = UserKey::from_key_bytes(&[3u8; 32]).unwrap();
    let (cfg, _) = VolumeConfig::create(&k, KeySource::KeyFile, 4096, false).unwrap();
    let json: serde_json::Value = serde_json::from_slice(&cfg.to_json()).unwrap();
    let tamper = |field: &str, v: serde_json::Value| {
        let mut j = json.clone();
        if field == "wrapped_master_key" {
            j["key_slots"][0][field] = v;
        } else {
            j[field] = v;
        }
        VolumeConfig::from_json(&serde_json::to_vec(&j).unwrap()).and_then(|c| c.unlock(&k))
    };
    assert!(matches!(
        tamper("segment_size", 8192.into()),
        Err(CryptoError::WrongKey)
    ));
    assert!(matches!(
        tamper("segment_size", 5000.into()),
        Err(CryptoError::InvalidConfig(_))
    ));
    assert!(matches!(
        tamper("encrypt_names", true.into()),
        Err(CryptoError::WrongKey)
    ));
    let mut id = cfg.volume_id.clone().into_bytes();
    id[0] = if id[0] == b'0' { b'1' } else { b'0' };
    let id = String::from_utf8(id).unwrap();
    assert!(matches!(
        tamper("volume_id", id.into()),
        Err(CryptoError::WrongKey)
    ));
    assert!(matches!(
        tamper("volume_id", "abcd".into()),
        Err(CryptoError::InvalidConfig(_))
    ));
    assert!(matches!(
        tamper("format_version", 4.into()),
        Err(CryptoError::UnsupportedVersion(4))
    ));
    // The format is bound to the wrapped key: a volume cannot be switched to another one.
    for other in [1, 2, 3].into_iter().filter(|f| *f != cfg.format_version) {
        assert!(matches!(
            tamper("format_version", other.into()),
            Err(CryptoError::WrongKey)
        ));
    }
    assert!(matches!(
        tamper("wrapped_master_key", "!!!".into()),
        Err(CryptoError::InvalidConfig(_))
    ));
    // Flip one bit of the wrapped key blob (iv, ct or tag).
    use base64::Engine;
    let blob = base64::engine::general_purpose::STANDARD
        .decode(&cfg.key_slots[0].wrapped_master_key)
        .unwrap();
    assert_eq!(blob.len(), 80);
    for i in [0, 16, 47, 48, 79] {
        let mut b = blob.clone();
        b[i] ^= 1;
        let s = base64::engine::general_purpose::STANDARD.encode(&b);
        assert!(
            matches!(
                tamper("wrapped_master_key", s.into()),
                Err(CryptoError::WrongKey)
            ),
            "{i}"
        );
    }
    assert!(VolumeConfig::from_json(b"{not json").is_err());
}

#[test]
fn passphrase_volume() {
    let source = KeySource::Passphrase {
        log_n: 10,
        r: 8,
        p: 1,
        salt: hex::encode([7u8; 32]),
    };
    let k = UserKey::from_passphrase(b"correct horse", &source).unwrap();
    let (cfg, mk) = VolumeConfig::create(&k, source.clone(), 4096, false).unwrap();
    let cfg = VolumeConfig::from_json(&cfg.to_json()).unwrap();
    assert_eq!(cfg.key_slots[0].source, source);
    let again = UserKey::from_passphrase(b"correct horse", &cfg.key_slots[0].source).unwrap();
    assert_eq!(cfg.unlock(&again).unwrap().expose(), mk.expose());
    let wrong = UserKey::from_passphrase(b"battery staple", &cfg.key_slots[0].source).unwrap();
    assert!(matches!(cfg.unlock(&wrong), Err(CryptoError::WrongKey)));
    // A different salt gives a different key.
    let other_salt = KeySource::Passphrase {
        log_n: 10,
        r: 8,
        p: 1,
        salt: hex::encode([8u8; 32]),
    };
    let k3 = UserKey::from_passphrase(b"correct horse", &other_salt).unwrap();
    assert!(matches!(cfg.unlock(&k3), Err(CryptoError::WrongKey)));
    // Rewrap from passphrase to key file.
    let kf = UserKey::from_key_bytes(&[9u8; 32]).unwrap();
    let re = cfg.rewrap(&again, &kf, KeySource::KeyFile).unwrap();
    assert_eq!(re.key_slots[0].source, KeySource::KeyFile);
    assert_eq!(re.unlock(&kf).unwrap().expose(), mk.expose());
    // Defaults and bounds.
    match KeySource::passphrase_default() {
        KeySource::Passphrase { log_n, r, p, salt } => {
            assert_eq!((log_n, r, p), (17, 8, 1));
            assert_eq!(hex::decode(&salt).unwrap().len(), 32);
        }
        other => panic!("{other:?}"),
    }
    assert_ne!(
        KeySource::passphrase_default(),
        KeySource::passphrase_default()
    );
    let absurd = KeySource::Passphrase {
        log_n: 40,
        r: 8,
        p: 1,
        salt: hex::encode([7u8; 32]),
    };
    assert!(UserKey::from_passphrase(b"x", &absurd).is_err());
    // Each lane within the memory cap, but 64 of them: refused before any work is done.
    let many_lanes = KeySource::Passphrase {
        log_n: 22,
        r: 8,
        p: 64,
        salt: hex::encode([7u8; 32]),
    };
    let refused = UserKey::from_passphrase(b"x", &many_lanes).unwrap_err();
    assert!(refused.to_string().contains("out of range"), "{refused}");
    assert!(UserKey::from_passphrase(b"x", &KeySource::KeyFile).is_err());
}

#[test]
fn a_key_file_of_text_is_refused_as_a_password() {
    let typed = b"correct horse battery staple!!!!";
    assert_eq!(typed.len(), 32);
    let refused = UserKey::from_key_bytes(typed).unwrap_err();
    assert!(
        refused.to_string().contains("--passphrase-file"),
        "{refused}"
    );
    // 32 random bytes (here with a control byte) and 64 hex characters are keys.
    let mut raw = *typed;
    raw[5] = 0x07;
    assert!(UserKey::from_key_bytes(&raw).is_ok());
    assert!(UserKey::from_key_bytes(&[b'a'; 64]).is_ok());
}
