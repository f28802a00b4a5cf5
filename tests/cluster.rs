//! s3cryptfs on a real distributed store: a three-node Garage cluster (replication 3) on
//! loopback, with one node stopped in the middle of a large copy.

mod common;

use std::time::Duration;

use common::cluster::{ACCESS_KEY, Cluster, SECRET_KEY};
use common::mount::{TestVolume, sha256_file, stderr};
use common::random_bytes;
use common::server::Server;
use s3cryptfs::store::ObjectStore;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn survives_a_node_stopped_mid_copy() {
    let mut cluster = Cluster::start().expect("three-node cluster");
    let server: &'static Server = Box::leak(Box::new(Server::external(
        cluster.endpoint(0),
        ACCESS_KEY,
        SECRET_KEY,
    )));
    let v = TestVolume::new_on(server, "cluster", "vol").await;
    let m = v.mount(&[]);
    let src = tempfile::tempdir().unwrap();
    let local = src.path().join("big");
    std::fs::write(&local, random_bytes(96 << 20, 77)).unwrap();
    let target = m.join("big");
    // One of the three replicas goes away while parts are uploading.
    let copy = common::copy_until_uploading(&v.store, &local, &target).await;
    assert!(
        !copy.is_finished(),
        "the node must go away while the copy runs"
    );
    cluster.stop(2);
    let out = copy.join().unwrap();
    assert!(
        out.status.success(),
        "a quorum of 2 of 3 keeps writes going: {}",
        stderr(&out)
    );
    assert_eq!(
        sha256_file(&target),
        sha256_file(&local),
        "read back with a node down"
    );
    cluster.restart(2).expect("node comes back");
    drop(m);
    let m = v.mount(&[]);
    assert_eq!(
        sha256_file(&m.join("big")),
        sha256_file(&local),
        "after the node returned"
    );
    assert!(v.store.list_uploads("").await.unwrap().is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_server_restarting_mid_copy_leaves_only_whole_objects() {
    let mut cluster = Cluster::start().expect("three-node cluster");
    let server: &'static Server = Box::leak(Box::new(Server::external(
        cluster.endpoint(0),
        ACCESS_KEY,
        SECRET_KEY,
    )));
    let v = TestVolume::new_on(server, "restart", "").await;
    let m = v.mount(&[]);
    std::fs::write(m.join("big"), b"the previous version").unwrap();
    let src = tempfile::tempdir().unwrap();
    let local = src.path().join("big");
    std::fs::write(&local, random_bytes(96 << 20, 78)).unwrap();
    let copy = common::copy_until_uploading(&v.store, &local, &m.join("big")).await;
    // The node the mount talks to goes down, and comes back two seconds later.
    cluster.stop(0);
    std::thread::sleep(Duration::from_secs(2));
    cluster.restart(0).expect("node restarts");
    let out = copy.join().unwrap();
    // The node needs a moment to rejoin; until then reads fail with EIO (never wrong bytes).
    let deadline = std::time::Instant::now() + Duration::from_secs(90);
    let contents = loop {
        match std::fs::read(m.join("big")) {
            Ok(c) => break c,
            Err(e) if e.raw_os_error() == Some(libc::EIO) => {
                assert!(
                    std::time::Instant::now() < deadline,
                    "the store never came back"
                );
                std::thread::sleep(Duration::from_millis(500));
            }
            Err(e) => panic!("{e}"),
        }
    };
    if out.status.success() {
        assert!(
            contents == std::fs::read(&local).unwrap(),
            "a successful copy is intact"
        );
    } else {
        assert_eq!(
            contents, b"the previous version",
            "a failed copy leaves the old version"
        );
    }
    drop(m);
    // Whatever happened, fsck finds only whole, verifiable objects and no upload is left
    // once it has cleaned up.
    let out = v.cli(
        &[
            "fsck",
            &v.location(),
            "--stale-after",
            "0",
            "--abort-stale",
            "--key-file",
        ],
        &[&v.key_file],
    );
    assert!(
        out.status.success(),
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        stderr(&out)
    );
    assert!(v.store.list_uploads("").await.unwrap().is_empty());
}

