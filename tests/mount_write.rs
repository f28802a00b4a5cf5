//! Issue 5 through a real mount: streaming encrypted uploads, commit semantics, concurrency.

mod common;

use std::io::Write;
use std::process::Command;

use common::mount::{Names, TestVolume, logged_total, sha256_file, stderr};
use common::{PART, ServerKind, random_bytes};
use s3cryptfs::store::ObjectStore;

on_all_volumes!(
    copies_at_every_boundary_survive_remount,
    dd_with_small_and_large_blocks,
    bucket_holds_only_ciphertext_and_no_uploads_remain,
    file_appears_in_the_bucket_only_when_committed,
    concurrent_writers_and_readers,
    shell_redirection_and_touch,
);

on_both_servers!(part_size_decides_how_new_files_are_cut);

/// Writes of a new file are encrypted on the FUSE thread straight from the request, without
/// a copy or a task, unless they wait for an upload: only the first write and about one per
/// part go the long way (counted in the "upload totals" logged at unmount).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn most_writes_of_a_stream_are_taken_at_once() {
    let v = TestVolume::new(ServerKind::Garage, "at-once", "a").await;
    let src = tempfile::tempdir().unwrap();
    let local = write_local(src.path(), "big", &random_bytes(3 * PART + 5000, 33));
    let m = v.mount(&[]);
    let out = Command::new("dd")
        .arg(format!("if={}", local.display()))
        .arg(format!("of={}", m.join("big").display()))
        .args(["bs=1M", "status=none"])
        .output()
        .unwrap();
    assert!(out.status.success(), "dd: {}", stderr(&out));
    assert_eq!(sha256_file(&m.join("big")), sha256_file(&local));
    let log = m.log.clone();
    assert_eq!(m.unmount(), Some(0));
    let text = std::fs::read_to_string(&log).unwrap();
    let total = |field: &str| logged_total(&text, "upload totals", field);
    let (at_once, waited) = (total("writes_at_once"), total("writes_waited"));
    println!("dd of 3 parts and a bit in 1 MiB writes: {at_once} at once, {waited} waited");
    // 25 writes of up to 1 MiB (a part is 8 MiB): the first, and one per full part, wait.
    assert!(at_once + waited >= 25, "{at_once} + {waited}");
    assert!(waited <= 5, "{waited} writes waited");
}

/// Plaintext bytes in the first segment (the first part's are `common::PART`).
const FIRST_SEG: usize = 65536 - common::HEADER;

fn write_local(dir: &std::path::Path, name: &str, data: &[u8]) -> std::path::PathBuf {
    let p = dir.join(name);
    std::fs::write(&p, data).unwrap();
    p
}

async fn copies_at_every_boundary_survive_remount(kind: ServerKind, names: Names) {
    let v = TestVolume::with_names(kind, names, "boundaries", "w").await;
    let mut sizes = vec![
        0,
        1,
        FIRST_SEG - 1,
        FIRST_SEG,
        FIRST_SEG + 1,
        FIRST_SEG + 65536,
        PART - 1,
        PART,
        PART + 1,
    ];
    sizes.push(3 * PART + 3 * common::HEADER + 1); // three full parts and one byte
    let src = tempfile::tempdir().unwrap();
    let mut expected = Vec::new();
    {
        let m = v.mount(&[]);
        for (i, size) in sizes.iter().enumerate() {
            let name = format!("f{i}-{size}");
            let local = write_local(src.path(), &name, &random_bytes(*size, 100 + i as u64));
            let out = Command::new("cp")
                .arg(&local)
                .arg(m.join(&name))
                .output()
                .unwrap();
            assert!(out.status.success(), "cp {name}: {}", stderr(&out));
            assert_eq!(
                std::fs::metadata(m.join(&name)).unwrap().len(),
                *size as u64
            );
            expected.push((name.clone(), sha256_file(&local)));
            assert_eq!(
                sha256_file(&m.join(&name)),
                sha256_file(&local),
                "{name} read back"
            );
        }
        assert_eq!(m.unmount(), Some(0), "clean exit on unmount");
    }
    let m = v.mount(&[]);
    for (name, sum) in &expected {
        assert_eq!(&sha256_file(&m.join(name)), sum, "{name} after remount");
    }
    assert!(v.store.list_uploads("").await.unwrap().is_empty());
}

