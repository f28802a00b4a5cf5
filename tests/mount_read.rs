//! Issue 4 through a real mount: the tree, attributes, verified reads, bad input.

mod common;

use std::io::{Read, Seek, SeekFrom};
use std::sync::Arc;

use bytes::Bytes;
use common::mount::{Names, TestVolume, logged_total, stderr, write_key_file};
use common::{ServerKind, random_bytes};
use s3cryptfs::crypto::{ObjectKind, UserKey, encrypt_to_vec};
use s3cryptfs::store::{Metadata, ObjectStore};
use s3cryptfs::volume::Volume;

on_all_volumes!(
    tree_attributes_and_contents,
    random_reads_match_the_plaintext,
    concurrent_readers,
    tampered_truncated_and_foreign_objects_give_eio,
);
on_both_servers!(
    files_opened_by_name_cost_one_request,
    files_written_here_are_listed_with_one_head_each,
    a_recursive_listing_lists_each_directory_once,
    large_directory_lists_without_per_file_requests,
    wrong_key_and_missing_volume_are_refused,
    small_files_are_listed_with_their_attributes,
);

/// Writes `files` (path, plaintext) into the volume with the format library, as a writer
/// would, and returns the unlocked volume.
/// What `ls -l DIR` prints (it must succeed).
fn ls_l(dir: &std::path::Path) -> String {
    ls("-l", dir)
}

/// What `ls FLAGS DIR` prints (it must succeed).
fn ls(flags: &str, dir: &std::path::Path) -> String {
    let out = std::process::Command::new("ls")
        .arg(flags)
        .arg(dir)
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", stderr(&out));
    String::from_utf8(out.stdout).unwrap()
}

async fn prepare(v: &TestVolume, files: &[(&str, Vec<u8>)]) -> Volume {
    let store: Arc<dyn ObjectStore> = Arc::new(v.store.clone());
    let key = UserKey::from_key_file(&v.key_file).unwrap();
    let volume = Volume::open(store, &v.location(), &key).await.unwrap();
    for (path, data) in files {
        let object = encrypt_to_vec(&volume.master, volume.layout, ObjectKind::File, data);
        v.store
            .put(&v.key(path).await, Bytes::from(object), &Metadata::new())
            .await
            .unwrap();
    }
    volume
}

const SEG: usize = 65536 - common::HEADER;

async fn tree_attributes_and_contents(kind: ServerKind, names: Names) {
    let v = TestVolume::with_names(kind, names, "tree", "vol/one").await;
    let files = vec![
        ("empty", Vec::new()),
        ("one", b"x".to_vec()),
        ("seg-edge", random_bytes(SEG, 1)),
        ("seg-plus", random_bytes(SEG + 1, 2)),
        ("dir/nested/deep.bin", random_bytes(300_000, 3)),
        ("dir/with space & ü.txt", b"odd name".to_vec()),
        ("both", b"file beside a directory of the same name".to_vec()),
        ("both/inside", b"inside".to_vec()),
    ];
    prepare(&v, &files).await;
    v.store
        .put(&v.key("emptydir/").await, Bytes::new(), &Metadata::new())
        .await
        .unwrap();

    let m = v.mount(&[]);
    let mut top: Vec<String> = std::fs::read_dir(m.path())
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().to_string())
        .collect();
    top.sort();
    assert_eq!(
        top,
        [
            "both", "dir", "empty", "emptydir", "one", "seg-edge", "seg-plus"
        ],
        "the volume config is hidden; a directory hides a file of the same name"
    );
    assert!(
        m.join("both").is_dir(),
        "the directory wins over the key 'both'"
    );
    assert!(m.join("emptydir").is_dir());
    assert_eq!(std::fs::read_dir(m.join("emptydir")).unwrap().count(), 0);
    for (path, data) in &files {
        if *path == "both" {
            continue;
        }
        let p = m.join(path);
        let meta = std::fs::metadata(&p).unwrap();
        assert!(meta.is_file(), "{path}");
        assert_eq!(
            meta.len(),
            data.len() as u64,
            "size of {path} from the listing"
        );
        assert_eq!(&std::fs::read(&p).unwrap(), data, "contents of {path}");
    }
    // find(1) walks the whole tree.
    let out = std::process::Command::new("find")
        .arg(m.path())
        .arg("-type")
        .arg("f")
        .output()
        .unwrap();
    assert_eq!(String::from_utf8_lossy(&out.stdout).lines().count(), 7);
    assert_eq!(
        std::fs::metadata(m.join("missing")).unwrap_err().kind(),
        std::io::ErrorKind::NotFound
    );
    assert!(
        std::fs::metadata(m.join(".s3cryptfs")).is_err(),
        "internal objects never appear"
    );
}

