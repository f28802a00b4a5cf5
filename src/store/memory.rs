//! An in-memory [`ObjectStore`] with S3's semantics, for tests of the layers above the store
//! (the filesystem core, the pipelines) without a server: sorted keys, delimiter listings in
//! pages of 1000 with continuation tokens, ranged GETs clipped at the end, `If-Match` on GETs
//! and part copies, multipart uploads that appear only when completed, server-side copies, and
//! the same error kinds as [`super::S3Store`] reports.
//!
//! ETags are derived from the content (as S3's MD5 ETags are), so two puts of the same bytes
//! have the same ETag and any change of the bytes changes it.

use std::collections::{BTreeMap, HashMap};
use std::ops::Range;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::SystemTime;

use async_trait::async_trait;
use bytes::Bytes;

use super::{
    CompletedPart, GetResponse, ListPage, MAX_KEYS_PER_REQUEST, Metadata, ObjectBody, ObjectInfo,
    ObjectStore, PutResult, StoreError, StoreErrorKind, UploadInfo, WriteCondition,
};

/// S3's smallest size for every part of a multipart upload but the last.
const MIN_PART_SIZE: usize = 5 * 1024 * 1024;

#[derive(Clone)]
struct StoredObject {
    body: Bytes,
    etag: String,
    metadata: Metadata,
    last_modified: SystemTime,
}

struct Upload {
    key: String,
    metadata: Metadata,
    initiated: SystemTime,
    parts: BTreeMap<u32, (String, Bytes)>,
}

#[derive(Default)]
struct State {
    objects: BTreeMap<String, StoredObject>,
    uploads: HashMap<String, Upload>,
}

impl State {
    /// Part `part_number` of the upload `upload_id` (of `key`) is `body`, replacing any
    /// earlier one of that number, as in S3.
    fn add_part(
        &mut self,
        op: &str,
        key: &str,
        upload_id: &str,
        part_number: u32,
        body: Bytes,
    ) -> Result<CompletedPart, StoreError> {
        let upload = self
            .uploads
            .get_mut(upload_id)
            .filter(|u| u.key == key)
            .ok_or_else(|| not_found(op, key))?;
        let etag = etag_of(&body);
        upload.parts.insert(part_number, (etag.clone(), body));
        Ok(CompletedPart { part_number, etag })
    }
}

/// Objects kept in memory; see the module documentation.
#[derive(Default)]
pub struct MemoryStore {
    state: Mutex<State>,
    next_upload: AtomicU64,
    /// Requests served, for tests that count them.
    requests: AtomicU64,
    /// Writes ignore their conditions, as some servers' do (Garage).
    ignores_conditions: std::sync::atomic::AtomicBool,
    /// A write of a key ends the multipart uploads open under it, as Garage's do.
    drops_uploads_on_overwrite: std::sync::atomic::AtomicBool,
}

/// As S3 servers give a single-request upload: the MD5 digest of its body, quoted.
fn etag_of(body: &[u8]) -> String {
    format!("\"{}\"", hex::encode(super::content_md5(body)))
}

fn not_found(what: &str, key: &str) -> StoreError {
    StoreError::new(StoreErrorKind::NotFound, format!("{what} {key}: not found"))
}

impl MemoryStore {
    pub fn new() -> Self {
        Self::default()
    }

    /// Every key with its stored bytes (for tests that inspect or tamper with the bucket).
    pub fn keys(&self) -> Vec<String> {
        self.state.lock().unwrap().objects.keys().cloned().collect()
    }

    /// The stored bytes of `key`.
    pub fn object(&self, key: &str) -> Option<Bytes> {
        let state = self.state.lock().unwrap();
        state.objects.get(key).map(|o| o.body.clone())
    }

    /// Replaces the stored bytes of `key` as a hostile provider would (metadata kept).
    pub fn tamper(&self, key: &str, body: Bytes) {
        let mut state = self.state.lock().unwrap();
        if let Some(o) = state.objects.get_mut(key) {
            o.etag = etag_of(&body);
            o.body = body;
        }
    }

