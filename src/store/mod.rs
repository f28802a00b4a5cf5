//! The object store: the only part of s3cryptfs that talks to S3.
//!
//! [`ObjectStore`] is a small async trait over the handful of S3 operations a filesystem
//! needs. [`S3Store`] implements it with aws-sdk-s3. For tests (the `test-support` feature),
//! [`memory::MemoryStore`] keeps objects in memory with S3's semantics and
//! [`fault::FaultStore`] wraps any store to inject failures and delays. Keys passed to a
//! store are relative to the volume's prefix: the store adds and strips it.

pub mod conditions;
mod config;
mod error;
#[cfg(any(test, feature = "test-support"))]
pub mod fault;
pub mod kms;
#[cfg(any(test, feature = "test-support"))]
pub mod memory;
mod s3;
mod sdk;

use std::collections::HashMap;
use std::fmt;
use std::ops::Range;
use std::pin::Pin;
use std::time::SystemTime;

use async_trait::async_trait;
use bytes::Bytes;
use tokio::io::{AsyncRead, AsyncReadExt};

pub use conditions::ConditionSupport;
pub use config::{StaticCredentials, StoreConfig};
pub use error::{StoreError, StoreErrorKind};
pub use kms::KmsKeys;
pub use s3::S3Store;

/// User metadata attached to an object (`x-amz-meta-*`, names without that prefix).
pub type Metadata = HashMap<String, String>;

/// S3's hard limit on a single PutObject / CopyObject.
pub const MAX_SINGLE_OBJECT: u64 = 5 * 1024 * 1024 * 1024;
/// S3's limit on one object (5 TiB).
pub const MAX_OBJECT: u64 = 5 << 40;
/// S3's limit on the number of parts of a multipart upload.
pub const MAX_PARTS: u32 = 10_000;
/// Keys per ListObjectsV2 page and per DeleteObjects call.
pub const MAX_KEYS_PER_REQUEST: usize = 1000;

/// What a listing or HEAD says about one object.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ObjectInfo {
    /// Key relative to the store's prefix.
    pub key: String,
    pub size: u64,
    pub etag: Option<String>,
    pub last_modified: Option<SystemTime>,
    /// Only filled by [`ObjectStore::head`]: listings do not carry user metadata.
    pub metadata: Metadata,
}

/// One page of a ListObjectsV2 listing.
#[derive(Debug, Clone, Default)]
pub struct ListPage {
    pub objects: Vec<ObjectInfo>,
    /// Common prefixes (relative to the store's prefix), each ending with the delimiter.
    pub common_prefixes: Vec<String>,
    /// Pass back to get the next page; `None` on the last page.
    pub next_token: Option<String>,
}

/// A whole listing, all pages concatenated.
#[derive(Debug, Clone, Default)]
pub struct Listing {
    pub objects: Vec<ObjectInfo>,
    pub common_prefixes: Vec<String>,
    /// How many LIST requests it took.
    pub requests: usize,
}

impl Listing {
    /// The whole listing that one page is, if it is the only page (no continuation) and
    /// passes the checks [`ObjectStore::list_all`] makes of every page. It counts no
    /// request: the page was counted when it was asked for.
    pub fn from_only_page(prefix: &str, page: ListPage) -> Option<Listing> {
        if page.next_token.is_some() || check_page(prefix, &page, None, 0).is_err() {
            return None;
        }
        Some(Listing {
            objects: page.objects,
            common_prefixes: page.common_prefixes,
            requests: 0,
        })
    }

    /// Entries so far: objects and common prefixes.
    pub fn len(&self) -> usize {
        self.objects.len() + self.common_prefixes.len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// An in-progress multipart upload, as ListMultipartUploads reports it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UploadInfo {
    pub key: String,
    pub upload_id: String,
    pub initiated: Option<SystemTime>,
}

/// A part that was uploaded, to be named in CompleteMultipartUpload.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CompletedPart {
    pub part_number: u32,
    pub etag: String,
}

/// The MD5 digest of `body`: the ETag that S3 (without SSE-KMS or SSE-C), Garage, MinIO and
/// moto give an object written by one PutObject, and keep through a CopyObject.
pub fn content_md5(body: &[u8]) -> [u8; 16] {
    use md5::{Digest, Md5};
    let mut digest = [0u8; 16];
    digest.copy_from_slice(&Md5::digest(body));
    digest
}

/// The MD5 digest an ETag is, if it is one (32 hex digits, quoted or not). A multipart
/// upload's ETag (`…-N`) and those of encrypting servers are not.
pub fn etag_md5(etag: &str) -> Option<[u8; 16]> {
    let hex_digits = etag.trim_matches('"');
    if hex_digits.len() != 32 {
        return None;
    }
    let mut digest = [0u8; 16];
    hex::decode_to_slice(hex_digits, &mut digest).ok()?;
    Some(digest)
}

/// The result of a request that created an object.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PutResult {
    pub etag: Option<String>,
}