async fn random_reads_match_the_plaintext(kind: ServerKind, names: Names) {
    let v = TestVolume::with_names(kind, names, "random", "").await;
    let data = random_bytes(3 * 1024 * 1024 + 777, 4);
    prepare(&v, &[("r.bin", data.clone())]).await;
    let m = v.mount(&[]);
    // dd with skip reads one block at a random place.
    for (bs, skip) in [
        (4096usize, 0usize),
        (4096, 17),
        (4096, 700),
        (65536, 3),
        (1000, 3145),
        (100_000, 31),
    ] {
        let out = std::process::Command::new("dd")
            .arg(format!("if={}", m.join("r.bin").display()))
            .arg(format!("bs={bs}"))
            .arg(format!("skip={skip}"))
            .arg("count=1")
            .arg("status=none")
            .output()
            .unwrap();
        assert!(out.status.success(), "{}", stderr(&out));
        let start = (bs * skip).min(data.len());
        let end = (start + bs).min(data.len());
        assert!(out.stdout == data[start..end], "dd bs={bs} skip={skip}");
    }
    // Seeks backwards and forwards within one handle.
    let mut f = std::fs::File::open(m.join("r.bin")).unwrap();
    let mut rng = 12345u64;
    for _ in 0..200 {
        rng = rng
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        let off = (rng >> 20) as usize % data.len();
        let len = ((rng >> 8) as usize % 200_000).min(data.len() - off);
        f.seek(SeekFrom::Start(off as u64)).unwrap();
        let mut buf = vec![0; len];
        f.read_exact(&mut buf).unwrap();
        assert!(buf == data[off..off + len], "read {len} at {off}");
    }
}

async fn concurrent_readers(kind: ServerKind, names: Names) {
    let v = TestVolume::with_names(kind, names, "concurrent", "c").await;
    let files: Vec<(String, Vec<u8>)> = (0..8)
        .map(|i| {
            (
                format!("f{i}"),
                random_bytes(1_500_000 + i * 1000, 10 + i as u64),
            )
        })
        .collect();
    let refs: Vec<(&str, Vec<u8>)> = files.iter().map(|(n, d)| (n.as_str(), d.clone())).collect();
    prepare(&v, &refs).await;
    let m = v.mount(&[]);
    std::thread::scope(|s| {
        for (name, data) in &files {
            for _ in 0..2 {
                let path = m.join(name);
                s.spawn(move || {
                    assert!(std::fs::read(&path).unwrap() == *data, "{name}");
                });
            }
        }
    });
}