async fn dd_with_small_and_large_blocks(kind: ServerKind, names: Names) {
    let v = TestVolume::with_names(kind, names, "dd", "").await;
    let src = tempfile::tempdir().unwrap();
    let data = random_bytes(PART + 100_000, 7);
    let local = write_local(src.path(), "src", &data);
    let m = v.mount(&[]);
    for bs in ["4k", "1M"] {
        let target = m.join(&format!("dd-{bs}"));
        let out = Command::new("dd")
            .arg(format!("if={}", local.display()))
            .arg(format!("of={}", target.display()))
            .arg(format!("bs={bs}"))
            .arg("status=none")
            .output()
            .unwrap();
        assert!(out.status.success(), "dd bs={bs}: {}", stderr(&out));
        assert_eq!(sha256_file(&target), sha256_file(&local), "dd bs={bs}");
    }
    // dd writing into a pipe-fed file: the flush of the other end must not commit early.
    // Files report the largest write the kernel sends as their I/O size, so that `cp`
    // and `cat` move that much per call (not 128 KiB): 8 times fewer requests to the daemon.
    use std::os::unix::fs::MetadataExt;
    let blksize = std::fs::metadata(m.join("dd-1M")).unwrap().blksize();
    assert_eq!(blksize, u64::from(s3cryptfs::fs::MAX_WRITE));
    let target = m.join("piped");
    let status = Command::new("sh")
        .arg("-c")
        .arg(format!(
            "cat {} | dd of={} bs=64k status=none",
            local.display(),
            target.display()
        ))
        .status()
        .unwrap();
    assert!(status.success());
    assert_eq!(sha256_file(&target), sha256_file(&local));
}

async fn bucket_holds_only_ciphertext_and_no_uploads_remain(kind: ServerKind, names: Names) {
    let v = TestVolume::with_names(kind, names, "ciphertext", "c").await;
    // Text with long runs that would be easy to spot in the bucket if stored in clear.
    let mut data = Vec::new();
    while data.len() < PART + 300_000 {
        data.extend_from_slice(b"The quick brown fox jumps over the lazy dog. 0123456789\n");
    }
    let src = tempfile::tempdir().unwrap();
    let local = write_local(src.path(), "text", &data);
    let m = v.mount(&[]);
    assert!(
        Command::new("cp")
            .arg(&local)
            .arg(m.join("text"))
            .status()
            .unwrap()
            .success()
    );
    let raw = common::read_object(&v.store, &v.key("text").await).await;
    assert!(
        raw.len() > data.len(),
        "ciphertext carries a header and tags"
    );
    for needle in [
        &b"quick brown fox"[..],
        &data[1000..1016],
        &data[PART..PART + 16],
    ] {
        assert!(
            !raw.windows(needle.len()).any(|w| w == needle),
            "plaintext found in the bucket"
        );
    }
    assert!(v.store.list_uploads("").await.unwrap().is_empty());
    assert_eq!(std::fs::read(m.join("text")).unwrap(), data);
}

async fn file_appears_in_the_bucket_only_when_committed(kind: ServerKind, names: Names) {
    let v = TestVolume::with_names(kind, names, "commit", "").await;
    let m = v.mount(&[]);
    let data = random_bytes(2 * PART + 5000, 9);
    let mut f = std::fs::File::create(m.join("growing")).unwrap();
    f.write_all(&data[..PART + 1000]).unwrap();
    // Parts are uploading, but nothing is visible under the name in the bucket yet.
    let growing = v.key("growing").await;
    assert!(v.store.head(&growing).await.unwrap_err().is_not_found());
    assert_eq!(
        std::fs::metadata(m.join("growing")).unwrap().len(),
        (PART + 1000) as u64
    );
    let listed: Vec<_> = std::fs::read_dir(m.path())
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    assert!(
        listed.iter().any(|n| n == "growing"),
        "a file being written is listed"
    );
    f.write_all(&data[PART + 1000..]).unwrap();
    f.sync_all().unwrap();
    // fsync: everything written is durable in S3 when it returns.
    let info = v.store.head(&growing).await.unwrap();
    assert!(info.size > data.len() as u64);
    drop(f);
    assert_eq!(std::fs::read(m.join("growing")).unwrap(), data);
}