/// A streaming object body: bytes arrive as the network delivers them.
pub struct ObjectBody(Pin<Box<dyn AsyncRead + Send>>);

impl ObjectBody {
    pub fn new(reader: impl AsyncRead + Send + 'static) -> Self {
        Self(Box::pin(reader))
    }

    /// Fills `buf` completely, or fails with [`StoreErrorKind::Transient`] if the body ends
    /// early (a connection cut mid-body is a transient failure).
    pub async fn read_exact(&mut self, buf: &mut [u8]) -> Result<(), StoreError> {
        match self.0.read_exact(buf).await {
            Ok(_) => Ok(()),
            Err(e) => Err(StoreError::transient(format!("reading object body: {e}"))),
        }
    }

    /// Appends exactly `len` bytes of the body to `buf` (without zero-filling it first).
    pub async fn read_into(&mut self, buf: &mut Vec<u8>, len: usize) -> Result<(), StoreError> {
        let target = buf.len() + len;
        buf.reserve(len);
        while buf.len() < target {
            let want = (target - buf.len()) as u64;
            let n = (&mut self.0)
                .take(want)
                .read_buf(buf)
                .await
                .map_err(|e| StoreError::transient(format!("reading object body: {e}")))?;
            if n == 0 {
                return Err(StoreError::transient("object body ended early"));
            }
        }
        Ok(())
    }

    /// Reads the rest of the body into memory (for small objects only).
    pub async fn collect(mut self) -> Result<Vec<u8>, StoreError> {
        let mut out = Vec::new();
        self.0
            .read_to_end(&mut out)
            .await
            .map_err(|e| StoreError::transient(format!("reading object body: {e}")))?;
        Ok(out)
    }

    pub fn into_reader(self) -> Pin<Box<dyn AsyncRead + Send>> {
        self.0
    }
}

impl fmt::Debug for ObjectBody {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("ObjectBody")
    }
}

/// The response to a ranged GET.
#[derive(Debug)]
pub struct GetResponse {
    pub body: ObjectBody,
    /// The byte range actually returned (clipped to the object's end).
    pub range: Range<u64>,
    /// The object's total size.
    pub object_size: u64,
    pub etag: Option<String>,
}

/// What a conditional write may replace.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum WriteCondition {
    /// Nothing: the key must be free (`If-None-Match: *`).
    Absent,
    /// Exactly this version (`If-Match: ETag`).
    Matches(String),
}

