//! Changing existing files through a real mount (issue #7): overwrite in the middle, append,
//! truncate down and up, sparse writes, each against the same operations on a local file,
//! and an fsx-style random checker with a printed seed, with remounts in between.

mod common;

use std::io::{Read, Seek, SeekFrom, Write};
use std::os::unix::fs::FileExt;

use common::ServerKind;
use common::mount::{Mount, TestVolume};
use s3cryptfs::store::ObjectStore;

on_both_servers!(
    edits_match_a_local_file,
    random_operations_match_a_local_file,
    descriptors_of_one_file_share_its_contents,
    a_file_renamed_while_changed_keeps_its_changes,
    the_staging_budget_is_shared_by_all_files,
    appends_send_only_the_new_bytes,
    older_formats_are_still_changed_in_place,
    tools_that_write_in_place_work,
    writes_after_fsync_continue_in_place,
    truncate_by_path_changes_the_file
);

fn open_rw(path: &std::path::Path) -> std::fs::File {
    std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open(path)
        .unwrap()
}

fn assert_same(m: &Mount, name: &str, local: &std::path::Path, what: &str) {
    let got = std::fs::read(m.join(name)).unwrap();
    let want = std::fs::read(local).unwrap();
    assert!(
        got == want,
        "{what}: {} bytes in the mount, {} locally",
        got.len(),
        want.len()
    );
}

async fn edits_match_a_local_file(kind: ServerKind) {
    let v = TestVolume::new(kind, "modify", "").await;
    let dir = tempfile::tempdir().unwrap();
    let local = dir.path().join("ref");
    let original = common::random_bytes(300_000, 41);
    std::fs::write(&local, &original).unwrap();
    let m = v.mount(&[]);
    std::fs::write(m.join("f"), &original).unwrap();

    // Overwrite in the middle, across a segment boundary.
    for path in [m.join("f"), local.clone()] {
        open_rw(&path).write_all_at(b"MIDDLE", 65_530).unwrap();
    }
    assert_same(&m, "f", &local, "overwrite");
    // Append, small and crossing segment boundaries.
    for data in [b"tail".to_vec(), common::random_bytes(70_000, 42)] {
        for path in [m.join("f"), local.clone()] {
            let mut f = std::fs::OpenOptions::new()
                .append(true)
                .open(&path)
                .unwrap();
            f.write_all(&data).unwrap();
        }
        assert_same(&m, "f", &local, "append");
    }
    // Truncate down, up (zeros), to zero, then a sparse write past the end.
    for len in [100_000u64, 250_000, 0] {
        for path in [m.join("f"), local.clone()] {
            open_rw(&path).set_len(len).unwrap();
        }
        assert_same(&m, "f", &local, &format!("truncate to {len}"));
    }
    for path in [m.join("f"), local.clone()] {
        open_rw(&path).write_all_at(b"far out", 200_000).unwrap();
    }
    assert_same(&m, "f", &local, "sparse write");
    // `dd conv=notrunc` into the middle.
    let out = std::process::Command::new("dd")
        .args([
            "if=/dev/zero",
            "bs=4096",
            "count=3",
            "seek=5",
            "conv=notrunc",
        ])
        .arg(format!("of={}", m.join("f").display()))
        .output()
        .unwrap();
    assert!(out.status.success());
    open_rw(&local)
        .write_all_at(&[0u8; 3 * 4096], 5 * 4096)
        .unwrap();
    assert_same(&m, "f", &local, "dd conv=notrunc");
    assert_eq!(m.unmount(), Some(0));
    let m = v.mount(&[]);
    assert_same(&m, "f", &local, "after remount");
}

