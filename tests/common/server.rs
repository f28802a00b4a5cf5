//! Real S3-compatible servers for integration tests: moto and Garage on 127.0.0.1.
//!
//! One server of each kind is started per test process, on first use, with ephemeral ports
//! and a temporary data directory; each test gets a bucket of its own. The server is killed
//! when the test process exits, however it exits (PR_SET_PDEATHSIG on a thread that lives as
//! long as the process), and its data directory is removed by the next run.

use std::net::TcpListener;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Mutex, OnceLock, mpsc};
use std::time::{Duration, Instant};

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ServerKind {
    Moto,
    Garage,
}

impl ServerKind {
    pub fn name(self) -> &'static str {
        match self {
            ServerKind::Moto => "moto",
            ServerKind::Garage => "garage",
        }
    }
}

/// A running server (shared by the tests of one process).
#[derive(Debug)]
pub struct Server {
    pub kind: ServerKind,
    pub endpoint: String,
    pub access_key: String,
    pub secret_key: String,
    pub data_dir: PathBuf,
    pid: u32,
}

const GARAGE_KEY_ID: &str = "GK00000000000000000000c0de";
const GARAGE_SECRET: &str = "00000000000000000000000000000000000000000000000000000000000c0de0";

static MOTO: OnceLock<Server> = OnceLock::new();
static GARAGE: OnceLock<Server> = OnceLock::new();
static BUCKET_COUNTER: AtomicUsize = AtomicUsize::new(0);
static START_LOCK: Mutex<()> = Mutex::new(());

/// The shared server of `kind`, started on first use. Panics with a clear message when the
/// server binary is missing: a missing server is a failure, never a skip.
pub fn server(kind: ServerKind) -> &'static Server {
    let cell = match kind {
        ServerKind::Moto => &MOTO,
        ServerKind::Garage => &GARAGE,
    };
    cell.get_or_init(|| {
        let _guard = START_LOCK.lock().unwrap_or_else(|e| e.into_inner());
        start(kind).unwrap_or_else(|e| panic!("cannot start {} server: {e}", kind.name()))
    })
}

impl Server {
    /// A server the test started itself (a cluster node), for the volume helpers.
    pub fn external(endpoint: String, access_key: &str, secret_key: &str) -> Self {
        Self {
            kind: ServerKind::Garage,
            endpoint,
            access_key: access_key.into(),
            secret_key: secret_key.into(),
            data_dir: PathBuf::new(),
            pid: 0,
        }
    }

    /// A fresh bucket name, unique in this process.
    pub fn new_bucket_name(&self, tag: &str) -> String {
        let n = BUCKET_COUNTER.fetch_add(1, Ordering::SeqCst);
        let tag: String = tag
            .chars()
            .map(|c| {
                if c.is_ascii_alphanumeric() {
                    c.to_ascii_lowercase()
                } else {
                    '-'
                }
            })
            .take(30)
            .collect();
        format!("t{}-{n}-{tag}", std::process::id())
    }

    /// Environment for anything that talks to this server (the SDK, our binary).
    pub fn env(&self) -> Vec<(&'static str, String)> {
        vec![
            ("AWS_ACCESS_KEY_ID", self.access_key.clone()),
            ("AWS_SECRET_ACCESS_KEY", self.secret_key.clone()),
            ("AWS_REGION", "us-east-1".to_string()),
            ("AWS_EC2_METADATA_DISABLED", "true".to_string()),
        ]
    }

    pub fn pid(&self) -> u32 {
        self.pid
    }
}

pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("no free port")
}

pub fn find_binary(env_var: &str, name: &str, extra: &[&str]) -> Result<PathBuf, String> {
    if let Some(p) = std::env::var_os(env_var) {
        return Ok(PathBuf::from(p));
    }
    let path = std::env::var_os("PATH").unwrap_or_default();
    let candidates = std::env::split_paths(&path)
        .map(|d| d.join(name))
        .chain(extra.iter().map(PathBuf::from));
    for c in candidates {
        if c.is_file() {
            return Ok(c);
        }
    }
    Err(format!(
        "{name} not found (set {env_var}, or run .ci/run / `bash scripts/install-test-deps.sh` to install it)"
    ))
}

