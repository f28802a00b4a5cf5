//! Plain S3 client baselines for the benchmark harness (`bench/run.sh`): the same store API
//! that s3cryptfs uses, with no FUSE and no encryption, so its throughput is the "physical
//! limit" of this machine and server.
//!
//! ```text
//! s3_baseline upload FILE KEY     multipart upload, 8,392,704-byte parts, 4 in flight
//! s3_baseline download KEY OUT    ranged GETs of 8 MiB, 4 in flight, written in order to OUT
//! s3_baseline delete KEY          DeleteObject (to free space between benchmark runs)
//! s3_baseline stat PREFIX head|prefix BYTES
//!                                 LIST of everything under PREFIX, then of each object a
//!                                 HEAD, or a ranged GET of its first BYTES with its metadata
//!                                 (what an s3cryptfs lookup asks), 32 in flight: the floor
//!                                 of a cold `ls -l`
//! ```
//!
//! Settings come from the environment: `S3_ENDPOINT` (e.g. `http://127.0.0.1:3900`),
//! `S3_BUCKET` (`BUCKET[/PREFIX]`), `AWS_ACCESS_KEY_ID`, `AWS_SECRET_ACCESS_KEY`, and
//! optionally `AWS_REGION` (default us-east-1). Path-style addressing is always used.
//!
//! On success one line is printed to stdout: `<mode> bytes=N seconds=S mib_per_s=R` (for
//! `stat`, N counts the objects looked at).

use std::fs::File;
use std::io::Write;
use std::os::unix::fs::FileExt;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Instant;

use bytes::Bytes;
use futures::{StreamExt, TryStreamExt, stream};
use s3cryptfs::store::{
    CompletedPart, Metadata, ObjectStore, S3Store, StaticCredentials, StoreConfig,
};

/// The part size s3cryptfs uses by default: 128 segments of 65,568 bytes.
const PART_SIZE: u64 = 128 * 65_568;
/// Size of one ranged GET.
const RANGE_SIZE: u64 = 8 * 1024 * 1024;
/// Requests in flight, for both directions (s3cryptfs' default per file).
const IN_FLIGHT: usize = 4;
/// Lookups in flight (s3cryptfs' bound on concurrent HEADs).
const LOOKUPS_IN_FLIGHT: usize = 32;

type BoxError = Box<dyn std::error::Error + Send + Sync>;

fn usage() -> ExitCode {
    eprintln!(
        "usage: s3_baseline upload FILE KEY | download KEY OUT | delete KEY \
         | stat PREFIX head|prefix BYTES\n\
         env: S3_ENDPOINT, S3_BUCKET (BUCKET[/PREFIX]), AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY"
    );
    ExitCode::from(2)
}

fn env(name: &str) -> Result<String, BoxError> {
    std::env::var(name).map_err(|_| format!("environment variable {name} is not set").into())
}

async fn connect() -> Result<S3Store, BoxError> {
    let mut config = StoreConfig::from_location(&env("S3_BUCKET")?)?;
    config.endpoint_url = Some(env("S3_ENDPOINT")?);
    config.force_path_style = true;
    config.region = Some(std::env::var("AWS_REGION").unwrap_or_else(|_| "us-east-1".into()));
    config.static_credentials = Some(StaticCredentials {
        access_key_id: env("AWS_ACCESS_KEY_ID")?,
        secret_access_key: env("AWS_SECRET_ACCESS_KEY")?,
    });
    Ok(S3Store::connect(config).await?)
}

/// Multipart upload of `path` to `key`; returns the bytes sent.
async fn upload(store: Arc<S3Store>, path: &str, key: &str) -> Result<u64, BoxError> {
    let file = Arc::new(File::open(path).map_err(|e| format!("opening {path}: {e}"))?);
    let size = file.metadata()?.len();
    let parts = size.div_ceil(PART_SIZE).max(1);
    if parts > u64::from(s3cryptfs::store::MAX_PARTS) {
        return Err(format!("{path} needs {parts} parts, more than S3 allows").into());
    }
    let upload_id = store.create_multipart(key, &Metadata::new()).await?;

    let result: Result<Vec<CompletedPart>, BoxError> = stream::iter(0..parts)
        .map(|index| {
            let (store, file) = (Arc::clone(&store), Arc::clone(&file));
            let upload_id = upload_id.clone();
            async move {
                let offset = index * PART_SIZE;
                let len = PART_SIZE.min(size - offset) as usize;
                // Reading the part is blocking file I/O: keep it off the runtime's workers.
                let body = tokio::task::spawn_blocking(move || -> std::io::Result<Bytes> {
                    let mut buf = vec![0u8; len];
                    file.read_exact_at(&mut buf, offset)?;
                    Ok(Bytes::from(buf))
                })
                .await??;
                let part = store
                    .upload_part(key, &upload_id, index as u32 + 1, body)
                    .await?;
                Ok::<_, BoxError>(part)
            }
        })
        .buffer_unordered(IN_FLIGHT)
        .try_collect()
        .await;

    let mut completed = match result {
        Ok(parts) => parts,
        Err(e) => {
            let _ = store.abort_multipart(key, &upload_id).await;
            return Err(e);
        }
    };
    completed.sort_by_key(|p| p.part_number);
    store
        .complete_multipart(key, &upload_id, &completed)
        .await?;
    Ok(size)
}