async fn random_operations_match_a_local_file(kind: ServerKind) {
    let seed = 0xf5c0_0001_u64 ^ kind as u64;
    println!("seed {seed:#x}");
    let v = TestVolume::new(kind, "fsx", "").await;
    let dir = tempfile::tempdir().unwrap();
    let local = dir.path().join("ref");
    std::fs::write(&local, common::random_bytes(100_000, seed)).unwrap();
    let mut m = v.mount(&[]);
    std::fs::copy(&local, m.join("f")).unwrap();
    let mut x = seed | 1;
    let mut next = move || {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        x
    };
    let ops = if kind == ServerKind::Moto { 300 } else { 1000 };
    let mut remote = open_rw(&m.join("f"));
    let mut reference = open_rw(&local);
    for op in 0..ops {
        let size = reference.metadata().unwrap().len();
        match next() % 10 {
            0..=2 => {
                let offset = next() % (size + 70_000);
                let data = common::random_bytes((next() % 70_000) as usize + 1, next());
                remote.write_all_at(&data, offset).unwrap();
                reference.write_all_at(&data, offset).unwrap();
            }
            3 => {
                let data = common::random_bytes((next() % 10_000) as usize + 1, next());
                remote.seek(SeekFrom::End(0)).unwrap();
                remote.write_all(&data).unwrap();
                reference.seek(SeekFrom::End(0)).unwrap();
                reference.write_all(&data).unwrap();
            }
            4 => {
                let len = next() % (size + 100_000);
                remote.set_len(len).unwrap();
                reference.set_len(len).unwrap();
            }
            5 if op % 50 == 0 => {
                // Close (commit), sometimes remount, and reopen.
                drop(remote);
                if next() % 3 == 0 {
                    assert_eq!(m.unmount(), Some(0));
                    m = v.mount(&[]);
                }
                remote = open_rw(&m.join("f"));
            }
            _ => {
                let offset = next() % (size + 1);
                let len = (next() % 100_000) as usize;
                let mut a = vec![0u8; len];
                let mut b = vec![0u8; len];
                remote.seek(SeekFrom::Start(offset)).unwrap();
                reference.seek(SeekFrom::Start(offset)).unwrap();
                let na = read_full(&mut remote, &mut a);
                let nb = read_full(&mut reference, &mut b);
                assert_eq!(na, nb, "op {op}: read length at {offset}, seed {seed:#x}");
                assert!(
                    a[..na] == b[..nb],
                    "op {op}: bytes at {offset}, seed {seed:#x}"
                );
            }
        }
    }
    drop(remote);
    assert_eq!(m.unmount(), Some(0));
    let m = v.mount(&[]);
    assert_same(
        &m,
        "f",
        &local,
        &format!("after {ops} operations, seed {seed:#x}"),
    );
}

fn read_full(f: &mut std::fs::File, buf: &mut [u8]) -> usize {
    let mut n = 0;
    while n < buf.len() {
        match f.read(&mut buf[n..]).unwrap() {
            0 => break,
            k => n += k,
        }
    }
    n
}

/// Two writers and a reader of one file in one mount see one set of contents, as on a local
/// disk (the last write of a byte wins); two writers replacing a file (O_TRUNC): the one
/// closed last is the file.
async fn descriptors_of_one_file_share_its_contents(kind: ServerKind) {
    let v = TestVolume::new(kind, "shared", "").await;
    let dir = tempfile::tempdir().unwrap();
    let local = dir.path().join("ref");
    let original = common::random_bytes(200_000, 51);
    std::fs::write(&local, &original).unwrap();
    let m = v.mount(&[]);
    std::fs::write(m.join("f"), &original).unwrap();

    let (first, second) = (open_rw(&m.join("f")), open_rw(&m.join("f")));
    let (local_first, local_second) = (open_rw(&local), open_rw(&local));
    for (f, l, at, fill) in [
        (&first, &local_first, 70_000, b'a'),
        (&second, &local_second, 100_000, b'b'),
        (&first, &local_first, 150_000, b'c'),
        (&second, &local_second, 199_990, b'd'),
    ] {
        let data = vec![fill; 40_000];
        f.write_all_at(&data, at).unwrap();
        l.write_all_at(&data, at).unwrap();
    }
    // Each descriptor reads what both wrote, and so does a reader opened now.
    let want = std::fs::read(&local).unwrap();
    let mut got = vec![0u8; want.len() + 10];
    let n = read_full_at(&first, &mut got);
    assert!(
        n == want.len() && got[..n] == want[..],
        "first writer reads both"
    );
    let n = read_full_at(&second, &mut got);
    assert!(
        n == want.len() && got[..n] == want[..],
        "second writer reads both"
    );
    let read = std::fs::read(m.join("f")).unwrap();
    assert!(read == want, "a reader sees the contents being written");
    drop(first);
    drop(second);
    assert_same(&m, "f", &local, "after both closed");

    // Two replacements at once: the last closed wins. (Another file: descriptors opened
    // while "f" is still being changed in place, its release being asynchronous, would
    // share its contents instead, where the last write wins.)
    std::fs::write(m.join("g"), b"before").unwrap();
    let mut early = std::fs::File::create(m.join("g")).unwrap();
    let mut late = std::fs::File::create(m.join("g")).unwrap();
    late.write_all(b"closed last").unwrap();
    early.write_all(b"closed first, lost").unwrap();
    drop(early);
    drop(late);
    assert_eq!(std::fs::read(m.join("g")).unwrap(), b"closed last");
    assert_eq!(m.unmount(), Some(0));

    let m = v.mount(&[]);
    assert_same(&m, "f", &local, "after a remount");
    assert_eq!(std::fs::read(m.join("g")).unwrap(), b"closed last");
    assert_eq!(v.store.list_uploads("").await.unwrap().len(), 0);
}

