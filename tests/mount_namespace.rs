//! Namespace operations through a real mount: mkdir/rmdir/unlink errors, rename of files,
//! odd and long names, hard links refused, open files unlinked, renamed and replaced.

mod common;

use std::ffi::CString;
use std::io::{Read, Seek, SeekFrom, Write};
use std::os::unix::ffi::OsStrExt;
use std::process::Command;

use common::ServerKind;
use common::mount::{Names, TestVolume, stderr};
use s3cryptfs::store::ObjectStore;

on_all_volumes!(
    directory_operations_and_their_errors,
    rename_files,
    odd_and_long_names,
);
on_both_servers!(open_files_outlive_their_names);

fn errno_of(r: std::io::Result<()>) -> Option<i32> {
    r.err().and_then(|e| e.raw_os_error())
}

/// The names `ls` shows in `dir`, sorted.
fn listed_names(dir: &std::path::Path) -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    names
}

async fn directory_operations_and_their_errors(kind: ServerKind, names: Names) {
    let v = TestVolume::with_names(kind, names, "dirs", "ns").await;
    let m = v.mount(&[]);
    std::fs::create_dir(m.join("d")).unwrap();
    assert_eq!(
        errno_of(std::fs::create_dir(m.join("d"))),
        Some(libc::EEXIST)
    );
    assert!(
        v.store.head(&v.key("d/").await).await.is_ok(),
        "an empty directory is a marker object"
    );
    std::fs::create_dir_all(m.join("d/e/f")).unwrap();
    std::fs::write(m.join("d/e/f/file"), b"x").unwrap();
    assert_eq!(
        errno_of(std::fs::remove_dir(m.join("d/e"))),
        Some(libc::ENOTEMPTY)
    );
    assert_eq!(
        errno_of(std::fs::remove_file(m.join("d/e"))),
        Some(libc::EISDIR)
    );
    assert_eq!(
        errno_of(std::fs::remove_dir(m.join("d/e/f/file"))),
        Some(libc::ENOTDIR)
    );
    std::fs::remove_file(m.join("d/e/f/file")).unwrap();
    std::fs::remove_dir(m.join("d/e/f")).unwrap();
    std::fs::remove_dir(m.join("d/e")).unwrap();
    // A directory that is non-empty only in the bucket (written by someone else) is not empty.
    let elsewhere = v.key("d/from-elsewhere").await;
    v.store
        .put(
            &elsewhere,
            bytes::Bytes::from_static(b"?"),
            &Default::default(),
        )
        .await
        .unwrap();
    assert_eq!(
        errno_of(std::fs::remove_dir(m.join("d"))),
        Some(libc::ENOTEMPTY)
    );
    v.store.delete(&elsewhere).await.unwrap();
    std::fs::remove_dir(m.join("d")).unwrap();
    assert!(!m.join("d").exists());
    assert!(
        v.store
            .list_all(&v.key("d/").await, None)
            .await
            .unwrap()
            .objects
            .is_empty()
    );
    // Hard links are refused, never a silent copy.
    std::fs::write(m.join("a"), b"a").unwrap();
    assert_eq!(
        errno_of(std::fs::hard_link(m.join("a"), m.join("b"))),
        Some(libc::EPERM)
    );
    assert!(!m.join("b").exists());
    drop(m);
    let m = v.mount(&[]);
    assert_eq!(
        std::fs::read_dir(m.path()).unwrap().count(),
        1,
        "only 'a' is left"
    );
}