/// Parallel ranged GETs of `key`, written in order to `out`; returns the bytes received.
async fn download(store: Arc<S3Store>, key: &str, out: &str) -> Result<u64, BoxError> {
    let size = store.head(key).await?.size;
    let file = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(out != "/dev/null")
        .open(out)
        .map_err(|e| format!("opening {out}: {e}"))?;
    let file = Arc::new(file);

    let ranges =
        (0..size.div_ceil(RANGE_SIZE)).map(|i| i * RANGE_SIZE..size.min((i + 1) * RANGE_SIZE));
    let mut chunks = stream::iter(ranges)
        .map(|range| {
            let store = Arc::clone(&store);
            async move {
                let expected = range.end - range.start;
                let mut response = store.get_range(key, range.clone(), None).await?;
                if response.range != range {
                    return Err::<Vec<u8>, BoxError>(
                        format!(
                            "asked for bytes {}..{}, got {}..{}",
                            range.start, range.end, response.range.start, response.range.end
                        )
                        .into(),
                    );
                }
                // The size is known: read into a buffer of exactly that size, no regrowing.
                let mut data = vec![0u8; expected as usize];
                response.body.read_exact(&mut data).await?;
                Ok(data)
            }
        })
        .buffered(IN_FLIGHT);

    let mut received = 0u64;
    while let Some(chunk) = chunks.next().await {
        let chunk = chunk?;
        received += chunk.len() as u64;
        // Blocking file I/O off the runtime's workers; the next ranges keep downloading.
        let file = Arc::clone(&file);
        tokio::task::spawn_blocking(move || (&*file).write_all(&chunk)).await??;
    }
    Ok(received)
}

/// A LIST of `prefix`, then one HEAD (or ranged GET of the first `bytes` bytes, which also
/// brings the metadata) per object listed; returns the number of objects.
async fn stat(store: Arc<S3Store>, prefix: &str, how: &str, bytes: u64) -> Result<u64, BoxError> {
    let with_prefix = match how {
        "head" => false,
        "prefix" => true,
        _ => return Err(format!("stat: '{how}' is neither head nor prefix").into()),
    };
    let in_flight = std::env::var("S3_BASELINE_IN_FLIGHT")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(LOOKUPS_IN_FLIGHT);
    let listing = store.list_all(prefix, None).await?;
    let count = listing.objects.len() as u64;
    stream::iter(listing.objects)
        .map(|object| {
            let store = Arc::clone(&store);
            async move {
                if with_prefix {
                    store.head_with_prefix(&object.key, bytes).await.map(drop)
                } else {
                    store.head(&object.key).await.map(drop)
                }
            }
        })
        .buffer_unordered(in_flight)
        .try_collect::<Vec<()>>()
        .await?;
    Ok(count)
}

fn report(mode: &str, bytes: u64, started: Instant) {
    let seconds = started.elapsed().as_secs_f64();
    let mib_per_s = bytes as f64 / (1024.0 * 1024.0) / seconds.max(1e-9);
    println!("{mode} bytes={bytes} seconds={seconds:.3} mib_per_s={mib_per_s:.1}");
}

#[tokio::main]
async fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let store = match connect().await {
        Ok(s) => Arc::new(s),
        Err(e) => {
            eprintln!("s3_baseline: {e}");
            return ExitCode::FAILURE;
        }
    };
    let started = Instant::now();
    let result = match args.as_slice() {
        ["upload", file, key] => upload(store, file, key).await.map(|n| ("upload", n)),
        ["download", key, out] => download(store, key, out).await.map(|n| ("download", n)),
        ["stat", prefix, how, bytes] => match bytes.parse() {
            Ok(bytes) => stat(store, prefix, how, bytes).await.map(|n| ("stat", n)),
            Err(_) => return usage(),
        },
        ["delete", key] => store
            .delete(key)
            .await
            .map(|()| ("delete", 0))
            .map_err(Into::into),
        _ => return usage(),
    };
    match result {
        Ok((mode, bytes)) => {
            report(mode, bytes, started);
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("s3_baseline: {e}");
            ExitCode::FAILURE
        }
    }
}
