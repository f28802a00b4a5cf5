//! Working with a volume without FUSE: init --generate-key, ls, cat, get, put, umount.

mod common;

use common::mount::{TestVolume, daemon_of, is_mounted, sha256_file, stderr};
use common::{PART, ServerKind, random_bytes};

on_both_servers!(files_come_back_without_fuse, generate_key_and_umount);

async fn files_come_back_without_fuse(kind: ServerKind) {
    let v = TestVolume::new(kind, "recover", "vol").await;
    let src = tempfile::tempdir().unwrap();
    let big = src.path().join("big");
    std::fs::write(&big, random_bytes(PART + 70_000, 1)).unwrap();
    let small = src.path().join("small");
    std::fs::write(&small, b"small and precious").unwrap();
    let key = v.key_file.clone();
    let loc = v.location();
    let run = |args: &[&str]| v.cli(args, &[]);
    let with_key = |mut args: Vec<String>| {
        args.push("--key-file".into());
        args.push(key.to_string_lossy().to_string());
        args
    };
    // put: into the volume, encrypted.
    for (local, path) in [(&big, "dir/big"), (&small, "small")] {
        let args = with_key(vec![
            "put".into(),
            loc.clone(),
            local.to_string_lossy().to_string(),
            path.into(),
        ]);
        let out = run(&args.iter().map(String::as_str).collect::<Vec<_>>());
        assert!(out.status.success(), "put {path}: {}", stderr(&out));
    }
    // A mount sees what put stored.
    {
        let m = v.mount(&[]);
        assert_eq!(sha256_file(&m.join("dir/big")), sha256_file(&big));
        std::fs::write(m.join("from-mount"), b"written through the mount").unwrap();
    }
    // ls: plaintext sizes, no internal objects.
    let out = run(&with_key(vec!["ls".into(), loc.clone(), "-R".into()])
        .iter()
        .map(String::as_str)
        .collect::<Vec<_>>());
    assert!(out.status.success(), "{}", stderr(&out));
    let listing = String::from_utf8_lossy(&out.stdout).to_string();
    assert!(
        listing.contains(&format!("{}  dir/big", PART + 70_000)),
        "{listing}"
    );
    assert!(listing.contains("18  small"), "{listing}");
    assert!(!listing.contains(".s3cryptfs"), "{listing}");
    // cat: verified plaintext on stdout.
    let out = run(
        &with_key(vec!["cat".into(), loc.clone(), "from-mount".into()])
            .iter()
            .map(String::as_str)
            .collect::<Vec<_>>(),
    );
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(out.stdout, b"written through the mount");
    // get: to a local file, never over an existing one without --force.
    let restored = src.path().join("restored");
    let args = with_key(vec![
        "get".into(),
        loc.clone(),
        "dir/big".into(),
        restored.to_string_lossy().to_string(),
    ]);
    let out = run(&args.iter().map(String::as_str).collect::<Vec<_>>());
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(sha256_file(&restored), sha256_file(&big));
    let out = run(&args.iter().map(String::as_str).collect::<Vec<_>>());
    assert_eq!(
        out.status.code(),
        Some(2),
        "refuses to overwrite: {}",
        stderr(&out)
    );
    // A tampered object is refused, and get leaves no file behind.
    let raw = common::read_object(&v.store, "small").await;
    let mut bad = raw.clone();
    // The last segment's last ciphertext byte (a GCM tag is 16 bytes, an HMAC tag 32).
    let last = bad.len() - 17;
    bad[last] ^= 1;
    use s3cryptfs::store::ObjectStore;
    v.store
        .put("small", bytes::Bytes::from(bad), &Default::default())
        .await
        .unwrap();
    let out = run(&with_key(vec!["cat".into(), loc.clone(), "small".into()])
        .iter()
        .map(String::as_str)
        .collect::<Vec<_>>());
    assert!(!out.status.success());
    assert!(out.stdout.is_empty(), "no plaintext of a tampered segment");
    assert!(
        stderr(&out).contains("authentication failed"),
        "{}",
        stderr(&out)
    );
    let target = src.path().join("never");
    let args = with_key(vec![
        "get".into(),
        loc.clone(),
        "small".into(),
        target.to_string_lossy().to_string(),
    ]);
    assert!(
        !run(&args.iter().map(String::as_str).collect::<Vec<_>>())
            .status
            .success()
    );
    assert!(
        !target.exists(),
        "no half-written file under the final name"
    );
    // A missing file is a clear error.
    let out = run(&with_key(vec!["cat".into(), loc.clone(), "nope".into()])
        .iter()
        .map(String::as_str)
        .collect::<Vec<_>>());
    assert_eq!(out.status.code(), Some(2));
    assert!(stderr(&out).contains("not found"), "{}", stderr(&out));
}