async fn concurrent_writers_and_readers(kind: ServerKind, names: Names) {
    let v = TestVolume::with_names(kind, names, "concurrent-w", "").await;
    let src = tempfile::tempdir().unwrap();
    let inputs: Vec<(String, std::path::PathBuf)> = (0..16)
        .map(|i| {
            let name = format!("w{i}");
            let size = 200_000 + i * 150_000 + if i % 4 == 0 { PART } else { 0 };
            (
                name.clone(),
                write_local(src.path(), &name, &random_bytes(size, 500 + i as u64)),
            )
        })
        .collect();
    let m = v.mount(&[]);
    // Something to read while the writers run.
    let reader_data = random_bytes(3_000_000, 77);
    std::fs::write(m.join("to-read"), &reader_data).unwrap();
    std::thread::scope(|s| {
        for (name, local) in &inputs {
            let target = m.join(name);
            s.spawn(move || {
                let out = Command::new("cp").arg(local).arg(&target).output().unwrap();
                assert!(out.status.success(), "{}", stderr(&out));
            });
        }
        for _ in 0..4 {
            let path = m.join("to-read");
            let expected = &reader_data;
            s.spawn(move || assert!(std::fs::read(path).unwrap() == *expected));
        }
    });
    for (name, local) in &inputs {
        assert_eq!(sha256_file(&m.join(name)), sha256_file(local), "{name}");
    }
    assert!(v.store.list_uploads("").await.unwrap().is_empty());
}

async fn shell_redirection_and_touch(kind: ServerKind, names: Names) {
    let v = TestVolume::with_names(kind, names, "shell", "s").await;
    let m = v.mount(&[]);
    let status = Command::new("sh")
        .arg("-c")
        .arg(format!(
            "echo hello > {0}/greeting && touch {0}/empty && printf abc > {0}/abc",
            m.path().display()
        ))
        .status()
        .unwrap();
    assert!(status.success());
    assert_eq!(
        std::fs::read_to_string(m.join("greeting")).unwrap(),
        "hello\n"
    );
    assert_eq!(std::fs::read(m.join("abc")).unwrap(), b"abc");
    assert_eq!(std::fs::metadata(m.join("empty")).unwrap().len(), 0);
    // Replacing a file (O_TRUNC) makes a new version, through `>` and through cp.
    let status = Command::new("sh")
        .arg("-c")
        .arg(format!("echo goodbye > {}/greeting", m.path().display()))
        .status()
        .unwrap();
    assert!(status.success());
    assert_eq!(
        std::fs::read_to_string(m.join("greeting")).unwrap(),
        "goodbye\n"
    );
    let src = tempfile::tempdir().unwrap();
    let local = write_local(src.path(), "new-abc", b"a longer replacement");
    let out = Command::new("cp")
        .arg(&local)
        .arg(m.join("abc"))
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(
        std::fs::read(m.join("abc")).unwrap(),
        b"a longer replacement"
    );
    drop(m);
    // After a remount everything, including the empty file, is there.
    let m = v.mount(&[]);
    assert_eq!(
        std::fs::read_to_string(m.join("greeting")).unwrap(),
        "goodbye\n"
    );
    assert_eq!(
        std::fs::read(m.join("abc")).unwrap(),
        b"a longer replacement"
    );
    assert_eq!(std::fs::metadata(m.join("empty")).unwrap().len(), 0);
    assert!(std::fs::read(m.join("empty")).unwrap().is_empty());
}

/// `--part-size` decides how a new file is cut into parts (a multipart object's ETag ends in
/// its part count); what S3 would refuse is refused before anything is mounted.
async fn part_size_decides_how_new_files_are_cut(kind: ServerKind) {
    let v = TestVolume::new(kind, "partsize", "p").await;
    let src = tempfile::tempdir().unwrap();
    let data = random_bytes(13 << 20, 31);
    let local = write_local(src.path(), "thirteen", &data);
    // 13 MiB: 5 + 5 + 3 MiB, or 8 + 5 MiB.
    for (size, parts) in [("5M", 3), ("8M", 2)] {
        let m = v.mount(&["--part-size", size]);
        let name = format!("cut-{size}");
        let out = Command::new("cp")
            .arg(&local)
            .arg(m.join(&name))
            .output()
            .unwrap();
        assert!(out.status.success(), "cp: {}", stderr(&out));
        assert_eq!(sha256_file(&m.join(&name)), sha256_file(&local));
        let head = v.store.head(&v.key(&name).await).await.unwrap();
        let etag = head.etag.unwrap_or_default();
        assert!(
            etag.trim_matches('"').ends_with(&format!("-{parts}")),
            "--part-size {size}: {parts} parts expected, ETag {etag}"
        );
        assert_eq!(m.unmount(), Some(0));
    }
    for refused in ["4M", "1G"] {
        let log = v
            .mount_with_key(&v.key_file, &["--part-size", refused])
            .err()
            .unwrap_or_else(|| panic!("--part-size {refused} mounted"));
        assert!(
            log.contains("a part size must be from 5 MiB to 512 MiB"),
            "{log}"
        );
    }
}
