//! Mount lifecycle: daemonizing, graceful shutdown that saves open files, server outages.

mod common;

use std::io::Write;
use std::process::Command;
use std::time::Duration;

use common::mount::{BIN, TestVolume, is_mounted, sha256_file, stderr};
use common::proxy::{Fault, FaultProxy};
use common::{PART, ServerKind, random_bytes};
use s3cryptfs::store::ObjectStore;

on_both_servers!(
    a_second_signal_exits_at_once,
    kill_9_mid_copy_leaves_only_whole_objects,
    background_mount_returns_once_live,
    sigterm_saves_files_still_open,
    server_outage_mid_copy_never_leaves_a_partial_object,
);

async fn background_mount_returns_once_live(kind: ServerKind) {
    let v = TestVolume::new(kind, "daemon", "").await;
    let mountpoint = tempfile::tempdir().unwrap();
    let out = Command::new(BIN)
        .args(["mount", &v.location()])
        .arg(mountpoint.path())
        .arg("--key-file")
        .arg(&v.key_file)
        .args(["--endpoint-url", &v.server.endpoint, "--force-path-style"])
        .envs(v.server.env())
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(
        is_mounted(mountpoint.path()),
        "mounted when the command returns"
    );
    std::fs::write(mountpoint.path().join("x"), b"daemonized").unwrap();
    assert_eq!(
        std::fs::read(mountpoint.path().join("x")).unwrap(),
        b"daemonized"
    );
    assert!(
        Command::new("umount")
            .arg(mountpoint.path())
            .status()
            .unwrap()
            .success()
    );
    assert!(!is_mounted(mountpoint.path()));

    // A failing background mount reports the error and the status of the daemon.
    let other = v.dir.path().join("wrong.key");
    common::mount::write_key_file(&other, 200);
    let out = Command::new(BIN)
        .args(["mount", &v.location()])
        .arg(mountpoint.path())
        .arg("--key-file")
        .arg(&other)
        .args(["--endpoint-url", &v.server.endpoint, "--force-path-style"])
        .envs(v.server.env())
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(3), "{}", stderr(&out));
    assert!(stderr(&out).contains("does not match"), "{}", stderr(&out));
    assert!(!is_mounted(mountpoint.path()));
}

async fn sigterm_saves_files_still_open(kind: ServerKind) {
    let v = TestVolume::new(kind, "sigterm", "").await;
    let m = v.mount(&[]);
    let data = random_bytes(PART + 5000, 11);
    let mut f = std::fs::File::create(m.join("open")).unwrap();
    f.write_all(&data).unwrap();
    // SAFETY: kill(2) of the mount daemon this test started.
    unsafe { libc::kill(m.pid() as i32, libc::SIGTERM) };
    let deadline = std::time::Instant::now() + Duration::from_secs(60);
    while is_mounted(m.path()) && std::time::Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(50));
    }
    assert!(!is_mounted(m.path()), "unmounted after SIGTERM");
    drop(f);
    let log = m.log_text();
    assert!(log.contains("saved at shutdown"), "{log}");
    let object = common::read_object(&v.store, "open").await;
    let key = s3cryptfs::crypto::UserKey::from_key_file(&v.key_file).unwrap();
    let store: std::sync::Arc<dyn ObjectStore> = std::sync::Arc::new(v.store.clone());
    let volume = s3cryptfs::volume::Volume::open(store, &v.location(), &key)
        .await
        .unwrap();
    let (_, plain) =
        s3cryptfs::crypto::decrypt_to_vec(&volume.master, volume.layout, &object).unwrap();
    assert!(plain == data, "everything written before SIGTERM was saved");
    assert!(v.store.list_uploads("").await.unwrap().is_empty());
}

