//! Object formats 2 and 3 (docs/FORMAT.md §15, §16): the epoch table, appends that keep the
//! existing ciphertext, and the checks that stop anyone mixing epochs, attempts or versions.
//! Format 3 is format 2 with AES-256-GCM segments: every behaviour is checked in both.

use s3cryptfs::crypto::*;

fn master(b: u8) -> MasterKey {
    MasterKey::from_bytes([b; 32])
}

fn v2() -> Layout {
    Layout::with_format(4096, 2).unwrap()
}

/// The formats with epochs: 2 (AES-CTR + HMAC-SHA256) and 3 (AES-GCM).
fn epoch_layouts() -> [Layout; 2] {
    [v2(), Layout::with_format(4096, 3).unwrap()]
}

fn pattern(len: usize, seed: u8) -> Vec<u8> {
    (0..len)
        .map(|i| ((i % 251) as u8).wrapping_mul(seed | 1))
        .collect()
}

/// Decrypts a whole object, or the first error.
fn open(m: &MasterKey, layout: Layout, object: &[u8]) -> Result<Vec<u8>, CryptoError> {
    decrypt_to_vec(m, layout, object).map(|(_, p)| p)
}

/// An append as the mount does it: the new header, the kept ciphertext copied as it is, the
/// old last segment's plaintext and `data` sealed in a new epoch. `None` when the object
/// cannot be appended to (one segment, or a full epoch table).
fn append(m: &MasterKey, layout: Layout, object: &[u8], data: &[u8]) -> Option<Vec<u8>> {
    append_sealed(m, layout, object, data, None)
}

/// [`append`] with a fixed epoch nonce, for the known-answer vectors.
fn append_fixed(
    m: &MasterKey,
    layout: Layout,
    object: &[u8],
    data: &[u8],
    nonce: [u8; 16],
) -> Vec<u8> {
    append_sealed(m, layout, object, data, Some(nonce)).expect("room in the epoch table")
}

fn append_sealed(
    m: &MasterKey,
    layout: Layout,
    object: &[u8],
    data: &[u8],
    nonce: Option<[u8; 16]>,
) -> Option<Vec<u8>> {
    let dec = ObjectDecryptor::new(m, layout, object, object.len() as u64).unwrap();
    let plan = layout.append_plan(dec.plaintext_size())?;
    let header = Header::parse(object, layout).unwrap();
    let mut enc = match nonce {
        Some(nonce) => {
            StreamEncryptor::append_with_fixed_epoch(m, &header, plan.from_segment, nonce)?
        }
        None => StreamEncryptor::append(m, &header, plan.from_segment)?,
    };
    let old = open(m, layout, object).unwrap();
    let mut tail = old[plan.resealed.start as usize..plan.resealed.end as usize].to_vec();
    tail.extend_from_slice(data);
    let mut out = enc.header().to_bytes();
    out.extend_from_slice(&object[plan.kept.start as usize..plan.kept.end as usize]);
    let c = layout.ciphertext_segment_size() as usize;
    let limit = (out.len() + tail.len() + 2 * c).div_ceil(c) * c;
    assert_eq!(enc.write(&mut out, &tail, limit), tail.len());
    enc.finish(&mut out);
    assert_eq!(
        out.len() as u64,
        layout.ciphertext_size((old.len() + data.len()) as u64)
    );
    Some(out)
}

