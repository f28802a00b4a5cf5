//! Throughput of the object format's crypto core (single thread, default
//! 64 KiB segments): encrypt+MAC through `StreamEncryptor`, and
//! verify+decrypt through `ObjectDecryptor::open_segment`.
//!
//! The `segment_aead` group weighs a format with AES-256-GCM segments against today's
//! AES-256-CTR + HMAC-SHA256 (issue #17): the same 64 KiB segments sealed and opened one by
//! one, with a Tink-style nonce (7-byte prefix, segment index, last flag), next to AES-CTR
//! and HMAC-SHA256 alone, so the cost of each part shows. docs/FORMAT.md §13 has the figures.

use std::hint::black_box;
use std::time::Duration;

use criterion::{BatchSize, Criterion, Throughput, criterion_group, criterion_main};
use s3cryptfs::crypto::{
    Layout, MasterKey, ObjectDecryptor, ObjectKind, StreamEncryptor, encrypt_to_vec,
};

const PLAINTEXT_LEN: usize = 8 << 20;

fn bench(c: &mut Criterion) {
    let layout = Layout::default();
    let master = MasterKey::generate();
    let plaintext: Vec<u8> = (0..PLAINTEXT_LEN).map(|i| (i % 251) as u8).collect();
    let seg = layout.ciphertext_segment_size() as usize;
    // One upload part that holds the whole 8 MiB object (129 segments).
    let limit = (layout.ciphertext_size(PLAINTEXT_LEN as u64) as usize).div_ceil(seg) * seg;

    let mut group = c.benchmark_group("crypto");
    group.throughput(Throughput::Bytes(PLAINTEXT_LEN as u64));
    group.sample_size(10);
    group.warm_up_time(Duration::from_secs(1));
    group.measurement_time(Duration::from_secs(3));

    let mut out = Vec::with_capacity(limit);
    group.bench_function("encrypt_8MiB", |b| {
        b.iter(|| {
            out.clear();
            let mut enc = StreamEncryptor::new(&master, layout, ObjectKind::File);
            enc.start(&mut out);
            let n = enc.write(&mut out, black_box(&plaintext), limit);
            assert_eq!(n, PLAINTEXT_LEN);
            enc.finish(&mut out);
            black_box(out.len())
        })
    });

    let object = encrypt_to_vec(&master, layout, ObjectKind::File, &plaintext);
    let total = object.len() as u64;
    group.bench_function("decrypt_8MiB", |b| {
        b.iter_batched_ref(
            || object.clone(),
            |obj| {
                let dec = ObjectDecryptor::new(&master, layout, &obj[..], total).unwrap();
                let p = dec.plaintext_size();
                let mut got = 0;
                for i in 0..dec.segment_count() {
                    let r = layout.segment_ciphertext_range(i, p);
                    got += dec
                        .open_segment(i, &mut obj[r.start as usize..r.end as usize])
                        .unwrap();
                }
                assert_eq!(got, PLAINTEXT_LEN);
                black_box(&obj[100]);
            },
            BatchSize::LargeInput,
        )
    });
    group.finish();
}