    /// Replaces the stored bytes of `key` but keeps its ETag, as a server that reuses ETags
    /// (buggy, or hostile) would.
    pub fn replace_keeping_etag(&self, key: &str, body: Bytes) {
        let mut state = self.state.lock().unwrap();
        if let Some(o) = state.objects.get_mut(key) {
            o.body = body;
        }
    }

    /// From now on conditional writes write regardless, as a server without conditional
    /// writes does.
    pub fn ignore_conditions(&self) {
        self.ignores_conditions.store(true, Ordering::Relaxed);
    }

    /// From now on a write of a key ends the multipart uploads open under it (Garage keeps
    /// one version being written per key, and a newer one supersedes it).
    pub fn drop_uploads_on_overwrite(&self) {
        self.drops_uploads_on_overwrite
            .store(true, Ordering::Relaxed);
    }

    /// Whether `condition` holds for `key` now (always, when conditions are ignored).
    fn check_condition(
        &self,
        state: &State,
        key: &str,
        condition: Option<&WriteCondition>,
    ) -> Result<(), StoreError> {
        if self.ignores_conditions.load(Ordering::Relaxed) {
            return Ok(());
        }
        let current = state.objects.get(key).map(|o| o.etag.as_str());
        let holds = match condition {
            None => true,
            Some(WriteCondition::Absent) => current.is_none(),
            Some(WriteCondition::Matches(etag)) => current == Some(etag.as_str()),
        };
        if holds {
            Ok(())
        } else {
            Err(StoreError::new(
                StoreErrorKind::PreconditionFailed,
                format!("{key} is at {current:?}, the write wanted {condition:?}"),
            ))
        }
    }

    /// How many requests the store has served.
    pub fn requests(&self) -> u64 {
        self.requests.load(Ordering::Relaxed)
    }

    fn count(&self) {
        self.requests.fetch_add(1, Ordering::Relaxed);
    }

    fn store(&self, key: &str, body: Bytes, metadata: Metadata) -> PutResult {
        self.store_if(key, body, metadata, None, None)
            .expect("unconditional")
    }

    /// Stores `body` under `key` if `condition` holds, checked and written under one lock;
    /// `etag` overrides the content hash (multipart ETags).
    fn store_if(
        &self,
        key: &str,
        body: Bytes,
        metadata: Metadata,
        condition: Option<&WriteCondition>,
        etag: Option<String>,
    ) -> Result<PutResult, StoreError> {
        let etag = etag.unwrap_or_else(|| etag_of(&body));
        let object = StoredObject {
            body,
            etag: etag.clone(),
            metadata,
            last_modified: SystemTime::now(),
        };
        let mut state = self.state.lock().unwrap();
        self.check_condition(&state, key, condition)?;
        state.objects.insert(key.to_string(), object);
        if self.drops_uploads_on_overwrite.load(Ordering::Relaxed) {
            state.uploads.retain(|_, upload| upload.key != key);
        }
        Ok(PutResult { etag: Some(etag) })
    }
}

/// The bytes `range` of `body`, clipped at its end, or InvalidRange when the range starts at
/// or past the end (also for an empty object, as S3 answers).
fn slice(key: &str, body: &Bytes, range: &Range<u64>) -> Result<Range<u64>, StoreError> {
    let size = body.len() as u64;
    if range.is_empty() || range.start >= size {
        return Err(StoreError::new(
            StoreErrorKind::InvalidRange,
            format!("range {range:?} of {key} ({size} bytes)"),
        ));
    }
    Ok(range.start..range.end.min(size))
}

fn check_if_match(key: &str, etag: &str, if_match: Option<&str>) -> Result<(), StoreError> {
    match if_match {
        Some(wanted) if wanted != etag => Err(StoreError::new(
            StoreErrorKind::PreconditionFailed,
            format!("{key} is at {etag}, not {wanted}"),
        )),
        _ => Ok(()),
    }
}