#[test]
fn round_trips_at_segment_boundaries() {
    for layout in epoch_layouts() {
        let m = master(1);
        let h = HEADER_LEN_V2;
        for len in [0, 1, 4096 - h - 1, 4096 - h, 4096 - h + 1, 3 * 4096, 50_000] {
            let p = pattern(len, 3);
            let ct = encrypt_to_vec(&m, layout, ObjectKind::File, &p);
            assert_eq!(ct.len() as u64, layout.ciphertext_size(len as u64), "{len}");
            assert_eq!(layout.plaintext_size(ct.len() as u64).unwrap(), len as u64);
            assert_eq!(&ct[..5], &[b'S', b'3', b'C', b'F', layout.format()]);
            assert_eq!(open(&m, layout, &ct).unwrap(), p, "{len}");
            // An object is read only as its own format, never as another.
            for other in [1, 2, 3].into_iter().filter(|f| *f != layout.format()) {
                let other = Layout::with_format(4096, other).unwrap();
                let refused = open(&m, other, &ct).unwrap_err();
                assert!(
                    matches!(
                        refused,
                        CryptoError::UnsupportedVersion(_) | CryptoError::ImpossibleSize(_)
                    ),
                    "format {} read as {}: {refused}",
                    layout.format(),
                    other.format()
                );
            }
        }
    }
}

#[test]
fn appends_keep_the_old_ciphertext_and_read_back_whole() {
    for layout in epoch_layouts() {
        let m = master(2);
        let mut want = pattern(10_000, 5);
        let mut object = encrypt_to_vec(&m, layout, ObjectKind::File, &want);
        for (round, len) in [1, 100, 4096, 9000, 3, 20_000].into_iter().enumerate() {
            let data = pattern(len, round as u8 + 7);
            let next = append(&m, layout, &object, &data).expect("room in the epoch table");
            // Everything before the old last segment is the same bytes, header aside.
            let plan = layout
                .append_plan(layout.plaintext_size(object.len() as u64).unwrap())
                .unwrap();
            let kept = plan.kept.start as usize..plan.kept.end as usize;
            assert_eq!(next[kept.clone()], object[kept]);
            want.extend_from_slice(&data);
            assert_eq!(open(&m, layout, &next).unwrap(), want, "round {round}");
            object = next;
        }
        let header = Header::parse(&object, layout).unwrap();
        assert!(header.epochs().len() > 1);
    }
}

#[test]
fn a_full_epoch_table_refuses_another_append() {
    for layout in epoch_layouts() {
        let m = master(3);
        let mut object = encrypt_to_vec(&m, layout, ObjectKind::File, &pattern(5000, 1));
        let mut appended = 0;
        // Each append of a full segment starts a new epoch at the old last segment.
        while let Some(next) = append(&m, layout, &object, &pattern(4096, 2)) {
            object = next;
            appended += 1;
            assert!(appended <= MAX_EPOCHS, "the table never fills");
        }
        assert_eq!(appended, MAX_EPOCHS - 1);
        assert_eq!(
            Header::parse(&object, layout).unwrap().epochs().len(),
            MAX_EPOCHS
        );
        assert_eq!(open(&m, layout, &object).unwrap().len(), 5000 + 15 * 4096);
    }
}

#[test]
fn two_appends_to_one_base_cannot_be_mixed() {
    for layout in epoch_layouts() {
        let m = master(4);
        let base = encrypt_to_vec(&m, layout, ObjectKind::File, &pattern(9000, 1));
        let data = pattern(6000, 9);
        let a = append(&m, layout, &base, &data).unwrap();
        let b = append(&m, layout, &base, &data).unwrap();
        assert_eq!(a.len(), b.len());
        // Same plaintext, same segment indices: still a new keystream per attempt.
        let plan = layout.append_plan(9000).unwrap();
        let tail = plan.kept.end as usize;
        assert_ne!(a[tail..tail + 64], b[tail..tail + 64]);
        let h = HEADER_LEN_V2;
        // A's header with B's new segments, and the other way round.
        let mut mixed = a[..h].to_vec();
        mixed.extend_from_slice(&b[h..]);
        assert!(matches!(
            open(&m, layout, &mixed),
            Err(CryptoError::TagMismatch { segment: 2 })
        ));
        // B's header over A's body, but one of B's segments spliced in.
        let c = layout.ciphertext_segment_size() as usize;
        let mut spliced = b.clone();
        spliced[2 * c..3 * c].copy_from_slice(&a[2 * c..3 * c]);
        assert!(matches!(
            open(&m, layout, &spliced),
            Err(CryptoError::TagMismatch { segment: 2 })
        ));
        // The base's header over the appended body: its last epoch would end early.
        let mut rolled_back = base[..h].to_vec();
        rolled_back.extend_from_slice(&a[h..]);
        assert!(open(&m, layout, &rolled_back).is_err());
        // The appended object cut back to the base's length.
        assert!(open(&m, layout, &a[..base.len()]).is_err());
    }
}

