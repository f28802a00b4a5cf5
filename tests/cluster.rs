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

/// Two mounts of one volume through two nodes of the cluster, saving one file and creating
/// one name while the third node is stopped: Garage ignores conditional writes, so the
/// mounts' checks by HEAD keep both sides, and nothing is lost or left open.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_mounts_on_two_nodes_keep_both_saves_with_a_node_down() {
    use std::io::Write;
    let mut cluster = Cluster::start().expect("three-node cluster");
    let server: &'static Server = Box::leak(Box::new(Server::external(
        cluster.endpoint(0),
        ACCESS_KEY,
        SECRET_KEY,
    )));
    let v = TestVolume::new_on(server, "shared", "vol").await;
    let a = v.mount(&["--metadata-ttl", "0"]);
    let b = v.mount_via(&cluster.endpoint(1), &["--metadata-ttl", "0"]);
    std::fs::write(a.join("log"), b"line 1\n").unwrap();
    let mut on_a = std::fs::OpenOptions::new()
        .append(true)
        .open(a.join("log"))
        .unwrap();
    let mut on_b = std::fs::OpenOptions::new()
        .append(true)
        .open(b.join("log"))
        .unwrap();
    on_a.write_all(b"from A\n").unwrap();
    on_b.write_all(b"from B\n").unwrap();
    let mut new_a = std::fs::File::create(a.join("new")).unwrap();
    let mut new_b = std::fs::File::create(b.join("new")).unwrap();
    new_a.write_all(b"new on A").unwrap();
    new_b.write_all(b"new on B").unwrap();
    // One replica goes away: the saves go on with a quorum of two.
    cluster.stop(2);
    for f in [on_a, on_b, new_a, new_b] {
        f.sync_all().unwrap();
    }
    cluster.restart(2).expect("node comes back");
    drop((a, b));
    let fresh = v.mount(&[]);
    let mut names: Vec<String> = std::fs::read_dir(fresh.path())
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .collect();
    names.sort();
    assert_eq!(names.len(), 4, "{names:?}");
    let read = |n: &str| std::fs::read(fresh.join(n)).unwrap();
    let conflict = |stem: &str| {
        names
            .iter()
            .find(|n| n.starts_with(&format!("{stem}.conflict-")))
            .unwrap_or_else(|| panic!("a conflict copy of {stem}: {names:?}"))
            .clone()
    };
    assert_eq!(read("log"), b"line 1\nfrom A\n");
    assert_eq!(read(&conflict("log")), b"line 1\nfrom B\n");
    assert_eq!(read("new"), b"new on A");
    assert_eq!(read(&conflict("new")), b"new on B");
    assert!(v.store.list_uploads("").await.unwrap().is_empty());
}
