//! Real mounts for tests: a volume on a test server, the `s3cryptfs` binary mounting it in a
//! temp dir, and an unmount that always happens (lazy unmount and kill as the last resort).

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

use s3cryptfs::store::S3Store;

use super::server::{Server, ServerKind, server};

pub const BIN: &str = env!("CARGO_BIN_EXE_s3cryptfs");

/// A bucket with an initialised volume and the key that unlocks it.
pub struct TestVolume {
    pub server: &'static Server,
    pub bucket: String,
    pub prefix: String,
    pub dir: tempfile::TempDir,
    pub key_file: PathBuf,
    /// Direct access to the bucket (scoped to the volume prefix), to prepare and inspect it.
    pub store: S3Store,
    /// How the volume stores names (set at init).
    pub names: Names,
}

/// Plain or encrypted names: suites run on both kinds of volume.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Names {
    Plain,
    Encrypted,
}

impl TestVolume {
    /// A fresh bucket and a volume at `prefix` in it, created with `s3cryptfs init`.
    pub async fn new(kind: ServerKind, tag: &str, prefix: &str) -> Self {
        Self::new_on(server(kind), tag, prefix).await
    }

    /// A volume on a given server (a cluster node, for example).
    pub async fn new_on(server: &'static Server, tag: &str, prefix: &str) -> Self {
        Self::init_on(server, tag, prefix, Names::Plain).await
    }

    /// A fresh volume with plain or encrypted names.
    pub async fn with_names(kind: ServerKind, names: Names, tag: &str, prefix: &str) -> Self {
        Self::init_on(server(kind), tag, prefix, names).await
    }

    /// A fresh volume in an older object format (1 or 2), as earlier builds made them.
    pub async fn older_format(kind: ServerKind, format: u8, tag: &str, prefix: &str) -> Self {
        let format = format.to_string();
        Self::init_with(
            server(kind),
            tag,
            prefix,
            Names::Plain,
            &["--object-format", &format],
        )
        .await
    }

    async fn init_on(server: &'static Server, tag: &str, prefix: &str, names: Names) -> Self {
        Self::init_with(server, tag, prefix, names, &[]).await
    }

    async fn init_with(
        server: &'static Server,
        tag: &str,
        prefix: &str,
        names: Names,
        extra: &[&str],
    ) -> Self {
        let mut volume = Self::uninitialised_on(server, tag, prefix).await;
        let location = volume.location();
        let mut args = vec!["init", &location];
        if names == Names::Encrypted {
            args.push("--encrypt-names");
        }
        args.extend_from_slice(extra);
        args.push("--key-file");
        let out = volume.cli(&args, &[&volume.key_file]);
        assert!(out.status.success(), "init failed: {}", stderr(&out));
        volume.names = names;
        volume
    }

    /// The object key of a plaintext path in the volume (a directory's prefix when `path`
    /// ends in `/`), through the volume's own name layer.
    pub async fn key(&self, path: &str) -> String {
        use s3cryptfs::object_keys::{NameCodec, join_path};
        if self.names == Names::Plain {
            return path.to_string();
        }
        let user = s3cryptfs::crypto::UserKey::from_key_file(&self.key_file).unwrap();
        let store: std::sync::Arc<dyn s3cryptfs::store::ObjectStore> =
            std::sync::Arc::new(self.store.clone());
        let volume = s3cryptfs::volume::Volume::open(store, "test", &user)
            .await
            .unwrap();
        let codec: &NameCodec = &volume.names;
        let (mut key, mut dir) = (String::new(), String::new());
        let parts: Vec<&str> = path.split('/').collect();
        for (i, name) in parts.iter().enumerate() {
            if name.is_empty() {
                continue;
            }
            key.push_str(&codec.encode(&dir, name).component);
            if i + 1 < parts.len() {
                key.push('/');
            }
            dir = join_path(&dir, name);
        }
        key
    }

    /// A fresh bucket with a key file but no volume config.
    pub async fn uninitialised(kind: ServerKind, tag: &str, prefix: &str) -> Self {
        Self::uninitialised_on(server(kind), tag, prefix).await
    }