#[test]
fn every_edit_of_the_epoch_table_is_caught() {
    for layout in epoch_layouts() {
        let m = master(5);
        let base = encrypt_to_vec(&m, layout, ObjectKind::File, &pattern(9000, 1));
        let object = append(&m, layout, &base, &pattern(9000, 2)).unwrap();
        assert_eq!(Header::parse(&object, layout).unwrap().epochs().len(), 2);
        for byte in 0..HEADER_LEN_V2 {
            let mut bad = object.clone();
            bad[byte] ^= 0x01;
            assert!(
                open(&m, layout, &bad).is_err(),
                "a flip of header byte {byte} went unnoticed"
            );
        }
    }
}

#[test]
fn format_1_objects_cannot_be_appended_to() {
    let m = master(6);
    let v1 = Layout::new(4096).unwrap();
    let object = encrypt_to_vec(&m, v1, ObjectKind::File, &pattern(9000, 1));
    assert_eq!(v1.append_plan(9000), None);
    let header = Header::parse(&object, v1).unwrap();
    assert!(StreamEncryptor::append(&m, &header, 2).is_none());
    assert_eq!(v2().append_plan(100), None, "one segment: nothing to keep");
}

/// Known-answer vector of format 2 (docs/FORMAT.md §15): fixed master key, salt and epoch
/// nonce; the object's SHA-256 pins every byte.
#[test]
fn known_answer_vector() {
    use sha2::{Digest, Sha256};
    let m = master(0x11);
    let out = vector_object(&m, v2());
    assert_eq!(out.len(), 368 + 5000 + 2 * 32);
    assert_eq!(&out[..8], b"S3CF\x02\x01\x0c\x01");
    assert_eq!(&out[48..52], &[0, 0, 0, 0]);
    assert_eq!(&out[52..68], &[0x33; 16]);
    let digest = hex::encode(Sha256::digest(&out));
    assert_eq!(
        digest,
        "527a436ca801b8d61e7cc117c32e88cab9a3108f6c1cc1d5906b2b965715668a"
    );
}

/// docs/FORMAT.md §15.5: the vector's object appended to twice.
const THREE_EPOCHS_SHA256: &str =
    "42ee080c69106b70c33baca22d426ec697e1c8381c62b51fe9697b4e25ddf710";

#[test]
fn known_answer_vector_with_three_epochs() {
    use sha2::{Digest, Sha256};
    let m = master(0x11);
    let layout = v2();
    let object = vector_object(&m, layout);
    let first = pattern(5000, 1);
    let object = append_fixed(&m, layout, &object, &pattern(3000, 3), [0x44; 16]);
    let object = append_fixed(&m, layout, &object, &pattern(6000, 5), [0x55; 16]);
    let header = Header::parse(&object, layout).unwrap();
    assert_eq!(header.epochs().len(), 3);
    let expected = [first, pattern(3000, 3), pattern(6000, 5)].concat();
    assert_eq!(open(&m, layout, &object).unwrap(), expected);
    assert_eq!(hex::encode(Sha256::digest(&object)), THREE_EPOCHS_SHA256);
    let format_md = include_str!("../docs/FORMAT.md");
    assert!(
        format_md.contains(THREE_EPOCHS_SHA256),
        "FORMAT.md §15.5 lost the vector"
    );
}