#[async_trait]
impl ObjectStore for MemoryStore {
    async fn head(&self, key: &str) -> Result<ObjectInfo, StoreError> {
        self.count();
        let state = self.state.lock().unwrap();
        let o = state
            .objects
            .get(key)
            .ok_or_else(|| not_found("HeadObject", key))?;
        Ok(info_of(key, o))
    }

    async fn head_with_prefix(
        &self,
        key: &str,
        len: u64,
    ) -> Result<(ObjectInfo, Bytes), StoreError> {
        self.count();
        let state = self.state.lock().unwrap();
        let o = state
            .objects
            .get(key)
            .ok_or_else(|| not_found("GetObject", key))?;
        let end = (len as usize).min(o.body.len());
        Ok((info_of(key, o), o.body.slice(..end)))
    }

    async fn get_range(
        &self,
        key: &str,
        range: Range<u64>,
        if_match: Option<&str>,
    ) -> Result<GetResponse, StoreError> {
        self.count();
        let state = self.state.lock().unwrap();
        let o = state
            .objects
            .get(key)
            .ok_or_else(|| not_found("GetObject", key))?;
        check_if_match(key, &o.etag, if_match)?;
        let returned = slice(key, &o.body, &range)?;
        let bytes = o.body.slice(returned.start as usize..returned.end as usize);
        Ok(GetResponse {
            body: ObjectBody::new(std::io::Cursor::new(bytes)),
            range: returned,
            object_size: o.body.len() as u64,
            etag: Some(o.etag.clone()),
        })
    }

    async fn put_if(
        &self,
        key: &str,
        body: Bytes,
        metadata: &Metadata,
        condition: Option<&WriteCondition>,
    ) -> Result<PutResult, StoreError> {
        self.count();
        self.store_if(key, body, metadata.clone(), condition, None)
    }

    async fn create_multipart(&self, key: &str, metadata: &Metadata) -> Result<String, StoreError> {
        self.count();
        let id = format!(
            "upload-{}",
            self.next_upload.fetch_add(1, Ordering::Relaxed)
        );
        let upload = Upload {
            key: key.to_string(),
            metadata: metadata.clone(),
            initiated: SystemTime::now(),
            parts: BTreeMap::new(),
        };
        self.state
            .lock()
            .unwrap()
            .uploads
            .insert(id.clone(), upload);
        Ok(id)
    }

    async fn upload_part(
        &self,
        key: &str,
        upload_id: &str,
        part_number: u32,
        body: Bytes,
    ) -> Result<CompletedPart, StoreError> {
        self.count();
        let mut state = self.state.lock().unwrap();
        state.add_part("UploadPart", key, upload_id, part_number, body)
    }

    async fn upload_part_copy(
        &self,
        key: &str,
        upload_id: &str,
        part_number: u32,
        src: &str,
        range: Range<u64>,
        src_etag: Option<&str>,
    ) -> Result<CompletedPart, StoreError> {
        self.count();
        let mut state = self.state.lock().unwrap();
        let source = state
            .objects
            .get(src)
            .ok_or_else(|| not_found("UploadPartCopy source", src))?;
        check_if_match(src, &source.etag, src_etag)?;
        let returned = slice(src, &source.body, &range)?;
        if returned != range {
            return Err(StoreError::new(
                StoreErrorKind::InvalidRange,
                format!("copy range {range:?} past the end of {src}"),
            ));
        }
        let body = source.body.slice(range.start as usize..range.end as usize);
        state.add_part("UploadPartCopy", key, upload_id, part_number, body)
    }

