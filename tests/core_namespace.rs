//! Namespace operations on the filesystem core over the in-memory store, with plain and
//! encrypted names: directories and their errors, renames of files and directories, odd and
//! long names, what another mount sees and when (`--metadata-ttl`, on paused tokio time).
//! The FUSE tests (mount_namespace.rs) keep what needs the kernel: its own checks of names
//! and flags, `mv`, hard links.

mod common;

use std::ffi::OsStr;
use std::time::Duration;

use bytes::Bytes;
use common::in_process::{Core, Settings};
use s3cryptfs::fs::ROOT_INO;
use s3cryptfs::store::ObjectStore;

fn path(text: &str) -> Vec<String> {
    text.split('/').map(str::to_string).collect()
}

fn names_of(entries: &[s3cryptfs::fs::DirEntry]) -> Vec<String> {
    entries.iter().map(|e| e.name.clone()).collect()
}

/// Runs `test` on a volume with plain names and on one with encrypted names.
macro_rules! with_both_name_modes {
    ($($test:ident),* $(,)?) => {
        $(
            mod $test {
                #[tokio::test(start_paused = true)]
                async fn plain_names() {
                    super::$test(false).await;
                }
                #[tokio::test(start_paused = true)]
                async fn encrypted_names() {
                    super::$test(true).await;
                }
            }
        )*
    };
}

with_both_name_modes!(
    directory_operations_and_their_errors,
    renames_of_files_and_directories,
    odd_and_long_names_survive_a_remount,
    another_mount_sees_changes_after_the_metadata_ttl,
    open_files_outlive_their_names,
    listings_give_every_kind_before_a_lookup,
    directory_times_move_with_their_entries,
);

/// A fresh mount's listing shows symlinks and special files with their kinds before any of
/// them was looked up (a listing alone cannot tell them from small regular files).
async fn listings_give_every_kind_before_a_lookup(encrypt_names: bool) {
    use s3cryptfs::fs::NodeKind;
    let mut core = Core::new(encrypt_names).await;
    core.mkdir(&path("d"), 0o755).await.unwrap();
    let d = core.resolve(&path("d")).await.unwrap().ino;
    let fs = core.fs.clone();
    fs.symlink(
        d,
        OsStr::new("link"),
        std::path::Path::new("target"),
        Core::caller(),
    )
    .await
    .unwrap();
    fs.mknod(
        d,
        OsStr::new("fifo"),
        libc::S_IFIFO | 0o644,
        0,
        Core::caller(),
    )
    .await
    .unwrap();
    fs.mknod(
        d,
        OsStr::new("sock"),
        libc::S_IFSOCK | 0o644,
        0,
        Core::caller(),
    )
    .await
    .unwrap();
    fs.mknod(
        d,
        OsStr::new("chr"),
        libc::S_IFCHR | 0o644,
        0x0103,
        Core::caller(),
    )
    .await
    .unwrap();
    core.write_new(&path("d/small"), &[b"tiny".to_vec()])
        .await
        .unwrap();
    core.write_new(&path("d/large"), &[vec![7u8; 20_000]])
        .await
        .unwrap();
    core.mkdir(&path("d/sub"), 0o755).await.unwrap();
    core.remount().await;
    // Listed without looking anything up in d (its listing is the first request there).
    let d = core.resolve(&path("d")).await.unwrap().ino;
    let dh = core.fs.opendir(d).await.unwrap();
    let listed = core.fs.readdir(dh).unwrap();
    core.fs.releasedir(d, dh);
    let mut kinds: Vec<(String, NodeKind)> = listed
        .iter()
        .filter(|e| e.name != "." && e.name != "..")
        .map(|e| (e.name.clone(), e.kind))
        .collect();
    kinds.sort_by(|a, b| a.0.cmp(&b.0));
    assert_eq!(
        kinds,
        [
            ("chr".to_string(), NodeKind::CharDevice),
            ("fifo".to_string(), NodeKind::Fifo),
            ("large".to_string(), NodeKind::File),
            ("link".to_string(), NodeKind::Symlink),
            ("small".to_string(), NodeKind::File),
            ("sock".to_string(), NodeKind::Socket),
            ("sub".to_string(), NodeKind::Dir),
        ]
    );
}