/// docs/FORMAT.md §9a: attributes sealed for the §15.5 object, salt 16 × `66`, as version 4
/// (written now for objects sent in one request: bound to the body's MD5 digest too), as
/// version 3 (written for multipart uploads) and as version 2 (builds before ctime; still
/// read).
const ATTRS_VECTOR_V4: &str = "BGZmZmZmZmZmZmZmZmZmZmbbSRvJJN2n62ARdEyJ9_Zq-gNDarRv5KoYTD0ViBWiSbvB-bRadAn-KWTp62_DWVxJo65tvRkcSSa-gAMFAsxEC_oUyYdXXZYJttXBWseSzfS2Ooo";
/// The `s3cf-bound-to` value that names the version-4 binding: header bytes 0..8 (byte 7 as
/// bound) and salt, then the body's MD5 digest.
const ATTRS_BINDING_VECTOR: &str =
    "UzNDRgIBDAAiIiIiIiIiIiIiIiIiIiIiIiIiIiIiIiIiIiIiIiIiImxCJH7rWRQcUYOP2Wz88JQ";
const ATTRS_VECTOR_V3: &str = "A2ZmZmZmZmZmZmZmZmZmZmYmXD3w4aM2DP4-OojLwqxC7z2eKZn3hlyb6PNS_KO2b4m10VZQayNOogp0Jk7zeo2x3KZuNndTALMv11o-yDNUMw-uw0P_-3fphd22jRuGtZuq_40";
const ATTRS_VECTOR_V2: &str = "AmZmZmZmZmZmZmZmZmZmZmYqaIt4hjj_2ONaIJGnkR0f9xhs_vzmuAklrfsIh800cnZHDNheEJvEY9Q0nCx9AalhZ0Ua49VEnZ7Z-Bs";