/// The S3 operations s3cryptfs uses. Keys are relative to the store's prefix.
#[async_trait]
pub trait ObjectStore: Send + Sync + 'static {
    /// HeadObject, with user metadata.
    async fn head(&self, key: &str) -> Result<ObjectInfo, StoreError>;

    /// What a HEAD says of `key` and its first `len` bytes (fewer if it is shorter; none if
    /// it is empty), in one GetObject: how a lookup reads an object's header, to which its
    /// attributes are bound, at the cost of a HEAD.
    async fn head_with_prefix(
        &self,
        key: &str,
        len: u64,
    ) -> Result<(ObjectInfo, Bytes), StoreError>;

    /// A ranged GetObject. `range` past the end of the object is clipped; a range that starts
    /// at or beyond the end fails with [`StoreErrorKind::InvalidRange`]. With `if_match`, the
    /// GET fails with [`StoreErrorKind::PreconditionFailed`] if the object has changed.
    async fn get_range(
        &self,
        key: &str,
        range: Range<u64>,
        if_match: Option<&str>,
    ) -> Result<GetResponse, StoreError>;

    /// PutObject of a whole body.
    async fn put(
        &self,
        key: &str,
        body: Bytes,
        metadata: &Metadata,
    ) -> Result<PutResult, StoreError> {
        self.put_if(key, body, metadata, None).await
    }

    /// PutObject that replaces only what `condition` allows (If-None-Match / If-Match), or
    /// fails with [`StoreErrorKind::PreconditionFailed`]. Servers that ignore conditions
    /// write anyway: see [`conditions::probe`].
    async fn put_if(
        &self,
        key: &str,
        body: Bytes,
        metadata: &Metadata,
        condition: Option<&WriteCondition>,
    ) -> Result<PutResult, StoreError>;

    /// CreateMultipartUpload; returns the upload id.
    async fn create_multipart(&self, key: &str, metadata: &Metadata) -> Result<String, StoreError>;

    /// UploadPart (part numbers start at 1).
    async fn upload_part(
        &self,
        key: &str,
        upload_id: &str,
        part_number: u32,
        body: Bytes,
    ) -> Result<CompletedPart, StoreError>;

    /// UploadPartCopy: bytes `range` of `src` become part `part_number`; with `src_etag`,
    /// only while `src` is still that version (otherwise `PreconditionFailed`).
    async fn upload_part_copy(
        &self,
        key: &str,
        upload_id: &str,
        part_number: u32,
        src: &str,
        range: std::ops::Range<u64>,
        src_etag: Option<&str>,
    ) -> Result<CompletedPart, StoreError>;

    async fn complete_multipart(
        &self,
        key: &str,
        upload_id: &str,
        parts: &[CompletedPart],
    ) -> Result<PutResult, StoreError> {
        self.complete_multipart_if(key, upload_id, parts, None)
            .await
    }

    /// CompleteMultipartUpload under `condition` (see [`ObjectStore::put_if`]). When the
    /// condition fails the upload stays open: the caller completes it otherwise or aborts it.
    async fn complete_multipart_if(
        &self,
        key: &str,
        upload_id: &str,
        parts: &[CompletedPart],
        condition: Option<&WriteCondition>,
    ) -> Result<PutResult, StoreError>;

    async fn abort_multipart(&self, key: &str, upload_id: &str) -> Result<(), StoreError>;

    /// ListMultipartUploads under a prefix (all pages).
    async fn list_uploads(&self, prefix: &str) -> Result<Vec<UploadInfo>, StoreError>;

    /// One page of ListObjectsV2.
    async fn list_page(
        &self,
        prefix: &str,
        delimiter: Option<&str>,
        continuation: Option<String>,
    ) -> Result<ListPage, StoreError>;

    /// Server-side copy. With `metadata`, the copy's user metadata is replaced by it;
    /// without, it is copied from the source. Objects above the store's multipart-copy
    /// threshold are copied with UploadPartCopy.
    async fn copy(
        &self,
        src: &str,
        dst: &str,
        metadata: Option<&Metadata>,
    ) -> Result<PutResult, StoreError>;

    /// DeleteObject. Deleting a missing key succeeds, as in S3.
    async fn delete(&self, key: &str) -> Result<(), StoreError>;

    /// DeleteObjects, in batches of 1000.
    async fn delete_many(&self, keys: &[String]) -> Result<(), StoreError>;

    /// Every page of a listing, within [`MAX_LISTING_ENTRIES`] and with a server that moves
    /// on from page to page (see [`check_page`]).
    async fn list_all(&self, prefix: &str, delimiter: Option<&str>) -> Result<Listing, StoreError> {
        let mut listing = Listing::default();
        let mut token: Option<String> = None;
        loop {
            let page = self.list_page(prefix, delimiter, token.clone()).await?;
            check_page(prefix, &page, token.as_deref(), listing.len())?;
            listing.requests += 1;
            listing.objects.extend(page.objects);
            listing.common_prefixes.extend(page.common_prefixes);
            match page.next_token {
                Some(t) => token = Some(t),
                None => return Ok(listing),
            }
        }
    }
}

/// Entries one listing may gather (a few hundred bytes each in memory): far past any
/// directory a mount lists in one go, and a bound on what a server can make us hold.
pub const MAX_LISTING_ENTRIES: usize = 10_000_000;

/// Refuses a page the server should not have sent: more entries than asked for, the same
/// continuation token again (a listing that would never end), or one that takes the
/// listing past [`MAX_LISTING_ENTRIES`].
fn check_page(
    prefix: &str,
    page: &ListPage,
    previous_token: Option<&str>,
    gathered: usize,
) -> Result<(), StoreError> {
    let entries = page.objects.len() + page.common_prefixes.len();
    if entries > MAX_KEYS_PER_REQUEST {
        return Err(StoreError::fatal(format!(
            "LIST {prefix}: the server sent {entries} entries in a page of at most {MAX_KEYS_PER_REQUEST}"
        )));
    }
    if page.next_token.is_some() && page.next_token.as_deref() == previous_token {
        return Err(StoreError::fatal(format!(
            "LIST {prefix}: the server sent the same continuation token twice"
        )));
    }
    if gathered + entries > MAX_LISTING_ENTRIES {
        return Err(StoreError::fatal(format!(
            "LIST {prefix}: more than {MAX_LISTING_ENTRIES} entries"
        )));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn page(prefixes: usize, next: Option<&str>) -> ListPage {
        ListPage {
            objects: Vec::new(),
            common_prefixes: (0..prefixes).map(|i| format!("d{i}/")).collect(),
            next_token: next.map(str::to_string),
        }
    }

    #[test]
    fn pages_a_server_should_not_send_are_refused() {
        assert!(check_page("p/", &page(1000, Some("a")), None, 0).is_ok());
        assert!(check_page("p/", &page(10, None), Some("a"), 1000).is_ok());
        let oversized = check_page("p/", &page(1001, None), None, 0).unwrap_err();
        assert!(
            oversized.to_string().contains("1001 entries"),
            "{oversized}"
        );
        let looping = check_page("p/", &page(5, Some("a")), Some("a"), 1000).unwrap_err();
        assert!(
            looping.to_string().contains("same continuation token"),
            "{looping}"
        );
        let endless = check_page(
            "p/",
            &page(1000, Some("b")),
            Some("a"),
            MAX_LISTING_ENTRIES - 999,
        );
        assert!(endless.is_err());
    }
}