/// Spawns `cmd` from a thread that never exits, with PR_SET_PDEATHSIG, so the server dies
/// with the test process even if a test panics or the process is killed.
pub fn spawn_tied_to_process(mut cmd: Command) -> std::io::Result<Child> {
    // SAFETY: the closure runs in the forked child and only calls prctl(2), which is async-signal-safe.
    unsafe {
        cmd.pre_exec(|| {
            if libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL) != 0 {
                return Err(std::io::Error::last_os_error());
            }
            Ok(())
        });
    }
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        let result = cmd.spawn();
        let failed = result.is_err();
        let _ = tx.send(result);
        if !failed {
            loop {
                std::thread::park();
            }
        }
    });
    rx.recv().expect("spawner thread died")
}

fn remove_stale_data_dirs(root: &Path) {
    let Ok(entries) = std::fs::read_dir(root) else {
        return;
    };
    for e in entries.flatten() {
        let name = e.file_name().to_string_lossy().to_string();
        let pid = name.rsplit('-').next().and_then(|p| p.parse::<i32>().ok());
        // SAFETY: kill(2) with signal 0 only asks whether the process exists.
        let gone = |pid: i32| unsafe { libc::kill(pid, 0) } != 0;
        if let Some(pid) = pid
            && gone(pid)
        {
            let _ = std::fs::remove_dir_all(e.path());
        }
    }
}