async fn generate_key_and_umount(kind: ServerKind) {
    let v = TestVolume::uninitialised(kind, "genkey", "").await;
    let new_key = v.dir.path().join("generated.key");
    let out = v.cli(
        &["init", &v.location(), "--generate-key", "--key-file"],
        &[&new_key],
    );
    assert!(out.status.success(), "{}", stderr(&out));
    use std::os::unix::fs::PermissionsExt;
    assert_eq!(
        std::fs::metadata(&new_key).unwrap().permissions().mode() & 0o777,
        0o600
    );
    let first = std::fs::read(&new_key).unwrap();
    // Never overwrites a key file.
    let out = v.cli(
        &["init", "other-bucket", "--generate-key", "--key-file"],
        &[&new_key],
    );
    assert!(!out.status.success());
    assert_eq!(std::fs::read(&new_key).unwrap(), first);
    // init refuses a prefix that already holds a volume.
    let out = v.cli(&["init", &v.location(), "--key-file"], &[&new_key]);
    assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));
    assert!(
        stderr(&out).contains("already holds an s3cryptfs volume"),
        "{}",
        stderr(&out)
    );
    // The generated key mounts the volume; `s3cryptfs umount` unmounts it.
    let m = v.mount_with_key(&new_key, &[]).unwrap();
    std::fs::write(m.join("x"), b"x").unwrap();
    let out = std::process::Command::new(common::mount::BIN)
        .arg("umount")
        .arg(m.path())
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(!is_mounted(m.path()));
}

on_both_servers!(fsck_finds_damage_and_cleans_stale_uploads);

