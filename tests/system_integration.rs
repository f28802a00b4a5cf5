//! The mount(8) helper through util-linux `mount -t fuse.s3cryptfs`, and the systemd units.

mod common;

use std::path::{Path, PathBuf};
use std::process::Command;

use common::ServerKind;
use common::mount::{BIN, TestVolume, is_mounted, stderr, write_key_file};

/// The helper symlink util-linux looks for; removed again when the test ends.
struct HelperLink(PathBuf);

impl HelperLink {
    fn install() -> Self {
        let link = PathBuf::from("/sbin/mount.fuse.s3cryptfs");
        let _ = std::fs::remove_file(&link);
        std::os::unix::fs::symlink(BIN, &link).expect("create /sbin/mount.fuse.s3cryptfs (root)");
        Self(link)
    }
}

impl Drop for HelperLink {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.0);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mount_t_fuse_s3cryptfs_reaches_the_helper() {
    let v = TestVolume::new(ServerKind::Garage, "helper", "vol").await;
    let _link = HelperLink::install();
    let dir = tempfile::tempdir().unwrap();
    let mount = |key: &Path| {
        Command::new("mount")
            .args(["-t", "fuse.s3cryptfs", &v.location()])
            .arg(dir.path())
            .arg("-o")
            .arg(format!(
                "key_file={},endpoint_url={},force_path_style,_netdev,nofail,allow_other,x-systemd.automount,comment=test,noexec,nosuid,nodev,noatime,max_cache_size=64MiB,metrics_addr=127.0.0.1:0",
                key.display(),
                v.server.endpoint
            ))
            .envs(v.server.env())
            .output()
            .unwrap()
    };
    let out = mount(&v.key_file);
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(
        is_mounted(dir.path()),
        "mount returned once the volume was live"
    );
    // Generic mount flags reach the kernel: noexec as asked, nosuid and nodev always.
    let mounts = std::fs::read_to_string("/proc/self/mounts").unwrap();
    let ours = mounts
        .lines()
        .find(|l| l.split(' ').nth(1) == Some(dir.path().to_str().unwrap()))
        .expect("the mount in /proc/self/mounts");
    let flags: Vec<&str> = ours.split(' ').nth(3).unwrap().split(',').collect();
    for flag in ["noexec", "nosuid", "nodev"] {
        assert!(flags.contains(&flag), "{flag} in {ours}");
    }
    std::fs::write(dir.path().join("via-helper"), b"mounted by mount(8)").unwrap();
    assert_eq!(
        std::fs::read(dir.path().join("via-helper")).unwrap(),
        b"mounted by mount(8)"
    );
    let out = Command::new("umount").arg(dir.path()).output().unwrap();
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(!is_mounted(dir.path()));

    let wrong = v.dir.path().join("wrong.key");
    write_key_file(&wrong, 123);
    let out = mount(&wrong);
    assert!(!out.status.success());
    assert!(stderr(&out).contains("does not match"), "{}", stderr(&out));
    assert!(!is_mounted(dir.path()));
}