/// Adding, removing or renaming an entry moves the directory's mtime and ctime, as on a
/// local disk; a renamed directory's ctime moves too.
async fn directory_times_move_with_their_entries(encrypt_names: bool) {
    let core = Core::new(encrypt_names).await;
    core.mkdir(&path("a"), 0o755).await.unwrap();
    core.mkdir(&path("b"), 0o755).await.unwrap();
    let times = |attr: s3cryptfs::fs::Attr| (attr.mtime, attr.ctime);
    let mut last = times(core.resolve(&path("a")).await.unwrap());
    let mut moved = |what: &str, now: (std::time::SystemTime, std::time::SystemTime)| {
        assert!(
            now.0 > last.0 && now.1 > last.1,
            "{what}: {last:?} -> {now:?}"
        );
        last = now;
    };
    let pause = || std::thread::sleep(Duration::from_millis(2));
    pause();
    core.write_new(&path("a/f"), &[b"x".to_vec()])
        .await
        .unwrap();
    moved("create", times(core.resolve(&path("a")).await.unwrap()));
    pause();
    core.mkdir(&path("a/sub"), 0o755).await.unwrap();
    moved("mkdir", times(core.resolve(&path("a")).await.unwrap()));
    pause();
    core.rename(&path("a/f"), &path("a/g")).await.unwrap();
    moved(
        "rename within",
        times(core.resolve(&path("a")).await.unwrap()),
    );
    pause();
    let b_before = times(core.resolve(&path("b")).await.unwrap());
    let sub_before = core.resolve(&path("a/sub")).await.unwrap().ctime;
    core.rename(&path("a/sub"), &path("b/sub")).await.unwrap();
    moved("rename out", times(core.resolve(&path("a")).await.unwrap()));
    let b_after = times(core.resolve(&path("b")).await.unwrap());
    assert!(
        b_after.0 > b_before.0 && b_after.1 > b_before.1,
        "rename in"
    );
    assert!(core.resolve(&path("b/sub")).await.unwrap().ctime > sub_before);
    pause();
    core.unlink(&path("a/g")).await.unwrap();
    moved("unlink", times(core.resolve(&path("a")).await.unwrap()));
    pause();
    core.rmdir(&path("b/sub")).await.unwrap();
    let b_rmdir = times(core.resolve(&path("b")).await.unwrap());
    assert!(b_rmdir.0 > b_after.0, "rmdir");
    // A time set afterwards (`cp -a`, `rsync -t` on a directory they filled) is kept.
    let old = std::time::UNIX_EPOCH + Duration::from_secs(1_300_000_000);
    let a = core.resolve(&path("a")).await.unwrap().ino;
    let change = s3cryptfs::fs::AttrChange {
        mtime: Some(old),
        ..Default::default()
    };
    core.fs.setattr(a, change, None).await.unwrap();
    assert_eq!(core.resolve(&path("a")).await.unwrap().mtime, old);
}

async fn directory_operations_and_their_errors(encrypt_names: bool) {
    let mut core = Core::new(encrypt_names).await;
    core.mkdir(&path("d"), 0o755).await.unwrap();
    assert_eq!(core.mkdir(&path("d"), 0o755).await, Err(libc::EEXIST));
    let marker = core.key("d/").await;
    assert!(
        core.memory.object(&marker).is_some(),
        "an empty directory is a marker object ({marker})"
    );
    core.mkdir(&path("d/e"), 0o755).await.unwrap();
    core.mkdir(&path("d/e/f"), 0o755).await.unwrap();
    core.write_new(&path("d/e/f/file"), &[b"x".to_vec()])
        .await
        .unwrap();
    assert_eq!(core.rmdir(&path("d/e")).await, Err(libc::ENOTEMPTY));
    assert_eq!(core.unlink(&path("d/e")).await, Err(libc::EISDIR));
    assert_eq!(core.rmdir(&path("d/e/f/file")).await, Err(libc::ENOTDIR));
    assert_eq!(
        core.mkdir(&path("d/e/f/file/g"), 0o755).await,
        Err(libc::ENOTDIR)
    );
    core.unlink(&path("d/e/f/file")).await.unwrap();
    core.rmdir(&path("d/e/f")).await.unwrap();
    core.rmdir(&path("d/e")).await.unwrap();

    // A directory that is non-empty only in the bucket (written by someone else) is not
    // empty: rmdir asks the bucket, not this mount's listing.
    let elsewhere = core.key("d/from-elsewhere").await;
    core.memory
        .put(&elsewhere, Bytes::from_static(b"?"), &Default::default())
        .await
        .unwrap();
    assert_eq!(core.rmdir(&path("d")).await, Err(libc::ENOTEMPTY));
    core.memory.delete(&elsewhere).await.unwrap();
    core.rmdir(&path("d")).await.unwrap();
    assert_eq!(core.resolve(&path("d")).await.unwrap_err(), libc::ENOENT);
    assert!(
        core.memory.keys().iter().all(|k| !k.starts_with(&marker)),
        "nothing is left under the directory: {:?}",
        core.memory.keys()
    );

    core.write_new(&path("a"), &[b"a".to_vec()]).await.unwrap();
    core.remount().await;
    assert_eq!(names_of(&core.list(&[]).await.unwrap()), ["a"]);
}

