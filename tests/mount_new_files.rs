//! New files as ordinary programs make them, through a real mount (issue #15, first part):
//! `truncate -s` and `dd seek=` on new files, a header patched after the body (as linkers
//! and muxers do; also after its first parts were uploaded), a new file read back through its own descriptor and through a second
//! one, `cp --sparse=always`, `fallocate` (allocate, punch a hole, zero a range), and a C
//! program compiled and linked in the mount. Each result is compared with the same
//! program's result on a local directory, before and after a remount; no pending version is
//! left in the bucket. Then the programs users run there: autotools' configure and make, zip
//! and unzip, vim.

mod common;

use std::io::{Read, Seek, SeekFrom, Write};
use std::path::Path;
use std::process::Command;

use common::ServerKind;
use common::mount::TestVolume;
use s3cryptfs::store::ObjectStore;

on_both_servers!(
    new_files_behave_as_on_a_local_disk,
    programs_build_archive_and_edit_in_the_mount,
);

fn run(cmd: &mut Command) {
    let out = cmd.output().unwrap();
    assert!(
        out.status.success(),
        "{cmd:?} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// Runs the same steps in `dir`: the files they leave are compared between the mount and a
/// local directory.
fn make_files(dir: &Path, sparse_source: &Path) {
    // `truncate -s` of a new file: an open with O_CREAT, then ftruncate.
    run(Command::new("truncate")
        .args(["-s", "1M"])
        .arg(dir.join("truncated")));
    // dd with seek: the first bytes are a hole.
    run(Command::new("dd")
        .arg(format!("of={}", dir.join("seeked").display()))
        .args([
            "if=/dev/urandom",
            "bs=1k",
            "seek=70",
            "count=3",
            "status=none",
        ]));
    // A header written after the body, as a linker does.
    let mut f = std::fs::File::create(dir.join("patched")).unwrap();
    f.write_all(&common::random_bytes(150_000, 5)).unwrap();
    f.seek(SeekFrom::Start(0)).unwrap();
    f.write_all(b"HEADER").unwrap();
    f.seek(SeekFrom::Start(149_990)).unwrap();
    f.write_all(b"past the end of the body").unwrap();
    drop(f);
    // The same past one part: its first parts are uploaded when it goes back.
    let mut f = std::fs::File::create(dir.join("patched_large")).unwrap();
    f.write_all(&common::random_bytes(20 << 20, 6)).unwrap();
    f.seek(SeekFrom::Start(12 << 20)).unwrap();
    f.write_all(b"an index patched in the second part").unwrap();
    f.seek(SeekFrom::Start(0)).unwrap();
    f.write_all(b"HEADER").unwrap();
    f.set_len(19 << 20).unwrap();
    drop(f);
    // A new file read back through its own descriptor, and through a second one.
    let mut f = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(true)
        .open(dir.join("read_back"))
        .unwrap();
    f.write_all(b"written, then read back").unwrap();
    f.seek(SeekFrom::Start(9)).unwrap();
    let mut back = String::new();
    f.read_to_string(&mut back).unwrap();
    assert_eq!(back, "then read back");
    let second = std::fs::read(dir.join("read_back")).unwrap();
    assert_eq!(second, b"written, then read back");
    f.write_all(b"; and more").unwrap();
    drop(f);
    run(Command::new("cp")
        .arg("--sparse=always")
        .arg(sparse_source)
        .arg(dir.join("sparse_copy")));
    // fallocate: plain allocation of a new file, a hole punched and a range zeroed (past
    // the end: it grows) in a file with contents.
    run(Command::new("fallocate")
        .args(["-l", "1M"])
        .arg(dir.join("allocated")));
    std::fs::write(dir.join("punched"), common::random_bytes(100_000, 9)).unwrap();
    run(Command::new("fallocate")
        .args(["-p", "-o", "4096", "-l", "10000"])
        .arg(dir.join("punched")));
    run(Command::new("fallocate")
        .args(["-z", "-o", "90000", "-l", "20000"])
        .arg(dir.join("punched")));
    // A C program compiled and linked here (ld seeks back to patch what it wrote).
    std::fs::write(
        dir.join("hello.c"),
        "#include <stdio.h>\nint main(void) { puts(\"hello from the mount\"); return 0; }\n",
    )
    .unwrap();
    run(Command::new("gcc")
        .arg("-o")
        .arg(dir.join("hello"))
        .arg(dir.join("hello.c")));
}

async fn new_files_behave_as_on_a_local_disk(kind: ServerKind) {
    let v = TestVolume::new(kind, "newfiles", "").await;
    let local = tempfile::tempdir().unwrap();
    let sparse = local.path().join("sparse_source");
    let mut f = std::fs::File::create(&sparse).unwrap();
    f.seek(SeekFrom::Start(300_000)).unwrap();
    f.write_all(b"after a hole").unwrap();
    drop(f);
    let reference = local.path().join("reference");
    std::fs::create_dir(&reference).unwrap();
    make_files(&reference, &sparse);

    let m = v.mount(&[]);
    make_files(m.path(), &sparse);
    let out = Command::new(m.join("hello")).output().unwrap();
    assert_eq!(
        String::from_utf8_lossy(&out.stdout),
        "hello from the mount\n"
    );
    let names = [
        "truncated",
        "seeked",
        "patched",
        "patched_large",
        "read_back",
        "sparse_copy",
        "hello.c",
        "allocated",
        "punched",
    ];
    // `seeked` and `patched` hold random bytes of their own run: compare their shape.
    let same_shape = |a: &[u8], b: &[u8], name: &str, when: &str| {
        assert_eq!(a.len(), b.len(), "{name} {when}: size");
        match name {
            "seeked" => assert!(
                a[..70 * 1024].iter().all(|b| *b == 0),
                "{name} {when}: hole"
            ),
            "patched" => {
                assert_eq!(&a[..6], b"HEADER", "{name} {when}");
                assert_eq!(&a[149_990..], b"past the end of the body", "{name} {when}");
            }
            _ => assert!(a == b, "{name} {when}: contents"),
        }
    };
    for name in names {
        let got = std::fs::read(m.join(name)).unwrap();
        let want = std::fs::read(reference.join(name)).unwrap();
        same_shape(&got, &want, name, "as written");
    }
    let patched = std::fs::read(m.join("patched")).unwrap();
    drop(m);
    let m = v.mount(&[]);
    for name in names {
        let got = std::fs::read(m.join(name)).unwrap();
        let want = std::fs::read(reference.join(name)).unwrap();
        same_shape(&got, &want, name, "after a remount");
    }
    assert_eq!(std::fs::read(m.join("patched")).unwrap(), patched);
    let out = Command::new(m.join("hello")).output().unwrap();
    assert_eq!(
        String::from_utf8_lossy(&out.stdout),
        "hello from the mount\n"
    );
    drop(m);
    let left: Vec<String> = v
        .store
        .list_all(".s3cryptfs/pending/", None)
        .await
        .unwrap()
        .objects
        .into_iter()
        .map(|o| o.key)
        .collect();
    assert!(
        left.is_empty(),
        "pending versions left in the bucket: {left:?}"
    );
}

/// Programs that seek, rename over open files and rewrite what they wrote: an autotools
/// project configured and built, a zip archive made and checked, a file edited with vim
/// (which writes a swap file beside it and replaces the file). Each must succeed as on a
/// local disk, and what they left must read back after a remount.
async fn programs_build_archive_and_edit_in_the_mount(kind: ServerKind) {
    let v = TestVolume::new(kind, "programs", "").await;
    let m = v.mount(&[]);
    let project = m.join("hello");
    std::fs::create_dir(&project).unwrap();
    std::fs::write(
        project.join("configure.ac"),
        "AC_INIT([hello],[1.0])\nAM_INIT_AUTOMAKE([foreign])\nAC_PROG_CC\n\
         AC_CONFIG_FILES([Makefile])\nAC_OUTPUT\n",
    )
    .unwrap();
    std::fs::write(
        project.join("Makefile.am"),
        "bin_PROGRAMS = hello\nhello_SOURCES = hello.c\n",
    )
    .unwrap();
    std::fs::write(
        project.join("hello.c"),
        "#include <stdio.h>\nint main(void) { puts(\"built in the mount\"); return 0; }\n",
    )
    .unwrap();
    run(Command::new("autoreconf").arg("-i").current_dir(&project));
    run(Command::new("./configure").current_dir(&project));
    run(Command::new("make").current_dir(&project));
    let out = Command::new(project.join("hello")).output().unwrap();
    assert_eq!(String::from_utf8_lossy(&out.stdout), "built in the mount\n");

    let files = m.join("files");
    std::fs::create_dir(&files).unwrap();
    // Incompressible entries past one part in all: zip goes back to patch the
    // header of each entry it wrote, also in parts already uploaded.
    for i in 0..4u64 {
        let body = common::random_bytes(3 << 20, 60 + i);
        std::fs::write(files.join(format!("f{i}")), body).unwrap();
    }
    run(Command::new("zip")
        .args(["-qr", "files.zip", "files"])
        .current_dir(m.path()));
    run(Command::new("unzip")
        .args(["-qt", "files.zip"])
        .current_dir(m.path()));

    std::fs::write(m.join("notes.txt"), "one\ntwo\n").unwrap();
    run(Command::new("vim")
        .args([
            "-es",
            "-u",
            "NONE",
            "-c",
            "%s/two/three/",
            "-c",
            "wq",
            "notes.txt",
        ])
        .current_dir(m.path()));
    assert_eq!(
        std::fs::read_to_string(m.join("notes.txt")).unwrap(),
        "one\nthree\n"
    );
    drop(m);

    let m = v.mount(&[]);
    let out = Command::new(m.join("hello/hello")).output().unwrap();
    assert_eq!(String::from_utf8_lossy(&out.stdout), "built in the mount\n");
    run(Command::new("unzip")
        .args(["-qt", "files.zip"])
        .current_dir(m.path()));
    assert_eq!(
        std::fs::read_to_string(m.join("notes.txt")).unwrap(),
        "one\nthree\n"
    );
    let names: Vec<String> = std::fs::read_dir(m.path())
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    assert!(
        !names.iter().any(|n| n.ends_with(".swp")),
        "vim's swap file is gone: {names:?}"
    );
}
