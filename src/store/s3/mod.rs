//! [`ObjectStore`] over aws-sdk-s3.

use std::ops::Range;
use std::time::SystemTime;

use async_trait::async_trait;
use aws_config::retry::RetryConfig;
use aws_sdk_s3::Client;
use aws_sdk_s3::config::{Region, RequestChecksumCalculation, ResponseChecksumValidation};
use aws_sdk_s3::primitives::ByteStream;
use aws_sdk_s3::types::{
    CompletedMultipartUpload, Delete, EncodingType, MetadataDirective, ObjectIdentifier,
};
use bytes::Bytes;
use futures::{StreamExt, TryStreamExt};
use percent_encoding::{AsciiSet, NON_ALPHANUMERIC, percent_decode_str, utf8_percent_encode};

mod copy;
mod endpoint;
mod errors;
mod multipart;

use super::{
    CompletedPart, GetResponse, ListPage, MAX_KEYS_PER_REQUEST, MAX_SINGLE_OBJECT, Metadata,
    ObjectBody, ObjectInfo, ObjectStore, PutResult, StoreConfig, StoreError, StoreErrorKind,
    UploadInfo, WriteCondition,
};
use errors::{completed_despite_parse_error, map_err};

/// The aws-sdk-s3 implementation of [`ObjectStore`].
#[derive(Clone, Debug)]
pub struct S3Store {
    client: Client,
    config: StoreConfig,
}

impl S3Store {
    /// Builds the SDK client from the standard AWS chain plus our settings. Makes no request.
    pub async fn connect(config: StoreConfig) -> Result<Self, StoreError> {
        let sdk = super::sdk::load(&config, config.endpoint_url.as_deref()).await?;

        let mut s3 = aws_sdk_s3::config::Builder::from(&sdk)
            .interceptor(RetryCounter)
            .endpoint_resolver(endpoint::EndpointPerBucket::default())
            .force_path_style(config.force_path_style)
            // Every segment carries an HMAC tag that is checked end to end, so CRC checksums
            // on uploads and downloads would only cost CPU on both sides.
            .request_checksum_calculation(RequestChecksumCalculation::WhenRequired)
            .response_checksum_validation(ResponseChecksumValidation::WhenRequired);
        if sdk.region().is_none() {
            s3 = s3.region(Region::new("us-east-1"));
        }
        Ok(Self {
            client: Client::from_conf(s3.build()),
            config,
        })
    }

    pub fn config(&self) -> &StoreConfig {
        &self.config
    }

    /// Tells a missing bucket from a denied one before anything else is done, with the one
    /// request every use of the volume needs anyway: a LIST of one key under its prefix. (A
    /// HeadBucket would need s3:ListBucket on the whole bucket, which a policy scoped to the
    /// volume's prefix does not give.)
    pub async fn check_bucket(&self) -> Result<(), StoreError> {
        let probe = self
            .client
            .list_objects_v2()
            .bucket(&self.config.bucket)
            .prefix(&self.config.prefix)
            .max_keys(1)
            .send()
            .await;
        match probe {
            Ok(_) => Ok(()),
            Err(e) => {
                let location = format!("s3://{}/{}", self.config.bucket, self.config.prefix);
                let err = map_err("ListObjectsV2", &location, e);
                Err(match err.kind {
                    StoreErrorKind::NotFound | StoreErrorKind::NoSuchBucket => StoreError::new(
                        StoreErrorKind::NoSuchBucket,
                        format!(
                            "'{}' (check its name, --region and --endpoint-url)",
                            self.config.bucket
                        ),
                    ),
                    StoreErrorKind::AccessDenied => StoreError::new(
                        StoreErrorKind::AccessDenied,
                        format!(
                            "LIST of the volume's prefix: {}; the credentials need s3:ListBucket \
                             on arn:aws:s3:::{} (a condition on the prefix '{}' is enough; \
                             README, \"IAM policy\")",
                            err.message
                                .split(" (this request")
                                .next()
                                .unwrap_or_default(),
                            self.config.bucket,
                            self.config.prefix
                        ),
                    ),
                    _ => err,
                })
            }
        }
    }

    /// CreateBucket (for the demo and tests against a local server).
    pub async fn create_bucket(&self) -> Result<(), StoreError> {
        self.client
            .create_bucket()
            .bucket(&self.config.bucket)
            .send()
            .await
            .map_err(|e| map_err("CreateBucket", &self.config.bucket, e))?;
        Ok(())
    }

    fn full_key(&self, key: &str) -> String {
        format!("{}{}", self.config.prefix, key)
    }