#[test]
fn attributes_known_answer_vectors() {
    use aes::cipher::{KeyIvInit, StreamCipher};
    use hmac::{KeyInit, Mac};
    let m = master(0x11);
    let layout = v2();
    let object = {
        let mut enc =
            StreamEncryptor::with_fixed_epoch(&m, layout, ObjectKind::File, [0x22; 32], [0x33; 16]);
        let mut out = Vec::new();
        enc.start(&mut out);
        enc.finish(&mut out);
        out
    };
    let header = Header::parse(&object, layout).unwrap();
    let mtime = std::time::UNIX_EPOCH + std::time::Duration::new(1_700_000_000, 123_456_789);
    let attrs = PosixAttrs {
        mode: 0o100640,
        uid: 1000,
        gid: 100,
        mtime,
        ctime: std::time::UNIX_EPOCH + std::time::Duration::new(1_700_000_100, 987_654_321),
        atime: std::time::UNIX_EPOCH + std::time::Duration::new(1_690_000_000, 42),
    };
    let md5: [u8; 16] = <md5::Md5 as md5::Digest>::digest(&object).into();
    let format_md = include_str!("../docs/FORMAT.md");
    for (version, vector) in [
        (4u8, ATTRS_VECTOR_V4),
        (3, ATTRS_VECTOR_V3),
        (2, ATTRS_VECTOR_V2),
    ] {
        let binding = match version {
            4 => AttrsBinding::of(&header).with_body_md5(md5),
            _ => AttrsBinding::of(&header),
        };
        let sealed = seal_attrs_with_salt(&m, &attrs, &binding, [0x66; 16], version);
        if version == 4 {
            let named = binding.to_metadata().expect("a digest to name");
            let mut rebuilt = object[..40].to_vec();
            rebuilt[7] = 0;
            rebuilt.extend_from_slice(&md5);
            use base64::Engine as _;
            assert_eq!(
                named,
                base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(&rebuilt)
            );
            assert_eq!(named, ATTRS_BINDING_VECTOR, "md5 {}", hex::encode(md5));
            assert_eq!(
                AttrsBinding::from_metadata(&named, layout).unwrap(),
                (binding, ObjectKind::File)
            );
            assert!(format_md.contains(ATTRS_BINDING_VECTOR));
        }
        // Rebuilt from the primitives as §9a says.
        let mut info = match version {
            4 => b"s3cryptfs v4 attributes".to_vec(),
            _ => b"s3cryptfs v2 attributes".to_vec(),
        };
        info.extend_from_slice(&object[..8]);
        info[23 + 7] = 0; // byte 7 of the header as bound: 0 in format 2
        info.extend_from_slice(&[0x22; 32]);
        if version == 4 {
            info.extend_from_slice(&md5);
        }
        let mut okm = [0u8; 64];
        hkdf::Hkdf::<sha2::Sha256>::new(Some(&[0x66; 16]), &[0x11; 32])
            .expand(&info, &mut okm)
            .unwrap();
        let mut body = Vec::new();
        body.extend_from_slice(&0o100640u32.to_be_bytes());
        body.extend_from_slice(&1000u32.to_be_bytes());
        body.extend_from_slice(&100u32.to_be_bytes());
        body.extend_from_slice(&1_700_000_000i64.to_be_bytes());
        body.extend_from_slice(&123_456_789u32.to_be_bytes());
        body.extend_from_slice(&[0; 4]);
        if version >= 3 {
            body.extend_from_slice(&1_700_000_100i64.to_be_bytes());
            body.extend_from_slice(&987_654_321u32.to_be_bytes());
            body.extend_from_slice(&1_690_000_000i64.to_be_bytes());
            body.extend_from_slice(&42u32.to_be_bytes());
        }
        let mut iv = [0u8; 16];
        iv[0] = version;
        ctr::Ctr32BE::<aes::Aes256>::new_from_slices(&okm[..32], &iv)
            .unwrap()
            .apply_keystream(&mut body);
        let mut mac = <hmac::Hmac<sha2::Sha256> as KeyInit>::new_from_slice(&okm[32..]).unwrap();
        mac.update(&iv);
        mac.update(&body);
        let blob = [
            &[version][..],
            &[0x66; 16],
            &body,
            &mac.finalize().into_bytes(),
        ]
        .concat();
        use base64::Engine as _;
        let rebuilt = base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(blob);
        assert_eq!(sealed, rebuilt, "version {version}");
        assert_eq!(sealed, vector, "version {version}");
        // Version 2 recorded no ctime or atime: they read as the mtime.
        let want = match version {
            3 | 4 => attrs,
            _ => PosixAttrs {
                ctime: mtime,
                atime: mtime,
                ..attrs
            },
        };
        assert_eq!(open_attrs(&m, &sealed, &binding).unwrap(), want);
        assert!(
            format_md.contains(vector),
            "FORMAT.md §9a lost the version {version} vector"
        );
    }
}

/// docs/FORMAT.md §16.4: the §15.5 vector's inputs sealed as format 3, alone and appended to
/// twice as in `known_answer_vector_with_three_epochs`.
const V3_SHA256: &str = "a0f67aa467856d6438c5803318af9ea4380dbdcb44703b68de9b7507b141190c";
const V3_THREE_EPOCHS_SHA256: &str =
    "7ad688c344196e739cc2e285e9e46f7f944e7ab90c1f393f05d4bd8184b28263";

fn v3() -> Layout {
    Layout::with_format(4096, 3).unwrap()
}

/// The §15.5 vector's object in `layout`'s format: master key `m`, salt 32 × `22`, epoch
/// nonce 16 × `33`, the 5,000 bytes `pattern(5000, 1)`.
fn vector_object(m: &MasterKey, layout: Layout) -> Vec<u8> {
    let mut enc =
        StreamEncryptor::with_fixed_epoch(m, layout, ObjectKind::File, [0x22; 32], [0x33; 16]);
    let mut out = Vec::new();
    enc.start(&mut out);
    let c = layout.ciphertext_segment_size() as usize;
    let plaintext = pattern(5000, 1);
    assert_eq!(enc.write(&mut out, &plaintext, 4 * c), plaintext.len());
    enc.finish(&mut out);
    out
}

