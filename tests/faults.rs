//! Faults on the wire between a mount and the server: retries happen, writes either commit
//! intact or close() fails with EIO leaving nothing behind, reads are right or EIO.

mod common;

use std::process::Command;
use std::time::Duration;

use common::mount::{TestVolume, sha256_file, stderr};
use common::proxy::{Fault, FaultProxy, get_object, put_object, upload_part};
use common::{PART, ServerKind, random_bytes};
use s3cryptfs::store::ObjectStore;

on_both_servers!(
    a_failed_overwrite_keeps_the_old_version,
    close_from_another_thread_reports_the_upload_error,
    a_part_that_fails_once_is_retried,
    a_part_that_always_fails_fails_close_and_leaves_nothing,
    a_small_file_whose_put_fails_is_not_created,
    reads_survive_throttling_resets_and_stalls,
);

/// Like std::fs::write, but reports close()'s result (Rust's File ignores it on drop).
fn write_and_close(path: &std::path::Path, data: &[u8]) -> std::io::Result<()> {
    use std::io::Write;
    use std::os::fd::IntoRawFd;
    let mut f = std::fs::File::create(path)?;
    f.write_all(data)?;
    let fd = f.into_raw_fd();
    // SAFETY: `fd` was just taken out of its File (into_raw_fd): we own it and close it once.
    if unsafe { libc::close(fd) } != 0 {
        return Err(std::io::Error::last_os_error());
    }
    Ok(())
}

fn cp(from: &std::path::Path, to: &std::path::Path) -> std::process::Output {
    Command::new("cp").arg(from).arg(to).output().unwrap()
}

async fn a_part_that_fails_once_is_retried(kind: ServerKind) {
    let v = TestVolume::new(kind, "retry-part", "").await;
    let proxy = FaultProxy::start(&v.server.endpoint);
    let metrics = common::free_loopback_addr();
    let m = v.mount_via(&proxy.endpoint, &["--metrics-addr", &metrics]);
    // What the mount itself sent (its probe of conditional writes) is not counted.
    let parts_metric = "s3cryptfs_s3_requests_total{op=\"UploadPart\"}";
    let (parts_before, metric_before) = (
        proxy.count(upload_part),
        common::metric(&metrics, parts_metric),
    );
    let src = tempfile::tempdir().unwrap();
    let local = src.path().join("f");
    std::fs::write(&local, random_bytes(2 * PART + 1000, 1)).unwrap();
    proxy.inject(upload_part, Fault::Status(500, "InternalError"), Some(1));
    proxy.inject(upload_part, Fault::Reset, Some(1));
    let out = cp(&local, &m.join("f"));
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(proxy.fired(), 2, "both faults were hit");
    assert_eq!(
        proxy.count(upload_part) - parts_before,
        3 + 2,
        "three parts, two retried"
    );
    assert_eq!(common::metric(&metrics, "s3cryptfs_s3_retries_total"), 2.0);
    assert_eq!(
        common::metric(&metrics, parts_metric) - metric_before,
        3.0,
        "requests count once however many attempts they take"
    );
    assert_eq!(sha256_file(&m.join("f")), sha256_file(&local));
    assert!(v.store.list_uploads("").await.unwrap().is_empty());
}

async fn a_part_that_always_fails_fails_close_and_leaves_nothing(kind: ServerKind) {
    let v = TestVolume::new(kind, "fail-part", "").await;
    let proxy = FaultProxy::start(&v.server.endpoint);
    let m = v.mount_via(&proxy.endpoint, &["--max-attempts", "2"]);
    let src = tempfile::tempdir().unwrap();
    let local = src.path().join("f");
    std::fs::write(&local, random_bytes(2 * PART + 1000, 2)).unwrap();
    proxy.inject(upload_part, Fault::Status(500, "InternalError"), None);
    let out = cp(&local, &m.join("f"));
    assert!(
        !out.status.success(),
        "cp must fail when parts cannot be uploaded"
    );
    assert!(
        stderr(&out).contains("Input/output error"),
        "close/write reports EIO: {}",
        stderr(&out)
    );
    assert!(
        v.store.head("f").await.unwrap_err().is_not_found(),
        "no object under the name"
    );
    assert!(
        v.store.list_uploads("").await.unwrap().is_empty(),
        "the upload was aborted"
    );
    assert!(m.log_text().contains("not saved") || m.log_text().contains("failed"));
    // The mount stays usable, and so does the name.
    proxy.clear();
    std::fs::write(m.join("after"), b"still works").unwrap();
    assert_eq!(std::fs::read(m.join("after")).unwrap(), b"still works");
    let out = cp(&local, &m.join("f"));
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(sha256_file(&m.join("f")), sha256_file(&local));

    // With one part in flight, write() itself meets the failure: the same guarantees hold,
    // and the file is not left busy.
    drop(m);
    let m = v.mount_via(
        &proxy.endpoint,
        &["--max-attempts", "1", "--parts-in-flight", "1"],
    );
    proxy.inject(upload_part, Fault::Status(500, "InternalError"), None);
    let out = cp(&local, &m.join("g"));
    assert!(!out.status.success());
    assert!(v.store.head("g").await.unwrap_err().is_not_found());
    assert!(v.store.list_uploads("").await.unwrap().is_empty());
    proxy.clear();
    let out = cp(&local, &m.join("g"));
    assert!(
        out.status.success(),
        "the name is usable again: {}",
        stderr(&out)
    );
    assert_eq!(sha256_file(&m.join("g")), sha256_file(&local));
}