    fn strip<'a>(&self, full: &'a str) -> Option<&'a str> {
        full.strip_prefix(self.config.prefix.as_str())
    }
}

#[async_trait]
impl ObjectStore for S3Store {
    async fn head(&self, key: &str) -> Result<ObjectInfo, StoreError> {
        trace_request("HeadObject", key);
        let out = self
            .client
            .head_object()
            .bucket(&self.config.bucket)
            .key(self.full_key(key))
            .send()
            .await
            .map_err(|e| map_err("HeadObject", key, e))?;
        Ok(ObjectInfo {
            key: key.to_string(),
            size: out.content_length().unwrap_or(0).max(0) as u64,
            etag: out.e_tag().map(str::to_string),
            last_modified: out.last_modified().and_then(to_system_time),
            metadata: out.metadata().cloned().unwrap_or_default(),
        })
    }

    async fn head_with_prefix(
        &self,
        key: &str,
        len: u64,
    ) -> Result<(ObjectInfo, Bytes), StoreError> {
        // A GetObject of the header's bytes, told apart from content reads in logs and
        // metrics: it is what a lookup costs.
        trace_request("GetObjectHeader", key);
        let sent = self
            .client
            .get_object()
            .bucket(&self.config.bucket)
            .key(self.full_key(key))
            .range(format!("bytes=0-{}", len.max(1) - 1))
            .send()
            .await
            .map_err(|e| map_err("GetObject", key, e));
        let out = match sent {
            Ok(out) => out,
            // An empty object has no byte 0: a HEAD says the rest.
            Err(e) if e.kind == StoreErrorKind::InvalidRange => {
                return Ok((self.head(key).await?, Bytes::new()));
            }
            Err(e) => return Err(e),
        };
        let length = out.content_length().unwrap_or(0).max(0) as u64;
        let (returned, object_size) = out
            .content_range()
            .and_then(parse_content_range)
            .unwrap_or((0..length, length));
        if returned.start != 0 {
            return Err(StoreError::fatal(format!(
                "GetObject {key}: asked for its first {len} bytes, got {returned:?}"
            )));
        }
        // The server sized the body: what is read is capped at what was asked for (a server
        // that ignored the range sends more, which is dropped unread).
        let length = length.min(len);
        crate::metrics::bytes_downloaded(length);
        let info = ObjectInfo {
            key: key.to_string(),
            size: object_size,
            etag: out.e_tag().map(str::to_string),
            last_modified: out.last_modified().and_then(to_system_time),
            metadata: out.metadata().cloned().unwrap_or_default(),
        };
        let mut prefix = vec![0u8; length as usize];
        ObjectBody::new(out.body.into_async_read())
            .read_exact(&mut prefix)
            .await?;
        Ok((info, Bytes::from(prefix)))
    }

    async fn get_range(
        &self,
        key: &str,
        range: Range<u64>,
        if_match: Option<&str>,
    ) -> Result<GetResponse, StoreError> {
        trace_request("GetObject", key);
        if range.is_empty() {
            return Err(StoreError::new(
                StoreErrorKind::InvalidRange,
                format!("empty range {range:?} of {key}"),
            ));
        }
        let out = self
            .client
            .get_object()
            .bucket(&self.config.bucket)
            .key(self.full_key(key))
            .range(format!("bytes={}-{}", range.start, range.end - 1))
            .set_if_match(if_match.map(str::to_string))
            .send()
            .await
            .map_err(|e| map_err("GetObject", key, e))?;
        let length = out.content_length().unwrap_or(0).max(0) as u64;
        crate::metrics::bytes_downloaded(length);
        let (returned, object_size) = out
            .content_range()
            .and_then(parse_content_range)
            // No Content-Range: the server sent the whole object.
            .unwrap_or((0..length, length));
        if returned.start != range.start || returned.end - returned.start != length {
            return Err(StoreError::fatal(format!(
                "GetObject {key}: asked for bytes {range:?}, got {returned:?} ({length} bytes)"
            )));
        }
        Ok(GetResponse {
            etag: out.e_tag().map(str::to_string),
            body: ObjectBody::new(out.body.into_async_read()),
            range: returned,
            object_size,
        })
    }