async fn rename_files(kind: ServerKind, names: Names) {
    let v = TestVolume::with_names(kind, names, "rename", "").await;
    let m = v.mount(&[]);
    std::fs::create_dir(m.join("dir")).unwrap();
    let big = common::random_bytes(9 * 1024 * 1024, 5);
    std::fs::write(m.join("big"), &big).unwrap();
    std::fs::write(m.join("small"), b"small file").unwrap();
    std::fs::write(m.join("victim"), b"will be replaced").unwrap();

    std::fs::rename(m.join("small"), m.join("dir/moved")).unwrap();
    assert!(!m.join("small").exists());
    assert_eq!(std::fs::read(m.join("dir/moved")).unwrap(), b"small file");
    std::fs::rename(m.join("big"), m.join("victim")).unwrap();
    assert!(
        std::fs::read(m.join("victim")).unwrap() == big,
        "replaces the target"
    );
    assert!(
        v.store
            .head(&v.key("big").await)
            .await
            .unwrap_err()
            .is_not_found()
    );

    // RENAME_NOREPLACE is honoured.
    std::fs::write(m.join("other"), b"other").unwrap();
    let from = CString::new(m.join("other").as_os_str().as_bytes()).unwrap();
    let to = CString::new(m.join("victim").as_os_str().as_bytes()).unwrap();
    // SAFETY: both paths are NUL-terminated CStrings that outlive the call.
    let rc = unsafe {
        libc::renameat2(
            libc::AT_FDCWD,
            from.as_ptr(),
            libc::AT_FDCWD,
            to.as_ptr(),
            libc::RENAME_NOREPLACE,
        )
    };
    assert_eq!(rc, -1);
    assert_eq!(
        std::io::Error::last_os_error().raw_os_error(),
        Some(libc::EEXIST)
    );
    assert!(std::fs::read(m.join("victim")).unwrap() == big);

    // A directory renames in one step (every object copied, then the old ones deleted).
    std::fs::write(m.join("dir/second"), b"2").unwrap();
    let out = Command::new("mv")
        .arg(m.join("dir"))
        .arg(m.join("dir2"))
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(std::fs::read(m.join("dir2/moved")).unwrap(), b"small file");
    assert_eq!(std::fs::read(m.join("dir2/second")).unwrap(), b"2");
    assert!(!m.join("dir").exists());

    drop(m);
    let m = v.mount(&[]);
    assert_eq!(listed_names(m.path()), ["dir2", "other", "victim"]);
    assert!(std::fs::read(m.join("victim")).unwrap() == big);
}

async fn odd_and_long_names(kind: ServerKind, names: Names) {
    let v = TestVolume::with_names(kind, names, "names", "p").await;
    let volume_names = names;
    let m = v.mount(&[]);
    let names = [
        "with space",
        "ünïcödé ファイル",
        "hash#",
        "percent%41",
        "question?",
        "plus+sign",
        "back\\slash",
        "trailing space ",
        &"n".repeat(255),
        // Control characters (listed with url-encoded keys: XML cannot carry them).
        "tab\there",
        "bell\u{7} escape\u{1b} del\u{7f}",
        "carriage\rreturn",
        "new\nline",
    ];
    // moto's web router cannot take a key holding a newline (it answers 404 to the PUT).
    let names = if kind == ServerKind::Moto && volume_names == Names::Plain {
        &names[..names.len() - 1]
    } else {
        &names[..]
    };
    for (i, name) in names.iter().enumerate() {
        std::fs::write(m.join(name), format!("content {i}")).unwrap();
        std::fs::create_dir(m.join(&format!("{name}.d")))
            .or_else(|e| {
                // 255 + ".d" is over the POSIX limit.
                if name.len() > 253 { Ok(()) } else { Err(e) }
            })
            .unwrap();
    }
    assert_eq!(
        errno_of(std::fs::write(m.join(&"n".repeat(256)), b"x")),
        Some(libc::ENAMETOOLONG)
    );
    // S3 keys are UTF-8: a Latin-1 name is refused with EILSEQ, nothing is written.
    let latin1 = std::ffi::OsStr::from_bytes(b"caf\xe9");
    assert_eq!(
        errno_of(std::fs::write(m.path().join(latin1), b"x")),
        Some(libc::EILSEQ)
    );
    let listed = listed_names(m.path());
    for name in names.iter().filter(|n| n.len() < 255) {
        assert!(listed.contains(&name.to_string()), "{name:?} listed");
    }
    drop(m);
    let m = v.mount(&[]);
    for (i, name) in names.iter().enumerate() {
        assert_eq!(
            std::fs::read_to_string(m.join(name)).unwrap(),
            format!("content {i}"),
            "{name}"
        );
    }
    let keys: Vec<String> = v
        .store
        .list_all("", None)
        .await
        .unwrap()
        .objects
        .into_iter()
        .map(|o| o.key)
        .collect();
    match volume_names {
        Names::Plain => assert!(
            keys.iter().any(|k| k == "ünïcödé ファイル"),
            "names are stored as they are: {keys:?}"
        ),
        Names::Encrypted => {
            for name in names_list_for_check() {
                assert!(
                    !keys.iter().any(|k| k.contains(name)),
                    "{name} in the clear in {keys:?}"
                );
            }
        }
    }
}

