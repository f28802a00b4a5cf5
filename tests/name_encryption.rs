//! Volumes created with `--encrypt-names`, through real mounts and the recovery CLI: no
//! plaintext name in the bucket, long names, tampered and foreign keys hidden and logged,
//! the choice fixed in the authenticated config. (The namespace, metadata and rsync suites
//! run on name-encrypted volumes too: `on_all_volumes!`.)

mod common;

use std::process::Command;

use bytes::Bytes;
use common::ServerKind;
use common::mount::{Names, TestVolume, stderr};
use s3cryptfs::store::ObjectStore;

on_both_servers!(
    no_plaintext_name_reaches_the_bucket,
    foreign_and_tampered_names_are_hidden_and_logged,
    recovery_cli_works_on_encrypted_names,
);

async fn all_keys(v: &TestVolume) -> Vec<String> {
    v.store
        .list_all("", None)
        .await
        .unwrap()
        .objects
        .into_iter()
        .map(|o| o.key)
        .collect()
}

fn run(cmd: &mut Command) -> String {
    let out = cmd.output().unwrap();
    assert!(out.status.success(), "{cmd:?}: {}", stderr(&out));
    String::from_utf8_lossy(&out.stdout).into_owned()
}

async fn no_plaintext_name_reaches_the_bucket(kind: ServerKind) {
    let v = TestVolume::with_names(kind, Names::Encrypted, "encnames", "vol").await;
    let long_dir = format!("directory-{}", "d".repeat(240)); // 250 bytes
    let long_file = format!("file-{}", "f".repeat(250)); // 255 bytes
    let m = v.mount(&[]);
    std::fs::create_dir_all(m.join("tax-returns/2025")).unwrap();
    std::fs::write(m.join("tax-returns/2025/alice.pdf"), b"alice's return").unwrap();
    std::fs::create_dir(m.join("tax-returns/empty-folder")).unwrap();
    std::fs::create_dir(m.join(&long_dir)).unwrap();
    std::fs::write(m.join(&format!("{long_dir}/{long_file}")), b"deep and long").unwrap();
    std::fs::write(m.join("ünïcödé-名前.txt"), b"unicode").unwrap();
    std::os::unix::fs::symlink("tax-returns/2025/alice.pdf", m.join("shortcut")).unwrap();
    assert_eq!(m.unmount(), Some(0));

    let keys = all_keys(&v).await;
    // Strings long enough that base64url cannot produce them by chance.
    for clear in [
        "tax-returns",
        "alice.pdf",
        "empty-folder",
        "directory-",
        "ünïcödé",
        "名前",
        "shortcut",
        "dddddddd",
        "ffffffff",
    ] {
        assert!(
            !keys.iter().any(|k| k.contains(clear)),
            "'{clear}' in the clear in {keys:?}"
        );
    }
    assert!(
        keys.iter()
            .flat_map(|k| k.split('/'))
            .all(|c| c.len() <= 255),
        "every key component fits 255 bytes: {keys:?}"
    );
    assert!(
        keys.iter().filter(|k| k.ends_with(".name")).count() >= 2,
        "long names keep their encrypted form in side objects: {keys:?}"
    );

    let m = v.mount(&[]);
    let mut top: Vec<String> = std::fs::read_dir(m.path())
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .collect();
    top.sort();
    let mut expected = vec![
        long_dir.clone(),
        "shortcut".to_string(),
        "tax-returns".to_string(),
        "ünïcödé-名前.txt".to_string(),
    ];
    expected.sort();
    assert_eq!(top, expected);
    assert_eq!(
        std::fs::read(m.join("shortcut")).unwrap(),
        b"alice's return",
        "a symlink through encrypted names"
    );
    assert_eq!(
        std::fs::read(m.join(&format!("{long_dir}/{long_file}"))).unwrap(),
        b"deep and long"
    );
    assert!(m.join("tax-returns/empty-folder").is_dir());

    // Renames re-encrypt what is below (names are bound to their directory's path).
    let renamed = format!("renamed-{}", "r".repeat(200));
    std::fs::rename(m.join(&long_dir), m.join("tax-returns/2025").join(&renamed)).unwrap();
    std::fs::rename(m.join("tax-returns"), m.join("archive")).unwrap();
    std::fs::remove_file(m.join("ünïcödé-名前.txt")).unwrap();
    assert_eq!(m.unmount(), Some(0));
    let m = v.mount(&[]);
    assert_eq!(
        std::fs::read(m.join(&format!("archive/2025/{renamed}/{long_file}"))).unwrap(),
        b"deep and long"
    );
    assert_eq!(
        std::fs::read(m.join("archive/2025/alice.pdf")).unwrap(),
        b"alice's return"
    );
    assert!(!m.join("tax-returns").exists());
    let out = run(Command::new("find")
        .arg(m.path())
        .arg("-printf")
        .arg("%P\n"));
    let mut found: Vec<&str> = out.lines().filter(|l| !l.is_empty()).collect();
    found.sort();
    let file_path = format!("archive/2025/{renamed}/{long_file}");
    let dir_path = format!("archive/2025/{renamed}");
    let mut want = vec![
        "archive",
        "archive/2025",
        "archive/2025/alice.pdf",
        dir_path.as_str(),
        file_path.as_str(),
        "archive/empty-folder",
        "shortcut",
    ];
    want.sort();
    assert_eq!(found, want);
    drop(m);
    // Nothing of the old names is left: every key decrypts to a path that exists.
    let fsck = v.cli(
        &["fsck", &v.location(), "--key-file"],
        &[v.key_file.as_path()],
    );
    assert!(
        fsck.status.success(),
        "{}{}",
        String::from_utf8_lossy(&fsck.stdout),
        stderr(&fsck)
    );
    let keys = all_keys(&v).await;
    assert_eq!(
        keys.iter().filter(|k| k.ends_with(".name")).count(),
        2,
        "one side object per long name, none left over: {keys:?}"
    );
}