/// Eight files read at once through the default 64 MiB cache: each reader's share is
/// 8 MiB, and read-ahead fetches it in GETs of 128 segments (one part of an upload) whose
/// bodies are read only as far as the reader's window; each segment is fetched once.
/// (With GETs of a quarter of the share, 2 MiB, eight readers made Garage work 40 % more.)
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn readers_at_once_read_in_whole_part_gets() {
    let v = TestVolume::new(ServerKind::Garage, "paced", "vol").await;
    const FILE: usize = 12 << 20;
    let files: Vec<(String, Vec<u8>)> = (0..8)
        .map(|i| (format!("f{i}"), random_bytes(FILE, 60 + i as u64)))
        .collect();
    let refs: Vec<(&str, Vec<u8>)> = files.iter().map(|(n, d)| (n.as_str(), d.clone())).collect();
    prepare(&v, &refs).await;
    let m = v.mount(&[]);
    let before = m.requests("GetObject");
    std::thread::scope(|s| {
        for (name, data) in &files {
            let path = m.join(name);
            s.spawn(move || {
                assert!(std::fs::read(&path).unwrap() == *data, "{name}");
            });
        }
    });
    let gets = m.requests("GetObject") - before;
    let log = m.log.clone();
    assert_eq!(m.unmount(), Some(0));
    let text = std::fs::read_to_string(&log).unwrap();
    let fetched: u64 = text
        .lines()
        .find_map(|l| l.split("segments_fetched=").nth(1))
        .and_then(|v| v.split_whitespace().next()?.parse().ok())
        .expect("read totals logged at unmount");
    // 12 MiB is 193 segments: two GETs of read-ahead per file (the first segment came
    // with the lookup), and a few of the first reads' own.
    let segments = 8 * 193;
    assert!(
        fetched <= segments + 8,
        "{fetched} segments fetched for {segments}"
    );
    assert!(gets <= 8 * 4, "{gets} GETs for 8 files of 12 MiB");
}

/// Files opened by name before their directory is listed (a script that knows its paths,
/// `sha256sum -c`, a web server): the lookup is one request, which also brings the file's
/// first segment, so a file of up to one segment is looked up, opened and read with that
/// one request. A directory or a missing name costs that GET and one LIST.
async fn files_opened_by_name_cost_one_request(kind: ServerKind) {
    let v = TestVolume::new(kind, "byname", "vol").await;
    let small = random_bytes(5000, 41);
    let two = random_bytes(SEG + 1000, 42);
    prepare(
        &v,
        &[
            ("d/small", small.clone()),
            ("d/two", two.clone()),
            ("d/sub/x", b"x".to_vec()),
        ],
    )
    .await;
    // A TTL longer than the test: nothing is asked twice because it expired.
    let m = v.mount(&["--metadata-ttl", "120"]);
    // (lookups, LISTs, GETs of contents, all requests)
    let count = |m: &common::mount::Mount| {
        let all = m
            .log_text()
            .lines()
            .filter(|l| l.contains("s3 request"))
            .count();
        (
            m.requests("GetObjectHeader") + m.requests("HeadObject"),
            m.requests("ListObjectsV2"),
            m.requests("GetObject"),
            all,
        )
    };
    let mut last = count(&m);
    let mut step = |m: &common::mount::Mount| {
        let now = count(m);
        let d = (
            now.0 - last.0,
            now.1 - last.1,
            now.2 - last.2,
            now.3 - last.3,
        );
        last = now;
        d
    };
    assert!(std::fs::metadata(m.join("d")).unwrap().is_dir());
    assert_eq!(
        step(&m),
        (1, 1, 0, 2),
        "a directory: no file there, then a LIST"
    );

    assert_eq!(std::fs::read(m.join("d/small")).unwrap(), small);
    assert_eq!(step(&m), (1, 0, 0, 1), "a small file: one request in all");

    assert_eq!(std::fs::read(m.join("d/two")).unwrap(), two);
    assert_eq!(
        step(&m),
        (1, 0, 1, 2),
        "two segments: the lookup brings the first, one GET the second"
    );

    assert!(!m.join("d/missing").exists());
    assert_eq!(step(&m), (1, 1, 0, 2), "a missing name: a GET and a LIST");
    assert!(!m.join("d/missing").exists());
    assert_eq!(step(&m), (0, 0, 0, 0), "and the answer is kept");

    assert_eq!(std::fs::read(m.join("d/sub/x")).unwrap(), b"x");
    assert_eq!(step(&m), (2, 1, 0, 3), "a directory, then a file in it");
}