async fn a_failed_overwrite_keeps_the_old_version(kind: ServerKind) {
    let v = TestVolume::new(kind, "keep-old", "").await;
    let proxy = FaultProxy::start(&v.server.endpoint);
    let m = v.mount_via(&proxy.endpoint, &["--max-attempts", "1"]);
    std::fs::write(m.join("f"), b"version one").unwrap();
    proxy.inject(put_object, Fault::Status(500, "InternalError"), None);
    let err = write_and_close(&m.join("f"), b"version two, never saved").unwrap_err();
    assert_eq!(err.raw_os_error(), Some(libc::EIO));
    proxy.clear();
    // touch right after does not replace the old version, and an append lands on it.
    assert!(
        Command::new("touch")
            .arg(m.join("f"))
            .status()
            .unwrap()
            .success()
    );
    assert_eq!(std::fs::read(m.join("f")).unwrap(), b"version one");
    {
        use std::io::Write;
        let mut f = std::fs::OpenOptions::new()
            .append(true)
            .open(m.join("f"))
            .unwrap();
        f.write_all(b", appended").unwrap();
    }
    assert_eq!(
        std::fs::read(m.join("f")).unwrap(),
        b"version one, appended"
    );
    // Emptying a file (`: > g`, an O_TRUNC open closed with nothing written) that cannot be
    // saved fails close(), rather than returning 0 and leaving the old contents. (A file of
    // its own: "f" may still have a change in place open, whose last close saves again.)
    write_and_close(&m.join("g"), b"old contents").unwrap();
    proxy.inject(put_object, Fault::Status(500, "InternalError"), None);
    let err = write_and_close(&m.join("g"), b"").unwrap_err();
    assert_eq!(err.raw_os_error(), Some(libc::EIO));
    proxy.clear();
    // What the bucket holds, seen by another mount (this one's kernel may keep the size the
    // O_TRUNC open gave it for a moment).
    let other = v.mount(&[]);
    assert_eq!(std::fs::read(other.join("g")).unwrap(), b"old contents");
    drop(other);
    // A shell redirection closes the opened descriptor before its dup'd copy writes: that
    // early close saves the empty file, and what is written after it is saved at the end.
    let script = format!("echo replaced > '{}'", m.join("g").display());
    assert!(
        Command::new("sh")
            .args(["-c", &script])
            .status()
            .unwrap()
            .success()
    );
    assert_eq!(std::fs::read(m.join("g")).unwrap(), b"replaced\n");
    write_and_close(&m.join("g"), b"").unwrap();
    assert_eq!(std::fs::metadata(m.join("g")).unwrap().len(), 0);
}

async fn close_from_another_thread_reports_the_upload_error(kind: ServerKind) {
    let v = TestVolume::new(kind, "thread-close", "").await;
    let proxy = FaultProxy::start(&v.server.endpoint);
    let m = v.mount_via(&proxy.endpoint, &["--max-attempts", "1"]);
    proxy.inject(put_object, Fault::Status(500, "InternalError"), None);
    let path = m.join("f");
    // Opened and written on one thread, closed on another (as Go and Java programs do).
    let fd = std::thread::spawn(move || {
        use std::io::Write;
        use std::os::fd::IntoRawFd;
        let mut f = std::fs::File::create(path).unwrap();
        f.write_all(b"data").unwrap();
        f.into_raw_fd()
    })
    .join()
    .unwrap();
    // SAFETY: `fd` was taken out of its File (into_raw_fd): we own it and close it once.
    let rc = unsafe { libc::close(fd) };
    let err = std::io::Error::last_os_error();
    assert_eq!(rc, -1, "close() must report the failed upload");
    assert_eq!(err.raw_os_error(), Some(libc::EIO));
    assert!(v.store.head("f").await.unwrap_err().is_not_found());
}

async fn a_small_file_whose_put_fails_is_not_created(kind: ServerKind) {
    let v = TestVolume::new(kind, "fail-put", "p").await;
    let proxy = FaultProxy::start(&v.server.endpoint);
    let m = v.mount_via(&proxy.endpoint, &["--max-attempts", "2"]);
    let puts_before = proxy.count(put_object);
    proxy.inject(put_object, Fault::Status(503, "SlowDown"), None);
    let err = write_and_close(&m.join("small"), b"12345").unwrap_err();
    assert_eq!(err.raw_os_error(), Some(libc::EIO), "{err}");
    assert!(v.store.head("small").await.unwrap_err().is_not_found());
    assert_eq!(
        proxy.count(put_object) - puts_before,
        2,
        "retried once (2 attempts), then gave up"
    );
}

async fn reads_survive_throttling_resets_and_stalls(kind: ServerKind) {
    let v = TestVolume::new(kind, "read-faults", "").await;
    let data = random_bytes(PART + 12345, 3);
    let src = tempfile::tempdir().unwrap();
    let local = src.path().join("f");
    std::fs::write(&local, &data).unwrap();
    {
        let m = v.mount(&[]);
        assert!(cp(&local, &m.join("f")).status.success());
    }
    let proxy = FaultProxy::start(&v.server.endpoint);
    let m = v.mount_via(&proxy.endpoint, &["--request-timeout", "3"]);
    proxy.inject(get_object, Fault::Status(503, "SlowDown"), Some(2));
    proxy.inject(get_object, Fault::Reset, Some(2));
    proxy.inject(get_object, Fault::Stall(Duration::from_secs(8)), Some(1));
    assert!(
        std::fs::read(m.join("f")).unwrap() == data,
        "correct bytes after retries"
    );
    assert_eq!(proxy.fired(), 5);
    // A read that cannot succeed fails with EIO, never with wrong bytes.
    drop(m);
    let m = v.mount_via(&proxy.endpoint, &["--max-attempts", "2"]);
    proxy.inject(get_object, Fault::Status(500, "InternalError"), None);
    let err = std::fs::read(m.join("f")).unwrap_err();
    assert_eq!(err.raw_os_error(), Some(libc::EIO), "{err}");
}