async fn fsck_finds_damage_and_cleans_stale_uploads(kind: ServerKind) {
    use s3cryptfs::store::ObjectStore;
    let v = TestVolume::new(kind, "fsck", "v").await;
    {
        let m = v.mount(&[]);
        std::fs::create_dir(m.join("d")).unwrap();
        std::fs::write(m.join("d/good"), random_bytes(200_000, 3)).unwrap();
        std::fs::write(m.join("tampered"), random_bytes(150_000, 4)).unwrap();
    }
    let location = v.location();
    let fsck = |extra: &[&str]| {
        let mut args = vec!["fsck", location.as_str()];
        args.extend_from_slice(extra);
        args.push("--key-file");
        v.cli(&args, &[&v.key_file])
    };
    let out = fsck(&[]);
    assert!(
        out.status.success(),
        "a healthy volume: {}{}",
        String::from_utf8_lossy(&out.stdout),
        stderr(&out)
    );

    let mut raw = common::read_object(&v.store, "tampered").await;
    raw[100_000] ^= 0x80;
    v.store
        .put("tampered", bytes::Bytes::from(raw), &Default::default())
        .await
        .unwrap();
    v.store
        .put(
            "foreign.txt",
            bytes::Bytes::from_static(b"not ours at all"),
            &Default::default(),
        )
        .await
        .unwrap();
    // A writer killed mid-upload leaves a multipart upload behind.
    let id = v
        .store
        .create_multipart("killed", &Default::default())
        .await
        .unwrap();
    v.store
        .upload_part(
            "killed",
            &id,
            1,
            bytes::Bytes::from(random_bytes(5 << 20, 5)),
        )
        .await
        .unwrap();
    // Cut short at a segment boundary: a size that fits the format, but its new last
    // segment was not sealed as the last one.
    let whole = common::read_object(&v.store, "d/good").await;
    let cut_len = common::HEADER + 2 * (65536 + 32);
    assert!(whole.len() > cut_len + 65536);
    v.store
        .put(
            "cut",
            bytes::Bytes::from(whole[..cut_len].to_vec()),
            &Default::default(),
        )
        .await
        .unwrap();

    let out = fsck(&[]);
    let report = String::from_utf8_lossy(&out.stdout).to_string();
    assert_eq!(out.status.code(), Some(1), "{report}");
    assert!(report.contains("CORRUPT  tampered: "), "{report}");
    assert!(report.contains("CORRUPT  cut: "), "{report}");
    assert!(
        report.contains("authentication failed at segment 1"),
        "{report}"
    );
    assert!(report.contains("FOREIGN  foreign.txt"), "{report}");
    // Garage dates the upload now: reported, but not stale yet. (moto reports a fixed date
    // years ago, so there it is already stale.)
    if kind == ServerKind::Garage {
        assert!(
            report.contains("UPLOAD   killed"),
            "a fresh upload is not stale: {report}"
        );
    } else {
        assert!(report.contains("upload of killed"), "{report}");
    }

    // A sample that skips the tampered object's tags still checks its header and size.
    let out = fsck(&["--headers-only"]);
    let report = String::from_utf8_lossy(&out.stdout).to_string();
    assert!(
        !report.contains("CORRUPT"),
        "a body flip is invisible to headers: {report}"
    );
    assert!(report.contains("FOREIGN  foreign.txt"), "{report}");

    let out = fsck(&["--stale-after", "0", "--abort-stale"]);
    let report = String::from_utf8_lossy(&out.stdout).to_string();
    assert!(
        report.contains("ABORTED  stale upload of killed"),
        "{report}"
    );
    assert!(v.store.list_uploads("").await.unwrap().is_empty());

    v.store
        .delete_many(&["tampered".into(), "foreign.txt".into(), "cut".into()])
        .await
        .unwrap();
    let out = fsck(&["--stale-after", "0"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stdout)
    );
    assert!(String::from_utf8_lossy(&out.stdout).contains("1 objects: 1 ok"));
}

on_both_servers!(passphrase_volumes_and_rekey);