    async fn complete_multipart_if(
        &self,
        key: &str,
        upload_id: &str,
        parts: &[CompletedPart],
        condition: Option<&WriteCondition>,
    ) -> Result<PutResult, StoreError> {
        self.count();
        let upload = {
            let mut state = self.state.lock().unwrap();
            match state.uploads.get(upload_id) {
                Some(u) if u.key == key => {}
                _ => return Err(not_found("CompleteMultipartUpload", key)),
            }
            // A failed condition leaves the upload open, as S3 does.
            self.check_condition(&state, key, condition)?;
            state.uploads.remove(upload_id).expect("checked above")
        };
        let invalid =
            |why: String| StoreError::fatal(format!("CompleteMultipartUpload {key}: {why}"));
        if parts.is_empty() {
            return Err(invalid("no parts".into()));
        }
        let mut body = Vec::new();
        let mut last_number = 0;
        for (i, part) in parts.iter().enumerate() {
            if part.part_number <= last_number {
                return Err(invalid("parts not in ascending order".into()));
            }
            last_number = part.part_number;
            let (etag, bytes) = upload
                .parts
                .get(&part.part_number)
                .ok_or_else(|| invalid(format!("part {} was not uploaded", part.part_number)))?;
            if *etag != part.etag {
                return Err(invalid(format!(
                    "part {} has another ETag",
                    part.part_number
                )));
            }
            if i + 1 < parts.len() && bytes.len() < MIN_PART_SIZE {
                return Err(invalid(format!(
                    "part {} has {} bytes, below the 5 MiB minimum",
                    part.part_number,
                    bytes.len()
                )));
            }
            body.extend_from_slice(bytes);
        }
        // A multipart ETag is not the content's hash, as in S3: "<hash>-<parts>".
        let etag = format!("\"{}-{}\"", etag_of(&body).trim_matches('"'), parts.len());
        self.store_if(
            key,
            Bytes::from(body),
            upload.metadata,
            condition,
            Some(etag),
        )
    }

    async fn abort_multipart(&self, key: &str, upload_id: &str) -> Result<(), StoreError> {
        self.count();
        let mut state = self.state.lock().unwrap();
        match state.uploads.get(upload_id) {
            Some(u) if u.key == key => {
                state.uploads.remove(upload_id);
                Ok(())
            }
            _ => Err(not_found("AbortMultipartUpload", key)),
        }
    }

    async fn list_uploads(&self, prefix: &str) -> Result<Vec<UploadInfo>, StoreError> {
        self.count();
        let state = self.state.lock().unwrap();
        let mut uploads: Vec<UploadInfo> = state
            .uploads
            .iter()
            .filter(|(_, u)| u.key.starts_with(prefix))
            .map(|(id, u)| UploadInfo {
                key: u.key.clone(),
                upload_id: id.clone(),
                initiated: Some(u.initiated),
            })
            .collect();
        uploads.sort_by(|a, b| (&a.key, &a.upload_id).cmp(&(&b.key, &b.upload_id)));
        Ok(uploads)
    }

    async fn list_page(
        &self,
        prefix: &str,
        delimiter: Option<&str>,
        continuation: Option<String>,
    ) -> Result<ListPage, StoreError> {
        self.count();
        let state = self.state.lock().unwrap();
        let mut page = ListPage::default();
        // The token is the last key or common prefix of the previous page: continue after it.
        let after = continuation.unwrap_or_default();
        let mut entries = 0;
        for key in state
            .objects
            .range::<str, _>((
                std::ops::Bound::Included(prefix),
                std::ops::Bound::Unbounded,
            ))
            .map(|(k, _)| k)
            .take_while(|k| k.starts_with(prefix))
        {
            if !after.is_empty() && key.as_str() <= after.as_str() {
                continue;
            }
            let rest = &key[prefix.len()..];
            let common = delimiter.and_then(|d| {
                rest.find(d)
                    .map(|i| format!("{prefix}{}", &rest[..i + d.len()]))
            });
            if entries == MAX_KEYS_PER_REQUEST {
                page.next_token = Some(last_entry(&page));
                break;
            }
            match common {
                Some(common) => {
                    if page.common_prefixes.last() != Some(&common) && common > after {
                        page.common_prefixes.push(common);
                        entries += 1;
                    }
                }
                None => {
                    let o = &state.objects[key];
                    page.objects.push(ObjectInfo {
                        key: key.clone(),
                        size: o.body.len() as u64,
                        etag: Some(o.etag.clone()),
                        last_modified: Some(o.last_modified),
                        metadata: Metadata::new(),
                    });
                    entries += 1;
                }
            }
        }
        Ok(page)
    }

