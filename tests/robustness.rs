//! Robustness through real mounts: planted odd keys, two mounts of one volume, many
//! concurrent writers and readers within the memory budget.

mod common;

use std::time::Duration;

use bytes::Bytes;
use common::mount::{TestVolume, sha256_file};
use common::{ServerKind, random_bytes};
use s3cryptfs::store::ObjectStore;

on_both_servers!(
    planted_odd_keys_do_not_break_the_mount,
    two_mounts_see_each_other
);

async fn planted_odd_keys_do_not_break_the_mount(kind: ServerKind) {
    let v = TestVolume::new(kind, "odd-keys", "vol").await;
    let m = v.mount(&[]);
    std::fs::write(m.join("good"), b"good file").unwrap();
    // Keys no POSIX name can show, and one as long as S3 allows (less the prefixes).
    let long = format!("d/{}", "k".repeat(400));
    // As long as S3 allows: 1024 bytes with the volume prefix `vol/`. Garage's metadata store
    // (LMDB) refuses keys that long (503, "MDB_BAD_VALSIZE"), so there it is 420 bytes.
    let longest_len = if kind == ServerKind::Moto { 1024 } else { 420 };
    let longest = format!("e/{}", "k".repeat(longest_len - "vol/e/".len()));
    for key in [
        "a//b",
        "../x",
        "./y",
        ".",
        "..",
        "trailing space ",
        "dir//",
        &long,
        &longest,
    ] {
        v.store
            .put(key, Bytes::from_static(b"planted"), &Default::default())
            .await
            .unwrap();
    }
    drop(m);
    let m = v.mount(&[]);
    let mut names: Vec<String> = std::fs::read_dir(m.path())
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().to_string())
        .collect();
    names.sort();
    // `.`, `..`, `../x` and `./y` never show; `a//b` and `dir//` show their first component.
    assert_eq!(names, ["a", "d", "dir", "e", "good", "trailing space "]);
    // Planted plaintext objects are shown but never read as data.
    let err = std::fs::read(m.join("trailing space ")).unwrap_err();
    assert_eq!(err.raw_os_error(), Some(libc::EIO));
    // `a//b` has an empty component: `a` lists nothing it cannot show.
    assert_eq!(std::fs::read_dir(m.join("a")).unwrap().count(), 0);
    assert_eq!(
        std::fs::read_dir(m.join("d")).unwrap().count(),
        0,
        "a 400-byte name is hidden"
    );
    assert_eq!(std::fs::read_dir(m.join("e")).unwrap().count(), 0);
    assert_eq!(
        std::fs::read(m.join("good")).unwrap(),
        b"good file",
        "the mount stays up"
    );
}

/// A key with bytes that are not UTF-8, planted with a raw HTTP request (the SDK only sends
/// valid keys). moto accepts it and stores the bytes replaced by U+FFFD; the mount lists the
/// name, refuses its contents with EIO and stays up.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn invalid_utf8_key_planted_on_moto() {
    let v = TestVolume::new(ServerKind::Moto, "utf8", "vol").await;
    let m = v.mount(&[]);
    std::fs::write(m.join("good"), b"good file").unwrap();
    let url = format!("{}/{}/vol/bad%FF%FEname", v.server.endpoint, v.bucket);
    let out = std::process::Command::new("curl")
        .args(["-sS", "-o", "/dev/null", "-w", "%{http_code}", "-X", "PUT"])
        .args(["--data-binary", "planted"])
        // moto does not check signatures; the header only has to look like SigV4.
        .args(["-H", "Authorization: AWS4-HMAC-SHA256 Credential=testing/20260101/us-east-1/s3/aws4_request, SignedHeaders=host, Signature=00"])
        .arg(&url)
        .output()
        .unwrap();
    assert_eq!(
        String::from_utf8_lossy(&out.stdout),
        "200",
        "planting failed"
    );
    drop(m);
    let m = v.mount(&[]);
    let mut names: Vec<String> = std::fs::read_dir(m.path())
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().to_string())
        .collect();
    names.sort();
    assert_eq!(names.len(), 2, "{names:?}");
    let planted = names.iter().find(|n| n.starts_with("bad")).unwrap();
    let err = std::fs::read(m.join(planted)).unwrap_err();
    assert_eq!(err.raw_os_error(), Some(libc::EIO));
    assert!(m.log_text().contains("bad"), "a log line names the key");
    assert_eq!(std::fs::read(m.join("good")).unwrap(), b"good file");
}

