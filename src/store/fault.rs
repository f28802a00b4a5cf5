//! A fault-injecting wrapper around any [`ObjectStore`] (test support): fails or delays the
//! Nth call of a kind, to drive the filesystem core and the pipelines into their error paths.

use std::collections::HashMap;
use std::ops::Range;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use super::{
    CompletedPart, GetResponse, ListPage, Metadata, ObjectInfo, ObjectStore, PutResult, StoreError,
    StoreErrorKind, UploadInfo, WriteCondition,
};
use async_trait::async_trait;
use bytes::Bytes;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Op {
    Head,
    Get,
    Put,
    CreateMultipart,
    UploadPart,
    CompleteMultipart,
    AbortMultipart,
    List,
    Copy,
    Delete,
}

#[derive(Debug, Clone)]
pub enum Action {
    Fail(StoreErrorKind),
    Delay(Duration),
    /// Fails after a while, as a request that gave up after its retries does.
    FailAfter(Duration, StoreErrorKind),
    /// Another client writes this object (key, body) just before the call runs.
    WriteFirst(String, Bytes),
}

#[derive(Default)]
struct Plan {
    /// (op, call number starting at 1, or 0 for every call) -> action
    rules: Vec<(Op, usize, Action)>,
    calls: HashMap<Op, usize>,
    /// Failures at random: (chance per million calls, generator state, kind).
    random: Option<(u32, u64, StoreErrorKind)>,
}

pub struct FaultStore {
    inner: Arc<dyn ObjectStore>,
    plan: Mutex<Plan>,
    /// Lookups that read the header with the metadata (counted under [`Op::Head`] too).
    header_reads: std::sync::atomic::AtomicUsize,
}

impl FaultStore {
    pub fn new(inner: Arc<dyn ObjectStore>) -> Self {
        Self {
            inner,
            plan: Mutex::new(Plan::default()),
            header_reads: Default::default(),
        }
    }

    /// Applies `action` to the `nth` call of `op` (1-based), or to every call when `nth` is 0.
    pub fn on(&self, op: Op, nth: usize, action: Action) {
        self.plan.lock().unwrap().rules.push((op, nth, action));
    }

    /// Fails each call with `kind` at a chance of `per_million` in a million, drawn from a
    /// generator seeded with `seed` (0 per million: no random failures).
    pub fn fail_randomly(&self, per_million: u32, seed: u64, kind: StoreErrorKind) {
        self.plan.lock().unwrap().random =
            (per_million > 0).then_some((per_million, seed.max(1), kind));
    }

    /// How many lookups read the header with the metadata (a ranged GET on S3), of the
    /// [`Op::Head`] calls.
    pub fn header_reads(&self) -> usize {
        self.header_reads.load(std::sync::atomic::Ordering::Relaxed)
    }

    pub fn calls(&self, op: Op) -> usize {
        self.plan
            .lock()
            .unwrap()
            .calls
            .get(&op)
            .copied()
            .unwrap_or(0)
    }

    async fn enter(&self, op: Op) -> Result<(), StoreError> {
        let action = {
            let mut plan = self.plan.lock().unwrap();
            let n = plan.calls.entry(op).or_insert(0);
            *n += 1;
            let n = *n;
            if let Some((per_million, state, kind)) = &mut plan.random {
                // xorshift64*: deterministic for a seed, no dependency.
                *state ^= *state >> 12;
                *state ^= *state << 25;
                *state ^= *state >> 27;
                let draw = state.wrapping_mul(0x2545_f491_4f6c_dd1d) % 1_000_000;
                if draw < u64::from(*per_million) {
                    return Err(StoreError::new(
                        *kind,
                        format!("injected failure of {op:?}"),
                    ));
                }
            }
            plan.rules
                .iter()
                .find(|(o, nth, _)| *o == op && (*nth == 0 || *nth == n))
                .map(|(_, _, a)| a.clone())
        };
        match action {
            Some(Action::Fail(kind)) => {
                Err(StoreError::new(kind, format!("injected failure of {op:?}")))
            }
            Some(Action::Delay(d)) => {
                tokio::time::sleep(d).await;
                Ok(())
            }
            Some(Action::FailAfter(d, kind)) => {
                tokio::time::sleep(d).await;
                Err(StoreError::new(kind, format!("injected failure of {op:?}")))
            }
            Some(Action::WriteFirst(key, body)) => {
                self.inner.put(&key, body, &Metadata::new()).await?;
                Ok(())
            }
            None => Ok(()),
        }
    }
}

