//! Two mounts of one volume saving the same name (the filesystem core over the in-memory
//! store): no save overwrites, unseen, what the other mount saved. Both versions are kept,
//! one under `name.conflict-<host>-<time>` (or close() fails with --on-conflict=error),
//! whether the store enforces conditional writes or ignores them (then HEADs check).

mod common;

use std::ffi::OsStr;

use common::in_process::{Core, Settings};
use s3cryptfs::fs::ROOT_INO;
use s3cryptfs::store::{ConditionSupport, ObjectStore};
use s3cryptfs::upload::OnConflict;

/// Runs `test` with the store enforcing conditions and ignoring them, with plain and
/// encrypted names.
macro_rules! on_both_stores {
    ($($test:ident),* $(,)?) => {
        $(
            mod $test {
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn enforced_plain_names() {
                    super::$test(super::Store::Enforces, false).await;
                }
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn enforced_encrypted_names() {
                    super::$test(super::Store::Enforces, true).await;
                }
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn ignored_plain_names() {
                    super::$test(super::Store::Ignores, false).await;
                }
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn ignored_encrypted_names() {
                    super::$test(super::Store::Ignores, true).await;
                }
            }
        )*
    };
}

on_both_stores!(
    two_creates_of_one_name_keep_both,
    two_changes_of_one_file_keep_both,
    a_replacement_over_an_unseen_save_keeps_both,
    a_save_after_a_removal_elsewhere_is_kept,
    a_large_new_file_keeps_both,
    the_error_policy_fails_close_and_overwrites_nothing,
    saves_of_one_mount_in_turn_are_not_conflicts,
    three_mounts_on_one_host_keep_all_three,
);

#[derive(Clone, Copy, PartialEq, Eq)]
enum Store {
    Enforces,
    Ignores,
}

/// Mounts A ("host-a") and B ("host-b") of one new volume.
async fn two_mounts(store: Store, encrypt_names: bool, policy: OnConflict) -> (Core, Core) {
    let mut settings = Settings {
        encrypt_names,
        on_conflict: policy,
        ..Settings::default()
    };
    if store == Store::Ignores {
        settings.conditions = ConditionSupport::default();
    }
    let a = Core::with(settings.clone()).await;
    if store == Store::Ignores {
        // As Garage: conditions ignored, and uploads end when their key is written.
        a.memory.ignore_conditions();
        a.memory.drop_uploads_on_overwrite();
    }
    let b = a
        .another_mount_with(Settings {
            host: "host-b".to_string(),
            ..settings
        })
        .await;
    (a, b)
}

fn path(name: &str) -> Vec<String> {
    vec![name.to_string()]
}

/// Names in the root, sorted.
async fn names(core: &Core) -> Vec<String> {
    let mut names: Vec<String> = core
        .list(&[])
        .await
        .unwrap()
        .into_iter()
        .map(|e| e.name)
        .collect();
    names.sort();
    names
}

/// The one conflict copy of `name` that `host` made, and its contents.
async fn conflict_copy(core: &Core, name: &str, host: &str) -> Vec<u8> {
    let prefix = format!("{name}.conflict-{host}-");
    let found: Vec<String> = names(core)
        .await
        .into_iter()
        .filter(|n| n.starts_with(&prefix))
        .collect();
    assert_eq!(found.len(), 1, "one conflict copy by {host}: {found:?}");
    core.read_all(&path(&found[0]), 131072).await.unwrap()
}

async fn create(core: &Core, name: &str) -> (u64, u64) {
    let (attr, fh) = core
        .fs
        .create(ROOT_INO, OsStr::new(name), 0o644, Core::caller())
        .await
        .unwrap();
    (attr.ino, fh)
}

async fn open(core: &Core, name: &str, flags: i32) -> (u64, u64) {
    let attr = core.resolve(&path(name)).await.unwrap();
    let fh = core
        .fs
        .open(attr.ino, flags, std::process::id())
        .await
        .unwrap();
    (attr.ino, fh)
}

async fn write(core: &Core, fh: u64, offset: u64, data: &[u8]) {
    assert_eq!(
        core.fs.write(fh, offset, data).await.unwrap() as usize,
        data.len()
    );
}

async fn two_creates_of_one_name_keep_both(store: Store, encrypt_names: bool) {
    let (a, b) = two_mounts(store, encrypt_names, OnConflict::KeepBoth).await;
    let (ino_a, fh_a) = create(&a, "f").await;
    write(&a, fh_a, 0, b"written on A").await;
    let (ino_b, fh_b) = create(&b, "f").await;
    write(&b, fh_b, 0, b"written on B").await;
    b.close(ino_b, fh_b, Ok(())).await.unwrap();
    // A closes second: its close succeeds, and B's file is not overwritten.
    a.close(ino_a, fh_a, Ok(())).await.unwrap();
    let mut fresh = b.another_mount().await;
    fresh.remount().await;
    assert_eq!(
        fresh.read_all(&path("f"), 131072).await.unwrap(),
        b"written on B"
    );
    assert_eq!(conflict_copy(&fresh, "f", "host-a").await, b"written on A");
    // A sees both too, and what is under the name is B's.
    assert_eq!(
        a.read_all(&path("f"), 131072).await.unwrap(),
        b"written on B"
    );
    assert_eq!(conflict_copy(&a, "f", "host-a").await, b"written on A");
    assert_eq!(names(&fresh).await.len(), 2);
}