async fn renames_of_files_and_directories(encrypt_names: bool) {
    let mut core = Core::new(encrypt_names).await;
    core.mkdir(&path("dir"), 0o755).await.unwrap();
    // Over one part (9 MiB; the first parts are 8 MiB at most by default): a multipart object, copied part by part.
    let big: Vec<u8> = (0..9 * 1024 * 1024).map(|i| (i % 253) as u8).collect();
    core.write_new(
        &path("big"),
        &big.chunks(1 << 20).map(<[u8]>::to_vec).collect::<Vec<_>>(),
    )
    .await
    .unwrap();
    core.write_new(&path("small"), &[b"small file".to_vec()])
        .await
        .unwrap();
    core.write_new(&path("victim"), &[b"will be replaced".to_vec()])
        .await
        .unwrap();

    core.rename(&path("small"), &path("dir/moved"))
        .await
        .unwrap();
    assert_eq!(
        core.resolve(&path("small")).await.unwrap_err(),
        libc::ENOENT
    );
    assert_eq!(
        core.read_all(&path("dir/moved"), 4096).await.unwrap(),
        b"small file"
    );
    core.rename(&path("big"), &path("victim")).await.unwrap();
    assert!(
        core.read_all(&path("victim"), 1 << 17).await.unwrap() == big,
        "the rename replaces its target"
    );
    let big_key = core.key("big").await;
    assert!(
        core.memory.object(&big_key).is_none(),
        "old name's object is gone"
    );

    // RENAME_NOREPLACE is honoured and leaves both files as they were.
    core.write_new(&path("other"), &[b"other".to_vec()])
        .await
        .unwrap();
    let refused = core
        .fs
        .rename(
            ROOT_INO,
            OsStr::new("other"),
            ROOT_INO,
            OsStr::new("victim"),
            true,
        )
        .await
        .unwrap_err();
    assert_eq!(refused.errno(), libc::EEXIST);
    assert!(core.read_all(&path("victim"), 1 << 17).await.unwrap() == big);

    // A file cannot replace a directory, nor a directory a file.
    assert_eq!(
        core.rename(&path("other"), &path("dir")).await,
        Err(libc::EISDIR)
    );
    assert_eq!(
        core.rename(&path("dir"), &path("other")).await,
        Err(libc::ENOTDIR)
    );
    // A directory cannot move into itself.
    assert_eq!(
        core.rename(&path("dir"), &path("dir/inside")).await,
        Err(libc::EINVAL)
    );

    // A directory renames in one step, with everything under it.
    core.write_new(&path("dir/second"), &[b"2".to_vec()])
        .await
        .unwrap();
    core.rename(&path("dir"), &path("dir2")).await.unwrap();
    assert_eq!(
        core.read_all(&path("dir2/moved"), 4096).await.unwrap(),
        b"small file"
    );
    assert_eq!(
        core.read_all(&path("dir2/second"), 4096).await.unwrap(),
        b"2"
    );
    assert_eq!(core.resolve(&path("dir")).await.unwrap_err(), libc::ENOENT);

    core.remount().await;
    assert_eq!(
        names_of(&core.list(&[]).await.unwrap()),
        ["dir2", "other", "victim"]
    );
    assert_eq!(
        names_of(&core.list(&path("dir2")).await.unwrap()),
        ["moved", "second"]
    );
    assert!(core.read_all(&path("victim"), 1 << 17).await.unwrap() == big);
}

/// Names that need care in S3 keys, URLs or listings.
const ODD_NAMES: [&str; 8] = [
    "with space",
    "ünïcödé ファイル",
    "hash#",
    "percent%41",
    "question?",
    "plus+sign",
    "back\\slash",
    "trailing space ",
];

async fn odd_and_long_names_survive_a_remount(encrypt_names: bool) {
    let mut core = Core::new(encrypt_names).await;
    let longest = "n".repeat(255);
    let mut names: Vec<&str> = ODD_NAMES.to_vec();
    names.push(&longest);
    for (i, name) in names.iter().enumerate() {
        core.write_new(&path(name), &[format!("content {i}").into_bytes()])
            .await
            .unwrap();
        if name.len() <= 253 {
            core.mkdir(&path(&format!("{name}.d")), 0o755)
                .await
                .unwrap();
        }
    }
    let too_long = "n".repeat(256);
    let refused = core
        .fs
        .create(ROOT_INO, OsStr::new(&too_long), 0o644, Core::caller())
        .await
        .unwrap_err();
    assert_eq!(refused.errno(), libc::ENAMETOOLONG);

    core.remount().await;
    let listed = names_of(&core.list(&[]).await.unwrap());
    for (i, name) in names.iter().enumerate() {
        assert!(
            listed.iter().any(|l| l == name),
            "{name} listed: {listed:?}"
        );
        assert_eq!(
            core.read_all(&path(name), 4096).await.unwrap(),
            format!("content {i}").as_bytes(),
            "{name}"
        );
    }
    let keys = core.memory.keys();
    if encrypt_names {
        for name in ["with space", "ünïcödé", "hash#", "question?"] {
            assert!(
                !keys.iter().any(|k| k.contains(name)),
                "{name} in the clear in {keys:?}"
            );
        }
    } else {
        assert!(
            keys.iter().any(|k| k == "ünïcödé ファイル"),
            "names are stored as they are: {keys:?}"
        );
    }
}

async fn another_mount_sees_changes_after_the_metadata_ttl(encrypt_names: bool) {
    let ttl = Duration::from_secs(30);
    let first = Core::with(Settings {
        encrypt_names,
        metadata_ttl: ttl,
        ..Settings::default()
    })
    .await;
    let second = first.another_mount().await;
    first
        .write_new(&path("shared"), &[b"version 1".to_vec()])
        .await
        .unwrap();
    assert_eq!(
        second.read_all(&path("shared"), 4096).await.unwrap(),
        b"version 1"
    );
    assert_eq!(
        second.resolve(&path("later")).await.unwrap_err(),
        libc::ENOENT,
        "remembered as missing"
    );
    first
        .write_new(&path("shared"), &[b"version 2, longer".to_vec()])
        .await
        .unwrap();
    first
        .write_new(&path("later"), &[b"new".to_vec()])
        .await
        .unwrap();

    // Within the TTL the second mount answers from what it learnt.
    tokio::time::advance(ttl / 2).await;
    assert_eq!(second.resolve(&path("shared")).await.unwrap().size, 9);
    assert_eq!(
        second.resolve(&path("later")).await.unwrap_err(),
        libc::ENOENT
    );
    // After it, it asks the bucket again.
    tokio::time::advance(ttl).await;
    assert_eq!(
        second.read_all(&path("shared"), 4096).await.unwrap(),
        b"version 2, longer"
    );
    assert_eq!(second.read_all(&path("later"), 4096).await.unwrap(), b"new");
    first.unlink(&path("later")).await.unwrap();
    tokio::time::advance(ttl * 2).await;
    assert_eq!(
        second.resolve(&path("later")).await.unwrap_err(),
        libc::ENOENT
    );
}

