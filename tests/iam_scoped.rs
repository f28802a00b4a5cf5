//! A volume used with credentials limited to its prefix, as README's "IAM policy" section
//! recommends. A proxy in front of a real server answers 403 AccessDenied to every request
//! such a policy would deny (HeadBucket, a LIST of anything but the prefix, any object outside
//! it), as S3 would; everything else reaches the server.
//!
//! (moto can enforce IAM itself, but it checks a LIST's signature against the decoded query,
//! so it refuses every signed LIST whose prefix holds a `/`, boto3's as well as ours: it
//! cannot run a volume.)

mod common;

use std::process::{Command, Output};

use common::ServerKind;
use common::mount::{BIN, TestVolume, stderr};
use common::proxy::{Fault, FaultProxy};

/// Whether a policy scoped to `bucket/prefix/` allows this request (path-style targets).
fn allowed_by_prefix_policy(method: &str, target: &str, bucket: &str, prefix: &str) -> bool {
    let (path, query) = target.split_once('?').unwrap_or((target, ""));
    let bucket_path = format!("/{bucket}");
    if path == bucket_path || path == format!("{bucket_path}/") {
        // Bucket-level: only LIST (objects or uploads) restricted to the prefix.
        let listed_prefix = query
            .split('&')
            .find_map(|pair| pair.strip_prefix("prefix="))
            .map(|p| p.replace("%2F", "/"));
        return method == "GET"
            && listed_prefix.is_some_and(|p| p.starts_with(&format!("{prefix}/")));
    }
    path.starts_with(&format!("{bucket_path}/{prefix}/"))
}

fn run(v: &TestVolume, endpoint: &str, args: &[&str]) -> Output {
    Command::new(BIN)
        .args(args)
        .args([
            "--endpoint-url",
            endpoint,
            "--force-path-style",
            "--key-file",
        ])
        .arg(&v.key_file)
        .envs(v.server.env())
        .output()
        .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_volume_works_with_credentials_scoped_to_its_prefix() {
    let v = TestVolume::uninitialised(ServerKind::Garage, "scoped", "vol").await;
    let proxy = FaultProxy::start(&v.server.endpoint);
    let (bucket, prefix) = (v.bucket.clone(), "vol".to_string());
    proxy.inject(
        move |method, target| !allowed_by_prefix_policy(method, target, &bucket, &prefix),
        Fault::Status(403, "AccessDenied"),
        None,
    );
    let endpoint = proxy.endpoint.clone();
    let location = v.location();
    let cli = |args: &[&str]| run(&v, &endpoint, args);

    let out = cli(&["init", &location]);
    assert!(out.status.success(), "init: {}", stderr(&out));
    let work = tempfile::tempdir().unwrap();
    let local = work.path().join("doc");
    std::fs::write(&local, b"only under vol/").unwrap();
    let local = local.to_string_lossy().to_string();
    let out = cli(&["put", &location, &local, "d/doc"]);
    assert!(out.status.success(), "put: {}", stderr(&out));
    let out = cli(&["cat", &location, "d/doc"]);
    assert_eq!(out.stdout, b"only under vol/", "{}", stderr(&out));
    let out = cli(&["ls", &location, "-R"]);
    assert!(out.status.success(), "ls: {}", stderr(&out));
    let out = cli(&["fsck", &location]);
    assert!(
        out.status.success(),
        "fsck: {}{}",
        String::from_utf8_lossy(&out.stdout),
        stderr(&out)
    );
    let out = Command::new(BIN)
        .args(["key", "list", &location, "--endpoint-url", &endpoint])
        .arg("--force-path-style")
        .envs(v.server.env())
        .output()
        .unwrap();
    assert!(out.status.success(), "key list: {}", stderr(&out));

    // A mount: write, rename, read back, remove.
    let mountpoint = tempfile::tempdir().unwrap();
    let dir = mountpoint.path().to_string_lossy().to_string();
    let out = cli(&["mount", &location, &dir]);
    assert!(out.status.success(), "mount: {}", stderr(&out));
    let mounted = |rel: &str| mountpoint.path().join(rel);
    std::fs::write(mounted("new"), b"through the mount").unwrap();
    std::fs::rename(mounted("new"), mounted("d/renamed")).unwrap();
    assert_eq!(
        std::fs::read(mounted("d/renamed")).unwrap(),
        b"through the mount"
    );
    std::fs::remove_file(mounted("d/doc")).unwrap();
    let out = Command::new(BIN).args(["umount", &dir]).output().unwrap();
    assert!(out.status.success(), "{}", stderr(&out));
    let out = cli(&["cat", &location, "d/renamed"]);
    assert_eq!(out.stdout, b"through the mount", "{}", stderr(&out));
    assert_eq!(proxy.fired(), 0, "a request outside the prefix was made");

    // A volume outside the granted prefix: the LIST is refused, and the error names the
    // permission.
    let out = cli(&["ls", &format!("{}/other", v.bucket)]);
    assert_eq!(out.status.code(), Some(4), "{}", stderr(&out));
    assert!(stderr(&out).contains("s3:ListBucket"), "{}", stderr(&out));

    // Credentials that may list but not read: the error names s3:GetObject.
    proxy.clear();
    proxy.inject(
        |method, target| (method == "GET" || method == "HEAD") && target.contains("/vol/"),
        Fault::Status(403, "AccessDenied"),
        None,
    );
    let out = cli(&["ls", &location]);
    assert_eq!(out.status.code(), Some(4), "{}", stderr(&out));
    assert!(stderr(&out).contains("s3:GetObject"), "{}", stderr(&out));
}