/// What this build writes (each file in one request here) records attributes bound to the
/// body's digest, which the server gives as its ETag: `ls -l` checks them with one HEAD per
/// file, no ranged GET of a header. Also after a mode change saved by a copy.
async fn files_written_here_are_listed_with_one_head_each(kind: ServerKind) {
    use std::os::unix::fs::PermissionsExt;
    let v = TestVolume::new(kind, "listhead", "vol").await;
    let n = 30;
    let m = v.mount(&[]);
    std::fs::create_dir(m.join("d")).unwrap();
    for i in 0..n {
        let data = random_bytes(5000 + i * 100, i as u64);
        std::fs::write(m.join(&format!("d/f{i:02}")), data).unwrap();
    }
    // As `cp -p` and rsync do after writing: saved by a server-side copy.
    std::fs::set_permissions(m.join("d/f00"), std::fs::Permissions::from_mode(0o604)).unwrap();
    std::fs::create_dir(m.join("d/sub")).unwrap();
    assert_eq!(m.unmount(), Some(0));

    let m = v.mount(&["--metadata-ttl", "120"]);
    assert!(std::fs::metadata(m.join("d")).unwrap().is_dir());
    let before = (m.requests("HeadObject"), m.requests("GetObjectHeader"));
    let listing = ls_l(&m.join("d"));
    assert_eq!(listing.lines().filter(|l| l.starts_with('-')).count(), n);
    assert!(
        listing
            .lines()
            .any(|l| l.starts_with("-rw----r--") && l.ends_with(" f00")),
        "the mode saved by a copy is shown:\n{listing}"
    );
    let heads = m.requests("HeadObject") - before.0;
    let header_reads = m.requests("GetObjectHeader") - before.1;
    println!("ls -l of {n} files written here: {heads} HEAD, {header_reads} header reads");
    assert_eq!(header_reads, 0, "no ranged GET of a header");
    assert!(heads <= n + 1, "{heads} HEADs: one per entry");
}

/// `ls -lR` of a tree: every file shown with its size, and each directory listed once,
/// also those listed ahead of the walk (nothing listed twice, nothing wasted at its end
/// beyond the directories still ahead), and each name's attributes asked for once, also
/// those read ahead as the walk entered a directory.
async fn a_recursive_listing_lists_each_directory_once(kind: ServerKind) {
    let v = TestVolume::new(kind, "lsr", "vol").await;
    let m = v.mount(&[]);
    let dirs = 6;
    // Files beside the directories: `ls -lR` looks at them first, so the directories it
    // then enters have their entries' attributes read ahead as they are opened.
    let top_files = 2;
    std::fs::create_dir_all(m.join("t")).unwrap();
    for f in 0..top_files {
        std::fs::write(m.join(&format!("t/top{f}")), random_bytes(700, f as u64)).unwrap();
    }
    for d in 0..dirs {
        for tree in ["t", "u"] {
            std::fs::create_dir_all(m.join(&format!("{tree}/d{d}"))).unwrap();
            for f in 0..3 {
                let data = random_bytes(5000 + d * 10 + f, (d * 10 + f) as u64);
                std::fs::write(m.join(&format!("{tree}/d{d}/f{f}")), data).unwrap();
            }
        }
    }
    assert_eq!(m.unmount(), Some(0));

    let m = v.mount(&["--metadata-ttl", "120"]);
    let before = m.requests("ListObjectsV2");
    let heads_before = m.requests("HeadObject");
    // Its lookup lists `t` to find that it is a directory: that LIST is then its listing.
    assert!(std::fs::metadata(m.join("t")).unwrap().is_dir());
    let listing = ls("-lR", &m.join("t"));
    let files: Vec<&str> = listing.lines().filter(|l| l.starts_with('-')).collect();
    assert_eq!(files.len(), top_files + dirs * 3, "{listing}");
    for d in 0..dirs {
        for f in 0..3 {
            let size = format!(" {} ", 5000 + d * 10 + f);
            assert!(
                files
                    .iter()
                    .any(|l| l.contains(&size) && l.ends_with(&format!(" f{f}"))),
                "d{d}/f{f} of {size}bytes:\n{listing}"
            );
        }
    }
    let lists = m.requests("ListObjectsV2") - before;
    assert_eq!(lists, dirs + 1, "t and each of its directories listed once");
    // Attributes read ahead as the walk enters a directory are the ones its lookups use:
    // each name (t, its directories, their files) is asked about once.
    let heads = m.requests("HeadObject") - heads_before;
    assert_eq!(heads, 1 + top_files + dirs + dirs * 3, "one HEAD per name");

    // A tree whose files are all in subdirectories: each directory after the first has its
    // entries read ahead as the walk enters it (it looked at the files of the one before),
    // and still each name is asked about once.
    let heads_before = m.requests("HeadObject");
    let listing = ls("-lR", &m.join("u"));
    assert_eq!(
        listing.lines().filter(|l| l.starts_with('-')).count(),
        dirs * 3
    );
    let heads = m.requests("HeadObject") - heads_before;
    assert_eq!(heads, 1 + dirs + dirs * 3, "one HEAD per name");
}

