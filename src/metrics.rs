//! Prometheus metrics, served on a loopback address with `--metrics-addr`. Without it no
//! recorder is installed and every call here is a no-op.

use std::net::SocketAddr;

/// Starts the exporter (must run inside the tokio runtime). Only loopback addresses are
/// accepted: the figures name keys of the volume in no way, but they are nobody else's business.
pub fn install(addr: SocketAddr) -> Result<(), String> {
    if !addr.ip().is_loopback() {
        return Err(format!(
            "--metrics-addr {addr}: metrics are served on a loopback address only"
        ));
    }
    metrics_exporter_prometheus::PrometheusBuilder::new()
        .with_http_listener(addr)
        .install()
        .map_err(|e| format!("cannot serve metrics on {addr}: {e}"))
}

/// One S3 request of kind `op` (an S3 operation name).
pub fn s3_request(op: &'static str) {
    metrics::counter!("s3cryptfs_s3_requests_total", "op" => op).increment(1);
}

/// An S3 request attempt after the first (the SDK retries throttling, 5xx, timeouts).
pub fn s3_retry() {
    metrics::counter!("s3cryptfs_s3_retries_total").increment(1);
}

/// A failed S3 request (after the SDK's retries).
pub fn s3_error(op: &'static str, kind: &'static str) {
    metrics::counter!("s3cryptfs_s3_errors_total", "op" => op, "kind" => kind).increment(1);
}

pub fn bytes_uploaded(n: u64) {
    metrics::counter!("s3cryptfs_bytes_uploaded_total").increment(n);
}

pub fn bytes_downloaded(n: u64) {
    metrics::counter!("s3cryptfs_bytes_downloaded_total").increment(n);
}

/// A part started (+1) or finished (-1) uploading.
pub fn parts_in_flight(delta: f64) {
    metrics::gauge!("s3cryptfs_upload_parts_in_flight").increment(delta);
}

/// A file committed as a single PUT or as a multipart upload, or one that failed.
pub fn file_committed(how: &'static str) {
    metrics::counter!("s3cryptfs_files_committed_total", "upload" => how).increment(1);
}

/// A save that found another mount's save (or removal) under its name: `kept_both`,
/// `refused` (--on-conflict=error) or `unguarded` (seen only after the fact, on a server
/// that ignores conditional writes).
pub fn save_conflict(outcome: &'static str) {
    metrics::counter!("s3cryptfs_save_conflicts_total", "outcome" => outcome).increment(1);
}

pub fn file_failed() {
    metrics::counter!("s3cryptfs_files_failed_total").increment(1);
}

pub fn cache_lookup(hit: bool) {
    let result = if hit { "hit" } else { "miss" };
    metrics::counter!("s3cryptfs_segment_cache_lookups_total", "result" => result).increment(1);
}