/// 64 KiB segments of 8 MiB: GCM seal and open, and CTR and HMAC on their own.
fn segment_aead(c: &mut Criterion) {
    use aes::cipher::{KeyIvInit, StreamCipher};
    use aes_gcm::{AeadInOut, Aes256Gcm, KeyInit, Nonce, Tag};
    use hmac::Mac;

    const SEGMENT: usize = 64 * 1024;
    let key = [7u8; 32];
    let mut data: Vec<u8> = (0..PLAINTEXT_LEN).map(|i| (i % 251) as u8).collect();
    let nonce_of = |index: usize| {
        let mut n = [0u8; 12];
        n[..7].copy_from_slice(b"prefix!");
        n[7..11].copy_from_slice(&(index as u32).to_be_bytes());
        n[11] = u8::from(index + 1 == PLAINTEXT_LEN / SEGMENT);
        n
    };
    let gcm = Aes256Gcm::new(&key.into());

    let mut group = c.benchmark_group("segment_aead");
    group.throughput(Throughput::Bytes(PLAINTEXT_LEN as u64));
    group.sample_size(10);
    group.warm_up_time(Duration::from_secs(1));
    group.measurement_time(Duration::from_secs(3));

    let mut tags = Vec::new();
    group.bench_function("gcm_seal_8MiB", |b| {
        b.iter(|| {
            tags.clear();
            for (i, seg) in data.chunks_mut(SEGMENT).enumerate() {
                let nonce = Nonce::from(nonce_of(i));
                tags.push(gcm.encrypt_inout_detached(&nonce, b"", seg.into()).unwrap());
            }
            black_box(tags.len())
        })
    });
    let sealed = data.clone();
    let sealed_tags: Vec<Tag> = tags.clone();
    group.bench_function("gcm_open_8MiB", |b| {
        b.iter_batched_ref(
            || sealed.clone(),
            |buf| {
                for (i, seg) in buf.chunks_mut(SEGMENT).enumerate() {
                    let nonce = Nonce::from(nonce_of(i));
                    gcm.decrypt_inout_detached(&nonce, b"", seg.into(), &sealed_tags[i])
                        .unwrap();
                }
                black_box(buf[100])
            },
            BatchSize::LargeInput,
        )
    });
    // The same construction with AWS-LC's AES-GCM (already linked for TLS): how far an
    // assembly GHASH goes.
    let lc = {
        use aws_lc_rs::aead::{AES_256_GCM, LessSafeKey, UnboundKey};
        LessSafeKey::new(UnboundKey::new(&AES_256_GCM, &key).unwrap())
    };
    group.bench_function("aws_lc_gcm_seal_8MiB", |b| {
        use aws_lc_rs::aead::{Aad, Nonce};
        b.iter(|| {
            let mut last = 0u8;
            for (i, seg) in data.chunks_mut(SEGMENT).enumerate() {
                let nonce = Nonce::assume_unique_for_key(nonce_of(i));
                let tag = lc
                    .seal_in_place_separate_tag(nonce, Aad::empty(), seg)
                    .unwrap();
                last ^= tag.as_ref()[0];
            }
            black_box(last)
        })
    });
    group.bench_function("ctr_only_8MiB", |b| {
        b.iter(|| {
            for (i, seg) in data.chunks_mut(SEGMENT).enumerate() {
                let mut iv = [0u8; 16];
                iv[..12].copy_from_slice(&nonce_of(i));
                let mut ctr = ctr::Ctr32BE::<aes::Aes256>::new(&key.into(), &iv.into());
                ctr.apply_keystream(seg);
            }
            black_box(data[100])
        })
    });
    // What the format uses since 2026-12-03 (FORMAT.md §13b): the same keystream by AWS-LC.
    let aws_ctr = aws_lc_rs::cipher::EncryptingKey::ctr(
        aws_lc_rs::cipher::UnboundCipherKey::new(&aws_lc_rs::cipher::AES_256, &key).unwrap(),
    )
    .unwrap();
    group.bench_function("ctr_aws_lc_only_8MiB", |b| {
        b.iter(|| {
            for (i, seg) in data.chunks_mut(SEGMENT).enumerate() {
                let mut iv = [0u8; 16];
                iv[..12].copy_from_slice(&nonce_of(i));
                aws_ctr
                    .less_safe_encrypt(seg, aws_lc_rs::cipher::EncryptionContext::Iv128(iv.into()))
                    .unwrap();
            }
            black_box(data[100])
        })
    });
    group.bench_function("hmac_sha256_only_8MiB", |b| {
        b.iter(|| {
            let mut last = 0u8;
            for seg in data.chunks(SEGMENT) {
                let mut mac = hmac::Hmac::<sha2::Sha256>::new_from_slice(&key).unwrap();
                mac.update(seg);
                last ^= mac.finalize().into_bytes()[0];
            }
            black_box(last)
        })
    });
    group.finish();
}

criterion_group!(benches, bench, segment_aead);
criterion_main!(benches);