    async fn put_if(
        &self,
        key: &str,
        body: Bytes,
        metadata: &Metadata,
        condition: Option<&WriteCondition>,
    ) -> Result<PutResult, StoreError> {
        trace_request("PutObject", key);
        crate::metrics::bytes_uploaded(body.len() as u64);
        let (if_none_match, if_match) = condition_headers(condition);
        let out = self
            .client
            .put_object()
            .bucket(&self.config.bucket)
            .key(self.full_key(key))
            .content_length(body.len() as i64)
            .body(ByteStream::from(body))
            .set_metadata(non_empty(metadata))
            .set_if_none_match(if_none_match)
            .set_if_match(if_match)
            .customize()
            // The body's integrity is guaranteed by our own tags, not by SigV4 (docs/STORE.md).
            .disable_payload_signing()
            .send()
            .await
            .map_err(|e| map_err("PutObject", key, e))?;
        Ok(PutResult {
            etag: out.e_tag().map(str::to_string),
        })
    }

    async fn create_multipart(&self, key: &str, metadata: &Metadata) -> Result<String, StoreError> {
        multipart::create_multipart(self, key, metadata).await
    }

    async fn upload_part(
        &self,
        key: &str,
        upload_id: &str,
        part_number: u32,
        body: Bytes,
    ) -> Result<CompletedPart, StoreError> {
        multipart::upload_part(self, key, upload_id, part_number, body).await
    }

    async fn upload_part_copy(
        &self,
        key: &str,
        upload_id: &str,
        part_number: u32,
        src: &str,
        range: std::ops::Range<u64>,
        src_etag: Option<&str>,
    ) -> Result<CompletedPart, StoreError> {
        multipart::upload_part_copy(self, key, upload_id, part_number, src, range, src_etag).await
    }

    async fn complete_multipart_if(
        &self,
        key: &str,
        upload_id: &str,
        parts: &[CompletedPart],
        condition: Option<&WriteCondition>,
    ) -> Result<PutResult, StoreError> {
        multipart::complete_multipart(self, key, upload_id, parts, condition).await
    }

    async fn abort_multipart(&self, key: &str, upload_id: &str) -> Result<(), StoreError> {
        multipart::abort_multipart(self, key, upload_id).await
    }

    async fn list_uploads(&self, prefix: &str) -> Result<Vec<UploadInfo>, StoreError> {
        multipart::list_uploads(self, prefix).await
    }

    async fn list_page(
        &self,
        prefix: &str,
        delimiter: Option<&str>,
        continuation: Option<String>,
    ) -> Result<ListPage, StoreError> {
        trace_request("ListObjectsV2", prefix);
        let out = self
            .client
            .list_objects_v2()
            .bucket(&self.config.bucket)
            .prefix(self.full_key(prefix))
            .set_delimiter(delimiter.map(str::to_string))
            .set_continuation_token(continuation)
            .max_keys(MAX_KEYS_PER_REQUEST as i32)
            .encoding_type(EncodingType::Url)
            .send()
            .await
            .map_err(|e| map_err("ListObjectsV2", prefix, e))?;
        let encoded = out.encoding_type() == Some(&EncodingType::Url);
        let objects = out
            .contents()
            .iter()
            .filter_map(|o| {
                Some(ObjectInfo {
                    key: self.strip(&listed_key(o.key()?, encoded)?)?.to_string(),
                    size: o.size().unwrap_or(0).max(0) as u64,
                    etag: o.e_tag().map(str::to_string),
                    last_modified: o.last_modified().and_then(to_system_time),
                    metadata: Metadata::new(),
                })
            })
            .collect();
        let common_prefixes = out
            .common_prefixes()
            .iter()
            .filter_map(|p| Some(self.strip(&listed_key(p.prefix()?, encoded)?)?.to_string()))
            .collect();
        let next_token = match out.is_truncated() {
            Some(true) => out.next_continuation_token().map(str::to_string),
            _ => None,
        };
        Ok(ListPage {
            objects,
            common_prefixes,
            next_token,
        })
    }

    async fn copy(
        &self,
        src: &str,
        dst: &str,
        metadata: Option<&Metadata>,
    ) -> Result<PutResult, StoreError> {
        copy::copy(self, src, dst, metadata).await
    }

    async fn delete(&self, key: &str) -> Result<(), StoreError> {
        trace_request("DeleteObject", key);
        self.client
            .delete_object()
            .bucket(&self.config.bucket)
            .key(self.full_key(key))
            .send()
            .await
            .map_err(|e| map_err("DeleteObject", key, e))?;
        Ok(())
    }