async fn large_directory_lists_without_per_file_requests(kind: ServerKind) {
    let v = TestVolume::new(kind, "bigdir", "big").await;
    let store: Arc<dyn ObjectStore> = Arc::new(v.store.clone());
    let key = UserKey::from_key_file(&v.key_file).unwrap();
    let volume = Arc::new(
        Volume::open(store.clone(), &v.location(), &key)
            .await
            .unwrap(),
    );
    // Many LIST pages on Garage; on moto, which takes ~8 ms per PUT, fewer pages prove the
    // same paging (10,000 objects there were a quarter of the whole suite's time).
    let n = match kind {
        ServerKind::Garage => 10_000,
        _ => 2_500,
    };
    let mut tasks = tokio::task::JoinSet::new();
    for t in 0..32 {
        let (store, volume) = (store.clone(), volume.clone());
        tasks.spawn(async move {
            for i in (t..n).step_by(32) {
                // Just past the size of the largest symlink (4,095 bytes): listed objects
                // that small are looked up to give readdir their type (tested below).
                let data = format!("file {i:<4095}");
                let object = encrypt_to_vec(
                    &volume.master,
                    volume.layout,
                    ObjectKind::File,
                    data.as_bytes(),
                );
                store
                    .put(&format!("d/f{i:05}"), Bytes::from(object), &Metadata::new())
                    .await
                    .unwrap();
            }
        });
    }
    while let Some(r) = tasks.join_next().await {
        r.unwrap();
    }
    // A TTL longer than the walk, so that "at most one HEAD per file" is exact on a slow
    // server too (a walk that outlives the TTL asks again, by design).
    let m = v.mount(&["--metadata-ttl", "120"]);
    let count = |m: &common::mount::Mount| {
        (
            m.requests("ListObjectsV2"),
            // A lookup: the GET of an object's header (with its metadata), or a HEAD.
            m.requests("HeadObject") + m.requests("GetObjectHeader"),
            m.requests("GetObject"),
        )
    };
    // A plain listing (names only, as `ls` or `find` without stat) needs LIST pages alone.
    let before = count(&m);
    assert_eq!(ls("-U", &m.join("d")).lines().count(), n);
    let after = count(&m);
    let (lists, heads, gets) = (after.0 - before.0, after.1 - before.1, after.2 - before.2);
    println!("ls of {n} files: {lists} LIST, {heads} lookups, {gets} GET");
    // ceil(10000/1000) pages, plus the lookup of `d` itself (the GET of a file `d`, which is
    // not there, then one LIST that finds the directory).
    assert_eq!(lists, n.div_ceil(1000) + 1, "LIST requests");
    assert!(heads <= 2, "{heads} lookups for names only");
    assert_eq!(gets, 0, "no GET to list a directory");

    // `ls -l` needs each file's recorded attributes: one HEAD per file at most (read ahead
    // concurrently), still no GET and no further LIST.
    let before = count(&m);
    let started = std::time::Instant::now();
    let listing = ls_l(&m.join("d"));
    assert_eq!(listing.lines().filter(|l| l.starts_with('-')).count(), n);
    assert!(
        listing.lines().any(|l| l.contains(" 4100 ")),
        "plaintext sizes shown:\n{}",
        &listing[..500]
    );
    let after = count(&m);
    let (lists, heads, gets) = (after.0 - before.0, after.1 - before.1, after.2 - before.2);
    println!(
        "ls -l of {n} files: {lists} LIST, {heads} lookups, {gets} GET in {:?}",
        started.elapsed()
    );
    // The listing is cached; a walk that outlives the TTL lists again, it never probes names.
    assert!(
        lists <= 10 * n.div_ceil(1000),
        "{lists} LIST requests: the directory is listed, names are not probed one by one"
    );
    // These objects record no attributes (written by another tool): each is looked up with
    // one ranged GET of its header, after at most 32 HEADs asked first while the mount
    // learns that HEADs cannot serve them.
    assert!(heads <= n + 1 + 32, "{heads} lookups: at most one per file");
    assert_eq!(gets, 0, "no GET to list a directory");

    // Objects small enough to be symlinks or special files are looked up once when listed
    // (a listing cannot tell their type), and those lookups serve the `ls -l` after.
    let small = 40;
    for i in 0..small {
        let object = encrypt_to_vec(&volume.master, volume.layout, ObjectKind::File, b"tiny");
        store
            .put(&format!("s/t{i:02}"), Bytes::from(object), &Metadata::new())
            .await
            .unwrap();
    }
    let before = count(&m);
    ls("-U", &m.join("s"));
    let middle = count(&m);
    ls_l(&m.join("s"));
    let after = count(&m);
    let listed = middle.1 - before.1;
    assert!(
        (small..=small + 2).contains(&listed),
        "{listed} lookups to list {small} small files"
    );
    assert!(
        after.1 - middle.1 <= 1,
        "ls -l after ls looked {} names up again",
        after.1 - middle.1
    );
}

