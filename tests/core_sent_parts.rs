//! A new file whose first parts are already uploaded (its multipart upload is under its
//! name) and that a program then changes behind its end, resizes, reads back or opens a
//! second time: it goes on in place from the local copy of the parts it sent, with no byte
//! lost, nothing partial under its name, and no multipart upload left behind. In-process, on
//! the in-memory store, with both name modes and with injected part failures.

mod common;

use std::ffi::OsStr;
use std::time::Duration;

use common::in_process::{Core, FileOp, Settings};
use s3cryptfs::fs::ROOT_INO;
use s3cryptfs::store::fault::{Action, Op};
use s3cryptfs::store::{ObjectStore, StoreErrorKind};

const MIB: usize = 1 << 20;

fn path(name: &str) -> Vec<String> {
    vec![name.to_string()]
}

fn pattern(len: usize, seed: usize) -> Vec<u8> {
    (0..len).map(|i| ((i * 31 + seed) % 251) as u8).collect()
}

/// Writes `data` in order through a new descriptor in 1 MiB writes.
async fn stream(core: &Core, name: &str, data: &[u8]) -> (u64, u64) {
    let (attr, fh) = core
        .fs
        .create(ROOT_INO, OsStr::new(name), 0o644, Core::caller())
        .await
        .expect("create");
    for (i, chunk) in data.chunks(MIB).enumerate() {
        core.fs
            .write(fh, (i * MIB) as u64, chunk)
            .await
            .expect("sequential write");
    }
    (attr.ino, fh)
}

async fn no_uploads_left(core: &Core) {
    let uploads = core.memory.list_uploads("").await.expect("list uploads");
    assert!(uploads.is_empty(), "uploads left behind: {uploads:?}");
}

fn no_pending_objects(core: &Core) {
    let pending: Vec<_> = core
        .memory
        .keys()
        .into_iter()
        .filter(|k| k.starts_with(".s3cryptfs/pending/"))
        .collect();
    assert!(pending.is_empty(), "pending objects left: {pending:?}");
}