/// A rename between two writes of a file changed in place: the saved version carries every
/// change, under the new name only.
async fn a_file_renamed_while_changed_keeps_its_changes(kind: ServerKind) {
    let v = TestVolume::new(kind, "renamed", "").await;
    let mut want = common::random_bytes(100_000, 61);
    let m = v.mount(&[]);
    std::fs::write(m.join("old"), &want).unwrap();
    let f = open_rw(&m.join("old"));
    f.write_all_at(b"before", 10).unwrap();
    std::fs::rename(m.join("old"), m.join("new")).unwrap();
    f.write_all_at(b"after", 90_000).unwrap();
    drop(f);
    want[10..16].copy_from_slice(b"before");
    want[90_000..90_005].copy_from_slice(b"after");
    assert!(std::fs::read(m.join("new")).unwrap() == want);
    assert!(!m.join("old").exists());
    assert_eq!(m.unmount(), Some(0));
    let m = v.mount(&[]);
    assert!(std::fs::read(m.join("new")).unwrap() == want);
    assert!(!m.join("old").exists());
    assert!(v.store.head(&v.key("old").await).await.is_err());
}

/// `--max-cache-size` bounds the staging copies of all files together: a second file that
/// does not fit gets ENOSPC and a log line, and fits once the first is closed.
async fn the_staging_budget_is_shared_by_all_files(kind: ServerKind) {
    let v = TestVolume::new(kind, "budget", "").await;
    let m = v.mount(&["--max-cache-size", "300K"]);
    let (a, b) = (
        common::random_bytes(200_000, 71),
        common::random_bytes(200_000, 72),
    );
    std::fs::write(m.join("a"), &a).unwrap();
    std::fs::write(m.join("b"), &b).unwrap();
    let first = open_rw(&m.join("a"));
    first.write_all_at(b"x", 5).unwrap();
    let second = open_rw(&m.join("b"));
    let err = second.write_all_at(b"y", 5).unwrap_err();
    assert_eq!(err.raw_os_error(), Some(libc::ENOSPC), "{err}");
    assert!(
        m.log_text().contains("--max-cache-size"),
        "{}",
        m.log_text()
    );
    drop(first);
    // The first file's staging copy goes with its release, which the kernel sends just
    // after close() returns.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    while let Err(e) = second.write_all_at(b"y", 5) {
        assert_eq!(e.raw_os_error(), Some(libc::ENOSPC), "{e}");
        assert!(
            std::time::Instant::now() < deadline,
            "the budget was never given back"
        );
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    drop(second);
    let (mut a, mut b) = (a, b);
    a[5] = b'x';
    b[5] = b'y';
    assert!(std::fs::read(m.join("a")).unwrap() == a);
    assert!(std::fs::read(m.join("b")).unwrap() == b);
}

fn read_full_at(f: &std::fs::File, buf: &mut [u8]) -> usize {
    let mut done = 0;
    while done < buf.len() {
        match f.read_at(&mut buf[done..], done as u64).unwrap() {
            0 => break,
            n => done += n,
        }
    }
    done
}