/// `ls -l` of small files, on a fresh mount: the entries come with their attributes
/// (READDIRPLUS, from the HEADs made to give each small object's type), so the kernel needs
/// no LOOKUP per name; what `ls -l` shows is what was recorded, and an entry whose lookup
/// fails is still listed and reported by name.
async fn small_files_are_listed_with_their_attributes(kind: ServerKind) {
    use std::os::unix::fs::PermissionsExt;
    let v = TestVolume::new(kind, "plus", "vol").await;
    let n = 120;
    let m = v.mount(&[]);
    std::fs::create_dir(m.join("d")).unwrap();
    for i in 0..n {
        std::fs::write(
            m.join(&format!("d/f{i:03}")),
            random_bytes(10 + i, i as u64),
        )
        .unwrap();
    }
    std::fs::set_permissions(m.join("d/f007"), std::fs::Permissions::from_mode(0o600)).unwrap();
    std::os::unix::fs::symlink("f001", m.join("d/link")).unwrap();
    let made = std::process::Command::new("mkfifo")
        .args(["-m", "640"])
        .arg(m.join("d/pipe"))
        .status()
        .unwrap();
    assert!(made.success());
    std::fs::write(m.join("d/zz-big"), random_bytes(100_000, 99)).unwrap();
    std::fs::create_dir(m.join("big")).unwrap();
    for i in 0..3 {
        std::fs::write(m.join(&format!("big/b{i}")), random_bytes(70_000, i)).unwrap();
    }
    assert_eq!(m.unmount(), Some(0));

    let m = v.mount(&["--metadata-ttl", "120"]);
    // Large files are not known before their lookups: each entry is listed once all the same.
    let mut names: Vec<String> = ls("-a1", &m.join("big"))
        .lines()
        .map(String::from)
        .collect();
    names.sort();
    assert_eq!(names, [".", "..", "b0", "b1", "b2"]);
    let big = ls("-la", &m.join("big"));
    assert_eq!(
        big.lines().filter(|l| l.contains(" 70000 ")).count(),
        3,
        "{big}"
    );
    assert_eq!(ls("-U", &m.join("d")).lines().count(), n + 3);
    // Removed by another machine after this mount listed the directory: its lookup fails.
    v.store.delete(&v.key("d/zz-big").await).await.unwrap();
    let out = std::process::Command::new("ls")
        .arg("-l")
        .arg(m.join("d"))
        .output()
        .unwrap();
    let errors = stderr(&out);
    let listing = String::from_utf8(out.stdout).unwrap();
    assert!(
        errors.contains("zz-big") && errors.contains("No such file"),
        "the entry whose lookup failed is reported: {errors}\n{listing}"
    );
    let files: Vec<&str> = listing.lines().filter(|l| l.starts_with("-rw")).collect();
    assert_eq!(files.len(), n, "{listing}");
    for i in 0..n {
        let name = format!(" f{i:03}");
        let size = format!(" {} ", 10 + i);
        assert!(
            files
                .iter()
                .any(|l| l.ends_with(&name) && l.contains(&size)),
            "f{i:03} of{size}bytes:\n{listing}"
        );
    }
    assert!(
        listing
            .lines()
            .any(|l| l.starts_with("-rw------- ") && l.ends_with(" f007"))
    );
    assert!(
        listing
            .lines()
            .any(|l| l.starts_with('l') && l.ends_with(" link -> f001"))
    );
    assert!(
        listing
            .lines()
            .any(|l| l.starts_with("prw-r----- ") && l.ends_with(" pipe"))
    );
    // The entries the kernel was given stay usable: read, removed, listed again.
    assert_eq!(
        std::fs::read(m.join("d/f005")).unwrap(),
        random_bytes(15, 5)
    );
    std::fs::remove_file(m.join("d/f006")).unwrap();
    assert!(!m.join("d/f006").exists());
    let again = std::process::Command::new("ls")
        .arg("-l")
        .arg(m.join("d"))
        .output()
        .unwrap();
    let again = String::from_utf8(again.stdout).unwrap();
    assert_eq!(
        again.lines().filter(|l| l.starts_with("-rw")).count(),
        n - 1
    );
    let log = m.log.clone();
    assert_eq!(m.unmount(), Some(0));
    let text = std::fs::read_to_string(&log).unwrap();
    let total = |field: &str| logged_total(&text, "name totals", field);
    let (lookups, listed) = (total("lookups"), total("listed_with_attrs"));
    println!("ls -l of {n} small files: {lookups} LOOKUP, {listed} entries with attributes");
    assert!(
        listed >= n as u64 + 2,
        "{listed} entries given with their attributes"
    );
    assert!(
        lookups < 20,
        "{lookups} LOOKUP requests: the listing gave the attributes"
    );
}