async fn writes_behind_sent_parts(encrypt_names: bool) {
    let mut core = Core::new(encrypt_names).await;
    let mut model = pattern(20 * MIB + 12_345, 1);
    let (ino, fh) = stream(&core, "archive.zip", &model).await;
    let key = core.key("archive.zip").await;
    assert!(
        core.memory.list_uploads("").await.unwrap().len() == 1,
        "the test needs parts sent before it writes behind them"
    );

    // zip patches the header of an entry it wrote before: in the first part, in a later one.
    for (offset, patch) in [(10, b"HEADER".as_slice()), (12 * MIB + 7, b"crc32!")] {
        core.fs
            .write(fh, offset as u64, patch)
            .await
            .expect("write behind");
        model[offset..offset + patch.len()].copy_from_slice(patch);
    }
    // The stream's upload is gone and nothing shows under the name yet.
    no_uploads_left(&core).await;
    assert!(
        core.memory.object(&key).is_none(),
        "a partial file appeared"
    );
    no_pending_objects(&core);

    // The same descriptor reads it back; writing on at the end still works.
    let read = core.fs.read(fh, 12 * MIB as u64, 16).await.unwrap();
    assert_eq!(&read[..], &model[12 * MIB..12 * MIB + 16]);
    let tail = pattern(3 * MIB, 9);
    core.fs.write(fh, model.len() as u64, &tail).await.unwrap();
    model.extend_from_slice(&tail);
    // A second descriptor sees the same contents.
    let reader = core
        .fs
        .open(ino, libc::O_RDONLY, std::process::id())
        .await
        .expect("second descriptor");
    assert_eq!(
        &core.fs.read(reader, 0, 16).await.unwrap()[..],
        &model[..16]
    );
    core.fs.release(ino, reader).await;
    core.close(ino, fh, Ok(())).await.expect("saved at close");

    core.remount().await;
    let back = core
        .read_all(&path("archive.zip"), MIB as u32)
        .await
        .unwrap();
    assert!(back == model, "contents after remount differ");
    no_uploads_left(&core).await;
    no_pending_objects(&core);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn writes_behind_sent_parts_go_on_in_place() {
    writes_behind_sent_parts(false).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn writes_behind_sent_parts_go_on_in_place_with_encrypted_names() {
    writes_behind_sent_parts(true).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn resizes_and_reads_after_parts_were_sent() {
    let mut core = Core::new(false).await;
    let mut model = pattern(17 * MIB, 3);
    let mut ops = vec![];
    for (i, chunk) in model.chunks(MIB).enumerate() {
        ops.push(FileOp::Write((i * MIB) as u64, chunk.to_vec()));
    }
    // A read back through the descriptor, a cut into the second part, a hole past the end.
    ops.push(FileOp::Read(5 * MIB as u64, 100));
    ops.push(FileOp::Truncate(9 * MIB as u64 + 5));
    ops.push(FileOp::Write(11 * MIB as u64, b"after a hole".to_vec()));
    let reads = core.new_file_ops(&path("f"), &ops).await.expect("ops");
    assert_eq!(reads[0], model[5 * MIB..5 * MIB + 100]);
    model.truncate(9 * MIB + 5);
    model.resize(11 * MIB, 0);
    model.extend_from_slice(b"after a hole");
    core.remount().await;
    assert!(core.read_all(&path("f"), MIB as u32).await.unwrap() == model);
    no_uploads_left(&core).await;
    no_pending_objects(&core);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_part_that_failed_to_upload_is_not_lost_when_the_file_goes_on_in_place() {
    let mut core = Core::new(false).await;
    // The second part's upload fails (after the SDK's retries, so the stream has gone on
    // meanwhile): the local copy still has it.
    core.faults.on(
        Op::UploadPart,
        2,
        Action::FailAfter(Duration::from_secs(1), StoreErrorKind::Fatal),
    );
    let mut model = pattern(18 * MIB, 5);
    let (ino, fh) = stream(&core, "f", &model).await;
    core.fs.write(fh, 3, b"!").await.expect("write behind");
    // The write behind waited for the parts in flight: the failing one was tried.
    assert!(
        core.faults.calls(Op::UploadPart) >= 2,
        "the failing part was sent"
    );
    model[3] = b'!';
    core.close(ino, fh, Ok(())).await.expect("saved");
    core.remount().await;
    assert!(core.read_all(&path("f"), MIB as u32).await.unwrap() == model);
    no_uploads_left(&core).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn past_keep_sent_parts_a_write_behind_is_einval_and_the_stream_goes_on() {
    let mut core = Core::with(Settings {
        // Less than one part: the copy is given up at the first part.
        keep_sent_parts: 4 * MIB as u64,
        ..Settings::default()
    })
    .await;
    let model = pattern(9 * MIB, 7);
    let (ino, fh) = stream(&core, "big", &model).await;
    let behind = core.fs.write(fh, 10, b"late").await;
    assert_eq!(behind.unwrap_err().errno(), libc::EINVAL);
    // Nothing was lost: the stream saves what was written in order.
    core.close(ino, fh, Ok(())).await.expect("saved");
    core.remount().await;
    assert!(core.read_all(&path("big"), MIB as u32).await.unwrap() == model);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_local_copy_counts_against_max_cache_size() {
    let core = Core::with(Settings {
        max_cache_size: 10 * MIB as u64,
        ..Settings::default()
    })
    .await;
    // Copies may take half of the 10 MiB (the rest stays for changes in place): the first
    // part (at least S3's 5 MiB, and its tags) does not fit, so the copy is given up at once.
    let model = pattern(17 * MIB, 2);
    let (ino, fh) = stream(&core, "f", &model).await;
    let behind = core.fs.write(fh, 0, b"x").await;
    assert_eq!(behind.unwrap_err().errno(), libc::EINVAL);
    core.close(ino, fh, Ok(())).await.expect("saved");

    // With room for it (half of 40 MiB), the same stream goes on in place.
    let core = Core::with(Settings {
        max_cache_size: 40 * MIB as u64,
        ..Settings::default()
    })
    .await;
    let (ino, fh) = stream(&core, "f", &model).await;
    core.fs.write(fh, 0, b"x").await.expect("write behind");
    core.close(ino, fh, Ok(())).await.expect("saved");
}