/// Hidden objects a core keeps for open descriptors of unlinked files, and multipart
/// uploads still open.
async fn leftovers(core: &Core) -> (Vec<String>, usize) {
    let pending = core
        .memory
        .keys()
        .into_iter()
        .filter(|k| k.contains(".s3cryptfs/pending/"))
        .collect();
    let uploads = core.memory.list_uploads("").await.unwrap().len();
    (pending, uploads)
}

/// Opens `path` with `flags`.
async fn open(core: &Core, path: &str, flags: i32) -> (u64, u64) {
    let attr = core.resolve(&self::path(path)).await.unwrap();
    let fh = core
        .fs
        .open(attr.ino, flags, std::process::id())
        .await
        .unwrap();
    (attr.ino, fh)
}

/// Up to `len` bytes from `offset` through the descriptor, in reads of 64 KiB as the kernel
/// makes them.
async fn read_through(core: &Core, fh: u64, offset: u64, len: u32) -> Vec<u8> {
    let mut out = Vec::new();
    while out.len() < len as usize {
        let want = (len - out.len() as u32).min(65536);
        let got = core
            .fs
            .read(fh, offset + out.len() as u64, want)
            .await
            .unwrap();
        if got.is_empty() {
            break;
        }
        out.extend_from_slice(&got);
    }
    out
}

/// As on a local disk: unlink and rename of an open file succeed at once, its descriptors
/// read and write on, what an unlinked file's descriptors write is saved nowhere, and what
/// was kept for them is gone at the last close.
async fn open_files_outlive_their_names(encrypt_names: bool) {
    let mut core = Core::new(encrypt_names).await;
    let body =
        |seed: u8, len: usize| -> Vec<u8> { (0..len).map(|i| (i % 251) as u8 ^ seed).collect() };
    // A reader of an unlinked file reads on (a hidden copy), past what it had cached.
    let r = body(1, 300_000);
    core.write_new(&path("read"), std::slice::from_ref(&r))
        .await
        .unwrap();
    let (ino, fh) = open(&core, "read", libc::O_RDONLY).await;
    assert_eq!(read_through(&core, fh, 0, 65536).await, r[..65536]);
    core.unlink(&path("read")).await.unwrap();
    assert_eq!(core.resolve(&path("read")).await.unwrap_err(), libc::ENOENT);
    assert!(!names_of(&core.list(&[]).await.unwrap()).contains(&"read".into()));
    assert!(core.memory.object(&core.key("read").await).is_none());
    assert_eq!(read_through(&core, fh, 65536, 300_000).await, r[65536..]);
    let stat = core.fs.getattr(ino).await.unwrap();
    assert_eq!(stat.size, r.len() as u64, "fstat of the unlinked file");
    assert_eq!(stat.nlink, 0, "no name links to it any more");
    assert_eq!(
        leftovers(&core).await.0.len(),
        1,
        "one hidden copy while open"
    );
    core.fs.release(ino, fh).await;
    assert_eq!(
        leftovers(&core).await,
        (vec![], 0),
        "the last close removes it"
    );

    // A reader of a renamed file reads on under the new name.
    let a = body(2, 200_000);
    core.write_new(&path("a"), std::slice::from_ref(&a))
        .await
        .unwrap();
    let (ino, fh) = open(&core, "a", libc::O_RDONLY).await;
    core.mkdir(&path("d"), 0o755).await.unwrap();
    core.rename(&path("a"), &path("d/b")).await.unwrap();
    assert_eq!(read_through(&core, fh, 0, 300_000).await, a);
    core.fs.release(ino, fh).await;

    // A rename over an open file: its reader keeps the old contents, a new open gets the new.
    let old = body(3, 150_000);
    core.write_new(&path("target"), std::slice::from_ref(&old))
        .await
        .unwrap();
    let (ino, fh) = open(&core, "target", libc::O_RDONLY).await;
    core.write_new(&path("new"), &[b"the new contents".to_vec()])
        .await
        .unwrap();
    core.rename(&path("new"), &path("target")).await.unwrap();
    assert_eq!(read_through(&core, fh, 0, 200_000).await, old);
    assert_eq!(
        core.read_all(&path("target"), 4096).await.unwrap(),
        b"the new contents"
    );
    core.fs.release(ino, fh).await;
    assert_eq!(leftovers(&core).await, (vec![], 0));

    // A new file being written, unlinked: writes and close succeed, nothing is saved, and
    // the parts already sent (over one part) are aborted.
    let (attr, fh) = core
        .fs
        .create(ROOT_INO, OsStr::new("w"), 0o644, Core::caller())
        .await
        .unwrap();
    let chunk = body(4, 1 << 20);
    for i in 0..10u64 {
        core.fs.write(fh, i << 20, &chunk).await.unwrap();
    }
    core.unlink(&path("w")).await.unwrap();
    core.fs
        .write(fh, 10 << 20, b"after the unlink")
        .await
        .unwrap();
    core.close(attr.ino, fh, Ok(())).await.unwrap();
    assert!(core.memory.object(&core.key("w").await).is_none());
    assert_eq!(leftovers(&core).await, (vec![], 0), "nothing left of w");

    // A temporary file: created, unlinked, written, read back through its descriptor.
    let (attr, fh) = core
        .fs
        .create(ROOT_INO, OsStr::new("tmp"), 0o600, Core::caller())
        .await
        .unwrap();
    core.unlink(&path("tmp")).await.unwrap();
    core.fs.write(fh, 0, b"scratch data").await.unwrap();
    assert_eq!(read_through(&core, fh, 0, 100).await, b"scratch data");
    core.fs.write(fh, 0, b"SCRATCH").await.unwrap();
    assert_eq!(read_through(&core, fh, 0, 100).await, b"SCRATCH data");
    core.close(attr.ino, fh, Ok(())).await.unwrap();
    assert_eq!(leftovers(&core).await, (vec![], 0), "nothing left of tmp");

    // A file changed in place, unlinked: its descriptor sees its changes, nothing is saved.
    let m = body(5, 100_000);
    core.write_new(&path("m"), std::slice::from_ref(&m))
        .await
        .unwrap();
    let (ino, fh) = open(&core, "m", libc::O_RDWR).await;
    core.fs.write(fh, 10, b"changed").await.unwrap();
    core.unlink(&path("m")).await.unwrap();
    let mut want = m.clone();
    want[10..17].copy_from_slice(b"changed");
    assert_eq!(read_through(&core, fh, 0, 200_000).await, want);
    core.close(ino, fh, Ok(())).await.unwrap();
    assert!(core.memory.object(&core.key("m").await).is_none());
    assert_eq!(leftovers(&core).await, (vec![], 0));

    core.remount().await;
    let names = names_of(&core.list(&[]).await.unwrap());
    assert_eq!(names, ["d", "target"], "after a remount");
    assert_eq!(core.read_all(&path("d/b"), 4096).await.unwrap(), a);
}