async fn two_changes_of_one_file_keep_both(store: Store, encrypt_names: bool) {
    let (a, b) = two_mounts(store, encrypt_names, OnConflict::KeepBoth).await;
    a.write_new(&path("log"), &[b"line 1\n".to_vec()])
        .await
        .unwrap();
    // Each mount appends a line to the version it opened.
    let (ino_a, fh_a) = open(&a, "log", libc::O_WRONLY).await;
    let (ino_b, fh_b) = open(&b, "log", libc::O_WRONLY).await;
    write(&a, fh_a, 7, b"from A\n").await;
    write(&b, fh_b, 7, b"from B\n").await;
    b.close(ino_b, fh_b, Ok(())).await.unwrap();
    a.close(ino_a, fh_a, Ok(())).await.unwrap();
    let mut fresh = b.another_mount().await;
    fresh.remount().await;
    assert_eq!(
        fresh.read_all(&path("log"), 131072).await.unwrap(),
        b"line 1\nfrom B\n"
    );
    assert_eq!(
        conflict_copy(&fresh, "log", "host-a").await,
        b"line 1\nfrom A\n"
    );
}

async fn a_replacement_over_an_unseen_save_keeps_both(store: Store, encrypt_names: bool) {
    let (a, b) = two_mounts(store, encrypt_names, OnConflict::KeepBoth).await;
    a.write_new(&path("f"), &[b"first".to_vec()]).await.unwrap();
    // A knows the first version; B replaces it; A, not having seen that, replaces it too.
    a.resolve(&path("f")).await.unwrap();
    b.write_new(&path("f"), &[b"B's version".to_vec()])
        .await
        .unwrap();
    let (ino, fh) = open(&a, "f", libc::O_WRONLY | libc::O_TRUNC).await;
    write(&a, fh, 0, b"A's version").await;
    a.close(ino, fh, Ok(())).await.unwrap();
    let fresh = b.another_mount().await;
    assert_eq!(
        fresh.read_all(&path("f"), 131072).await.unwrap(),
        b"B's version"
    );
    assert_eq!(conflict_copy(&fresh, "f", "host-a").await, b"A's version");
}

async fn a_save_after_a_removal_elsewhere_is_kept(store: Store, encrypt_names: bool) {
    let (a, b) = two_mounts(store, encrypt_names, OnConflict::KeepBoth).await;
    a.write_new(&path("f"), &[b"old".to_vec()]).await.unwrap();
    let (ino, fh) = open(&a, "f", libc::O_WRONLY).await;
    write(&a, fh, 0, b"new").await;
    b.resolve(&path("f")).await.unwrap();
    b.unlink(&path("f")).await.unwrap();
    a.close(ino, fh, Ok(())).await.unwrap();
    let fresh = b.another_mount().await;
    // The removal stands, and A's change is not lost.
    assert!(!names(&fresh).await.contains(&"f".to_string()));
    assert_eq!(conflict_copy(&fresh, "f", "host-a").await, b"new");
}

/// A new file large enough for a multipart upload. Where uploads survive a write of their
/// key (S3, moto), the upload cannot be completed under another name: the version found
/// under its name is kept aside, and the new file takes the name. Where they do not
/// (Garage), the upload ran under a hidden key and is copied to the conflict name, as a
/// small file's PUT would go.
async fn a_large_new_file_keeps_both(store: Store, encrypt_names: bool) {
    let (a, b) = two_mounts(store, encrypt_names, OnConflict::KeepBoth).await;
    let big: Vec<u8> = (0..20u32 << 20).map(|i| (i % 251) as u8).collect();
    let (ino, fh) = create(&a, "big").await;
    for (i, chunk) in big.chunks(1 << 20).enumerate() {
        write(&a, fh, (i << 20) as u64, chunk).await;
    }
    b.write_new(&path("big"), &[b"B was first".to_vec()])
        .await
        .unwrap();
    a.close(ino, fh, Ok(())).await.unwrap();
    let fresh = b.another_mount().await;
    let (under_name, aside) = match store {
        Store::Enforces => (big.clone(), b"B was first".to_vec()),
        Store::Ignores => (b"B was first".to_vec(), big.clone()),
    };
    assert!(fresh.read_all(&path("big"), 1 << 20).await.unwrap() == under_name);
    assert!(conflict_copy(&fresh, "big", "host-a").await == aside);
    assert!(a.read_all(&path("big"), 1 << 20).await.unwrap() == under_name);
    assert!(a.memory.list_uploads("").await.unwrap().is_empty());
    assert_eq!(
        names(&fresh).await.len(),
        2,
        "nothing else, nothing hidden shown"
    );
    assert!(
        !a.memory.keys().iter().any(|k| k.contains("pending")),
        "no hidden upload left: {:?}",
        a.memory.keys()
    );
}