pub fn wait_for_port(port: u16, child: &mut Child, log: &Path) -> Result<(), String> {
    let deadline = Instant::now() + Duration::from_secs(60);
    while Instant::now() < deadline {
        if std::net::TcpStream::connect(("127.0.0.1", port)).is_ok() {
            return Ok(());
        }
        if let Ok(Some(status)) = child.try_wait() {
            let log = std::fs::read_to_string(log).unwrap_or_default();
            return Err(format!("server exited with {status}: {log}"));
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    Err(format!("server did not listen on port {port} within 60 s"))
}

fn start(kind: ServerKind) -> Result<Server, String> {
    let root = std::env::temp_dir().join("s3cryptfs-test-servers");
    std::fs::create_dir_all(&root).map_err(|e| e.to_string())?;
    remove_stale_data_dirs(&root);
    let data_dir = root.join(format!("{}-{}", kind.name(), std::process::id()));
    let _ = std::fs::remove_dir_all(&data_dir);
    std::fs::create_dir_all(&data_dir).map_err(|e| e.to_string())?;
    let log_path = data_dir.join("server.log");
    let log = std::fs::File::create(&log_path).map_err(|e| e.to_string())?;
    let port = free_port();
    let endpoint = format!("http://127.0.0.1:{port}");
    match kind {
        ServerKind::Moto => {
            let bin = find_binary(
                "S3CRYPTFS_MOTO",
                "moto_server",
                &[
                    "/opt/s3test/venv/bin/moto_server",
                    "/opt/s3test/bin/moto_server",
                ],
            )?;
            let mut cmd = Command::new(bin);
            cmd.args(["-H", "127.0.0.1", "-p", &port.to_string()])
                .stdin(Stdio::null())
                .stdout(log.try_clone().map_err(|e| e.to_string())?)
                .stderr(log);
            let mut child = spawn_tied_to_process(cmd).map_err(|e| e.to_string())?;
            wait_for_port(port, &mut child, &log_path)?;
            Ok(Server {
                kind,
                endpoint,
                access_key: "testing".into(),
                secret_key: "testing".into(),
                data_dir,
                pid: child.id(),
            })
        }
        ServerKind::Garage => start_garage(port, endpoint, data_dir, log, &log_path),
    }
}

fn start_garage(
    port: u16,
    endpoint: String,
    data_dir: PathBuf,
    log: std::fs::File,
    log_path: &Path,
) -> Result<Server, String> {
    let bin = garage_binary()?;
    let (rpc_port, admin_port) = (free_port(), free_port());
    let secret: String = (0..32)
        .map(|i| format!("{:02x}", (i * 37 + port as usize) % 256))
        .collect();
    let config = garage_config(&data_dir, port, rpc_port, admin_port, &secret, 1);
    let config_path = data_dir.join("garage.toml");
    std::fs::write(&config_path, config).map_err(|e| e.to_string())?;
    let mut cmd = Command::new(&bin);
    cmd.arg("-c")
        .arg(&config_path)
        .arg("server")
        .env("RUST_LOG", "warn")
        .stdin(Stdio::null())
        .stdout(log.try_clone().map_err(|e| e.to_string())?)
        .stderr(log);
    let mut child = spawn_tied_to_process(cmd).map_err(|e| e.to_string())?;
    wait_for_port(port, &mut child, log_path)?;

    let garage = |args: &[&str]| garage_cli(&bin, &config_path, args);
    // The node answers the CLI a moment after it starts listening.
    let deadline = Instant::now() + Duration::from_secs(30);
    let node = loop {
        match garage(&["node", "id", "-q"]) {
            Ok(id) => break id.trim().split('@').next().unwrap_or("").to_string(),
            Err(e) if Instant::now() > deadline => return Err(e),
            Err(_) => std::thread::sleep(Duration::from_millis(200)),
        }
    };
    garage(&["layout", "assign", "-z", "dc1", "-c", "100G", &node])?;
    garage(&["layout", "apply", "--version", "1"])?;
    garage(&[
        "key",
        "import",
        "--yes",
        "-n",
        "test",
        GARAGE_KEY_ID,
        GARAGE_SECRET,
    ])?;
    garage(&["key", "allow", "--create-bucket", GARAGE_KEY_ID])?;
    Ok(Server {
        kind: ServerKind::Garage,
        endpoint,
        access_key: GARAGE_KEY_ID.into(),
        secret_key: GARAGE_SECRET.into(),
        data_dir,
        pid: child.id(),
    })
}

/// A Garage node's configuration file.
pub fn garage_config(
    data_dir: &Path,
    s3_port: u16,
    rpc_port: u16,
    admin_port: u16,
    rpc_secret: &str,
    replication: u8,
) -> String {
    format!(
        r#"metadata_dir = "{d}/meta"
data_dir = "{d}/data"
db_engine = "lmdb"
replication_factor = {replication}
metadata_fsync = false
data_fsync = false
compression_level = "none"
rpc_bind_addr = "127.0.0.1:{rpc_port}"
rpc_public_addr = "127.0.0.1:{rpc_port}"
rpc_secret = "{rpc_secret}"

[s3_api]
s3_region = "us-east-1"
api_bind_addr = "127.0.0.1:{s3_port}"
root_domain = ".s3.localhost"

[admin]
api_bind_addr = "127.0.0.1:{admin_port}"
"#,
        d = data_dir.display()
    )
}

/// Runs the garage CLI against the node configured in `config`.
pub fn garage_cli(bin: &Path, config: &Path, args: &[&str]) -> Result<String, String> {
    let out = Command::new(bin)
        .arg("-c")
        .arg(config)
        .args(args)
        .output()
        .map_err(|e| e.to_string())?;
    if out.status.success() {
        Ok(String::from_utf8_lossy(&out.stdout).to_string())
    } else {
        Err(format!(
            "garage {}: {}",
            args.join(" "),
            String::from_utf8_lossy(&out.stderr)
        ))
    }
}

/// The garage binary the tests use.
pub fn garage_binary() -> Result<PathBuf, String> {
    find_binary(
        "S3CRYPTFS_GARAGE",
        "garage",
        &["/opt/s3test/bin/garage", "/root/.cargo/bin/garage"],
    )
}