async fn tampered_truncated_and_foreign_objects_give_eio(kind: ServerKind, names: Names) {
    let v = TestVolume::with_names(kind, names, "tamper", "t").await;
    let data = random_bytes(200_000, 20);
    let volume = prepare(&v, &[("good", data.clone())]).await;
    let object = encrypt_to_vec(&volume.master, volume.layout, ObjectKind::File, &data);
    let mut flipped = object.clone();
    flipped[100_000] ^= 0x01;
    v.store
        .put(
            &v.key("flipped").await,
            Bytes::from(flipped),
            &Metadata::new(),
        )
        .await
        .unwrap();
    let truncated = object[..object.len() - 65568 + 1000].to_vec();
    v.store
        .put(
            &v.key("truncated").await,
            Bytes::from(truncated),
            &Metadata::new(),
        )
        .await
        .unwrap();
    let cut_at_boundary = object[..2 * 65568].to_vec();
    v.store
        .put(
            &v.key("cut").await,
            Bytes::from(cut_at_boundary),
            &Metadata::new(),
        )
        .await
        .unwrap();
    v.store
        .put(
            &v.key("foreign.txt").await,
            Bytes::from_static(b"plain text someone uploaded"),
            &Metadata::new(),
        )
        .await
        .unwrap();

    let m = v.mount(&[]);
    assert_eq!(std::fs::read(m.join("good")).unwrap(), data);
    for name in ["flipped", "truncated", "cut", "foreign.txt"] {
        assert!(m.join(name).exists(), "{name} is listed");
        let err = std::fs::read(m.join(name)).unwrap_err();
        assert_eq!(err.raw_os_error(), Some(libc::EIO), "{name}: {err}");
    }
    // The first 64 KiB of the flipped object are intact and may be read; the flipped
    // segment may not.
    let mut f = std::fs::File::open(m.join("flipped")).unwrap();
    let mut head = vec![0; 1000];
    f.read_exact(&mut head).unwrap();
    assert!(head == data[..1000]);
    f.seek(SeekFrom::Start(120_000)).unwrap();
    let mut buf = vec![0; 100];
    assert_eq!(
        f.read(&mut buf).unwrap_err().raw_os_error(),
        Some(libc::EIO)
    );
    let log = m.log_text();
    for name in ["flipped", "foreign.txt", "truncated", "cut"] {
        let key = v.key(name).await;
        assert!(
            log.lines()
                .any(|l| l.contains(&format!("key=t/{key}")) || l.contains(&format!("key={key}"))),
            "a log line names {name} ({key}):\n{log}"
        );
    }
}

