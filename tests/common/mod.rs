//! Shared test support: real S3 servers, buckets, stores and mounts.
#![allow(dead_code)]

pub mod cluster;
pub mod in_process;
pub mod mount;
pub mod proxy;
pub mod server;

use s3cryptfs::store::{S3Store, StaticCredentials, StoreConfig};
pub use server::{Server, ServerKind, server};

/// A store on a fresh bucket of `kind`'s server, scoped to `prefix`.
pub async fn fresh_store(kind: ServerKind, tag: &str, prefix: &str) -> (S3Store, &'static Server) {
    let server = server(kind);
    let bucket = server.new_bucket_name(tag);
    let store = store_for(server, &bucket, prefix).await;
    store.create_bucket().await.expect("create bucket");
    (store, server)
}

/// A store for an existing bucket.
pub async fn store_for(server: &Server, bucket: &str, prefix: &str) -> S3Store {
    let mut config = StoreConfig::new(bucket, prefix);
    config.endpoint_url = Some(server.endpoint.clone());
    config.force_path_style = true;
    config.region = Some("us-east-1".into());
    config.static_credentials = Some(StaticCredentials {
        access_key_id: server.access_key.clone(),
        secret_access_key: server.secret_key.clone(),
    });
    S3Store::connect(config).await.expect("connect")
}

/// The whole stored object (ciphertext) under `key`.
pub async fn read_object(store: &S3Store, key: &str) -> Vec<u8> {
    use s3cryptfs::store::ObjectStore;
    let info = store.head(key).await.expect("head");
    store
        .get_range(key, 0..info.size, None)
        .await
        .expect("get")
        .body
        .collect()
        .await
        .expect("body")
}

/// Starts `cp FROM TO` on a thread and returns once its multipart upload has begun (or the
/// copy already ended), so that a test can break something in the middle of it.
pub async fn copy_until_uploading(
    store: &S3Store,
    from: &std::path::Path,
    to: &std::path::Path,
) -> std::thread::JoinHandle<std::process::Output> {
    use s3cryptfs::store::ObjectStore;
    let (from, to) = (from.to_path_buf(), to.to_path_buf());
    let copy = std::thread::spawn(move || {
        std::process::Command::new("cp")
            .arg(&from)
            .arg(&to)
            .output()
            .expect("run cp")
    });
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
    while store
        .list_uploads("")
        .await
        .expect("list uploads")
        .is_empty()
        && !copy.is_finished()
    {
        assert!(
            std::time::Instant::now() < deadline,
            "the copy never started uploading"
        );
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    copy
}

/// A free loopback address for a mount's --metrics-addr.
pub fn free_loopback_addr() -> String {
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("free port")
        .port();
    format!("127.0.0.1:{port}")
}

/// The value of one metric line (`name` includes its labels) scraped from `addr`.
pub fn metric(addr: &str, name: &str) -> f64 {
    use std::io::{Read, Write};
    let mut conn = std::net::TcpStream::connect(addr).expect("metrics endpoint");
    conn.write_all(b"GET /metrics HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        .expect("request");
    let mut text = String::new();
    conn.read_to_string(&mut text).expect("response");
    text.lines()
        .find(|l| l.starts_with(name) && l[name.len()..].starts_with(' '))
        .and_then(|l| l.rsplit(' ').next())
        .and_then(|v| v.parse().ok())
        .unwrap_or_else(|| panic!("{name} missing:\n{text}"))
}

/// Runs an async test body against each real server, as `moto` and `garage` test functions.
#[macro_export]
macro_rules! on_both_servers {
    ($($name:ident),* $(,)?) => {
        $(
            mod $name {
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn moto() {
                    super::$name($crate::common::ServerKind::Moto).await
                }
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn garage() {
                    super::$name($crate::common::ServerKind::Garage).await
                }
            }
        )*
    };
}

/// Like `on_both_servers!`, for tests taking `(ServerKind, Names)`: also runs each test on a
/// Garage volume with encrypted names.
#[macro_export]
macro_rules! on_all_volumes {
    ($($name:ident),* $(,)?) => {
        $(
            mod $name {
                use $crate::common::mount::Names;
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn moto() {
                    super::$name($crate::common::ServerKind::Moto, Names::Plain).await
                }
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn garage() {
                    super::$name($crate::common::ServerKind::Garage, Names::Plain).await
                }
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn garage_encrypted_names() {
                    super::$name($crate::common::ServerKind::Garage, Names::Encrypted).await
                }
            }
        )*
    };
}

/// Object header length of the volumes tests make (object format 2).
#[allow(dead_code)]
pub const HEADER: usize = s3cryptfs::crypto::HEADER_LEN_V2;

/// Plaintext bytes in a file's first upload part with the default `--part-size` (the header
/// takes the rest of it; the later parts of the first 1000 hold `PART + HEADER`).
#[allow(dead_code)]
pub const PART: usize = s3cryptfs::upload::DEFAULT_PART_SIZE as usize - HEADER;

/// Deterministic pseudo-random bytes (xorshift), distinct per seed, so that Garage's block
/// deduplication never sees two equal blocks across tests.
pub fn random_bytes(len: usize, seed: u64) -> Vec<u8> {
    let mut x = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    let mut out = Vec::with_capacity(len + 8);
    while out.len() < len {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        out.extend_from_slice(&x.to_le_bytes());
    }
    out.truncate(len);
    out
}