    async fn delete_many(&self, keys: &[String]) -> Result<(), StoreError> {
        for chunk in keys.chunks(MAX_KEYS_PER_REQUEST) {
            let objects = chunk
                .iter()
                .map(|k| {
                    ObjectIdentifier::builder()
                        .key(self.full_key(k))
                        .build()
                        .map_err(|e| StoreError::fatal(e.to_string()))
                })
                .collect::<Result<Vec<_>, _>>()?;
            let delete = Delete::builder()
                .set_objects(Some(objects))
                .quiet(true)
                .build()
                .map_err(|e| StoreError::fatal(e.to_string()))?;
            let out = self
                .client
                .delete_objects()
                .bucket(&self.config.bucket)
                .delete(delete)
                .send()
                .await
                .map_err(|e| map_err("DeleteObjects", &chunk[0], e))?;
            if let Some(first) = out.errors().first() {
                return Err(StoreError::from_s3(
                    first.code(),
                    None,
                    format!(
                        "DeleteObjects: {} of {} keys failed, first {}: {}",
                        out.errors().len(),
                        chunk.len(),
                        first.key().unwrap_or("?"),
                        first.message().unwrap_or("")
                    ),
                ));
            }
        }
        Ok(())
    }
}

/// Counts the SDK's retries (attempts after the first) for the metrics.
#[derive(Debug)]
struct RetryCounter;

impl aws_sdk_s3::config::Intercept for RetryCounter {
    fn name(&self) -> &'static str {
        "s3cryptfs-retry-counter"
    }

    fn read_before_transmit(
        &self,
        _context: &aws_sdk_s3::config::interceptors::BeforeTransmitInterceptorContextRef<'_>,
        _components: &aws_sdk_s3::config::RuntimeComponents,
        cfg: &mut aws_sdk_s3::config::ConfigBag,
    ) -> Result<(), aws_sdk_s3::error::BoxError> {
        let attempt = cfg
            .load::<aws_smithy_runtime_api::client::retries::RequestAttempts>()
            .map_or(1, |a| a.attempts());
        if attempt > 1 {
            tracing::debug!(attempt, "retrying an S3 request");
            crate::metrics::s3_retry();
        }
        Ok(())
    }
}

/// A key as a listing gave it. Listings ask for url-encoded keys, because XML 1.0 cannot
/// carry most control characters (a key holding one would make the whole page unreadable)
/// and turns a carriage return into a newline; the answer says whether the server did encode
/// them (one that ignores the request sends keys as they are). S3 encodes a space as `+` and
/// a `+` as `%2B`, so `+` is read as a space before `%XX` escapes are decoded. `None` for a
/// key that does not decode to UTF-8.
fn listed_key(raw: &str, url_encoded: bool) -> Option<String> {
    if !url_encoded {
        return Some(raw.to_string());
    }
    let spaces = raw.replace('+', " ");
    percent_decode_str(&spaces)
        .decode_utf8()
        .ok()
        .map(|k| k.into_owned())
}

/// One debug line per request (`s3 request op=... key=...`): tests count requests from it.
fn trace_request(op: &'static str, key: &str) {
    tracing::debug!(op = %op, key = %key, "s3 request");
    crate::metrics::s3_request(op);
}

fn non_empty(metadata: &Metadata) -> Option<Metadata> {
    (!metadata.is_empty()).then(|| metadata.clone())
}

fn to_system_time(t: &aws_sdk_s3::primitives::DateTime) -> Option<SystemTime> {
    SystemTime::try_from(*t).ok()
}

/// `bytes 0-99/1234` → (0..100, 1234).
fn parse_content_range(header: &str) -> Option<(Range<u64>, u64)> {
    let rest = header.trim().strip_prefix("bytes ")?;
    let (span, total) = rest.split_once('/')?;
    let (first, last) = span.split_once('-')?;
    let (first, last): (u64, u64) = (first.parse().ok()?, last.parse().ok()?);
    Some((first..last + 1, total.parse().ok()?))
}

/// The `If-None-Match` and `If-Match` headers of a conditional write.
fn condition_headers(condition: Option<&WriteCondition>) -> (Option<String>, Option<String>) {
    match condition {
        None => (None, None),
        Some(WriteCondition::Absent) => (Some("*".to_string()), None),
        Some(WriteCondition::Matches(etag)) => (None, Some(etag.clone())),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_content_range() {
        assert_eq!(parse_content_range("bytes 0-99/1234"), Some((0..100, 1234)));
        assert_eq!(parse_content_range("bytes 5-5/6"), Some((5..6, 6)));
        assert_eq!(parse_content_range("bytes */6"), None);
    }

    #[tokio::test]
    async fn an_unreadable_ca_bundle_is_an_error() {
        let mut config = StoreConfig::new("b", "");
        config.ca_bundle = Some("/nonexistent/ca.pem".into());
        let err = S3Store::connect(config).await.unwrap_err();
        assert!(err.to_string().contains("/nonexistent/ca.pem"), "{err}");
    }
}