#[test]
fn systemd_units_pass_systemd_analyze_verify() {
    let units = Path::new(env!("CARGO_MANIFEST_DIR")).join("systemd");
    let dir = tempfile::tempdir().unwrap();
    // The template is verified as an instance, with ExecStart pointing at the built binary
    // (verify checks that the command exists).
    let mut to_verify = Vec::new();
    for (name, as_name) in [
        ("s3cryptfs@.service", "s3cryptfs@vault.service"),
        ("mnt-vault.mount", "mnt-vault.mount"),
        ("mnt-vault.automount", "mnt-vault.automount"),
    ] {
        let text = std::fs::read_to_string(units.join(name)).unwrap();
        let path = dir.path().join(as_name);
        std::fs::write(&path, text.replace("/usr/local/bin/s3cryptfs", BIN)).unwrap();
        to_verify.push(path);
    }
    let out = Command::new("systemd-analyze")
        .arg("verify")
        .args(&to_verify)
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", stderr(&out));
    let complaints: Vec<&str> = std::str::from_utf8(&out.stderr)
        .unwrap()
        .lines()
        .filter(|l| {
            to_verify
                .iter()
                .any(|p| l.contains(p.file_name().unwrap().to_str().unwrap()))
        })
        .collect();
    assert!(
        complaints.is_empty(),
        "systemd-analyze complains: {complaints:?}"
    );
    // The fstab example's options are all understood by the helper.
    let fstab = std::fs::read_to_string(units.join("fstab.example")).unwrap();
    let line = fstab
        .lines()
        .find(|l| !l.starts_with('#') && !l.trim().is_empty())
        .unwrap();
    let fields: Vec<&str> = line.split_whitespace().collect();
    assert_eq!(fields[2], "s3cryptfs");
    let helper = dir.path().join("mount.s3cryptfs");
    std::os::unix::fs::symlink(BIN, &helper).unwrap();
    // `mount -f` style dry run: the helper parses the options and does nothing.
    let out = Command::new(&helper)
        .args([fields[0], fields[1], "-o", fields[3], "-f"])
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", stderr(&out));
    let out = Command::new(&helper)
        .args([fields[0], fields[1], "-o", "bogus_option", "-f"])
        .output()
        .unwrap();
    assert!(!out.status.success(), "unknown options are refused");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn notifies_systemd_when_ready_and_when_stopping() {
    use std::os::unix::net::UnixDatagram;
    let v = TestVolume::new(ServerKind::Moto, "notify", "").await;
    let dir = tempfile::tempdir().unwrap();
    let socket_path = v.dir.path().join("notify.sock");
    let socket = UnixDatagram::bind(&socket_path).unwrap();
    socket
        .set_read_timeout(Some(std::time::Duration::from_secs(60)))
        .unwrap();
    let mut child = Command::new(BIN)
        .args(["mount", &v.location()])
        .arg(dir.path())
        .arg("--key-file")
        .arg(&v.key_file)
        .args([
            "--endpoint-url",
            &v.server.endpoint,
            "--force-path-style",
            "--foreground",
        ])
        .envs(v.server.env())
        .env("NOTIFY_SOCKET", &socket_path)
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let mut buf = [0u8; 256];
    let n = socket.recv(&mut buf).expect("READY=1 within 60 s");
    assert!(String::from_utf8_lossy(&buf[..n]).contains("READY=1"));
    assert!(is_mounted(dir.path()), "ready means mounted");
    // SAFETY: kill(2) on our own child, which has not been reaped yet.
    unsafe { libc::kill(child.id() as i32, libc::SIGTERM) };
    let n = socket.recv(&mut buf).expect("STOPPING=1 after SIGTERM");
    assert!(String::from_utf8_lossy(&buf[..n]).contains("STOPPING=1"));
    assert_eq!(
        child.wait().unwrap().code(),
        Some(0),
        "graceful shutdown exits 0"
    );
    assert!(!is_mounted(dir.path()));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn serves_prometheus_metrics_on_loopback() {
    let v = TestVolume::new(ServerKind::Garage, "metrics", "").await;
    let addr = common::free_loopback_addr();
    let m = v.mount(&["--metrics-addr", &addr]);
    // The mount's own probe of conditional writes sent parts too.
    let parts_metric = "s3cryptfs_s3_requests_total{op=\"UploadPart\"}";
    let parts_before = common::metric(&addr, parts_metric);
    std::fs::write(m.join("small"), b"small").unwrap();
    // Two parts: one full (common::PART plaintext bytes) and the rest.
    let large = common::PART + common::PART / 2;
    std::fs::write(m.join("large"), common::random_bytes(large, 9)).unwrap();
    assert_eq!(std::fs::read(m.join("small")).unwrap(), b"small");
    let value = |name: &str| common::metric(&addr, name);
    assert_eq!(
        value("s3cryptfs_files_committed_total{upload=\"single_put\"}"),
        1.0
    );
    assert_eq!(
        value("s3cryptfs_files_committed_total{upload=\"multipart\"}"),
        1.0
    );
    assert_eq!(value(parts_metric) - parts_before, 2.0);
    assert!(value("s3cryptfs_bytes_uploaded_total") > large as f64);
    assert_eq!(value("s3cryptfs_upload_parts_in_flight"), 0.0);
    assert!(value("s3cryptfs_segment_cache_lookups_total{result=\"miss\"}") >= 1.0);
    drop(m);

    // Anything but loopback is refused.
    let dir = tempfile::tempdir().unwrap();
    let out = Command::new(BIN)
        .args(["mount", &v.location()])
        .arg(dir.path())
        .arg("--key-file")
        .arg(&v.key_file)
        .args([
            "--endpoint-url",
            &v.server.endpoint,
            "--force-path-style",
            "--foreground",
        ])
        .args(["--metrics-addr", "0.0.0.0:9464"])
        .envs(v.server.env())
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));
    assert!(stderr(&out).contains("loopback"), "{}", stderr(&out));
}

/// A datagram socket of our own where the journal's or syslog's would be (no journald or
/// syslog daemon runs here), removed when the test ends, so that what a daemon sends there
/// can be read back.
struct LogListener {
    socket: std::os::unix::net::UnixDatagram,
    path: PathBuf,
    made_dir: bool,
}

const JOURNAL_SOCKET: &str = "/run/systemd/journal/socket";
const SYSLOG_SOCKET: &str = "/dev/log";

impl LogListener {
    fn bind(path: &str) -> Self {
        let dir = Path::new(path).parent().unwrap();
        let made_dir = !dir.exists();
        std::fs::create_dir_all(dir).unwrap();
        let socket = std::os::unix::net::UnixDatagram::bind(path)
            .unwrap_or_else(|e| panic!("bind {path} (root, nothing listening there): {e}"));
        socket
            .set_read_timeout(Some(std::time::Duration::from_secs(20)))
            .unwrap();
        Self {
            socket,
            path: PathBuf::from(path),
            made_dir,
        }
    }