/// An empty file closed a moment ago is saved by its release, after close() returned (vim's
/// swap file); an unlink that comes meanwhile waits for that save, or the file would come
/// back after its removal (and vim would find a stale swap file next time).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unlink_during_the_release_of_a_closed_file_is_not_undone() {
    use s3cryptfs::store::fault::{Action, Op};
    let core = Core::new(false).await;
    let (attr, fh) = core
        .fs
        .create(ROOT_INO, OsStr::new("swap"), 0o600, Core::caller())
        .await
        .unwrap();
    core.fs.flush(fh, std::process::id()).await.unwrap();
    core.faults
        .on(Op::Put, 0, Action::Delay(Duration::from_millis(300)));
    let release = tokio::spawn(core.fs.release(attr.ino, fh));
    tokio::time::sleep(Duration::from_millis(50)).await; // the release's PUT is on its way
    core.unlink(&path("swap")).await.unwrap();
    release.await.unwrap();
    assert_eq!(core.resolve(&path("swap")).await.unwrap_err(), libc::ENOENT);
    let key = core.key("swap").await;
    assert!(
        core.memory.object(&key).is_none(),
        "the save did not land after the unlink"
    );
}

/// A volume with a directory `d` of `n` files `d/f000`…, each of `size(i)` bytes (more than
/// a symlink can hold: a listing does not ask about them), freshly mounted.
async fn core_with_large_files(n: usize, size: impl Fn(usize) -> usize) -> Core {
    let mut core = Core::new(false).await;
    core.mkdir(&path("d"), 0o755).await.unwrap();
    for i in 0..n {
        core.write_new(&path(&format!("d/f{i:03}")), &[vec![b'x'; size(i)]])
            .await
            .unwrap();
    }
    core.remount().await;
    core
}

/// A walk over a listed directory (`ls -l`: a lookup of each entry in order) finds the
/// attributes read ahead: from the second lookup on, HEADs for up to 128 entries ahead are
/// asked for, in batches, and every entry is asked about once.
#[tokio::test(start_paused = true)]
async fn a_walk_reads_attributes_ahead_once_each() {
    use s3cryptfs::store::fault::Op;
    let n = 300;
    let core = core_with_large_files(n, |_| 5000).await;
    core.list(&path("d")).await.unwrap();
    let lookups_before = core.faults.calls(Op::Head);
    let lookups = |core: &Core| core.faults.calls(Op::Head) - lookups_before;
    for i in 0..2 {
        core.resolve(&path(&format!("d/f{i:03}"))).await.unwrap();
    }
    tokio::time::sleep(Duration::from_millis(10)).await;
    let ahead = lookups(&core);
    assert!(
        (100..=130).contains(&ahead),
        "{ahead} lookups after two: the next 128 are read ahead"
    );
    for i in 2..150 {
        core.resolve(&path(&format!("d/f{i:03}"))).await.unwrap();
    }
    tokio::time::sleep(Duration::from_millis(10)).await;
    let ahead = lookups(&core);
    assert!(
        ahead >= 150 + 64,
        "{ahead} lookups after 150: at least 64 still ahead of the walk"
    );
    for i in 150..n {
        core.resolve(&path(&format!("d/f{i:03}"))).await.unwrap();
    }
    tokio::time::sleep(Duration::from_millis(10)).await;
    assert_eq!(lookups(&core), n, "each entry asked about once");
}