async fn two_mounts_see_each_other(kind: ServerKind) {
    let v = TestVolume::new(kind, "two-mounts", "").await;
    let a = v.mount(&["--metadata-ttl", "1"]);
    let b = v.mount(&["--metadata-ttl", "1"]);
    std::fs::write(a.join("from-a"), b"written on host a").unwrap();
    assert!(std::fs::read_dir(b.path()).unwrap().count() <= 1);
    // After the TTL, b sees a's committed file (and its contents).
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    while !b.join("from-a").exists() {
        assert!(std::time::Instant::now() < deadline, "b never saw a's file");
        std::thread::sleep(Duration::from_millis(200));
    }
    assert_eq!(
        std::fs::read(b.join("from-a")).unwrap(),
        b"written on host a"
    );
    // A new version written on b is what a reads once its attributes expire.
    std::fs::write(b.join("from-a"), b"replaced on host b").unwrap();
    std::thread::sleep(Duration::from_millis(1500));
    assert_eq!(
        std::fs::read(a.join("from-a")).unwrap(),
        b"replaced on host b"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sixty_four_writers_and_readers_within_budget() {
    let v = TestVolume::new(ServerKind::Garage, "load", "").await;
    let m = v.mount(&["--max-upload-memory", "128M"]);
    let src = tempfile::tempdir().unwrap();
    let files: Vec<(String, std::path::PathBuf)> = (0..64)
        .map(|i| {
            let name = format!("f{i:02}");
            let size = 100_000 + i * 97_000 + if i % 8 == 0 { 9 << 20 } else { 0 };
            let path = src.path().join(&name);
            std::fs::write(&path, random_bytes(size, 1000 + i as u64)).unwrap();
            (name, path)
        })
        .collect();
    let pid = m.pid();
    let rss_kib = move || -> u64 {
        std::fs::read_to_string(format!("/proc/{pid}/status"))
            .unwrap_or_default()
            .lines()
            .find_map(|l| l.strip_prefix("VmRSS:"))
            .and_then(|v| v.trim().trim_end_matches(" kB").parse().ok())
            .unwrap_or(0)
    };
    let peak = std::sync::atomic::AtomicU64::new(0);
    let done = std::sync::atomic::AtomicBool::new(false);
    std::thread::scope(|s| {
        s.spawn(|| {
            while !done.load(std::sync::atomic::Ordering::Relaxed) {
                peak.fetch_max(rss_kib(), std::sync::atomic::Ordering::Relaxed);
                std::thread::sleep(Duration::from_millis(20));
            }
        });
        let workers: Vec<_> = files
            .iter()
            .map(|(name, local)| {
                let target = m.join(name);
                s.spawn(move || {
                    std::fs::copy(local, &target).unwrap();
                    assert_eq!(
                        sha256_file(&target),
                        sha256_file(local),
                        "{}",
                        target.display()
                    );
                })
            })
            .collect();
        for w in workers {
            w.join().unwrap();
        }
        done.store(true, std::sync::atomic::Ordering::Relaxed);
    });
    let peak_mib = peak.load(std::sync::atomic::Ordering::Relaxed) / 1024;
    println!("64 writers/readers: daemon peak RSS {peak_mib} MiB (upload budget 128 MiB)");
    // Budget + the read cache (64 MiB) + read-ahead (32 MiB) + the runtime: well under this.
    assert!(peak_mib < 128 + 64 + 32 + 200, "peak RSS {peak_mib} MiB");
    assert!(v.store.list_uploads("").await.unwrap().is_empty());
}