/// On a format-2 volume, appending to a large file keeps its ciphertext in the bucket (copied
/// server-side) and sends the appended bytes: about one part each way, not the whole file.
/// Later changes of other kinds still work on the appended file.
async fn appends_send_only_the_new_bytes(kind: ServerKind) {
    let v = TestVolume::new(kind, "append", "").await;
    let metrics = common::free_loopback_addr();
    let m = v.mount(&["--metrics-addr", &metrics]);
    let size = 24 << 20;
    let mut want = common::random_bytes(size, 81);
    std::fs::write(m.join("big"), &want).unwrap();
    let traffic = || {
        (
            common::metric(&metrics, "s3cryptfs_bytes_uploaded_total"),
            common::metric(&metrics, "s3cryptfs_bytes_downloaded_total"),
        )
    };
    let copies_before = m.requests("UploadPartCopy");
    for (round, len) in [(0u64, 1 << 20), (1, 70_000), (2, 3)] {
        let data = common::random_bytes(len, 90 + round);
        let (up, down) = traffic();
        let started = std::time::Instant::now();
        let mut f = std::fs::OpenOptions::new()
            .append(true)
            .open(m.join("big"))
            .unwrap();
        f.write_all(&data).unwrap();
        drop(f);
        let (up2, down2) = traffic();
        println!(
            "append of {len} bytes to {} bytes: {:.1} MiB up, {:.1} MiB down, {:?}",
            want.len(),
            (up2 - up) / 1048576.0,
            (down2 - down) / 1048576.0,
            started.elapsed()
        );
        want.extend_from_slice(&data);
        // Part 1 (header and the first 5 MiB, fetched and sent again), the old last segment
        // and the new bytes; the other ~19 MiB are copied by the server.
        assert!(up2 - up < (8 << 20) as f64, "sent {} bytes", up2 - up);
        assert!(
            down2 - down < (8 << 20) as f64,
            "fetched {} bytes",
            down2 - down
        );
    }
    assert!(m.requests("UploadPartCopy") >= copies_before + 3);
    let got = std::fs::read(m.join("big")).unwrap();
    assert!(
        got == want,
        "{} bytes read back, {} expected",
        got.len(),
        want.len()
    );
    // A write inside the file after the appends: the whole file is staged and rewritten.
    let f = open_rw(&m.join("big"));
    f.write_all_at(b"inside", 1000).unwrap();
    drop(f);
    want[1000..1006].copy_from_slice(b"inside");
    assert_eq!(m.unmount(), Some(0));
    let m = v.mount(&[]);
    let got = std::fs::read(m.join("big")).unwrap();
    assert!(
        got == want,
        "after remount: {} bytes, {} expected",
        got.len(),
        want.len()
    );
    assert!(v.store.list_uploads("").await.unwrap().is_empty());
}

/// Volumes made in object formats 1 and 2 (by earlier builds) are read and changed as
/// before: appends rewrite a format-1 file (format 1 cannot keep its ciphertext) and keep a
/// format-2 file's, and what is written stays in the volume's format.
async fn older_formats_are_still_changed_in_place(kind: ServerKind) {
    for format in [1u8, 2] {
        let v = TestVolume::older_format(kind, format, &format!("format{format}"), "").await;
        let m = v.mount(&[]);
        // Past 10 MiB, so a format-2 append keeps the ciphertext it has.
        let mut want = common::random_bytes(11 << 20, 101);
        std::fs::write(m.join("f"), &want).unwrap();
        let mut f = std::fs::OpenOptions::new()
            .append(true)
            .open(m.join("f"))
            .unwrap();
        f.write_all(b"appended").unwrap();
        drop(f);
        want.extend_from_slice(b"appended");
        assert!(
            std::fs::read(m.join("f")).unwrap() == want,
            "format {format}"
        );
        let f = open_rw(&m.join("f"));
        f.write_all_at(b"middle", 100_000).unwrap();
        drop(f);
        want[100_000..100_006].copy_from_slice(b"middle");
        assert!(
            std::fs::read(m.join("f")).unwrap() == want,
            "format {format}"
        );
        assert_eq!(m.unmount(), Some(0));
        let m = v.mount(&[]);
        assert!(
            std::fs::read(m.join("f")).unwrap() == want,
            "format {format}"
        );
        let raw = v
            .store
            .get_range(&v.key("f").await, 0..5, None)
            .await
            .unwrap();
        assert_eq!(
            &raw.body.collect().await.unwrap()[..],
            &[b'S', b'3', b'C', b'F', format]
        );
        drop(m);
    }
}