/// Lookups in a walk are answered from the attributes read ahead without waiting (the FUSE
/// adapter then replies on its own thread): the same answers as a lookup that waits, no
/// request of their own, and no answer made up for names whose HEAD has not come back.
#[tokio::test(start_paused = true)]
async fn a_walk_is_answered_from_attributes_read_ahead() {
    use s3cryptfs::store::fault::Op;
    let n = 200;
    let core = core_with_large_files(n, |i| 5000 + i).await;
    let dir = core.resolve(&path("d")).await.unwrap().ino;
    core.list(&path("d")).await.unwrap();
    let name = |i: usize| format!("f{i:03}");
    assert!(
        core.fs.lookup_now(dir, OsStr::new(&name(0))).is_none(),
        "nothing read ahead before the walk starts: the lookup has to ask"
    );
    core.resolve(&path("d/f000")).await.unwrap();
    core.resolve(&path("d/f001")).await.unwrap();
    tokio::time::sleep(Duration::from_millis(10)).await;
    let heads = core.faults.calls(Op::Head);
    for i in 2..100 {
        let attr = core
            .fs
            .lookup_now(dir, OsStr::new(&name(i)))
            .unwrap_or_else(|| panic!("{} read ahead, but not answered", name(i)))
            .unwrap();
        assert_eq!(attr.size, 5000 + i as u64, "{}", name(i));
        assert_eq!(attr.kind, s3cryptfs::fs::NodeKind::File);
        let waited = core
            .resolve(&path(&format!("d/{}", name(i))))
            .await
            .unwrap();
        assert_eq!((waited.ino, waited.size), (attr.ino, attr.size));
    }
    assert_eq!(
        core.faults.calls(Op::Head),
        heads,
        "no request of their own"
    );
    assert!(
        core.fs.lookup_now(dir, OsStr::new(&name(n - 1))).is_none(),
        "not read ahead yet: the lookup has to wait for its HEAD"
    );
    let missing = core.fs.lookup_now(dir, OsStr::new("nope")).unwrap();
    assert_eq!(
        missing.unwrap_err().errno(),
        libc::ENOENT,
        "the listing says"
    );
}

/// READDIRPLUS hands the kernel the attributes this mount has at hand (the small files
/// HEADed when the directory was opened) without counting them as steps of a walk: a
/// program that only lists (`ls`, `find`) makes no HEAD of the directory's other entries.
/// The same answers given to lookups (`ls -l`) are a walk, and read the others ahead.
#[tokio::test(start_paused = true)]
async fn entries_handed_over_with_a_listing_are_not_a_walk() {
    use s3cryptfs::store::fault::Op;
    let mut core = Core::new(false).await;
    for dir in ["listed", "walked"] {
        core.mkdir(&path(dir), 0o755).await.unwrap();
        for i in 0..4 {
            let small = vec![b's'; 100 + i];
            core.write_new(&path(&format!("{dir}/a{i}")), &[small])
                .await
                .unwrap();
        }
        for i in 0..50 {
            core.write_new(&path(&format!("{dir}/b{i:02}")), &[vec![b'x'; 5000]])
                .await
                .unwrap();
        }
    }
    core.remount().await;
    answer_small_entries(&core, "listed", false).await;
    let heads = core.faults.calls(Op::Head);
    tokio::time::sleep(Duration::from_millis(10)).await;
    assert_eq!(
        core.faults.calls(Op::Head),
        heads,
        "nothing read ahead for a listing"
    );
    answer_small_entries(&core, "walked", true).await;
    let walked = core.faults.calls(Op::Head);
    tokio::time::sleep(Duration::from_millis(10)).await;
    let ahead = core.faults.calls(Op::Head) - walked;
    assert!(
        ahead >= 40,
        "{ahead} HEADs: a walk reads the other entries ahead"
    );
}

/// Lists `dir`, then answers for its small files `a0`…`a3` without waiting, as READDIRPLUS
/// (`walk` false) or as lookups (`walk` true) would; its large file `b00` is not known.
async fn answer_small_entries(core: &Core, dir: &str, walk: bool) {
    let ino = core.resolve(&path(dir)).await.unwrap().ino;
    core.list(&path(dir)).await.unwrap();
    for i in 0..4 {
        let name = format!("a{i}");
        let answer = if walk {
            core.fs.lookup_now(ino, OsStr::new(&name))
        } else {
            core.fs.entry_attrs_now(ino, OsStr::new(&name))
        };
        let attr = answer.expect("HEADed when listed").unwrap();
        assert_eq!(attr.size, 100 + i as u64, "{dir}/{name}");
    }
    let large = core.fs.entry_attrs_now(ino, OsStr::new("b00"));
    assert!(large.is_none(), "{dir}/b00: not known without a request");
}

