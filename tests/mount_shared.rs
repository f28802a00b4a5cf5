//! Several mounts of one volume through the kernel, on both servers: creates of one name,
//! changes of one file, a save against a removal, four mounts at once. Every run ends with
//! each writer's bytes under the name or under a conflict name beside it, nothing partial,
//! and no upload left open. (moto enforces conditional writes; Garage ignores them, and the
//! mounts check with HEAD requests instead: docs/SEMANTICS.md, "Several mounts on one
//! volume".)

mod common;

use std::collections::BTreeSet;
use std::io::Write;
use std::path::Path;

use common::ServerKind;
use common::mount::{Mount, TestVolume, stderr};
use s3cryptfs::store::ObjectStore;

on_both_servers!(
    two_mounts_creating_one_name_keep_both,
    two_mounts_appending_to_one_file_lose_no_line,
    a_save_after_a_removal_on_another_mount_is_kept,
    four_mounts_saving_one_name_keep_all_four,
    the_error_policy_fails_close,
    a_save_after_a_rename_on_another_mount_is_kept,
    an_open_file_never_mixes_two_versions,
    fsck_lists_possible_lost_updates_until_forgotten,
);

/// Mount options of every mount here: always ask the bucket (`--metadata-ttl 0`).
const SHARED: &[&str] = &["--metadata-ttl", "0"];

/// The names in the mount's root, and each file's contents.
fn contents(m: &Mount) -> Vec<(String, Vec<u8>)> {
    let mut all: Vec<(String, Vec<u8>)> = std::fs::read_dir(m.path())
        .unwrap()
        .map(|e| {
            let e = e.unwrap();
            let name = e.file_name().into_string().unwrap();
            (name, std::fs::read(e.path()).unwrap())
        })
        .collect();
    all.sort();
    all
}

/// Names of `name`'s conflict copies in the mount's root.
fn conflicts_of(m: &Mount, name: &str) -> Vec<String> {
    let prefix = format!("{name}.conflict-");
    contents(m)
        .into_iter()
        .map(|(n, _)| n)
        .filter(|n| n.starts_with(&prefix))
        .collect()
}

/// Opened and written, left open for the caller to close (close's result is checked).
fn open_and_write(path: &Path, append: bool, data: &[u8]) -> std::fs::File {
    let mut f = if append {
        std::fs::OpenOptions::new().append(true).open(path).unwrap()
    } else {
        std::fs::File::create(path).unwrap()
    };
    f.write_all(data).unwrap();
    f
}

/// close(2), with its result (Rust's File ignores it).
fn close(f: std::fs::File) -> std::io::Result<()> {
    use std::os::fd::IntoRawFd;
    let fd = f.into_raw_fd();
    // SAFETY: `fd` was just taken out of its File: we own it and close it once.
    if unsafe { libc::close(fd) } != 0 {
        return Err(std::io::Error::last_os_error());
    }
    Ok(())
}

/// Nothing partial and nothing pending left in the bucket: fsck (every leftover counted as
/// stale) finds every object whole and nothing to repair.
async fn nothing_left_open(v: &TestVolume) {
    assert!(v.store.list_uploads("").await.unwrap().is_empty());
    let out = v.cli(
        &["fsck", &v.location(), "--stale-after", "0", "--key-file"],
        &[&v.key_file],
    );
    let report = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{report}{}", stderr(&out));
    assert!(report.contains("uploads: 0 stale, 0 aborted"), "{report}");
}

async fn two_mounts_creating_one_name_keep_both(kind: ServerKind) {
    let v = TestVolume::new(kind, "shared-create", "").await;
    let (a, b) = (v.mount(SHARED), v.mount(SHARED));
    let on_a = open_and_write(&a.join("report"), false, b"written on A\n");
    let on_b = open_and_write(&b.join("report"), false, b"written on B\n");
    close(on_b).unwrap();
    close(on_a).unwrap();
    assert!(
        a.log_text().contains("conflict name"),
        "a warning names both"
    );
    let fresh = v.mount(&[]);
    let all = contents(&fresh);
    assert_eq!(all.len(), 2, "{all:?}");
    assert_eq!(
        std::fs::read(fresh.join("report")).unwrap(),
        b"written on B\n"
    );
    let kept = conflicts_of(&fresh, "report");
    assert_eq!(
        std::fs::read(fresh.join(&kept[0])).unwrap(),
        b"written on A\n"
    );
    // `ls` on the mount that lost shows both at once.
    assert_eq!(conflicts_of(&a, "report"), kept);
    nothing_left_open(&v).await;
}