#[async_trait]
impl ObjectStore for FaultStore {
    async fn head(&self, key: &str) -> Result<ObjectInfo, StoreError> {
        self.enter(Op::Head).await?;
        self.inner.head(key).await
    }
    /// A lookup, as a HEAD is: faults planned for [`Op::Head`] hit it.
    async fn head_with_prefix(
        &self,
        key: &str,
        len: u64,
    ) -> Result<(ObjectInfo, Bytes), StoreError> {
        self.enter(Op::Head).await?;
        self.header_reads
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        self.inner.head_with_prefix(key, len).await
    }
    async fn get_range(
        &self,
        key: &str,
        range: Range<u64>,
        if_match: Option<&str>,
    ) -> Result<GetResponse, StoreError> {
        self.enter(Op::Get).await?;
        self.inner.get_range(key, range, if_match).await
    }
    async fn put_if(
        &self,
        key: &str,
        body: Bytes,
        metadata: &Metadata,
        condition: Option<&WriteCondition>,
    ) -> Result<PutResult, StoreError> {
        self.enter(Op::Put).await?;
        self.inner.put_if(key, body, metadata, condition).await
    }
    async fn create_multipart(&self, key: &str, metadata: &Metadata) -> Result<String, StoreError> {
        self.enter(Op::CreateMultipart).await?;
        self.inner.create_multipart(key, metadata).await
    }
    async fn upload_part(
        &self,
        key: &str,
        upload_id: &str,
        part_number: u32,
        body: Bytes,
    ) -> Result<CompletedPart, StoreError> {
        self.enter(Op::UploadPart).await?;
        self.inner
            .upload_part(key, upload_id, part_number, body)
            .await
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
        self.enter(Op::UploadPart).await?;
        self.inner
            .upload_part_copy(key, upload_id, part_number, src, range, src_etag)
            .await
    }
    async fn complete_multipart_if(
        &self,
        key: &str,
        upload_id: &str,
        parts: &[CompletedPart],
        condition: Option<&WriteCondition>,
    ) -> Result<PutResult, StoreError> {
        self.enter(Op::CompleteMultipart).await?;
        self.inner
            .complete_multipart_if(key, upload_id, parts, condition)
            .await
    }
    async fn abort_multipart(&self, key: &str, upload_id: &str) -> Result<(), StoreError> {
        self.enter(Op::AbortMultipart).await?;
        self.inner.abort_multipart(key, upload_id).await
    }
    async fn list_uploads(&self, prefix: &str) -> Result<Vec<UploadInfo>, StoreError> {
        self.inner.list_uploads(prefix).await
    }
    async fn list_page(
        &self,
        prefix: &str,
        delimiter: Option<&str>,
        continuation: Option<String>,
    ) -> Result<ListPage, StoreError> {
        self.enter(Op::List).await?;
        self.inner.list_page(prefix, delimiter, continuation).await
    }
    async fn copy(
        &self,
        src: &str,
        dst: &str,
        metadata: Option<&Metadata>,
    ) -> Result<PutResult, StoreError> {
        self.enter(Op::Copy).await?;
        self.inner.copy(src, dst, metadata).await
    }
    async fn delete(&self, key: &str) -> Result<(), StoreError> {
        self.enter(Op::Delete).await?;
        self.inner.delete(key).await
    }
    async fn delete_many(&self, keys: &[String]) -> Result<(), StoreError> {
        self.enter(Op::Delete).await?;
        self.inner.delete_many(keys).await
    }
}