    async fn uninitialised_on(server: &'static Server, tag: &str, prefix: &str) -> Self {
        let bucket = server.new_bucket_name(tag);
        let root = super::store_for(server, &bucket, "").await;
        root.create_bucket().await.expect("create bucket");
        let store = super::store_for(server, &bucket, prefix).await;
        let dir = tempfile::tempdir().expect("tempdir");
        let key_file = dir.path().join("volume.key");
        write_key_file(&key_file, 7);
        Self {
            server,
            bucket,
            prefix: prefix.to_string(),
            dir,
            key_file,
            store,
            names: Names::Plain,
        }
    }

    pub fn location(&self) -> String {
        if self.prefix.is_empty() {
            self.bucket.clone()
        } else {
            format!("{}/{}", self.bucket, self.prefix.trim_end_matches('/'))
        }
    }

    /// Runs the CLI against this server: `args`, then `paths`, then the connection options.
    pub fn cli(&self, args: &[&str], paths: &[&Path]) -> Output {
        let mut cmd = Command::new(BIN);
        cmd.args(args).args(paths).args([
            "--endpoint-url",
            &self.server.endpoint,
            "--force-path-style",
        ]);
        for (k, v) in self.server.env() {
            cmd.env(k, v);
        }
        cmd.output().expect("run s3cryptfs")
    }

    /// Mounts the volume with the default key and `extra` options.
    pub fn mount(&self, extra: &[&str]) -> Mount {
        self.mount_with_key(&self.key_file, extra)
            .unwrap_or_else(|e| panic!("mount failed: {e}"))
    }

    /// Mounts with `key_file`; Err(log) if the daemon exits before the mount is live.
    pub fn mount_with_key(&self, key_file: &Path, extra: &[&str]) -> Result<Mount, String> {
        self.mount_at(&self.server.endpoint, key_file, extra)
    }

    /// Mounts through another endpoint (a fault-injecting proxy).
    pub fn mount_via(&self, endpoint: &str, extra: &[&str]) -> Mount {
        self.mount_at(endpoint, &self.key_file, extra)
            .unwrap_or_else(|e| panic!("mount failed: {e}"))
    }

