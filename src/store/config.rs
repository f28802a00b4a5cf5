//! How to reach the bucket: the settings users of S3 tools expect.

use std::path::PathBuf;
use std::time::Duration;

/// Connection settings for one volume (a bucket and an optional prefix).
#[derive(Debug, Clone)]
pub struct StoreConfig {
    pub bucket: String,
    /// Key prefix of the volume inside the bucket, normalised to end with `/` (or empty).
    pub prefix: String,
    /// Region; when `None`, the AWS chain decides (AWS_REGION, profile), else us-east-1.
    pub region: Option<String>,
    /// Custom endpoint (MinIO, Garage, Ceph …). AWS_ENDPOINT_URL is honoured when unset.
    pub endpoint_url: Option<String>,
    /// Path-style addressing (`http://host/bucket/key`), needed by most self-hosted servers.
    pub force_path_style: bool,
    /// Named profile from ~/.aws/config.
    pub profile: Option<String>,
    /// Extra PEM CA certificates for HTTPS endpoints; AWS_CA_BUNDLE when unset.
    pub ca_bundle: Option<PathBuf>,
    /// Explicit credentials for programs that embed the library (tests talk to two servers
    /// with different keys at once). The command line never takes secrets: it uses the chain.
    pub static_credentials: Option<StaticCredentials>,
    pub connect_timeout: Duration,
    /// Per-attempt timeout of a request, so a stalled connection is retried, not waited on.
    pub attempt_timeout: Duration,
    /// Attempts per request, including the first (retries use exponential backoff).
    pub max_attempts: u32,
    /// Objects larger than this are copied with UploadPartCopy instead of CopyObject.
    pub multipart_copy_threshold: u64,
    /// Part size of a multipart copy.
    pub copy_part_size: u64,
}

impl StoreConfig {
    /// Settings for `bucket` with an optional `prefix`, everything else at its default.
    pub fn new(bucket: impl Into<String>, prefix: &str) -> Self {
        Self {
            bucket: bucket.into(),
            prefix: normalize_prefix(prefix),
            region: None,
            endpoint_url: None,
            force_path_style: false,
            profile: None,
            ca_bundle: None,
            static_credentials: None,
            connect_timeout: Duration::from_secs(10),
            attempt_timeout: Duration::from_secs(120),
            max_attempts: 6,
            multipart_copy_threshold: super::MAX_SINGLE_OBJECT,
            copy_part_size: 512 * 1024 * 1024,
        }
    }

    /// Parses `BUCKET[/PREFIX]` as users type it (an `s3://` scheme is accepted too).
    pub fn from_location(location: &str) -> Result<Self, String> {
        let loc = location.strip_prefix("s3://").unwrap_or(location);
        let (bucket, prefix) = match loc.split_once('/') {
            Some((b, p)) => (b, p),
            None => (loc, ""),
        };
        if bucket.is_empty() {
            return Err(format!(
                "'{location}' names no bucket (expected BUCKET or BUCKET/PREFIX)"
            ));
        }
        Ok(Self::new(bucket, prefix))
    }

    /// `bucket/prefix` for messages.
    pub fn location(&self) -> String {
        format!("{}/{}", self.bucket, self.prefix)
    }
}

/// An access key pair; Debug never prints the secret.
#[derive(Clone)]
pub struct StaticCredentials {
    pub access_key_id: String,
    pub secret_access_key: String,
}

impl std::fmt::Debug for StaticCredentials {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "StaticCredentials({}, <redacted>)", self.access_key_id)
    }
}

/// `a/b` and `/a/b/` both become `a/b/`; an empty prefix stays empty.
pub fn normalize_prefix(prefix: &str) -> String {
    let trimmed = prefix.trim_matches('/');
    if trimmed.is_empty() {
        String::new()
    } else {
        format!("{trimmed}/")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_locations() {
        let c = StoreConfig::from_location("bkt").unwrap();
        assert_eq!((c.bucket.as_str(), c.prefix.as_str()), ("bkt", ""));
        let c = StoreConfig::from_location("s3://bkt/a/b/").unwrap();
        assert_eq!((c.bucket.as_str(), c.prefix.as_str()), ("bkt", "a/b/"));
        let c = StoreConfig::from_location("bkt/x").unwrap();
        assert_eq!(c.prefix, "x/");
        assert!(StoreConfig::from_location("/x").is_err());
        assert_eq!(normalize_prefix("/"), "");
    }
}