    async fn copy(
        &self,
        src: &str,
        dst: &str,
        metadata: Option<&Metadata>,
    ) -> Result<PutResult, StoreError> {
        self.count();
        let source = {
            let state = self.state.lock().unwrap();
            state
                .objects
                .get(src)
                .cloned()
                .ok_or_else(|| not_found("CopyObject source", src))?
        };
        let metadata = metadata.cloned().unwrap_or(source.metadata);
        let mut result = self.store(dst, source.body, metadata);
        // A copy keeps the source's ETag (S3 copies a multipart ETag only by content, but
        // callers must not rely on either).
        if let Some(o) = self.state.lock().unwrap().objects.get_mut(dst) {
            o.etag = source.etag.clone();
        }
        result.etag = Some(source.etag);
        Ok(result)
    }

    async fn delete(&self, key: &str) -> Result<(), StoreError> {
        self.count();
        self.state.lock().unwrap().objects.remove(key);
        Ok(())
    }

    async fn delete_many(&self, keys: &[String]) -> Result<(), StoreError> {
        self.count();
        let mut state = self.state.lock().unwrap();
        for key in keys {
            state.objects.remove(key);
        }
        Ok(())
    }
}

/// The last key or common prefix of a page, whichever sorts last: where the next page starts.
fn last_entry(page: &ListPage) -> String {
    let key = page.objects.last().map(|o| o.key.as_str()).unwrap_or("");
    let common = page
        .common_prefixes
        .last()
        .map(String::as_str)
        .unwrap_or("");
    key.max(common).to_string()
}