    /// The next datagram for which `wanted` holds.
    fn next_where(&self, wanted: impl Fn(&[u8]) -> bool) -> Vec<u8> {
        let mut buf = vec![0u8; 1 << 16];
        loop {
            let n = self.socket.recv(&mut buf).expect("a log message in time");
            if wanted(&buf[..n]) {
                return buf[..n].to_vec();
            }
        }
    }

    /// The fields of the next journal entry whose MESSAGE contains `needle`.
    fn entry_with(&self, needle: &str) -> std::collections::HashMap<String, String> {
        let entry = self.next_where(|bytes| {
            journal_fields(bytes)
                .get("MESSAGE")
                .is_some_and(|m| m.contains(needle))
        });
        journal_fields(&entry)
    }
}

impl Drop for LogListener {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.path);
        if self.made_dir {
            let _ = std::fs::remove_dir(self.path.parent().unwrap());
        }
    }
}

/// The journal's native protocol: each field is `NAME=value\n`, or `NAME\n`, a 64-bit
/// little-endian length, the value and `\n` (for values that may hold newlines).
fn journal_fields(mut entry: &[u8]) -> std::collections::HashMap<String, String> {
    let mut fields = std::collections::HashMap::new();
    while let Some(end) = entry.iter().position(|b| *b == b'\n' || *b == b'=') {
        let name = String::from_utf8_lossy(&entry[..end]).to_string();
        let value;
        if entry[end] == b'=' {
            let rest = &entry[end + 1..];
            let stop = rest.iter().position(|b| *b == b'\n').unwrap_or(rest.len());
            value = String::from_utf8_lossy(&rest[..stop]).to_string();
            entry = rest.get(stop + 1..).unwrap_or_default();
        } else {
            let len = u64::from_le_bytes(entry[end + 1..end + 9].try_into().unwrap()) as usize;
            let start = end + 9;
            value = String::from_utf8_lossy(&entry[start..start + len]).to_string();
            entry = entry.get(start + len + 1..).unwrap_or_default();
        }
        fields.insert(name, value);
    }
    fields
}

/// A background mount without --log-file (as from fstab) logs to syslog where no journal
/// runs, and to the journal where one does, with priorities, instead of to a stderr that is
/// gone once the mount is live.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_background_mount_logs_to_syslog_or_the_journal() {
    let v = TestVolume::new(ServerKind::Garage, "journal", "j").await;
    let dir = tempfile::tempdir().unwrap();
    let mountpoint = dir.path().to_string_lossy().to_string();
    let mount_and_unmount = || {
        let out = v.cli(
            &["mount", &v.location(), &mountpoint, "--key-file"],
            &[&v.key_file],
        );
        assert!(out.status.success(), "{}", stderr(&out));
        let out = Command::new(BIN)
            .args(["umount", &mountpoint])
            .output()
            .unwrap();
        assert!(out.status.success(), "{}", stderr(&out));
    };
    let wanted = format!("mounted {}", v.location());
    if Path::new(JOURNAL_SOCKET).exists() {
        // A real journald: read it back with journalctl.
        let since = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_secs();
        mount_and_unmount();
        let out = Command::new("journalctl")
            .args(["-t", "s3cryptfs", "-o", "cat", &format!("--since=@{since}")])
            .output()
            .unwrap();
        let text = String::from_utf8_lossy(&out.stdout);
        assert!(text.contains(&wanted), "{text}");
        return;
    }
    if !Path::new(SYSLOG_SOCKET).exists() {
        let syslog = LogListener::bind(SYSLOG_SOCKET);
        mount_and_unmount();
        let line = syslog.next_where(|m| String::from_utf8_lossy(m).contains(&wanted));
        let line = String::from_utf8_lossy(&line).to_string();
        // <facility daemon (3) × 8 + severity notice (5)>, then the tag with the PID.
        assert!(
            line.starts_with("<29>"),
            "info is notice, facility daemon: {line:?}"
        );
        assert!(line.contains("s3cryptfs["), "{line:?}");
        assert!(
            line.contains("cache_size=64 MiB"),
            "sizes in force: {line:?}"
        );
    }
    let journal = LogListener::bind(JOURNAL_SOCKET);
    mount_and_unmount();
    let entry = journal.entry_with(&wanted);
    let field = |name: &str| entry.get(name).map(String::as_str);
    assert_eq!(field("PRIORITY"), Some("5"), "info is notice: {entry:?}");
    assert_eq!(field("SYSLOG_IDENTIFIER"), Some("s3cryptfs"), "{entry:?}");
    assert_eq!(
        field("F_CACHE_SIZE"),
        Some("64 MiB"),
        "sizes in force: {entry:?}"
    );
}