/// Four mounts of one volume, through two nodes of the cluster, each appending a line to
/// one file, two creating one name, and one changing a file that another removes, saved
/// while the third node is stopped: Garage ignores conditional writes, so the mounts'
/// checks by HEAD keep every side, and nothing is lost or left open.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn four_mounts_on_two_nodes_keep_every_save_with_a_node_down() {
    use std::io::Write;
    let mut cluster = Cluster::start().expect("three-node cluster");
    let server: &'static Server = Box::leak(Box::new(Server::external(
        cluster.endpoint(0),
        ACCESS_KEY,
        SECRET_KEY,
    )));
    let v = TestVolume::new_on(server, "shared", "vol").await;
    let shared = ["--metadata-ttl", "0"];
    let mounts: Vec<_> = (0..4)
        .map(|i| v.mount_via(&cluster.endpoint(i % 2), &shared))
        .collect();
    std::fs::write(mounts[0].join("log"), b"line 0\n").unwrap();
    std::fs::write(mounts[0].join("gone"), b"old").unwrap();
    let open_append = |m: &common::mount::Mount, name: &str| {
        std::fs::OpenOptions::new()
            .append(true)
            .open(m.join(name))
            .unwrap()
    };
    let mut files = Vec::new();
    for (i, m) in mounts.iter().enumerate() {
        let mut f = open_append(m, "log");
        f.write_all(format!("from mount {i}\n").as_bytes()).unwrap();
        files.push(f);
    }
    let mut new_0 = std::fs::File::create(mounts[0].join("new")).unwrap();
    let mut new_1 = std::fs::File::create(mounts[1].join("new")).unwrap();
    new_0.write_all(b"new on 0").unwrap();
    new_1.write_all(b"new on 1").unwrap();
    let mut changed = open_append(&mounts[2], "gone");
    changed.write_all(b", changed").unwrap();
    std::fs::remove_file(mounts[3].join("gone")).unwrap();
    // One replica goes away: the saves go on with a quorum of two.
    cluster.stop(2);
    files.extend([new_0, new_1, changed]);
    for f in &files {
        f.sync_all().unwrap();
    }
    cluster.restart(2).expect("node comes back");
    drop(files);
    drop(mounts);
    let fresh = v.mount(&[]);
    let mut names: Vec<String> = std::fs::read_dir(fresh.path())
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .collect();
    names.sort();
    let read = |n: &str| std::fs::read(fresh.join(n)).unwrap();
    let versions_of = |stem: &str| -> Vec<Vec<u8>> {
        let mut all: Vec<Vec<u8>> = names
            .iter()
            .filter(|n| *n == stem || n.starts_with(&format!("{stem}.conflict-")))
            .map(|n| read(n))
            .collect();
        all.sort();
        all
    };
    // Every mount's line is in one version of the log: the first saved under the name,
    // the other three beside it.
    let logs = versions_of("log");
    assert_eq!(logs.len(), 4, "{names:?}");
    for (i, log) in logs.iter().enumerate() {
        assert_eq!(log, format!("line 0\nfrom mount {i}\n").as_bytes());
    }
    assert_eq!(read("log"), b"line 0\nfrom mount 0\n");
    assert_eq!(
        versions_of("new"),
        [b"new on 0".to_vec(), b"new on 1".to_vec()]
    );
    assert_eq!(read("new"), b"new on 0");
    // The removal stands; the change made meanwhile is beside it.
    assert!(!names.contains(&"gone".to_string()));
    assert_eq!(versions_of("gone"), [b"old, changed".to_vec()]);
    assert_eq!(names.len(), 4 + 2 + 1, "{names:?}");
    assert!(v.store.list_uploads("").await.unwrap().is_empty());
}