fn sh(cmd: &mut std::process::Command) -> String {
    let out = cmd.output().unwrap();
    assert!(
        out.status.success(),
        "{cmd:?} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap()
}

/// SQLite (a new database, then changes to it, then after a remount), `rsync --inplace`
/// and `sed -i`, through the mount.
async fn tools_that_write_in_place_work(kind: ServerKind) {
    use std::process::Command;
    let v = TestVolume::new(kind, "tools", "").await;
    let m = v.mount(&[]);
    let db = m.join("app.db");
    let script = r#"
import sqlite3, sys
db = sqlite3.connect(sys.argv[1])
db.execute("create table if not exists t (k integer primary key, v text)")
for batch in range(5):
    with db:
        db.executemany("insert into t (v) values (?)", [("x" * (k % 300),) for k in range(400)])
with db:
    db.execute("update t set v = 'changed' where k % 7 = 0")
    db.execute("delete from t where k % 11 = 0")
print(db.execute("select count(*), sum(length(v)) from t").fetchone())
db.close()
"#;
    let first = sh(Command::new("python3").args(["-c", script]).arg(&db));
    // A second session changes the existing database in place.
    let second = sh(Command::new("python3").args(["-c", script]).arg(&db));
    assert_ne!(first, second);
    let query = r#"
import sqlite3, sys
db = sqlite3.connect(sys.argv[1])
print(db.execute("pragma integrity_check").fetchone()[0])
print(db.execute("select count(*), sum(length(v)) from t").fetchone())
"#;
    let before = sh(Command::new("python3").args(["-c", query]).arg(&db));
    assert!(before.starts_with("ok\n"), "{before}");

    // rsync --inplace: only the changed blocks are written, into the existing file.
    let dir = tempfile::tempdir().unwrap();
    let local = dir.path().join("data");
    let mut data = common::random_bytes(3_000_000, 111);
    std::fs::write(&local, &data).unwrap();
    std::fs::write(m.join("data"), &data).unwrap();
    data[1_500_000..1_500_010].copy_from_slice(b"0123456789");
    data.extend_from_slice(b"and a tail");
    std::fs::write(&local, &data).unwrap();
    sh(Command::new("rsync")
        .args(["--inplace", "--no-whole-file", "-I"])
        .arg(&local)
        .arg(m.join("data")));
    assert!(std::fs::read(m.join("data")).unwrap() == data);

    // sed -i writes a new file and renames it over the old one.
    std::fs::write(m.join("conf"), "name = old\nsize = 1\n").unwrap();
    sh(Command::new("sed")
        .args(["-i", "s/old/new/"])
        .arg(m.join("conf")));
    assert_eq!(
        std::fs::read_to_string(m.join("conf")).unwrap(),
        "name = new\nsize = 1\n"
    );

    assert_eq!(m.unmount(), Some(0));
    let m = v.mount(&[]);
    let after = sh(Command::new("python3")
        .args(["-c", query])
        .arg(m.join("app.db")));
    assert_eq!(after, before);
    assert!(std::fs::read(m.join("data")).unwrap() == data);
}

/// A new file fsync'd (saved) and then written again through the same descriptor: the
/// later writes change the saved version in place (any offset), saved at close.
async fn writes_after_fsync_continue_in_place(kind: ServerKind) {
    let v = TestVolume::new(kind, "fsynced", "").await;
    let m = v.mount(&[]);
    let mut f = std::fs::File::create(m.join("f")).unwrap();
    f.write_all(&[b'a'; 100_000]).unwrap();
    f.sync_all().unwrap();
    // Saved: another mount sees it now.
    assert!(v.store.head(&v.key("f").await).await.unwrap().size > 0);
    f.write_all_at(b"header", 0).unwrap();
    f.set_len(50_000).unwrap();
    f.seek(SeekFrom::End(0)).unwrap();
    f.write_all(b"end").unwrap();
    drop(f);
    let mut want = vec![b'a'; 50_000];
    want[..6].copy_from_slice(b"header");
    want.extend_from_slice(b"end");
    assert!(std::fs::read(m.join("f")).unwrap() == want);
    assert_eq!(m.unmount(), Some(0));
    let m = v.mount(&[]);
    assert!(std::fs::read(m.join("f")).unwrap() == want);
}

/// truncate(2) by path, with no descriptor open: down, then up with zeros, saved at once.
async fn truncate_by_path_changes_the_file(kind: ServerKind) {
    let v = TestVolume::new(kind, "pathtrunc", "").await;
    let m = v.mount(&[]);
    let data = common::random_bytes(150_000, 121);
    std::fs::write(m.join("f"), &data).unwrap();
    let truncate = |len: u64| {
        let path =
            std::ffi::CString::new(m.join("f").into_os_string().into_encoded_bytes()).unwrap();
        // SAFETY: `path` is a NUL-terminated CString that outlives the call.
        let rc = unsafe { libc::truncate(path.as_ptr(), len as libc::off_t) };
        assert_eq!(rc, 0);
    };
    truncate(70_000);
    assert!(std::fs::read(m.join("f")).unwrap() == data[..70_000]);
    truncate(90_000);
    let mut want = data[..70_000].to_vec();
    want.resize(90_000, 0);
    assert!(std::fs::read(m.join("f")).unwrap() == want);
    assert_eq!(m.unmount(), Some(0));
    let m = v.mount(&[]);
    assert!(std::fs::read(m.join("f")).unwrap() == want);
}
