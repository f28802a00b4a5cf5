//! Throughput of the object format's crypto core (single thread, default
//! 64 KiB segments): encrypt+MAC through `StreamEncryptor`, and
//! verify+decrypt through `ObjectDecryptor::open_segment`.

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

criterion_group!(benches, bench);
criterion_main!(benches);