async fn the_error_policy_fails_close_and_overwrites_nothing(store: Store, encrypt_names: bool) {
    let (a, b) = two_mounts(store, encrypt_names, OnConflict::Error).await;
    let (ino, fh) = create(&a, "f").await;
    write(&a, fh, 0, b"A").await;
    b.write_new(&path("f"), &[b"B".to_vec()]).await.unwrap();
    assert_eq!(a.close(ino, fh, Ok(())).await, Err(libc::EIO));
    a.write_new(&path("g"), &[b"old".to_vec()]).await.unwrap();
    let (ino, fh) = open(&a, "g", libc::O_WRONLY).await;
    write(&a, fh, 0, b"new").await;
    b.write_new(&path("g"), &[b"B's g".to_vec()]).await.unwrap();
    assert_eq!(a.close(ino, fh, Ok(())).await, Err(libc::EIO));
    let fresh = b.another_mount().await;
    assert_eq!(names(&fresh).await, ["f", "g"]);
    assert_eq!(fresh.read_all(&path("f"), 131072).await.unwrap(), b"B");
    assert_eq!(fresh.read_all(&path("g"), 131072).await.unwrap(), b"B's g");
}

/// What one mount saves again and again, changes of attributes between, and what the other
/// mount saves after seeing it, are not conflicts.
async fn saves_of_one_mount_in_turn_are_not_conflicts(store: Store, encrypt_names: bool) {
    let (a, mut b) = two_mounts(store, encrypt_names, OnConflict::Error).await;
    a.write_new(&path("f"), &[b"1".to_vec()]).await.unwrap();
    a.write_new(&path("g_"), &[b"before".to_vec()])
        .await
        .unwrap();
    a.write_at(&path("f"), 1, b"2").await.unwrap();
    a.chmod(&path("f"), 0o600).await.unwrap();
    a.write_at(&path("f"), 2, b"3").await.unwrap();
    a.write_new(&path("f"), &[b"4".to_vec()]).await.unwrap();
    let (ino, fh) = open(&a, "f", libc::O_WRONLY).await;
    write(&a, fh, 1, b"5").await;
    a.fs.fsync(ino, fh).await.unwrap();
    write(&a, fh, 2, b"6").await;
    a.close(ino, fh, Ok(())).await.unwrap();
    // Two replacements at once in one mount: the one closed last is the file.
    let (ino_early, early) = open(&a, "g_", libc::O_WRONLY | libc::O_TRUNC).await;
    let (ino_late, late) = open(&a, "g_", libc::O_WRONLY | libc::O_TRUNC).await;
    write(&a, late, 0, b"closed last").await;
    write(&a, early, 0, b"closed first").await;
    a.close(ino_early, early, Ok(())).await.unwrap();
    a.close(ino_late, late, Ok(())).await.unwrap();
    assert_eq!(
        a.read_all(&path("g_"), 131072).await.unwrap(),
        b"closed last"
    );
    a.unlink(&path("g_")).await.unwrap();
    b.remount().await;
    assert_eq!(b.read_all(&path("f"), 131072).await.unwrap(), b"456");
    b.write_at(&path("f"), 3, b"7").await.unwrap();
    a.fs.wait_for_releases(std::time::Duration::from_secs(5))
        .await;
    let mut a = a;
    a.remount().await;
    a.write_at(&path("f"), 4, b"8").await.unwrap();
    assert_eq!(a.read_all(&path("f"), 131072).await.unwrap(), b"45678");
    assert_eq!(names(&a).await, ["f"]);
}

/// Mounts on one host that lose the same name in the same second each get a conflict name.
async fn three_mounts_on_one_host_keep_all_three(store: Store, encrypt_names: bool) {
    let (a, b) = two_mounts(store, encrypt_names, OnConflict::KeepBoth).await;
    let c = a.another_mount().await; // "host-a" too
    let (ino_a, fh_a) = create(&a, "f").await;
    let (ino_c, fh_c) = create(&c, "f").await;
    write(&a, fh_a, 0, b"A").await;
    write(&c, fh_c, 0, b"C").await;
    b.write_new(&path("f"), &[b"B".to_vec()]).await.unwrap();
    a.close(ino_a, fh_a, Ok(())).await.unwrap();
    c.close(ino_c, fh_c, Ok(())).await.unwrap();
    let fresh = b.another_mount().await;
    let all = names(&fresh).await;
    assert_eq!(all.len(), 3, "{all:?}");
    let mut kept = Vec::new();
    for name in &all {
        kept.push(fresh.read_all(&path(name), 131072).await.unwrap());
    }
    kept.sort();
    assert_eq!(kept, [b"A".to_vec(), b"B".to_vec(), b"C".to_vec()]);
    assert_eq!(fresh.read_all(&path("f"), 131072).await.unwrap(), b"B");
}