#[test]
fn known_answer_vectors_of_format_3() {
    use sha2::{Digest, Sha256};
    let m = master(0x11);
    let layout = v3();
    let object = vector_object(&m, v3());
    assert_eq!(object.len(), 368 + 5000 + 2 * 16);
    assert_eq!(&object[..8], b"S3CF\x03\x01\x0c\x01");
    assert_eq!(hex::encode(Sha256::digest(&object)), V3_SHA256);

    let object = append_fixed(&m, layout, &object, &pattern(3000, 3), [0x44; 16]);
    let object = append_fixed(&m, layout, &object, &pattern(6000, 5), [0x55; 16]);
    assert_eq!(Header::parse(&object, layout).unwrap().epochs().len(), 3);
    let expected = [pattern(5000, 1), pattern(3000, 3), pattern(6000, 5)].concat();
    assert_eq!(open(&m, layout, &object).unwrap(), expected);
    assert_eq!(hex::encode(Sha256::digest(&object)), V3_THREE_EPOCHS_SHA256);
    let format_md = include_str!("../docs/FORMAT.md");
    for digest in [V3_SHA256, V3_THREE_EPOCHS_SHA256] {
        assert!(format_md.contains(digest), "FORMAT.md §16.4 lost {digest}");
    }
}

/// Format 3's segments are plain AES-256-GCM as FORMAT.md §16 writes it down, checked with
/// an implementation other than the one the format uses (RustCrypto's `aes-gcm` and `hkdf`
/// against AWS-LC): the key from HKDF, the 12-byte nonce, no associated data, the tag after
/// the ciphertext.
#[test]
fn format_3_segments_are_aes_256_gcm_as_documented() {
    use aes_gcm::{AeadInOut, Aes256Gcm, KeyInit, Nonce, Tag};
    let m = master(0x11);
    let object = vector_object(&m, v3());
    let header_prefix = [b'S', b'3', b'C', b'F', 3, 1, 12, 0];
    let hk = hkdf::Hkdf::<sha2::Sha256>::new(Some(&[0x22; 32]), &[0x11; 32]);
    let mut key = [0u8; 32];
    hk.expand_multi_info(
        &[
            b"s3cryptfs v3 epoch key",
            &header_prefix,
            &0u32.to_be_bytes(),
            &[0x33; 16],
        ],
        &mut key,
    )
    .unwrap();
    let gcm = Aes256Gcm::new(&key.into());
    let layout = v3();
    let plaintext = pattern(5000, 1);
    let mut got = Vec::new();
    for (index, last) in [(0u32, false), (1, true)] {
        let range = layout.segment_ciphertext_range(u64::from(index), 5000);
        let segment = &object[range.start as usize..range.end as usize];
        let (ct, tag) = segment.split_at(segment.len() - 16);
        let mut nonce = [0u8; 12];
        nonce[7..11].copy_from_slice(&index.to_be_bytes());
        nonce[11] = u8::from(last);
        let mut buf = ct.to_vec();
        gcm.decrypt_inout_detached(
            &Nonce::from(nonce),
            b"",
            buf.as_mut_slice().into(),
            &Tag::try_from(tag).unwrap(),
        )
        .unwrap_or_else(|_| panic!("segment {index} opens as documented"));
        got.extend_from_slice(&buf);
    }
    assert_eq!(got, plaintext);
}

/// Every single bit of a format-3 object matters: header, ciphertext and tags.
#[test]
fn every_bit_of_a_format_3_object_is_checked() {
    let m = master(0x12);
    let layout = v3();
    let object = encrypt_to_vec(&m, layout, ObjectKind::File, &pattern(9000, 7));
    for bit in 0..object.len() * 8 {
        let mut bad = object.clone();
        bad[bit / 8] ^= 1 << (bit % 8);
        assert!(
            open(&m, layout, &bad).is_err(),
            "a flip of bit {bit} went unnoticed"
        );
    }
}
