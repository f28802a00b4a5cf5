//! Every row of the errno table in docs/SEMANTICS.md ("Error numbers"), produced through the
//! filesystem core on the in-memory store (no FUSE, no server): what the application sees
//! when each thing happens.

mod common;

use std::ffi::OsStr;
use std::time::Duration;

use bytes::Bytes;
use common::in_process::{Core, Settings};
use s3cryptfs::fs::{FsCore, ROOT_INO};
use s3cryptfs::store::fault::{Action, Op};
use s3cryptfs::store::{ObjectStore, StoreErrorKind};

fn path(names: &[&str]) -> Vec<String> {
    names.iter().map(|n| n.to_string()).collect()
}

/// A file of `len` bytes written and saved, then a fresh mount (nothing cached).
async fn saved_file(core: &mut Core, name: &str, len: usize) -> Vec<u8> {
    let data: Vec<u8> = (0..len).map(|i| (i * 7 % 251) as u8).collect();
    core.write_new(&path(&[name]), std::slice::from_ref(&data))
        .await
        .expect("write");
    core.remount().await;
    data
}

/// Creates `name` in the root and writes `data` at `offset` through the new descriptor.
async fn create_and_write(fs: &FsCore, name: &str, offset: u64, data: &[u8]) -> (u64, u64, i32) {
    let (attr, fh) = fs
        .create(ROOT_INO, OsStr::new(name), 0o644, Core::caller())
        .await
        .expect("create");
    let written = fs.write(fh, offset, data).await;
    (attr.ino, fh, written.err().map_or(0, |e| e.errno()))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn missing_object_or_name_is_enoent() {
    let mut core = Core::new(false).await;
    assert_eq!(
        core.resolve(&path(&["nothing"])).await.unwrap_err(),
        libc::ENOENT
    );
    // Removed by another client: a fresh lookup finds nothing.
    saved_file(&mut core, "gone", 10).await;
    core.faults.delete("gone").await.unwrap();
    assert_eq!(
        core.read_all(&path(&["gone"]), 4096).await.unwrap_err(),
        libc::ENOENT
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn access_denied_by_the_store_is_eacces() {
    let core = Core::new(false).await;
    core.faults
        .on(Op::Put, 0, Action::Fail(StoreErrorKind::AccessDenied));
    let saved = core.write_new(&path(&["f"]), &[b"data".to_vec()]).await;
    assert_eq!(
        saved.unwrap_err(),
        libc::EACCES,
        "close() reports the refused save"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tampered_or_truncated_objects_are_eio() {
    let mut core = Core::new(false).await;
    saved_file(&mut core, "flipped", 100_000).await;
    let mut object = core.memory.object("flipped").unwrap().to_vec();
    object[5000] ^= 1;
    core.memory.tamper("flipped", Bytes::from(object));
    assert_eq!(
        core.read_all(&path(&["flipped"]), 65536).await.unwrap_err(),
        libc::EIO
    );

    saved_file(&mut core, "cut", 200_000).await;
    let object = core.memory.object("cut").unwrap();
    core.memory
        .tamper("cut", object.slice(..object.len() - 70_000));
    assert_eq!(
        core.read_all(&path(&["cut"]), 65536).await.unwrap_err(),
        libc::EIO
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn throttling_or_server_errors_after_retries_are_eio() {
    let mut core = Core::new(false).await;
    // Past its first segment, which the lookup brings along with the metadata: the read
    // needs a GET of its own.
    saved_file(&mut core, "f", 200_000).await;
    core.faults
        .on(Op::Get, 0, Action::Fail(StoreErrorKind::Throttled));
    assert_eq!(
        core.read_all(&path(&["f"]), 4096).await.unwrap_err(),
        libc::EIO
    );
    core.faults
        .fail_randomly(1_000_000, 1, StoreErrorKind::Transient);
    assert_eq!(core.resolve(&path(&["g"])).await.unwrap_err(), libc::EIO);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn upload_memory_exhausted_for_a_new_writer_is_enomem() {
    let core = Core::with(Settings {
        upload_memory: 1,
        first_buffer_wait: Duration::from_millis(200),
        ..Settings::default()
    })
    .await;
    let (ino, fh, errno) = create_and_write(&core.fs, "holds", 0, b"x").await;
    assert_eq!(errno, 0);
    let (_, _, errno) = create_and_write(&core.fs, "waits", 0, b"y").await;
    assert_eq!(errno, libc::ENOMEM);
    core.close(ino, fh, Ok(())).await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn out_of_order_write_to_a_stream_whose_parts_are_out_and_not_kept_is_einval() {
    let core = Core::with(Settings {
        keep_sent_parts: 0,
        ..Settings::default()
    })
    .await;
    let (_, fh, errno) = create_and_write(&core.fs, "f", 0, &vec![1u8; 9 << 20]).await;
    assert_eq!(errno, 0);
    let behind = core.fs.write(fh, 10, b"late").await;
    assert_eq!(behind.unwrap_err().errno(), libc::EINVAL);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn staging_over_max_cache_size_is_enospc() {
    let mut core = Core::with(Settings {
        max_cache_size: 100_000,
        ..Settings::default()
    })
    .await;
    saved_file(&mut core, "big", 200_000).await;
    // A change in the middle stages the whole file: 200,000 bytes do not fit.
    let changed = core.write_at(&path(&["big"]), 1000, b"z").await;
    assert_eq!(changed.unwrap_err(), libc::ENOSPC);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reading_a_version_whose_parts_are_being_sent_and_not_kept_is_ebusy() {
    let core = Core::with(Settings {
        keep_sent_parts: 0,
        ..Settings::default()
    })
    .await;
    // Past one part (9 MiB; the first parts are 8 MiB at most by default): its multipart upload, under the file's name, has begun.
    let (ino, fh, errno) = create_and_write(&core.fs, "f", 0, &vec![1u8; 9 << 20]).await;
    assert_eq!(errno, 0);
    // Waits 10 s for the version to be saved, then gives up.
    let opened = core.fs.open(ino, libc::O_RDONLY, std::process::id()).await;
    assert_eq!(opened.unwrap_err().errno(), libc::EBUSY);
    core.close(ino, fh, Ok(())).await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_new_file_under_one_part_is_never_under_its_name_before_it_is_saved() {
    let core = Core::new(false).await;
    let (ino, fh, errno) = create_and_write(&core.fs, "f", 0, b"first").await;
    assert_eq!(errno, 0);
    // A write behind the end: the file goes on in place, its version so far pending.
    core.fs
        .write(fh, 2, b"X")
        .await
        .expect("write behind the end");
    let keys = core.memory.keys();
    assert!(
        !keys.contains(&"f".to_string()),
        "a partial file appeared under its name"
    );
    assert!(keys.iter().any(|k| k.starts_with(".s3cryptfs/pending/")));
    // A second descriptor reads what the first one wrote.
    let reader = core
        .fs
        .open(ino, libc::O_RDONLY, std::process::id())
        .await
        .unwrap();
    assert_eq!(&core.fs.read(reader, 0, 100).await.unwrap()[..], b"fiXst");
    core.fs.release(ino, reader).await;
    // Renamed before its first save: the name moves, the save goes to the new one.
    core.fs
        .rename(ROOT_INO, OsStr::new("g"), ROOT_INO, OsStr::new("f"), false)
        .await
        .expect_err("no file g");
    let (ino2, fh2, _) = create_and_write(&core.fs, "tmp", 0, b"abc").await;
    core.fs
        .write(fh2, 1, b"Z")
        .await
        .expect("write behind the end");
    core.fs
        .rename(
            ROOT_INO,
            OsStr::new("tmp"),
            ROOT_INO,
            OsStr::new("final"),
            false,
        )
        .await
        .expect("rename of a new file before its first save");
    core.close(ino2, fh2, Ok(())).await.unwrap();
    assert_eq!(
        core.read_all(&path(&["final"]), 4096).await.unwrap(),
        b"aZc"
    );
    core.fs.unlink(ROOT_INO, OsStr::new("final")).await.unwrap();
    core.close(ino, fh, Ok(())).await.unwrap();
    // Saved under its name, and the pending version is gone.
    assert_eq!(
        core.memory
            .keys()
            .iter()
            .filter(|k| !k.starts_with(".s3cryptfs/volume"))
            .collect::<Vec<_>>(),
        vec!["f"]
    );
    assert_eq!(core.read_all(&path(&["f"]), 4096).await.unwrap(), b"fiXst");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn changes_on_a_read_only_mount_are_erofs() {
    let core = Core::with(Settings {
        read_only: true,
        ..Settings::default()
    })
    .await;
    assert_eq!(
        core.mkdir(&path(&["d"]), 0o755).await.unwrap_err(),
        libc::EROFS
    );
    assert_eq!(
        core.write_new(&path(&["f"]), &[b"x".to_vec()])
            .await
            .unwrap_err(),
        libc::EROFS
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn names_too_long_for_posix_or_for_the_key_limit_are_enametoolong() {
    let core = Core::new(false).await;
    let long = "n".repeat(256);
    assert_eq!(
        core.mkdir(&path(&[&long]), 0o755).await.unwrap_err(),
        libc::ENAMETOOLONG
    );
    // Four directories of 250 bytes fit in a key; a file below them does not.
    let mut dirs = Vec::new();
    for i in 0..4 {
        dirs.push(format!("{i}{}", "d".repeat(249)));
        core.mkdir(&dirs, 0o755).await.expect("mkdir");
    }
    let mut file = dirs.clone();
    file.push("f".repeat(30));
    let made = core.write_new(&file, &[b"x".to_vec()]).await;
    assert_eq!(made.unwrap_err(), libc::ENAMETOOLONG);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn names_that_are_not_utf8_are_eilseq() {
    use std::os::unix::ffi::OsStrExt;
    let core = Core::new(false).await;
    let latin1 = std::ffi::OsStr::from_bytes(b"caf\xe9");
    let made = core
        .fs
        .create(s3cryptfs::fs::ROOT_INO, latin1, 0o644, Core::caller())
        .await;
    assert_eq!(made.map(|_| ()).unwrap_err().errno(), libc::EILSEQ);
    let looked_up = core.fs.lookup(s3cryptfs::fs::ROOT_INO, latin1).await;
    assert_eq!(looked_up.unwrap_err().errno(), libc::EILSEQ);
    assert!(core.memory.keys().iter().all(|k| !k.contains("caf")));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fallocate_modes_s3_cannot_do_are_eopnotsupp() {
    let core = Core::new(false).await;
    core.write_new(&path(&["f"]), &[vec![7u8; 10_000]])
        .await
        .unwrap();
    let attr = core.resolve(&path(&["f"])).await.unwrap();
    let fh = core
        .fs
        .open(attr.ino, libc::O_RDWR, std::process::id())
        .await
        .unwrap();
    let collapse = core
        .fs
        .fallocate(attr.ino, fh, 0, 4096, libc::FALLOC_FL_COLLAPSE_RANGE)
        .await;
    assert_eq!(collapse.unwrap_err().errno(), libc::EOPNOTSUPP);
    // What it can do: keep-size allocation is nothing, plain allocation grows the file.
    core.fs
        .fallocate(attr.ino, fh, 0, 50_000, libc::FALLOC_FL_KEEP_SIZE)
        .await
        .unwrap();
    assert_eq!(core.fs.getattr(attr.ino).await.unwrap().size, 10_000);
    core.fs.fallocate(attr.ino, fh, 0, 50_000, 0).await.unwrap();
    assert_eq!(core.fs.getattr(attr.ino).await.unwrap().size, 50_000);
    core.close(attr.ino, fh, Ok(())).await.unwrap();
    let mut want = vec![7u8; 10_000];
    want.resize(50_000, 0);
    assert!(core.read_all(&path(&["f"]), 65536).await.unwrap() == want);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sizes_past_s3s_object_limit_are_efbig() {
    let core = Core::new(false).await;
    core.write_new(&path(&["f"]), &[b"small".to_vec()])
        .await
        .unwrap();
    let huge = 999_999_999_999_999; // pjdfstest's truncate/12
    assert_eq!(
        core.truncate(&path(&["f"]), huge).await.unwrap_err(),
        libc::EFBIG
    );
    let attr = core.resolve(&path(&["f"])).await.unwrap();
    let fh = core
        .fs
        .open(attr.ino, libc::O_WRONLY, std::process::id())
        .await
        .unwrap();
    let written = core.fs.write(fh, 6 << 40, b"past 5 TiB").await;
    assert_eq!(written.unwrap_err().errno(), libc::EFBIG);
    core.close(attr.ino, fh, Ok(())).await.unwrap();
    assert_eq!(core.read_all(&path(&["f"]), 4096).await.unwrap(), b"small");
}