async fn wrong_key_and_missing_volume_are_refused(kind: ServerKind) {
    let v = TestVolume::new(kind, "refuse", "").await;
    let other = v.dir.path().join("other.key");
    write_key_file(&other, 99);
    let err = v
        .mount_with_key(&other, &[])
        .err()
        .expect("the wrong key must not mount");
    assert!(err.contains("does not match"), "{err}");

    let fresh = TestVolume::uninitialised(kind, "noconfig", "nothing-here").await;
    let err = fresh
        .mount_with_key(&fresh.key_file, &[])
        .err()
        .expect("no volume, no mount");
    assert!(err.contains("s3cryptfs init"), "{err}");

    let mountpoint = tempfile::tempdir().unwrap();
    let out = v.cli(
        &[
            "mount",
            "no-such-bucket-anywhere",
            &mountpoint.path().to_string_lossy(),
            "--foreground",
            "--key-file",
        ],
        &[&v.key_file],
    );
    assert_eq!(out.status.code(), Some(4), "{}", stderr(&out));
    assert!(stderr(&out).contains("does not exist"), "{}", stderr(&out));
    assert!(!common::mount::is_mounted(mountpoint.path()));

    // Nothing listening: a clear failure in bounded time, no mount left behind.
    let out = foreground_mount(
        &v,
        mountpoint.path(),
        "http://127.0.0.1:9",
        &["--max-attempts", "2"],
        &[],
    );
    assert_eq!(out.status.code(), Some(4), "{}", stderr(&out));
    assert!(
        stderr(&out).contains("ListObjectsV2 s3://"),
        "{}",
        stderr(&out)
    );
    assert!(!common::mount::is_mounted(mountpoint.path()));

    if kind == ServerKind::Garage {
        // Garage checks signatures: a wrong secret is access denied, said plainly.
        let bad = "0000000000000000000000000000000000000000000000000000000000000bad";
        let out = foreground_mount(
            &v,
            mountpoint.path(),
            &v.server.endpoint,
            &[],
            &[("AWS_SECRET_ACCESS_KEY", bad)],
        );
        assert_eq!(out.status.code(), Some(4), "{}", stderr(&out));
        assert!(stderr(&out).contains("access denied"), "{}", stderr(&out));
    }
}

/// Runs `s3cryptfs mount --foreground` to completion (for mounts that must fail).
fn foreground_mount(
    v: &TestVolume,
    mountpoint: &std::path::Path,
    endpoint: &str,
    extra: &[&str],
    env: &[(&str, &str)],
) -> std::process::Output {
    std::process::Command::new(common::mount::BIN)
        .args(["mount", &v.location()])
        .arg(mountpoint)
        .arg("--key-file")
        .arg(&v.key_file)
        .args([
            "--endpoint-url",
            endpoint,
            "--force-path-style",
            "--foreground",
        ])
        .args(extra)
        .envs(v.server.env())
        .envs(env.iter().copied())
        .output()
        .unwrap()
}