async fn two_mounts_appending_to_one_file_lose_no_line(kind: ServerKind) {
    let v = TestVolume::new(kind, "shared-append", "").await;
    let (a, b) = (v.mount(SHARED), v.mount(SHARED));
    std::fs::write(a.join("log"), b"line 1\n").unwrap();
    let on_a = open_and_write(&a.join("log"), true, b"from A\n");
    let on_b = open_and_write(&b.join("log"), true, b"from B\n");
    close(on_a).unwrap();
    close(on_b).unwrap();
    let fresh = v.mount(&[]);
    assert_eq!(
        std::fs::read(fresh.join("log")).unwrap(),
        b"line 1\nfrom A\n"
    );
    let kept = conflicts_of(&fresh, "log");
    assert_eq!(kept.len(), 1, "{kept:?}");
    assert_eq!(
        std::fs::read(fresh.join(&kept[0])).unwrap(),
        b"line 1\nfrom B\n"
    );
    nothing_left_open(&v).await;
}

/// Mount A changes "f" (open for writing, "old" → "new"); while it is open, `on_b` acts on
/// the name through mount B; then A closes (which must succeed). The volume, as a fresh
/// mount sees it: names and contents, sorted.
async fn a_change_while_b_acts(
    v: &TestVolume,
    on_b: impl FnOnce(&Mount),
) -> Vec<(String, Vec<u8>)> {
    let (a, b) = (v.mount(SHARED), v.mount(SHARED));
    std::fs::write(a.join("f"), b"old").unwrap();
    let mut on_a = std::fs::OpenOptions::new()
        .write(true)
        .open(a.join("f"))
        .unwrap();
    on_a.write_all(b"new").unwrap();
    on_b(&b);
    close(on_a).unwrap();
    contents(&v.mount(&[]))
}

async fn a_save_after_a_removal_on_another_mount_is_kept(kind: ServerKind) {
    let v = TestVolume::new(kind, "shared-remove", "").await;
    let all = a_change_while_b_acts(&v, |b| std::fs::remove_file(b.join("f")).unwrap()).await;
    assert_eq!(all.len(), 1, "the removal stands: {all:?}");
    assert!(all[0].0.starts_with("f.conflict-"));
    assert_eq!(all[0].1, b"new");
    nothing_left_open(&v).await;
}

/// Four mounts write one name at once, small files and one large (multipart) file, then
/// close one after another: four versions, one under the name.
async fn four_mounts_saving_one_name_keep_all_four(kind: ServerKind) {
    let v = TestVolume::new(kind, "shared-four", "").await;
    let mounts: Vec<Mount> = (0..4).map(|_| v.mount(SHARED)).collect();
    let large: Vec<u8> = common::random_bytes(12 << 20, 4);
    let bodies: Vec<Vec<u8>> = (0..4)
        .map(|i| {
            if i == 2 {
                large.clone()
            } else {
                format!("version of mount {i}\n").into_bytes()
            }
        })
        .collect();
    let files: Vec<std::fs::File> = mounts
        .iter()
        .zip(&bodies)
        .map(|(m, body)| open_and_write(&m.join("shared"), false, body))
        .collect();
    for (f, m) in files.into_iter().zip(&mounts) {
        if let Err(e) = close(f) {
            panic!("close: {e}; the mount's log:\n{}", m.log_text());
        }
    }
    let fresh = v.mount(&[]);
    let all = contents(&fresh);
    assert_eq!(
        all.len(),
        4,
        "{:?}",
        all.iter().map(|(n, _)| n).collect::<Vec<_>>()
    );
    let kept: BTreeSet<Vec<u8>> = all.into_iter().map(|(_, body)| body).collect();
    assert_eq!(kept, bodies.iter().cloned().collect::<BTreeSet<_>>());
    nothing_left_open(&v).await;
}