async fn passphrase_volumes_and_rekey(kind: ServerKind) {
    let v = TestVolume::uninitialised(kind, "passphrase", "pp").await;
    let loc = v.location();
    let cli = |args: &[&str], passphrase: Option<&str>| {
        let mut cmd = std::process::Command::new(common::mount::BIN);
        cmd.args(args)
            .args(["--endpoint-url", &v.server.endpoint, "--force-path-style"])
            .envs(v.server.env())
            .env_remove("S3CRYPTFS_PASSPHRASE");
        if let Some(p) = passphrase {
            cmd.env("S3CRYPTFS_PASSPHRASE", p);
        }
        cmd.output().unwrap()
    };
    let out = cli(
        &["init", &loc, "--kdf-cost", "10"],
        Some("correct horse battery staple"),
    );
    assert!(out.status.success(), "{}", stderr(&out));
    let src = tempfile::tempdir().unwrap();
    let local = src.path().join("doc");
    std::fs::write(&local, b"secret document").unwrap();
    let out = cli(
        &["put", &loc, &local.to_string_lossy(), "doc"],
        Some("correct horse battery staple"),
    );
    assert!(out.status.success(), "{}", stderr(&out));
    let out = cli(&["cat", &loc, "doc"], Some("correct horse battery staple"));
    assert_eq!(out.stdout, b"secret document", "{}", stderr(&out));

    let out = cli(&["cat", &loc, "doc"], Some("wrong horse"));
    assert_eq!(out.status.code(), Some(3), "{}", stderr(&out));
    assert!(stderr(&out).contains("does not match"), "{}", stderr(&out));
    let key_path = v.key_file.to_string_lossy().to_string();
    // A key file opens only key-file and recovery slots; this volume has a passphrase and its
    // recovery key, and the error says so.
    let out = cli(&["cat", &loc, "doc", "--key-file", &key_path], None);
    assert_eq!(out.status.code(), Some(3));
    assert!(stderr(&out).contains("a passphrase"), "{}", stderr(&out));

    // A background mount: the passphrase reaches the daemon through a pipe, and the daemon
    // keeps it in neither its environment nor a core dump.
    let mountpoint = tempfile::tempdir().unwrap();
    let out = cli(
        &["mount", &loc, &mountpoint.path().to_string_lossy()],
        Some("correct horse battery staple"),
    );
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(
        std::fs::read(mountpoint.path().join("doc")).unwrap(),
        b"secret document"
    );
    let daemon = daemon_of(mountpoint.path()).expect("the daemon's process");
    let environ = std::fs::read(format!("/proc/{daemon}/environ")).unwrap();
    let environ = String::from_utf8_lossy(&environ);
    assert!(!environ.contains("S3CRYPTFS_PASSPHRASE"), "{environ}");
    assert!(!environ.contains("correct horse"), "{environ}");
    let limits = std::fs::read_to_string(format!("/proc/{daemon}/limits")).unwrap();
    let core = limits
        .lines()
        .find(|l| l.starts_with("Max core file size"))
        .unwrap();
    assert_eq!(
        core.split_whitespace().nth(4),
        Some("0"),
        "no core dumps: {core}"
    );
    let unmounted = std::process::Command::new("umount")
        .arg(mountpoint.path())
        .status()
        .unwrap();
    assert!(unmounted.success());
    // In the foreground (as under systemd with the variable in its Environment=), the same
    // process goes on without it.
    let mut foreground = std::process::Command::new(common::mount::BIN)
        .args([
            "mount",
            &loc,
            &mountpoint.path().to_string_lossy(),
            "--foreground",
        ])
        .args(["--endpoint-url", &v.server.endpoint, "--force-path-style"])
        .envs(v.server.env())
        .env("S3CRYPTFS_PASSPHRASE", "correct horse battery staple")
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let doc = mountpoint.path().join("doc");
    for _ in 0..600 {
        if doc.exists() {
            break;
        }
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
    assert_eq!(std::fs::read(&doc).unwrap(), b"secret document");
    let environ = std::fs::read(format!("/proc/{}/environ", foreground.id())).unwrap();
    let environ = String::from_utf8_lossy(&environ);
    assert!(!environ.contains("correct horse"), "{environ}");
    let unmounted = std::process::Command::new("umount")
        .arg(mountpoint.path())
        .status()
        .unwrap();
    assert!(unmounted.success());
    assert!(foreground.wait().unwrap().success());

    // Rekey to a newly generated key file: the data is untouched, the old secret stops working.
    let new_key = v.dir.path().join("rekeyed.key");
    let new_key_s = new_key.to_string_lossy().to_string();
    let out = cli(
        &[
            "rekey",
            &loc,
            "--new-key-file",
            &new_key_s,
            "--generate-key",
        ],
        Some("correct horse battery staple"),
    );
    assert!(out.status.success(), "{}", stderr(&out));
    let out = cli(&["cat", &loc, "doc", "--key-file", &new_key_s], None);
    assert_eq!(out.stdout, b"secret document", "{}", stderr(&out));
    let out = cli(&["cat", &loc, "doc"], Some("correct horse battery staple"));
    assert_eq!(
        out.status.code(),
        Some(2),
        "the volume now wants a key file: {}",
        stderr(&out)
    );
    let m = v.mount_with_key(&new_key, &[]).unwrap();
    assert_eq!(std::fs::read(m.join("doc")).unwrap(), b"secret document");
}