async fn server_outage_mid_copy_never_leaves_a_partial_object(kind: ServerKind) {
    let v = TestVolume::new(kind, "outage", "").await;
    let proxy = FaultProxy::start(&v.server.endpoint);
    let m = v.mount_via(&proxy.endpoint, &["--max-attempts", "3"]);
    let src = tempfile::tempdir().unwrap();
    let local = src.path().join("f");
    std::fs::write(&local, random_bytes(4 * PART, 12)).unwrap();
    // The server goes away for a while in the middle of the copy, then comes back.
    let copy = common::copy_until_uploading(&v.store, &local, &m.join("f")).await;
    proxy.inject(|_, _| true, Fault::Reset, None);
    std::thread::sleep(Duration::from_secs(3));
    proxy.clear();
    let out = copy.join().unwrap();
    match v.store.head("f").await {
        Ok(_) => {
            assert!(
                out.status.success(),
                "an object exists, so cp must have succeeded"
            );
            assert_eq!(
                sha256_file(&m.join("f")),
                sha256_file(&local),
                "and it is intact"
            );
        }
        Err(e) => {
            assert!(e.is_not_found(), "{e}");
            assert!(!out.status.success(), "no object, so cp must have failed");
        }
    }
    assert!(
        v.store.list_uploads("").await.unwrap().is_empty(),
        "no upload left behind"
    );
}

async fn kill_9_mid_copy_leaves_only_whole_objects(kind: ServerKind) {
    let v = TestVolume::new(kind, "kill9", "k").await;
    let mut m = Some(v.mount(&[]));
    let mount_path = m.as_ref().unwrap().path().to_path_buf();
    std::fs::write(mount_path.join("f"), b"the old version").unwrap();
    let src = tempfile::tempdir().unwrap();
    let local = src.path().join("f");
    std::fs::write(&local, random_bytes(6 * PART, 21)).unwrap();
    // Kill the daemon once parts are uploading.
    let copy = common::copy_until_uploading(&v.store, &local, &mount_path.join("f")).await;
    assert!(
        !copy.is_finished(),
        "the daemon must die while the copy runs"
    );
    let pid = m.as_ref().unwrap().pid();
    // SAFETY: kill(2) of the mount daemon this test started.
    unsafe { libc::kill(pid as i32, libc::SIGKILL) };
    let out = copy.join().unwrap();
    assert!(
        !out.status.success(),
        "cp cannot succeed once the daemon is gone"
    );
    drop(m.take()); // cleans up the dead mount point

    // The bucket holds the old version, whole; the new one never appeared.
    let m = v.mount(&[]);
    assert_eq!(std::fs::read(m.join("f")).unwrap(), b"the old version");
    drop(m);
    assert!(
        !v.store.list_uploads("").await.unwrap().is_empty(),
        "the killed upload is left"
    );
    let out = v.cli(
        &[
            "fsck",
            &v.location(),
            "--stale-after",
            "0",
            "--abort-stale",
            "--key-file",
        ],
        &[&v.key_file],
    );
    let report = String::from_utf8_lossy(&out.stdout).to_string();
    assert!(out.status.success(), "{report}{}", stderr(&out));
    // Garage ends a key's uploads when the key is written, so there uploads run under a
    // hidden key (docs/STORE.md).
    let upload_key = match kind {
        ServerKind::Moto => "f",
        ServerKind::Garage => ".s3cryptfs/pending/",
    };
    assert!(
        report.contains(&format!("ABORTED  stale upload of {upload_key}")),
        "{report}"
    );
    assert!(v.store.list_uploads("").await.unwrap().is_empty());
}