/// What a HEAD says of the stored object `o`.
fn info_of(key: &str, o: &StoredObject) -> ObjectInfo {
    ObjectInfo {
        key: key.to_string(),
        size: o.body.len() as u64,
        etag: Some(o.etag.clone()),
        last_modified: Some(o.last_modified),
        metadata: o.metadata.clone(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn meta() -> Metadata {
        Metadata::new()
    }

    #[tokio::test]
    async fn ranges_are_clipped_and_checked() {
        let s = MemoryStore::new();
        s.put("a", Bytes::from_static(b"0123456789"), &meta())
            .await
            .unwrap();
        let r = s.get_range("a", 5..100, None).await.unwrap();
        assert_eq!(r.range, 5..10);
        assert_eq!(r.body.collect().await.unwrap(), b"56789");
        let e = s.get_range("a", 10..11, None).await.unwrap_err();
        assert_eq!(e.kind, StoreErrorKind::InvalidRange);
        let e = s.get_range("a", 0..1, Some("\"other\"")).await.unwrap_err();
        assert_eq!(e.kind, StoreErrorKind::PreconditionFailed);
        let e = s.head("missing").await.unwrap_err();
        assert_eq!(e.kind, StoreErrorKind::NotFound);
    }

    #[tokio::test]
    async fn delimiter_listings_page_through_keys_and_prefixes() {
        let s = MemoryStore::new();
        for i in 0..1500 {
            s.put(&format!("d/f{i:04}"), Bytes::new(), &meta())
                .await
                .unwrap();
        }
        for i in 0..700 {
            s.put(&format!("d/sub{i:03}/x"), Bytes::new(), &meta())
                .await
                .unwrap();
            s.put(&format!("d/sub{i:03}/y"), Bytes::new(), &meta())
                .await
                .unwrap();
        }
        let listing = s.list_all("d/", Some("/")).await.unwrap();
        assert_eq!(listing.objects.len(), 1500);
        assert_eq!(listing.common_prefixes.len(), 700);
        assert_eq!(listing.requests, 3);
        let mut prefixes = listing.common_prefixes.clone();
        prefixes.dedup();
        assert_eq!(prefixes.len(), 700, "a common prefix was listed twice");
        let flat = s.list_all("d/sub", None).await.unwrap();
        assert_eq!(flat.objects.len(), 1400);
        assert!(flat.common_prefixes.is_empty());
    }

    #[tokio::test]
    async fn multipart_appears_only_when_complete() {
        let s = MemoryStore::new();
        let id = s.create_multipart("big", &meta()).await.unwrap();
        let p1 = s
            .upload_part("big", &id, 1, Bytes::from(vec![1u8; MIN_PART_SIZE]))
            .await
            .unwrap();
        let p2 = s
            .upload_part("big", &id, 2, Bytes::from_static(b"tail"))
            .await
            .unwrap();
        assert_eq!(
            s.head("big").await.unwrap_err().kind,
            StoreErrorKind::NotFound
        );
        assert_eq!(s.list_uploads("").await.unwrap().len(), 1);
        // Parts must be named in order, and all but the last must be at least 5 MiB.
        assert!(
            s.complete_multipart("big", &id, &[p2.clone(), p1.clone()])
                .await
                .is_err()
        );
        let id = s.create_multipart("small", &meta()).await.unwrap();
        let a = s
            .upload_part("small", &id, 1, Bytes::from_static(b"a"))
            .await
            .unwrap();
        let b = s
            .upload_part("small", &id, 2, Bytes::from_static(b"b"))
            .await
            .unwrap();
        assert!(s.complete_multipart("small", &id, &[a, b]).await.is_err());

        let id = s.create_multipart("big", &meta()).await.unwrap();
        let p1 = s
            .upload_part("big", &id, 1, Bytes::from(vec![1u8; MIN_PART_SIZE]))
            .await
            .unwrap();
        let p2 = s
            .upload_part("big", &id, 2, Bytes::from_static(b"tail"))
            .await
            .unwrap();
        let done = s.complete_multipart("big", &id, &[p1, p2]).await.unwrap();
        assert!(done.etag.unwrap().ends_with("-2\""));
        assert_eq!(s.head("big").await.unwrap().size, MIN_PART_SIZE as u64 + 4);
    }

    #[tokio::test]
    async fn part_copies_are_pinned_to_the_source_etag() {
        let s = MemoryStore::new();
        let put = s
            .put("src", Bytes::from_static(b"abcdef"), &meta())
            .await
            .unwrap();
        let id = s.create_multipart("dst", &meta()).await.unwrap();
        let stale = "\"stale\"";
        let e = s
            .upload_part_copy("dst", &id, 1, "src", 0..3, Some(stale))
            .await
            .unwrap_err();
        assert_eq!(e.kind, StoreErrorKind::PreconditionFailed);
        let part = s
            .upload_part_copy("dst", &id, 1, "src", 2..5, put.etag.as_deref())
            .await
            .unwrap();
        s.complete_multipart("dst", &id, &[part]).await.unwrap();
        assert_eq!(s.object("dst").unwrap(), Bytes::from_static(b"cde"));
    }

    #[tokio::test]
    async fn copies_keep_or_replace_metadata() {
        let s = MemoryStore::new();
        let mut m = Metadata::new();
        m.insert("k".into(), "v".into());
        s.put("a", Bytes::from_static(b"x"), &m).await.unwrap();
        s.copy("a", "b", None).await.unwrap();
        assert_eq!(s.head("b").await.unwrap().metadata, m);
        s.copy("a", "c", Some(&Metadata::new())).await.unwrap();
        assert!(s.head("c").await.unwrap().metadata.is_empty());
        s.delete_many(&["a".into(), "b".into()]).await.unwrap();
        assert_eq!(s.keys(), vec!["c".to_string()]);
    }
}