/// Names of the odd-names test that must not show in an encrypted volume's keys.
fn names_list_for_check() -> [&'static str; 4] {
    ["with space", "ünïcödé", "hash#", "question?"]
}

/// What programs do with open files on a local disk (temporary files, atomic replacement
/// under a reader, cleanup while a reader is active), through the kernel.
async fn open_files_outlive_their_names(kind: ServerKind) {
    let v = TestVolume::new(kind, "openfiles", "").await;
    let m = v.mount(&[]);
    let body = common::random_bytes(300_000, 41);
    std::fs::write(m.join("read"), &body).unwrap();
    let mut reader = std::fs::File::open(m.join("read")).unwrap();
    let mut head = vec![0u8; 65536];
    reader.read_exact(&mut head).unwrap();
    std::fs::remove_file(m.join("read")).unwrap();
    assert_eq!(
        errno_of(std::fs::metadata(m.join("read")).map(|_| ())),
        Some(libc::ENOENT)
    );
    let mut rest = Vec::new();
    reader.read_to_end(&mut rest).unwrap();
    assert!([head, rest].concat() == body, "read on after the unlink");
    assert_eq!(reader.metadata().unwrap().len(), body.len() as u64);
    drop(reader);

    // A temporary file: created, unlinked, written and read back.
    let mut tmp = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .create_new(true)
        .open(m.join("tmp"))
        .unwrap();
    std::fs::remove_file(m.join("tmp")).unwrap();
    tmp.write_all(b"scratch data").unwrap();
    tmp.seek(SeekFrom::Start(0)).unwrap();
    let mut back = String::new();
    tmp.read_to_string(&mut back).unwrap();
    assert_eq!(back, "scratch data");
    drop(tmp);

    // A reader of a file renamed, and of a file replaced by a rename, reads on.
    let a = common::random_bytes(200_000, 42);
    std::fs::write(m.join("a"), &a).unwrap();
    let mut moved = std::fs::File::open(m.join("a")).unwrap();
    std::fs::rename(m.join("a"), m.join("b")).unwrap();
    let mut got = Vec::new();
    moved.read_to_end(&mut got).unwrap();
    assert!(got == a, "read on after the rename");
    std::fs::write(m.join("target"), b"old contents").unwrap();
    let mut replaced = std::fs::File::open(m.join("target")).unwrap();
    std::fs::write(m.join("new"), b"new contents").unwrap();
    std::fs::rename(m.join("new"), m.join("target")).unwrap();
    let mut old = String::new();
    replaced.read_to_string(&mut old).unwrap();
    assert_eq!(old, "old contents");
    assert_eq!(std::fs::read(m.join("target")).unwrap(), b"new contents");
    drop((moved, replaced));
    drop(m);

    let m = v.mount(&[]);
    assert_eq!(listed_names(m.path()), ["b", "target"]);
    let keys: Vec<String> = v
        .store
        .list_all("", None)
        .await
        .unwrap()
        .objects
        .into_iter()
        .map(|o| o.key)
        .filter(|k| k.contains("pending"))
        .collect();
    assert!(
        keys.is_empty(),
        "nothing kept after the last close: {keys:?}"
    );
}