async fn a_second_signal_exits_at_once(kind: ServerKind) {
    let v = TestVolume::new(kind, "second-signal", "").await;
    let proxy = FaultProxy::start(&v.server.endpoint);
    let mut m = v.mount_via(&proxy.endpoint, &[]);
    let mut f = std::fs::File::create(m.join("slow")).unwrap();
    f.write_all(b"this upload will hang").unwrap();
    // The commit at shutdown hangs on a stalled PUT...
    proxy.inject(
        common::proxy::put_object,
        Fault::Stall(Duration::from_secs(120)),
        None,
    );
    // SAFETY: kill(2) of the mount daemon this test started.
    unsafe { libc::kill(m.pid() as i32, libc::SIGTERM) };
    std::thread::sleep(Duration::from_millis(500));
    assert!(
        m.log_text().contains("SIGTERM: saving open files"),
        "{}",
        m.log_text()
    );
    // ...and a second signal does not wait for it.
    // SAFETY: kill(2) of the mount daemon this test started.
    unsafe { libc::kill(m.pid() as i32, libc::SIGINT) };
    let deadline = std::time::Instant::now() + Duration::from_secs(60);
    let status = loop {
        if let Some(status) = m.exited() {
            break status;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "the daemon is still waiting"
        );
        std::thread::sleep(Duration::from_millis(20));
    };
    assert_eq!(status, Some(1), "exits at once, with a failure status");
    assert!(
        m.log_text()
            .contains("second signal: exiting without waiting"),
        "{}",
        m.log_text()
    );
    drop(f);
    proxy.clear();
}

/// A daemon killed with SIGKILL leaves a dead mount (ENOTCONN); the next mount on the same
/// directory clears it, says so, and mounts.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_mount_after_a_crash_clears_the_stale_one() {
    let v = TestVolume::new(ServerKind::Garage, "stale", "s").await;
    let dir = tempfile::tempdir().unwrap();
    let mountpoint = dir.path().join("mnt");
    std::fs::create_dir(&mountpoint).unwrap();
    let mount = || {
        v.cli(
            &[
                "mount",
                &v.location(),
                &mountpoint.to_string_lossy(),
                "--key-file",
            ],
            &[&v.key_file],
        )
    };
    let out = mount();
    assert!(out.status.success(), "{}", stderr(&out));
    std::fs::write(mountpoint.join("kept"), b"saved before the crash").unwrap();
    let daemon = common::mount::daemon_of(&mountpoint).expect("the daemon");
    // SAFETY: kill(2) of the mount daemon this test started.
    unsafe { libc::kill(daemon as i32, libc::SIGKILL) };
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    while std::path::Path::new(&format!("/proc/{daemon}")).exists() {
        assert!(
            std::time::Instant::now() < deadline,
            "the daemon survived SIGKILL"
        );
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    let dead = std::fs::metadata(&mountpoint).unwrap_err();
    assert_eq!(dead.raw_os_error(), Some(libc::ENOTCONN), "{dead}");

    let out = mount();
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(stderr(&out).contains("stale mount"), "{}", stderr(&out));
    assert_eq!(
        std::fs::read(mountpoint.join("kept")).unwrap(),
        b"saved before the crash"
    );
    let out = std::process::Command::new(common::mount::BIN)
        .arg("umount")
        .arg(&mountpoint)
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(!is_mounted(&mountpoint));
}

/// With --auto-unmount, a daemon killed with SIGKILL takes its mount with it: no ENOTCONN
/// left behind.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn auto_unmount_removes_the_mount_of_a_killed_daemon() {
    let v = TestVolume::new(ServerKind::Garage, "autounmount", "a").await;
    let dir = tempfile::tempdir().unwrap();
    let mountpoint = dir.path().to_string_lossy().to_string();
    let out = v.cli(
        &[
            "mount",
            &v.location(),
            &mountpoint,
            "--auto-unmount",
            "--key-file",
        ],
        &[&v.key_file],
    );
    assert!(out.status.success(), "{}", stderr(&out));
    std::fs::write(dir.path().join("f"), b"saved").unwrap();
    let daemon = common::mount::daemon_of(dir.path()).expect("the daemon");
    // SAFETY: kill(2) of the mount daemon this test started.
    unsafe { libc::kill(daemon as i32, libc::SIGKILL) };
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    while is_mounted(dir.path()) {
        assert!(
            std::time::Instant::now() < deadline,
            "the mount outlived its daemon"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    std::fs::metadata(dir.path()).expect("the directory answers again");
}