/// The names of a listing, without `.` and `..`.
fn names_listed(entries: Vec<s3cryptfs::fs::DirEntry>) -> Vec<String> {
    entries
        .into_iter()
        .map(|e| e.name)
        .filter(|n| n != "." && n != "..")
        .collect()
}

/// A walk that descends (`ls -lR`, `find`) finds the next directories listed ahead: opening
/// one subdirectory of a walked directory starts the LISTs of the next two, and opening
/// those costs no LIST of its own. A listing started ahead is not used once this mount
/// changed that directory.
#[tokio::test]
async fn a_descending_walk_finds_the_next_directories_listed_ahead() {
    use s3cryptfs::store::fault::Op;
    let mut core = Core::new(false).await;
    core.mkdir(&path("p"), 0o755).await.unwrap();
    for i in 0..5 {
        core.mkdir(&path(&format!("p/s{i}")), 0o755).await.unwrap();
        core.write_new(&path(&format!("p/s{i}/f")), &[b"x".to_vec()])
            .await
            .unwrap();
    }
    core.remount().await;
    core.list(&path("p")).await.unwrap();
    for i in 0..5 {
        core.resolve(&path(&format!("p/s{i}"))).await.unwrap();
    }
    let lists_before = core.faults.calls(Op::List);
    let lists = |core: &Core| core.faults.calls(Op::List) - lists_before;
    assert_eq!(names_listed(core.list(&path("p/s0")).await.unwrap()), ["f"]);
    tokio::time::sleep(Duration::from_millis(50)).await;
    assert_eq!(lists(&core), 3, "s0, and s1 and s2 ahead");
    assert_eq!(names_listed(core.list(&path("p/s1")).await.unwrap()), ["f"]);
    tokio::time::sleep(Duration::from_millis(50)).await;
    assert_eq!(lists(&core), 4, "s1 was listed ahead; s3 is now");
    core.write_new(&path("p/s2/new"), &[b"y".to_vec()])
        .await
        .unwrap();
    let s2 = names_listed(core.list(&path("p/s2")).await.unwrap());
    assert_eq!(s2, ["f", "new"], "the listing made ahead missed the change");
}

/// `ls -lR` looks at the files of a directory before it descends into the next: opening a
/// subdirectory in such a walk reads its entries' attributes ahead at once, instead of after
/// its first two lookups, and the walker's lookups there then ask nothing. A walk that looks
/// only at directories (`find -name`) reads nothing ahead when it enters one.
#[tokio::test(start_paused = true)]
async fn a_walk_that_looks_at_files_reads_ahead_in_each_directory_it_enters() {
    use s3cryptfs::store::fault::Op;
    let mut core = Core::new(false).await;
    core.mkdir(&path("p"), 0o755).await.unwrap();
    for f in ["a", "b"] {
        core.write_new(&path(&format!("p/{f}")), &[vec![b'x'; 5000]])
            .await
            .unwrap();
    }
    for i in 0..2 {
        core.mkdir(&path(&format!("p/s{i}")), 0o755).await.unwrap();
        for j in 0..10 {
            core.write_new(&path(&format!("p/s{i}/f{j}")), &[vec![b'x'; 5000]])
                .await
                .unwrap();
        }
    }
    let heads_during = |core: &Core, before: usize| core.faults.calls(Op::Head) - before;

    // find -name: the directories are looked up, the files are not.
    core.remount().await;
    core.list(&path("p")).await.unwrap();
    for dir in ["p/s0", "p/s1"] {
        core.resolve(&path(dir)).await.unwrap();
    }
    let before = core.faults.calls(Op::Head);
    assert_eq!(
        names_listed(core.list(&path("p/s0")).await.unwrap()).len(),
        10
    );
    tokio::time::sleep(Duration::from_millis(10)).await;
    assert_eq!(heads_during(&core, before), 0, "find asks about no file");

    // ls -lR: every entry of p is looked up before s0 is opened.
    core.remount().await;
    core.list(&path("p")).await.unwrap();
    for name in ["p/a", "p/b", "p/s0", "p/s1"] {
        core.resolve(&path(name)).await.unwrap();
    }
    let before = core.faults.calls(Op::Head);
    assert_eq!(
        names_listed(core.list(&path("p/s0")).await.unwrap()).len(),
        10
    );
    tokio::time::sleep(Duration::from_millis(10)).await;
    assert_eq!(
        heads_during(&core, before),
        10,
        "opening s0 reads all its entries ahead"
    );
    for j in 0..10 {
        let attr = core.resolve(&path(&format!("p/s0/f{j}"))).await.unwrap();
        assert_eq!(attr.size, 5000);
    }
    assert_eq!(
        heads_during(&core, before),
        10,
        "the lookups found their attributes read ahead"
    );
}

