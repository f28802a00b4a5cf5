//! A three-node Garage cluster on loopback (replication factor 3) whose nodes can be stopped
//! and restarted, for tests of s3cryptfs on a real distributed store.

use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use super::server::{
    free_port, garage_binary, garage_cli, garage_config, spawn_tied_to_process, wait_for_port,
};

pub const ACCESS_KEY: &str = "GK0000000000000000000c1a57";
pub const SECRET_KEY: &str = "00000000000000000000000000000000000000000000000000000000c1a57e00";

pub struct Node {
    pub s3_port: u16,
    rpc_port: u16,
    config: PathBuf,
    log: PathBuf,
    child: Option<Child>,
}

pub struct Cluster {
    pub nodes: Vec<Node>,
    bin: PathBuf,
    _dir: tempfile::TempDir,
}

impl Cluster {
    pub fn start() -> Result<Self, String> {
        let bin = garage_binary()?;
        let dir = tempfile::tempdir().map_err(|e| e.to_string())?;
        let secret: String = (0..32)
            .map(|i| format!("{:02x}", (i * 53 + 7) % 256))
            .collect();
        let mut nodes = Vec::new();
        for i in 0..3 {
            let data = dir.path().join(format!("node{i}"));
            std::fs::create_dir_all(&data).map_err(|e| e.to_string())?;
            let (s3_port, rpc_port, admin_port) = (free_port(), free_port(), free_port());
            let config = data.join("garage.toml");
            std::fs::write(
                &config,
                garage_config(&data, s3_port, rpc_port, admin_port, &secret, 3),
            )
            .map_err(|e| e.to_string())?;
            let mut node = Node {
                s3_port,
                rpc_port,
                config,
                log: data.join("garage.log"),
                child: None,
            };
            node.start(&bin)?;
            nodes.push(node);
        }
        let cluster = Self {
            nodes,
            bin,
            _dir: dir,
        };
        cluster.form()?;
        Ok(cluster)
    }

    pub fn endpoint(&self, node: usize) -> String {
        format!("http://127.0.0.1:{}", self.nodes[node].s3_port)
    }

    fn cli(&self, node: usize, args: &[&str]) -> Result<String, String> {
        garage_cli(&self.bin, &self.nodes[node].config, args)
    }

    fn node_id(&self, node: usize) -> Result<String, String> {
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            match self.cli(node, &["node", "id", "-q"]) {
                Ok(id) => return Ok(id.trim().split('@').next().unwrap_or("").to_string()),
                Err(e) if Instant::now() > deadline => return Err(e),
                Err(_) => std::thread::sleep(Duration::from_millis(200)),
            }
        }
    }

    /// Connects the nodes, gives each a zone and 1 GB, applies the layout, imports the key.
    fn form(&self) -> Result<(), String> {
        let ids: Vec<String> = (0..3).map(|i| self.node_id(i)).collect::<Result<_, _>>()?;
        for (id, node) in ids.iter().zip(&self.nodes).skip(1) {
            let peer = format!("{id}@127.0.0.1:{}", node.rpc_port);
            self.cli(0, &["node", "connect", &peer])?;
        }
        for (i, id) in ids.iter().enumerate() {
            let zone = format!("dc{i}");
            // The layout is only accepted once every node is known to node 0.
            let deadline = Instant::now() + Duration::from_secs(30);
            loop {
                match self.cli(0, &["layout", "assign", "-z", &zone, "-c", "1G", id]) {
                    Ok(_) => break,
                    Err(e) if Instant::now() > deadline => return Err(e),
                    Err(_) => std::thread::sleep(Duration::from_millis(300)),
                }
            }
        }
        self.cli(0, &["layout", "apply", "--version", "1"])?;
        self.cli(
            0,
            &[
                "key", "import", "--yes", "-n", "test", ACCESS_KEY, SECRET_KEY,
            ],
        )?;
        self.cli(0, &["key", "allow", "--create-bucket", ACCESS_KEY])?;
        Ok(())
    }

    /// Stops node `i` (as a crash would).
    pub fn stop(&mut self, i: usize) {
        if let Some(mut child) = self.nodes[i].child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    pub fn restart(&mut self, i: usize) -> Result<(), String> {
        let bin = self.bin.clone();
        self.nodes[i].start(&bin)
    }
}

impl Node {
    fn start(&mut self, bin: &PathBuf) -> Result<(), String> {
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&self.log)
            .map_err(|e| e.to_string())?;
        let mut cmd = Command::new(bin);
        cmd.arg("-c")
            .arg(&self.config)
            .arg("server")
            .env("RUST_LOG", "warn")
            .stdin(Stdio::null())
            .stdout(log.try_clone().map_err(|e| e.to_string())?)
            .stderr(log);
        let mut child = spawn_tied_to_process(cmd).map_err(|e| e.to_string())?;
        wait_for_port(self.s3_port, &mut child, &self.log)?;
        self.child = Some(child);
        Ok(())
    }
}

impl Drop for Cluster {
    fn drop(&mut self) {
        for i in 0..self.nodes.len() {
            self.stop(i);
        }
    }
}
