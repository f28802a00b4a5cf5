//! Special files through a real mount (issue #15): FIFOs, unix sockets, character and block
//! devices are made, stat'ed with their type, mode and device number, changed (chmod,
//! utimes, rename) and removed, and all of it survives a remount; a FIFO carries data
//! between two processes; a fresh mount lists them (and symlinks) with their types before
//! they were looked up.

mod common;

use std::ffi::CString;
use std::os::unix::fs::{FileTypeExt, MetadataExt, PermissionsExt};
use std::path::Path;

use common::ServerKind;
use common::mount::TestVolume;

on_both_servers!(special_files_are_made_listed_and_kept);

fn c(path: &Path) -> CString {
    CString::new(path.as_os_str().as_encoded_bytes()).unwrap()
}

fn mknod(path: &Path, mode: u32, dev: libc::dev_t) {
    let path = c(path);
    // SAFETY: `path` is a NUL-terminated CString that outlives the call.
    let rc = unsafe { libc::mknod(path.as_ptr(), mode, dev) };
    assert_eq!(rc, 0, "mknod: {}", std::io::Error::last_os_error());
}

/// Type, permissions and device number of each special file, as `stat` shows them.
fn check(dir: &Path, when: &str) {
    let meta = |name: &str| std::fs::symlink_metadata(dir.join(name)).unwrap();
    assert!(meta("fifo").file_type().is_fifo(), "fifo {when}");
    assert!(meta("sock").file_type().is_socket(), "sock {when}");
    assert!(meta("chr").file_type().is_char_device(), "chr {when}");
    assert!(meta("blk").file_type().is_block_device(), "blk {when}");
    assert_eq!(meta("chr").rdev(), libc::makedev(1, 3), "chr number {when}");
    assert_eq!(
        meta("blk").rdev(),
        libc::makedev(8, 17),
        "blk number {when}"
    );
    assert_eq!(
        meta("fifo").permissions().mode() & 0o7777,
        0o640,
        "fifo mode {when}"
    );
    assert_eq!(
        meta("renamed-fifo").permissions().mode() & 0o7777,
        0o600,
        "{when}"
    );
    assert_eq!(meta("fifo").mtime(), 1_000_000_000, "fifo mtime {when}");
    assert!(!dir.join("gone").exists(), "unlinked special file {when}");
    for name in ["fifo", "sock", "chr", "blk"] {
        assert_eq!(meta(name).len(), 0, "{name} size {when}");
    }
}

async fn special_files_are_made_listed_and_kept(kind: ServerKind) {
    let v = TestVolume::new(kind, "special", "").await;
    let m = v.mount(&[]);
    mknod(&m.join("fifo"), libc::S_IFIFO | 0o600, 0);
    mknod(&m.join("chr"), libc::S_IFCHR | 0o600, libc::makedev(1, 3));
    mknod(&m.join("blk"), libc::S_IFBLK | 0o600, libc::makedev(8, 17));
    let listener = std::os::unix::net::UnixListener::bind(m.join("sock")).unwrap();
    drop(listener);
    mknod(&m.join("other"), libc::S_IFIFO | 0o600, 0);
    mknod(&m.join("gone"), libc::S_IFIFO | 0o600, 0);
    std::fs::set_permissions(m.join("fifo"), std::fs::Permissions::from_mode(0o640)).unwrap();
    // utimensat on the node itself (opening a FIFO to set its times would block).
    let path = c(&m.join("fifo"));
    let times = [
        libc::timespec {
            tv_sec: 1_000_000_000,
            tv_nsec: 0,
        },
        libc::timespec {
            tv_sec: 1_000_000_000,
            tv_nsec: 0,
        },
    ];
    // SAFETY: `path` is a NUL-terminated CString and `times` two valid timespecs, both alive
    // for the call.
    let rc = unsafe { libc::utimensat(libc::AT_FDCWD, path.as_ptr(), times.as_ptr(), 0) };
    assert_eq!(rc, 0, "utimensat: {}", std::io::Error::last_os_error());
    std::os::unix::fs::symlink("fifo", m.join("link")).unwrap();
    std::fs::write(m.join("plain"), b"a regular file").unwrap();
    std::fs::rename(m.join("other"), m.join("renamed-fifo")).unwrap();
    std::fs::remove_file(m.join("gone")).unwrap();
    check(m.path(), "as made");

    // The kernel serves the FIFO: a writer and a reader meet through it.
    let fifo = m.join("fifo");
    let writer = std::thread::spawn(move || std::fs::write(fifo, b"through the pipe").unwrap());
    assert_eq!(std::fs::read(m.join("fifo")).unwrap(), b"through the pipe");
    writer.join().unwrap();

    // Listed by name (after a lookup, with their types).
    let mut names: Vec<String> = std::fs::read_dir(m.path())
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .collect();
    names.sort();
    assert_eq!(
        names,
        [
            "blk",
            "chr",
            "fifo",
            "link",
            "plain",
            "renamed-fifo",
            "sock"
        ]
    );
    drop(m);

    // A fresh mount lists every entry with its real type before anything was looked up
    // (`find -type l`, `ls --color` and `fts` trust the type readdir gives).
    let m = v.mount(&[]);
    let mut types: Vec<(String, &str)> = std::fs::read_dir(m.path())
        .unwrap()
        .map(|e| {
            let e = e.unwrap();
            let t = e.file_type().unwrap();
            let kind = if t.is_symlink() {
                "symlink"
            } else if t.is_fifo() {
                "fifo"
            } else if t.is_socket() {
                "socket"
            } else if t.is_char_device() {
                "char"
            } else if t.is_block_device() {
                "block"
            } else if t.is_dir() {
                "dir"
            } else {
                "file"
            };
            (e.file_name().into_string().unwrap(), kind)
        })
        .collect();
    types.sort();
    let want = [
        ("blk", "block"),
        ("chr", "char"),
        ("fifo", "fifo"),
        ("link", "symlink"),
        ("plain", "file"),
        ("renamed-fifo", "fifo"),
        ("sock", "socket"),
    ];
    let want: Vec<(String, &str)> = want.iter().map(|(n, k)| (n.to_string(), *k)).collect();
    assert_eq!(types, want, "types listed before any lookup");
    check(m.path(), "after a remount");
}