/// A tree whose files are all in subdirectories (`ls -lR` of a tree of datasets): the walk
/// looked at no file of the parent, but at those of the directory it came from, and the
/// next directory's entries are read ahead as it is opened. A walk that did not look at the
/// files of the directory before (`find -name`) reads nothing ahead.
#[tokio::test(start_paused = true)]
async fn a_walk_that_looked_at_the_files_of_the_last_directory_reads_ahead_in_the_next() {
    use s3cryptfs::store::fault::Op;
    let mut core = Core::new(false).await;
    core.mkdir(&path("q"), 0o755).await.unwrap();
    for i in 0..3 {
        core.mkdir(&path(&format!("q/s{i}")), 0o755).await.unwrap();
        for j in 0..10 {
            core.write_new(&path(&format!("q/s{i}/f{j}")), &[vec![b'x'; 5000]])
                .await
                .unwrap();
        }
    }
    for looks_at_files in [false, true] {
        core.remount().await;
        core.list(&path("q")).await.unwrap();
        for i in 0..3 {
            core.resolve(&path(&format!("q/s{i}"))).await.unwrap();
        }
        core.list(&path("q/s0")).await.unwrap();
        if looks_at_files {
            for j in 0..10 {
                core.resolve(&path(&format!("q/s0/f{j}"))).await.unwrap();
            }
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
        let before = core.faults.calls(Op::Head);
        assert_eq!(
            names_listed(core.list(&path("q/s1")).await.unwrap()).len(),
            10
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
        let ahead = core.faults.calls(Op::Head) - before;
        let expected = if looks_at_files { 10 } else { 0 };
        assert_eq!(
            ahead, expected,
            "read ahead in s1 (files of s0 looked at: {looks_at_files})"
        );
    }
}

/// `ls DIR` of a directory not listed yet costs one LIST: the lookup that had to LIST the
/// name to find it is a directory keeps that page as its listing, unless this mount changes
/// the directory first, or the page was not all of it.
#[tokio::test]
async fn a_directory_found_by_a_list_is_not_listed_again() {
    use s3cryptfs::store::fault::Op;
    let mut core = Core::new(false).await;
    for dir in ["p", "q", "r"] {
        core.mkdir(&path(dir), 0o755).await.unwrap();
        core.write_new(&path(&format!("{dir}/f")), &[b"x".to_vec()])
            .await
            .unwrap();
    }
    core.remount().await;
    let before = core.faults.calls(Op::List);
    assert_eq!(names_listed(core.list(&path("p")).await.unwrap()), ["f"]);
    assert_eq!(
        core.faults.calls(Op::List) - before,
        1,
        "the LIST of the lookup is the listing"
    );

    core.resolve(&path("q")).await.unwrap();
    core.write_new(&path("q/new"), &[b"y".to_vec()])
        .await
        .unwrap();
    assert_eq!(
        names_listed(core.list(&path("q")).await.unwrap()),
        ["f", "new"],
        "a page older than a change made here is not used"
    );

    // Past one page (1000 entries), the lookup's page is not the whole directory.
    let r_key = core.key("r/").await;
    for i in 0..1001 {
        core.memory
            .put(
                &format!("{r_key}x{i:04}"),
                Bytes::from_static(b"not ours"),
                &s3cryptfs::store::Metadata::new(),
            )
            .await
            .unwrap();
    }
    core.remount().await;
    let before = core.faults.calls(Op::List);
    core.list(&path("r")).await.unwrap();
    assert!(
        core.faults.calls(Op::List) - before >= 3,
        "one page for the lookup, then the listing's two"
    );
}

/// A single lookup after a listing (`ls`, then `cat` of one file) is not a walk: nothing is
/// read ahead. Asked as the FUSE adapter asks: first without waiting, then waiting.
#[tokio::test(start_paused = true)]
async fn one_lookup_after_a_listing_reads_nothing_ahead() {
    use s3cryptfs::store::fault::Op;
    let core = core_with_large_files(20, |_| 5000).await;
    let dir = core.resolve(&path("d")).await.unwrap().ino;
    core.list(&path("d")).await.unwrap();
    let heads = core.faults.calls(Op::Head);
    assert!(core.fs.lookup_now(dir, OsStr::new("f005")).is_none());
    core.fs.lookup(dir, OsStr::new("f005")).await.unwrap();
    tokio::time::sleep(Duration::from_millis(10)).await;
    assert_eq!(
        core.faults.calls(Op::Head) - heads,
        1,
        "only the file looked up"
    );
}

/// A HEAD read ahead that failed (a throttled request) is asked again by the lookup that
/// comes for it, not handed to it as that lookup's error.
#[tokio::test(start_paused = true)]
async fn a_failed_read_ahead_is_asked_again() {
    use s3cryptfs::store::StoreErrorKind;
    use s3cryptfs::store::fault::{Action, Op};
    let core = core_with_large_files(20, |_| 5000).await;
    core.list(&path("d")).await.unwrap();
    core.resolve(&path("d/f000")).await.unwrap();
    // The second lookup starts the read-ahead: one of the HEADs it sends fails.
    let heads = core.faults.calls(Op::Head);
    core.faults
        .on(Op::Head, heads + 5, Action::Fail(StoreErrorKind::Throttled));
    core.resolve(&path("d/f001")).await.unwrap();
    tokio::time::sleep(Duration::from_millis(10)).await;
    assert!(
        core.faults.calls(Op::Head) >= heads + 5,
        "the failing HEAD was sent"
    );
    for i in 2..20 {
        core.resolve(&path(&format!("d/f{i:03}")))
            .await
            .unwrap_or_else(|e| panic!("f{i:03}: {e}"));
    }
}
