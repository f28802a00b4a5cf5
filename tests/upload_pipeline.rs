//! The write pipeline against a real server with a fault-injecting store wrapper: failures at
//! every step leave no object and no multipart upload; delays only slow it down.

mod common;

use std::sync::Arc;
use std::time::Duration;

use common::{HEADER, PART, ServerKind, fresh_store, random_bytes};
use s3cryptfs::crypto::{KeySource, Layout, UserKey, VolumeConfig, decrypt_to_vec};
use s3cryptfs::store::fault::{Action, FaultStore, Op};
use s3cryptfs::store::{ObjectStore, S3Store, StoreErrorKind};
use s3cryptfs::upload::{MemoryBudget, ObjectWriter, UploadConfig, UploadContext, UploadStats};

on_both_servers!(
    nth_part_failure_aborts_everything,
    complete_failure_aborts_everything,
    slow_parts_apply_backpressure_and_succeed,
    a_slow_part_does_not_hold_back_the_parts_after_it,
    small_files_use_one_put_large_ones_multipart,
);

async fn setup(kind: ServerKind, tag: &str) -> (Arc<FaultStore>, S3Store, Arc<UploadContext>) {
    let (raw, _) = fresh_store(kind, tag, "").await;
    let faults = Arc::new(FaultStore::new(Arc::new(raw.clone())));
    let user = UserKey::from_key_bytes(&[9u8; 32]).unwrap();
    let (config, master) = VolumeConfig::create(
        &user,
        KeySource::KeyFile,
        Layout::DEFAULT_SEGMENT_SIZE,
        false,
    )
    .unwrap();
    let ctx = Arc::new(UploadContext {
        store: faults.clone() as Arc<dyn ObjectStore>,
        master: Arc::new(master),
        layout: config.layout().unwrap(),
        budget: MemoryBudget::new(64 << 20, Duration::from_secs(5)),
        config: UploadConfig {
            parts_in_flight: 2,
            ..UploadConfig::default()
        },
        stats: UploadStats::default(),
        conditions: s3cryptfs::store::ConditionSupport::ALL,
    });
    (faults, raw, ctx)
}

async fn write_file(ctx: &Arc<UploadContext>, key: &str, data: &[u8]) -> Result<(), String> {
    let mut w = ObjectWriter::new(ctx.clone(), key.to_string(), None);
    for (i, chunk) in data.chunks(1 << 20).enumerate() {
        w.write((i << 20) as u64, chunk)
            .await
            .map_err(|e| e.to_string())?;
    }
    w.commit().await.map(|_| ()).map_err(|e| e.to_string())
}

async fn assert_nothing_left(raw: &S3Store, key: &str) {
    assert!(
        raw.head(key).await.unwrap_err().is_not_found(),
        "no object under {key}"
    );
    assert!(
        raw.list_uploads("").await.unwrap().is_empty(),
        "no multipart upload left"
    );
}

async fn nth_part_failure_aborts_everything(kind: ServerKind) {
    let (faults, raw, ctx) = setup(kind, "nth-part").await;
    faults.on(Op::UploadPart, 2, Action::Fail(StoreErrorKind::Transient));
    let err = write_file(&ctx, "f", &random_bytes(3 * PART + 10, 1))
        .await
        .unwrap_err();
    assert!(err.contains("injected"), "{err}");
    assert_nothing_left(&raw, "f").await;
    assert_eq!(faults.calls(Op::AbortMultipart), 1);
}

async fn complete_failure_aborts_everything(kind: ServerKind) {
    let (faults, raw, ctx) = setup(kind, "complete").await;
    faults.on(
        Op::CompleteMultipart,
        1,
        Action::Fail(StoreErrorKind::Throttled),
    );
    assert!(
        write_file(&ctx, "f", &random_bytes(PART + 10, 2))
            .await
            .is_err()
    );
    assert_nothing_left(&raw, "f").await;
}

async fn slow_parts_apply_backpressure_and_succeed(kind: ServerKind) {
    let (faults, raw, ctx) = setup(kind, "slow").await;
    faults.on(Op::UploadPart, 0, Action::Delay(Duration::from_millis(300)));
    // Parts after the first hold a header's length more: this is four full parts and a bit.
    let data = random_bytes(4 * PART + 3 * HEADER + 100, 3);
    write_file(&ctx, "f", &data).await.unwrap();
    assert_eq!(faults.calls(Op::UploadPart), 5);
    let object = common::read_object(&raw, "f").await;
    let (_, plain) = decrypt_to_vec(&ctx.master, ctx.layout, &object).unwrap();
    assert!(plain == data);
    assert_eq!(
        ctx.budget.available(),
        64 << 20,
        "every reservation was released"
    );
}

/// A part slow to upload does not hold the writer while the parts sent after it finish: a
/// full part waits for whichever upload is done first, not for the oldest.
async fn a_slow_part_does_not_hold_back_the_parts_after_it(kind: ServerKind) {
    let (faults, raw, ctx) = setup(kind, "slow-first").await;
    faults.on(Op::UploadPart, 1, Action::Delay(Duration::from_secs(600)));
    let data = random_bytes(4 * PART + 3 * HEADER + 100, 6);
    let mut w = ObjectWriter::new(ctx.clone(), "f".to_string(), None);
    let writes = async {
        for (i, chunk) in data.chunks(1 << 20).enumerate() {
            w.write((i << 20) as u64, chunk).await.unwrap();
        }
    };
    // Waiting for part 1 would take its 600 s.
    tokio::time::timeout(Duration::from_secs(120), writes)
        .await
        .expect("the writes went on while part 1 was uploading");
    assert_eq!(
        faults.calls(Op::UploadPart),
        4,
        "parts 2 to 4 were sent after it"
    );
    w.abort().await;
    assert_nothing_left(&raw, "f").await;
}

async fn small_files_use_one_put_large_ones_multipart(kind: ServerKind) {
    let (faults, _raw, ctx) = setup(kind, "shapes").await;
    write_file(&ctx, "small", &random_bytes(PART, 4))
        .await
        .unwrap();
    assert_eq!(faults.calls(Op::Put), 1);
    assert_eq!(
        faults.calls(Op::CreateMultipart),
        0,
        "a file of exactly one part is one PUT"
    );
    write_file(&ctx, "large", &random_bytes(PART + 1, 5))
        .await
        .unwrap();
    assert_eq!(faults.calls(Op::CreateMultipart), 1);
    assert_eq!(faults.calls(Op::UploadPart), 2);
    use std::sync::atomic::Ordering::Relaxed;
    assert_eq!(ctx.stats.single_put_files.load(Relaxed), 1);
    assert_eq!(ctx.stats.multipart_files.load(Relaxed), 1);
    assert_eq!(ctx.stats.parts.load(Relaxed), 2);
    assert_eq!(ctx.stats.failures.load(Relaxed), 0);
}