async fn foreign_and_tampered_names_are_hidden_and_logged(kind: ServerKind) {
    let v = TestVolume::with_names(kind, Names::Encrypted, "badnames", "").await;
    let m = v.mount(&[]);
    std::fs::write(m.join("genuine"), b"genuine").unwrap();
    drop(m);
    let genuine = v.key("genuine").await;
    // A tampered name: one character of the encrypted component changed.
    let mut tampered = genuine.clone().into_bytes();
    tampered[5] = if tampered[5] == b'A' { b'B' } else { b'A' };
    let tampered = String::from_utf8(tampered).unwrap();
    v.store.copy(&genuine, &tampered, None).await.unwrap();
    // A foreign object with a plain name, and one in a plain-named directory.
    for key in ["plain.txt", "plain-dir/inner.txt"] {
        v.store
            .put(key, Bytes::from_static(b"foreign"), &Default::default())
            .await
            .unwrap();
    }
    let m = v.mount(&[]);
    let names: Vec<String> = std::fs::read_dir(m.path())
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .collect();
    assert_eq!(names, ["genuine"], "never garbage, never the raw keys");
    let log = m.log_text();
    for key in [tampered.as_str(), "plain.txt", "plain-dir/"] {
        assert!(
            log.lines()
                .any(|l| l.contains("does not decrypt") && l.contains(key)),
            "{key} logged: {log}"
        );
    }
    assert_eq!(std::fs::read(m.join("genuine")).unwrap(), b"genuine");
    drop(m);
    let fsck = v.cli(
        &["fsck", &v.location(), "--key-file"],
        &[v.key_file.as_path()],
    );
    let report = String::from_utf8_lossy(&fsck.stdout);
    assert_eq!(fsck.status.code(), Some(1), "{report}");
    for key in [tampered.as_str(), "plain.txt", "plain-dir/inner.txt"] {
        assert!(report.contains(&format!("BADNAME  {key}")), "{report}");
    }

    // The choice is fixed: a config edited to plain names no longer unlocks.
    let config = common::read_object(&v.store, ".s3cryptfs/volume.json").await;
    let edited = String::from_utf8(config)
        .unwrap()
        .replace("\"encrypt_names\":true", "\"encrypt_names\":false")
        .replace("\"encrypt_names\": true", "\"encrypt_names\": false");
    assert!(edited.contains("false"));
    v.store
        .put(
            ".s3cryptfs/volume.json",
            Bytes::from(edited),
            &Default::default(),
        )
        .await
        .unwrap();
    assert!(v.mount_with_key(&v.key_file, &[]).is_err());
}

async fn recovery_cli_works_on_encrypted_names(kind: ServerKind) {
    let v = TestVolume::with_names(kind, Names::Encrypted, "encrecover", "vol").await;
    let src = tempfile::tempdir().unwrap();
    let local = src.path().join("data");
    std::fs::write(&local, common::random_bytes(300_000, 77)).unwrap();
    let long = "l".repeat(230);
    let key_file = v.key_file.to_string_lossy().to_string();
    let loc = v.location();
    let cli = |args: &[&str]| {
        let mut all: Vec<&str> = args.to_vec();
        all.extend(["--key-file", &key_file]);
        v.cli(&all, &[])
    };
    let target = format!("docs/{long}/report.bin");
    let out = cli(&["put", &loc, &local.to_string_lossy(), &target]);
    assert!(out.status.success(), "{}", stderr(&out));
    // The mount sees it under its name.
    {
        let m = v.mount(&[]);
        assert!(std::fs::read(m.join(&target)).unwrap() == std::fs::read(&local).unwrap());
        std::fs::write(m.join("docs/from-mount.txt"), b"written by the mount").unwrap();
    }
    let out = cli(&["ls", &loc, "docs"]);
    assert!(out.status.success(), "{}", stderr(&out));
    let listing = String::from_utf8_lossy(&out.stdout);
    assert!(listing.contains("docs/from-mount.txt"), "{listing}");
    assert!(listing.contains(&format!("docs/{long}/")), "{listing}");
    let out = cli(&["ls", &loc, "-R"]);
    assert!(
        String::from_utf8_lossy(&out.stdout).contains(&target),
        "{}",
        String::from_utf8_lossy(&out.stdout)
    );
    let out = cli(&["cat", &loc, "docs/from-mount.txt"]);
    assert_eq!(out.stdout, b"written by the mount");
    let back = src.path().join("back");
    let out = cli(&["get", &loc, &target, &back.to_string_lossy()]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(std::fs::read(&back).unwrap() == std::fs::read(&local).unwrap());
    let keys = all_keys(&v).await;
    assert!(
        !keys
            .iter()
            .any(|k| k.contains("docs/") || k.contains("report.bin")),
        "{keys:?}"
    );
}