    fn mount_at(&self, endpoint: &str, key_file: &Path, extra: &[&str]) -> Result<Mount, String> {
        let mountpoint = tempfile::tempdir().expect("mountpoint");
        let log = self.dir.path().join(format!(
            "mount-{}.log",
            mountpoint.path().file_name().unwrap().to_string_lossy()
        ));
        let mut cmd = Command::new(BIN);
        cmd.args(["mount", &self.location()])
            .arg(mountpoint.path())
            .arg("--key-file")
            .arg(key_file)
            .args(["--endpoint-url", endpoint, "--force-path-style"])
            .args(["--foreground", "--log-level", "debug"])
            .args(extra)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(&log).expect("log file"));
        for (k, v) in self.server.env() {
            cmd.env(k, v);
        }
        let mut child = cmd.spawn().expect("spawn s3cryptfs mount");
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            if is_mounted(mountpoint.path()) {
                return Ok(Mount {
                    mountpoint: Some(mountpoint),
                    child: Some(child),
                    log,
                });
            }
            if let Ok(Some(status)) = child.try_wait() {
                let text = std::fs::read_to_string(&log).unwrap_or_default();
                return Err(format!("daemon exited with {status}: {text}"));
            }
            if Instant::now() > deadline {
                let _ = child.kill();
                panic!("mount did not appear within 60 s");
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

/// A live mount; unmounted when dropped, whatever happened in the test.
pub struct Mount {
    mountpoint: Option<tempfile::TempDir>,
    child: Option<Child>,
    pub log: PathBuf,
}

impl Mount {
    pub fn path(&self) -> &Path {
        self.mountpoint.as_ref().expect("mounted").path()
    }

    pub fn join(&self, rel: &str) -> PathBuf {
        self.path().join(rel)
    }

    pub fn pid(&self) -> u32 {
        self.child.as_ref().expect("running").id()
    }

    /// The daemon's exit status once it has exited (`Some(None)`: killed by a signal).
    pub fn exited(&mut self) -> Option<Option<i32>> {
        let child = self.child.as_mut()?;
        child.try_wait().ok().flatten().map(|s| s.code())
    }

    /// The daemon's log so far.
    pub fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// S3 requests of kind `op` (e.g. "ListObjectsV2") in the daemon's log so far.
    pub fn requests(&self, op: &str) -> usize {
        let needle = format!("op={op} ");
        self.log_text()
            .lines()
            .filter(|l| l.contains("s3 request") && l.contains(&needle))
            .count()
    }

    /// Unmounts and waits for the daemon to exit; returns its exit status code.
    pub fn unmount(mut self) -> Option<i32> {
        self.shutdown()
    }

    fn shutdown(&mut self) -> Option<i32> {
        let dir = self.mountpoint.take()?;
        let mut child = self.child.take()?;
        let ok = !is_mounted(dir.path())
            || Command::new("umount")
                .arg(dir.path())
                .status()
                .map(|s| s.success())
                .unwrap_or(false);
        if !ok {
            let _ = Command::new("umount").arg("-l").arg(dir.path()).status();
        }
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            match child.try_wait() {
                Ok(Some(status)) => return status.code(),
                _ if Instant::now() > deadline => {
                    let _ = child.kill();
                    let _ = child.wait();
                    return None;
                }
                _ => std::thread::sleep(Duration::from_millis(50)),
            }
        }
    }
}

impl Drop for Mount {
    fn drop(&mut self) {
        self.shutdown();
    }
}

pub fn is_mounted(path: &Path) -> bool {
    let Ok(canon) = path.canonicalize() else {
        return false;
    };
    let canon = canon.to_string_lossy().to_string();
    std::fs::read_to_string("/proc/self/mountinfo")
        .map(|m| {
            m.lines()
                .any(|l| l.split(' ').nth(4) == Some(canon.as_str()))
        })
        .unwrap_or(false)
}

pub fn write_key_file(path: &Path, seed: u8) {
    let key: String = (0..32u8)
        .map(|i| format!("{:02x}", i.wrapping_mul(31) ^ seed))
        .collect();
    std::fs::write(path, format!("{key}\n")).expect("write key");
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600)).expect("chmod key");
}

/// A figure the daemon logged at unmount: `field=N` on its line of `totals` ("name totals",
/// "upload totals", ...) in the mount's log `text`.
#[allow(dead_code)]
pub fn logged_total(text: &str, totals: &str, field: &str) -> u64 {
    text.lines()
        .filter(|l| l.contains(totals))
        .find_map(|l| l.split(&format!(" {field}=")).nth(1))
        .and_then(|v| v.split_whitespace().next()?.parse().ok())
        .unwrap_or_else(|| panic!("{field} in the {totals} logged at unmount"))
}

pub fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).to_string()
}

pub fn sha256_file(path: &Path) -> String {
    use sha2::{Digest, Sha256};
    let data = std::fs::read(path).unwrap_or_else(|e| panic!("read {}: {e}", path.display()));
    hex::encode(Sha256::digest(&data))
}

/// The process serving the mount on `mountpoint` (its command line names it).
pub fn daemon_of(mountpoint: &std::path::Path) -> Option<u32> {
    let wanted = mountpoint.to_string_lossy().to_string();
    std::fs::read_dir("/proc").ok()?.find_map(|entry| {
        let pid: u32 = entry.ok()?.file_name().to_str()?.parse().ok()?;
        let cmdline = std::fs::read(format!("/proc/{pid}/cmdline")).ok()?;
        let args: Vec<String> = cmdline
            .split(|b| *b == 0)
            .map(|a| String::from_utf8_lossy(a).to_string())
            .collect();
        (args.contains(&wanted) && args.iter().any(|a| a == "--foreground")).then_some(pid)
    })
}