async fn the_error_policy_fails_close(kind: ServerKind) {
    let v = TestVolume::new(kind, "shared-error", "").await;
    let a = v.mount(&["--metadata-ttl", "0", "--on-conflict", "error"]);
    let b = v.mount(SHARED);
    let on_a = open_and_write(&a.join("f"), false, b"A");
    std::fs::write(b.join("f"), b"B").unwrap();
    let err = close(on_a).unwrap_err();
    assert_eq!(err.raw_os_error(), Some(libc::EIO));
    let fresh = v.mount(&[]);
    assert_eq!(contents(&fresh), [("f".to_string(), b"B".to_vec())]);
    nothing_left_open(&v).await;
}

async fn a_save_after_a_rename_on_another_mount_is_kept(kind: ServerKind) {
    let v = TestVolume::new(kind, "shared-rename", "").await;
    let all =
        a_change_while_b_acts(&v, |b| std::fs::rename(b.join("f"), b.join("g")).unwrap()).await;
    assert_eq!(all.len(), 2, "{all:?}");
    assert!(all[0].0.starts_with("f.conflict-"));
    assert_eq!(all[0].1, b"new");
    assert_eq!(all[1], ("g".to_string(), b"old".to_vec()));
    nothing_left_open(&v).await;
}

/// A file being changed on one mount while another replaces it: the descriptor reads its
/// own version (or fails), never the other mount's bytes. A small file is copied at the
/// first change; a large one appended to still reads the version it opened.
async fn an_open_file_never_mixes_two_versions(kind: ServerKind) {
    use std::os::unix::fs::FileExt;
    let v = TestVolume::new(kind, "shared-mix", "").await;
    let (a, b) = (v.mount(SHARED), v.mount(SHARED));
    for (name, len) in [("small", 200_000usize), ("large", 12 << 20)] {
        let first = common::random_bytes(len, 1);
        let second = common::random_bytes(len, 2);
        std::fs::write(a.join(name), &first).unwrap();
        let on_a = std::fs::OpenOptions::new()
            .read(true)
            .write(true)
            .open(a.join(name))
            .unwrap();
        // A small file is changed inside; a large one appended to.
        let at = if len < (10 << 20) { 100 } else { len as u64 };
        on_a.write_all_at(b"A's change", at).unwrap();
        std::fs::write(b.join(name), &second).unwrap();
        let mut mine = first.clone();
        mine.resize(mine.len().max(at as usize + 10), 0);
        mine[at as usize..at as usize + 10].copy_from_slice(b"A's change");
        let mut got = vec![0u8; mine.len()];
        match on_a.read_exact_at(&mut got, 0) {
            Ok(()) => assert!(got == mine, "{name}: the descriptor reads its own version"),
            Err(e) => assert!(
                e.raw_os_error() == Some(libc::EIO) || e.raw_os_error() == Some(libc::EAGAIN),
                "{name}: {e}"
            ),
        }
        let _ = close(on_a);
    }
    drop((a, b));
    nothing_left_open(&v).await;
}

/// A mount that found its save replaced at once (on a server that ignores conditional
/// writes; made in `upload::conflict`'s tests) leaves a record: fsck lists it and fails until
/// told to forget it.
async fn fsck_lists_possible_lost_updates_until_forgotten(kind: ServerKind) {
    let v = TestVolume::new(kind, "shared-lost", "").await;
    let mut facts = s3cryptfs::store::Metadata::new();
    facts.insert("key".to_string(), "report".to_string());
    facts.insert("saved".to_string(), "\"1111\"".to_string());
    facts.insert("found".to_string(), "\"2222\"".to_string());
    let record = ".s3cryptfs/lost-updates/1796300000-0011223344556677";
    v.store
        .put(record, bytes::Bytes::new(), &facts)
        .await
        .unwrap();
    let location = v.location();
    let fsck = |extra: &[&str]| {
        let mut args = vec!["fsck", location.as_str()];
        args.extend_from_slice(extra);
        args.push("--key-file");
        v.cli(&args, &[&v.key_file])
    };
    let out = fsck(&[]);
    let report = String::from_utf8_lossy(&out.stdout).to_string();
    assert!(!out.status.success(), "{report}");
    assert!(
        report.contains("LOST?    report: replaced by another mount"),
        "{report}"
    );
    assert!(report.contains("1 possible lost updates"), "{report}");
    let out = fsck(&["--forget-lost-updates"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stdout)
    );
    assert!(v.store.head(record).await.unwrap_err().is_not_found());
    assert!(fsck(&[]).status.success());
}
