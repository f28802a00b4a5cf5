//! POSIX metadata and the namespace operations that carry it, through real mounts: modes,
//! owners and nanosecond mtimes that survive a remount, symlinks, mknod, directory rename,
//! rename of a file still being written, `cp -a` and `rsync -a` (idempotence and request
//! count).

mod common;

use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::Path;
use std::process::Command;

use common::ServerKind;
use common::mount::{Mount, Names, TestVolume, stderr};
use s3cryptfs::store::ObjectStore;

on_all_volumes!(
    attributes_persist_across_remount,
    symlinks_and_mknod,
    directory_rename,
    rename_while_writing,
    cp_a_and_rsync_keep_everything,
);

/// A write by a user without CAP_FSETID drops a file's set-user-ID bit, and its
/// set-group-ID bit when the group may execute, as on a local disk; root's writes keep them.
/// (Through a write-only handle the kernel leaves this to the daemon: pjdfstest chmod/12.)
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_write_by_another_user_drops_the_set_id_bits() {
    let v = TestVolume::new(ServerKind::Garage, "setid", "s").await;
    let m = v.mount(&["--allow-other"]);
    let cases = [
        ("both", 0o6777, 0o777),
        ("gid-no-exec", 0o2766, 0o2766),
        ("by-root", 0o4777, 0o4777),
    ];
    for (name, before, after) in cases {
        let path = m.join(name);
        std::fs::write(&path, b"start ").unwrap();
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(before)).unwrap();
        let append = format!("printf more >> '{}'", path.display());
        let mut cmd = Command::new("setpriv");
        if name != "by-root" {
            cmd.args(["--reuid", "65534", "--regid", "65534", "--clear-groups"]);
        }
        run(cmd.args(["sh", "-c", &append]));
        let mode = std::fs::metadata(&path).unwrap().mode() & 0o7777;
        assert_eq!(mode, after, "{name}: {mode:o}");
        assert_eq!(std::fs::read(&path).unwrap(), b"start more");
    }
    drop(m);
    let m = v.mount(&[]);
    let mode = std::fs::metadata(m.join("both")).unwrap().mode() & 0o7777;
    assert_eq!(mode, 0o777, "saved without the bits");
}

fn errno_of<T>(r: std::io::Result<T>) -> Option<i32> {
    r.err().and_then(|e| e.raw_os_error())
}

fn run(cmd: &mut Command) -> String {
    let out = cmd.output().unwrap();
    assert!(
        out.status.success(),
        "{:?}: {}{}",
        cmd,
        String::from_utf8_lossy(&out.stdout),
        stderr(&out)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// (mode, uid, gid, mtime seconds, mtime nanoseconds) as lstat sees them.
fn stat_of(p: &Path) -> (u32, u32, u32, i64, i64) {
    let m = std::fs::symlink_metadata(p).unwrap();
    (m.mode(), m.uid(), m.gid(), m.mtime(), m.mtime_nsec())
}

async fn attributes_persist_across_remount(kind: ServerKind, names: Names) {
    let v = TestVolume::with_names(kind, names, "attrs", "a").await;
    let m = v.mount(&[]);
    std::fs::write(m.join("f"), b"data").unwrap();
    std::fs::create_dir(m.join("d")).unwrap();
    std::fs::set_permissions(m.join("f"), std::fs::Permissions::from_mode(0o640)).unwrap();
    std::os::unix::fs::chown(m.join("f"), Some(1234), Some(5678)).unwrap();
    run(Command::new("touch")
        .args(["-m", "-d", "@1500000000.123456789"])
        .arg(m.join("f")));
    run(Command::new("touch")
        .args(["-a", "-d", "@1400000000.25"])
        .arg(m.join("f")));
    std::fs::set_permissions(m.join("d"), std::fs::Permissions::from_mode(0o711)).unwrap();
    run(Command::new("touch")
        .args(["-m", "-d", "@1400000000.5"])
        .arg(m.join("d")));
    // A file whose mode is set while it is still open goes up with it (cp -p does this).
    {
        use std::io::Write;
        let mut f = std::fs::File::create(m.join("open")).unwrap();
        f.write_all(b"x").unwrap();
        f.set_permissions(std::fs::Permissions::from_mode(0o600))
            .unwrap();
    }
    let expected_f = (
        libc::S_IFREG | 0o640,
        1234,
        5678,
        1_500_000_000,
        123_456_789,
    );
    let expected_d = (libc::S_IFDIR | 0o711, 0, 0, 1_400_000_000, 500_000_000);
    assert_eq!(stat_of(&m.join("f")), expected_f, "seen at once");
    assert_eq!(stat_of(&m.join("d")), expected_d);
    // The ctime is the time of the last change (the touch above), not the mtime it set.
    let ctime = |path: &std::path::Path| {
        use std::os::unix::fs::MetadataExt;
        let md = std::fs::metadata(path).unwrap();
        (md.ctime(), md.ctime_nsec())
    };
    let changed = ctime(&m.join("f"));
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64;
    assert!(
        (now - 60..=now).contains(&changed.0),
        "ctime {changed:?} is the time of the change"
    );
    assert_eq!(m.unmount(), Some(0));

    let m = v.mount(&[]);
    assert_eq!(ctime(&m.join("f")), changed, "the ctime is recorded");
    {
        use std::os::unix::fs::MetadataExt;
        let md = std::fs::metadata(m.join("f")).unwrap();
        assert_eq!(
            (md.atime(), md.atime_nsec()),
            (1_400_000_000, 250_000_000),
            "atime"
        );
    }
    assert_eq!(stat_of(&m.join("f")), expected_f, "after a remount");
    assert_eq!(stat_of(&m.join("d")), expected_d);
    assert_eq!(stat_of(&m.join("open")).0, libc::S_IFREG | 0o600);
    assert_eq!(std::fs::read(m.join("f")).unwrap(), b"data");
    // Stored encrypted: the bucket's metadata shows no mode, owner or time in the clear.
    let f_key = v.key("f").await;
    let head = v.store.head(&f_key).await.unwrap();
    let blob = head
        .metadata
        .values()
        .cloned()
        .collect::<Vec<_>>()
        .join(" ");
    assert!(!blob.is_empty(), "attributes are recorded with the object");
    for clear in ["1234", "5678", "1500000000", "640"] {
        assert!(!blob.contains(clear), "{clear} in the clear in {blob}");
    }
    drop(m);

    // Attributes that do not verify are not believed: private to root, with a log line
    // naming the key; the data is still read and verified as usual.
    let mut forged = head.metadata.clone();
    for value in forged.values_mut() {
        let mut b = value.clone().into_bytes();
        b[20] = if b[20] == b'A' { b'B' } else { b'A' };
        *value = String::from_utf8(b).unwrap();
    }
    v.store.copy(&f_key, &f_key, Some(&forged)).await.unwrap();
    let m = v.mount(&[]);
    let (mode, uid, ..) = stat_of(&m.join("f"));
    assert_eq!((mode, uid), (libc::S_IFREG | 0o600, 0), "private to root");
    assert_eq!(std::fs::read(m.join("f")).unwrap(), b"data");
    assert!(
        m.log_text()
            .contains("recorded attributes are not this object's"),
        "{}",
        m.log_text()
    );
}

async fn symlinks_and_mknod(kind: ServerKind, names: Names) {
    let v = TestVolume::with_names(kind, names, "links", "").await;
    let m = v.mount(&[]);
    std::fs::write(m.join("target"), b"pointed at").unwrap();
    std::os::unix::fs::symlink("target", m.join("rel")).unwrap();
    std::os::unix::fs::symlink("/etc/hostname", m.join("abs")).unwrap();
    let long_target = format!("{}/end", "x".repeat(2000));
    std::os::unix::fs::symlink(&long_target, m.join("long")).unwrap();
    assert_eq!(
        errno_of(std::os::unix::fs::symlink("x", m.join("rel"))),
        Some(libc::EEXIST)
    );
    assert_eq!(std::fs::read(m.join("rel")).unwrap(), b"pointed at");
    // mknod of a regular file makes an empty file (special files: tests/mount_special_files.rs).
    let c = |p: &Path| std::ffi::CString::new(p.as_os_str().as_encoded_bytes()).unwrap();
    // SAFETY: the path is a NUL-terminated CString that lives until the call returns.
    let rc = unsafe { libc::mknod(c(&m.join("node")).as_ptr(), libc::S_IFREG | 0o600, 0) };
    assert_eq!(rc, 0, "{}", std::io::Error::last_os_error());
    // The target is encrypted in the bucket.
    let raw = common::read_object(&v.store, &v.key("abs").await).await;
    assert!(!raw.windows(8).any(|w| w == b"hostname"));
    drop(m);

    let m = v.mount(&[]);
    assert_eq!(
        std::fs::read_link(m.join("rel")).unwrap(),
        Path::new("target")
    );
    assert_eq!(
        std::fs::read_link(m.join("abs")).unwrap(),
        Path::new("/etc/hostname")
    );
    assert_eq!(
        std::fs::read_link(m.join("long")).unwrap(),
        Path::new(&long_target)
    );
    let meta = std::fs::symlink_metadata(m.join("rel")).unwrap();
    assert!(meta.file_type().is_symlink());
    assert_eq!(meta.len(), 6, "a symlink's size is its target's length");
    assert_eq!(std::fs::read(m.join("rel")).unwrap(), b"pointed at");
    let node = std::fs::metadata(m.join("node")).unwrap();
    assert!(node.is_file() && node.len() == 0);
    assert_eq!(node.mode(), libc::S_IFREG | 0o600);
    let listing = run(Command::new("ls").arg("-l").arg(m.path()));
    assert!(listing.contains("rel -> target"), "{listing}");
    // Renaming and removing a symlink work on the link, not its target.
    std::fs::rename(m.join("rel"), m.join("rel2")).unwrap();
    assert_eq!(
        std::fs::read_link(m.join("rel2")).unwrap(),
        Path::new("target")
    );
    std::fs::remove_file(m.join("rel2")).unwrap();
    assert_eq!(std::fs::read(m.join("target")).unwrap(), b"pointed at");
}

async fn directory_rename(kind: ServerKind, names: Names) {
    let v = TestVolume::with_names(kind, names, "dirmv", "p").await;
    let m = v.mount(&[]);
    let files = [
        "tree/a",
        "tree/sub/b",
        "tree/sub/deeper/c",
        "tree/ünï code/d",
    ];
    for (i, f) in files.iter().enumerate() {
        std::fs::create_dir_all(m.join(f).parent().unwrap()).unwrap();
        std::fs::write(m.join(f), format!("file {i}")).unwrap();
    }
    std::fs::create_dir(m.join("tree/empty")).unwrap();
    std::fs::set_permissions(m.join("tree/sub/b"), std::fs::Permissions::from_mode(0o604)).unwrap();
    std::os::unix::fs::symlink("../a", m.join("tree/sub/link")).unwrap();
    // Errors first: onto a file, onto a non-empty directory, a directory onto itself below.
    std::fs::write(m.join("file"), b"f").unwrap();
    std::fs::create_dir_all(m.join("full/x")).unwrap();
    assert_eq!(
        errno_of(std::fs::rename(m.join("tree"), m.join("file"))),
        Some(libc::ENOTDIR)
    );
    assert_eq!(
        errno_of(std::fs::rename(m.join("tree"), m.join("full"))),
        Some(libc::ENOTEMPTY)
    );
    assert_eq!(
        errno_of(std::fs::rename(m.join("file"), m.join("full"))),
        Some(libc::EISDIR)
    );
    assert_eq!(
        errno_of(std::fs::rename(m.join("tree"), m.join("tree/sub/in"))),
        Some(libc::EINVAL)
    );
    // Onto an empty directory: it is replaced.
    std::fs::create_dir(m.join("moved")).unwrap();
    std::fs::rename(m.join("tree"), m.join("moved")).unwrap();
    assert!(!m.join("tree").exists());
    for (i, f) in files.iter().enumerate() {
        let moved = f.replacen("tree", "moved", 1);
        assert_eq!(
            std::fs::read_to_string(m.join(&moved)).unwrap(),
            format!("file {i}")
        );
    }
    assert_eq!(
        std::fs::read_link(m.join("moved/sub/link")).unwrap(),
        Path::new("../a")
    );
    assert!(m.join("moved/empty").is_dir());
    // Nothing is left under the old prefix in the bucket.
    let old = v.store.list_all(&v.key("tree/").await, None).await.unwrap();
    assert!(old.objects.is_empty(), "{:?}", old.objects);
    drop(m);

    let m = v.mount(&[]);
    assert_eq!(
        std::fs::read_to_string(m.join("moved/sub/deeper/c")).unwrap(),
        "file 2"
    );
    assert_eq!(
        stat_of(&m.join("moved/sub/b")).0,
        libc::S_IFREG | 0o604,
        "attributes move with the objects"
    );
    assert!(!m.join("tree").exists());
}

async fn rename_while_writing(kind: ServerKind, names: Names) {
    use std::io::Write;
    let v = TestVolume::with_names(kind, names, "mvopen", "").await;
    let m = v.mount(&[]);
    // Small: renamed before anything was uploaded.
    let mut f = std::fs::File::create(m.join("tmp-small")).unwrap();
    f.write_all(b"first half, ").unwrap();
    std::fs::rename(m.join("tmp-small"), m.join("small")).unwrap();
    f.write_all(b"second half").unwrap();
    f.set_permissions(std::fs::Permissions::from_mode(0o600))
        .unwrap();
    drop(f);
    // Large: renamed after its multipart upload began under the old name.
    let big = common::random_bytes(20 * 1024 * 1024, 31);
    let mut f = std::fs::File::create(m.join("tmp-big")).unwrap();
    f.write_all(&big[..12 * 1024 * 1024]).unwrap();
    std::fs::rename(m.join("tmp-big"), m.join("big")).unwrap();
    assert!(!m.join("tmp-big").exists());
    f.write_all(&big[12 * 1024 * 1024..]).unwrap();
    let synced = f.sync_all();
    assert!(synced.is_ok(), "{synced:?}: {}", m.log_text());
    drop(f);
    assert_eq!(m.unmount(), Some(0));

    let m = v.mount(&[]);
    assert_eq!(
        std::fs::read(m.join("small")).unwrap(),
        b"first half, second half"
    );
    assert_eq!(stat_of(&m.join("small")).0, libc::S_IFREG | 0o600);
    let read = std::fs::read(m.join("big"));
    assert!(read.is_ok(), "{read:?}: {}", m.log_text());
    assert!(read.unwrap() == big);
    let mut names: Vec<_> = std::fs::read_dir(m.path())
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .collect();
    names.sort();
    assert_eq!(names, ["big", "small"]);
    assert!(
        v.store.list_uploads("").await.unwrap().is_empty(),
        "no upload left behind"
    );
}

/// A source tree with what `-a` must keep: nested and empty directories, a symlink, modes,
/// old mtimes, files of mixed sizes.
fn make_source_tree(root: &Path, files: usize) {
    for i in 0..files {
        let dir = root.join(format!("d{}/e{}", i % 5, i % 3));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join(format!("file-{i}"));
        let len = [0, 1, 100, 5000, 70_000][i % 5];
        std::fs::write(&path, common::random_bytes(len, i as u64 + 100)).unwrap();
        let mode = [0o644, 0o600, 0o755, 0o640][i % 4];
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(mode)).unwrap();
        run(Command::new("touch")
            .args(["-h", "-m", "-d"])
            .arg(format!("@{}.{:09}", 1_200_000_000 + i * 1000, i * 7919))
            .arg(&path));
    }
    std::fs::create_dir_all(root.join("empty/inner")).unwrap();
    std::os::unix::fs::symlink("d0/e0/file-0", root.join("link")).unwrap();
    // Every directory gets an old mtime: rsync leaves a directory's time alone when it is
    // in the same second as the copy's own (also onto a local disk), so directories made a
    // moment ago would make the comparison depend on the clock.
    let mut dirs = vec!["empty".to_string(), "empty/inner".to_string()];
    for d in 0..5 {
        dirs.push(format!("d{d}"));
        dirs.extend((0..3).map(|e| format!("d{d}/e{e}")));
    }
    for (i, d) in dirs.iter().enumerate() {
        run(Command::new("touch")
            .args(["-m", "-d"])
            .arg(format!(
                "@{}.{:09}",
                1_300_000_000 + i * 3600,
                i * 1_000_003
            ))
            .arg(root.join(d)));
    }
}

/// `diff -r` of contents plus the attributes `-a` keeps, for every entry.
fn assert_same_tree(a: &Path, b: &Path) {
    run(Command::new("diff")
        .arg("-r")
        .arg("--no-dereference")
        .arg(a)
        .arg(b));
    let out = |root: &Path| {
        run(Command::new("find")
            .arg(".")
            // Sizes of files and links only: a directory's size is the filesystem's business.
            .args(["(", "-type", "d", "-printf", "%p %M %U %G %T@\n", ")"])
            .args(["-o", "-printf", "%p %M %U %G %s %T@ %l\n"])
            .current_dir(root))
    };
    let mut left: Vec<String> = out(a).lines().map(str::to_string).collect();
    let mut right: Vec<String> = out(b).lines().map(str::to_string).collect();
    // The roots' own times and the symlink's mtime (not settable here: lutimes) aside.
    left.retain(|l| !l.starts_with(". ") && !l.starts_with("./link "));
    right.retain(|l| !l.starts_with(". ") && !l.starts_with("./link "));
    left.sort();
    right.sort();
    let differ: Vec<_> = left
        .iter()
        .zip(&right)
        .filter(|(l, r)| l != r)
        .take(5)
        .collect();
    assert!(
        differ.is_empty() && left.len() == right.len(),
        "{} vs {} entries; first differences: {differ:?}",
        left.len(),
        right.len()
    );
}

async fn cp_a_and_rsync_keep_everything(kind: ServerKind, names: Names) {
    let v = TestVolume::with_names(kind, names, "rsync", "").await;
    let src = tempfile::tempdir().unwrap();
    let files = if kind == ServerKind::Garage { 300 } else { 60 };
    make_source_tree(src.path(), files);
    // The request counts below are what caches save while they are fresh: with the default
    // TTL of 5 s they would also count how slow the machine is (seen on a loaded CI host).
    let m = v.mount(&["--metadata-ttl", "300"]);

    // cp -a
    run(Command::new("cp")
        .arg("-a")
        .arg(src.path())
        .arg(m.join("cp")));
    assert_same_tree(src.path(), &m.join("cp"));
    // fsync of a directory saves the attribute changes still pending (cp's last utimes).
    run(Command::new("sync").arg(m.join("cp")));

    // rsync -a: the first run, with its S3 requests counted.
    let rsync = |m: &Mount| {
        run(Command::new("rsync")
            .args(["-a", "--itemize-changes"])
            .arg(format!("{}/", src.path().display()))
            .arg(m.join("rs")))
    };
    let ops = [
        "PutObject",
        "CopyObject",
        "DeleteObject",
        "HeadObject",
        "GetObjectHeader",
        "ListObjectsV2",
        "GetObject",
        "CreateMultipartUpload",
    ];
    let counts = |m: &Mount| ops.map(|op| m.requests(op));
    let before = counts(&m);
    rsync(&m);
    let after = counts(&m);
    let used: Vec<String> = ops
        .iter()
        .zip(after.iter().zip(before.iter()))
        .map(|(op, (a, b))| format!("{op}={}", a - b))
        .collect();
    println!("rsync -a of {files} files: {}", used.join(" "));
    let delta = |op: &str| {
        let i = ops.iter().position(|o| *o == op).unwrap();
        after[i] - before[i]
    };
    // One PUT per file and symlink; per directory its marker, then its mode and its times as
    // rsync sets them at different moments (times may be set twice: once when its files are
    // in, once at the end);
    // each rename is a copy and a delete, and metadata changes ride along with the upload or
    // the rename's copy. An empty file is saved at its last release, which can cross rsync's
    // chmod/utimes: those few take a copy of their own.
    let dirs = 5 * 3 + 5 + 2 + 1;
    let empty_files = files / 5;
    let puts: Vec<String> = m
        .log_text()
        .lines()
        .filter(|l| l.contains("op=PutObject"))
        .map(|l| l.rsplit("key=").next().unwrap_or("").to_string())
        .collect();
    assert!(
        delta("PutObject") <= files + 1 + 4 * dirs,
        "{used:?} {puts:?}"
    );
    assert!(delta("CopyObject") <= files + empty_files + 1, "{used:?}");
    assert!(delta("DeleteObject") <= files + 1, "{used:?}");
    // Lookups are answered from the cached listing, kept up to date by this mount's changes.
    assert!(delta("ListObjectsV2") <= 4 * dirs, "{used:?}");
    assert_eq!(delta("GetObject"), 0, "{used:?}");
    assert_same_tree(src.path(), &m.join("rs"));

    // A second run transfers nothing and changes nothing.
    let second = rsync(&m);
    assert_eq!(second.trim(), "", "second rsync changed:\n{second}");
    // After one file changes, only that file is sent.
    let changed = src.path().join("d1/e1/file-1");
    std::fs::write(&changed, b"new contents").unwrap();
    let third = rsync(&m);
    let sent: Vec<&str> = third.lines().filter(|l| l.starts_with('>')).collect();
    assert_eq!(sent.len(), 1, "{third}");
    assert!(sent[0].ends_with("d1/e1/file-1"), "{third}");
    assert_eq!(m.unmount(), Some(0));

    // And after a remount: still nothing to do, same tree.
    let m = v.mount(&[]);
    let fourth = rsync(&m);
    assert_eq!(fourth.trim(), "", "after remount:\n{fourth}");
    assert_same_tree(src.path(), &m.join("rs"));
}
