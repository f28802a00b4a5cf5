//! Appending to a format-2 object without sending it again (issue #7, docs/FORMAT.md §15).
//!
//! The new version is one multipart upload: part 1 is the new header (its epoch table has
//! one more entry) followed by the first ciphertext bytes of the old version, fetched; the
//! rest of the kept ciphertext becomes parts copied server-side (UploadPartCopy, pinned to
//! the old version's ETag); then the old last segment, sealed again in the new epoch, and the
//! appended bytes are encrypted and uploaded like any write. Appending 1 MiB to a 1 GiB file
//! moves about 5 MiB each way plus the appended bytes, instead of the whole file.

use std::ops::Range;
use std::sync::Arc;
use std::sync::atomic::Ordering;

use bytes::Bytes;
use futures::{StreamExt, TryStreamExt};
use tracing::{debug, warn};

use super::{Committed, SaveGuard, UploadContext, WriteError, conflict, part_size};
use crate::crypto::{
    ATTRS_METADATA_NAME, AppendPlan, AttrsBinding, Header, PosixAttrs, StreamEncryptor, seal_attrs,
};
use crate::store::{CompletedPart, Metadata, StoreError};

/// S3's smallest part (all but the last).
const MIN_PART: u64 = 5 * 1024 * 1024;
/// Bytes per UploadPartCopy: copies run in parallel (a server copies a part at a time), and
/// grow for huge files so that copies and new parts stay within S3's 10,000 parts.
const COPY_PART: u64 = 256 * 1024 * 1024;
/// Parts the copies may use.
const MAX_COPY_PARTS: u64 = 9000;
/// Copies in flight at once.
const COPIES_IN_FLIGHT: usize = 4;

/// Whether keeping the ciphertext saves anything: at least two parts' worth (part 1 is
/// fetched and sent again anyway).
pub fn worthwhile(plan: &AppendPlan) -> bool {
    plan.kept.end - plan.kept.start >= MIN_KEPT
}

/// Ciphertext an append must keep to be worth it; a smaller version is rewritten whole.
pub const MIN_KEPT: u64 = 2 * MIN_PART;

/// The version being appended to.
pub struct AppendBase<'a> {
    pub key: &'a str,
    pub etag: &'a str,
    pub plaintext_size: u64,
    /// Its parsed header.
    pub header: Header,
    /// The plaintext of its last segment (sealed again, no longer last).
    pub last_segment: Bytes,
}

/// A new version of an object being built from an old one plus appended bytes.
pub struct Appender {
    ctx: Arc<UploadContext>,
    key: String,
    upload_id: String,
    parts: Vec<CompletedPart>,
    /// Taken by `finish`, which seals the last segment.
    encryptor: Option<StreamEncryptor>,
    buffer: Vec<u8>,
    ciphertext_bytes: u64,
}

impl Appender {
    /// Starts the new version of `key` (the same key as the base, or the name it has now).
    /// `None` when appending cannot save anything: format 1, a full epoch table, or less
    /// kept ciphertext than two minimal parts (then rewriting is as cheap).
    pub async fn start(
        ctx: Arc<UploadContext>,
        key: &str,
        base: AppendBase<'_>,
        attrs: &PosixAttrs,
    ) -> Result<Option<Self>, WriteError> {
        let Some(plan) = ctx.layout.append_plan(base.plaintext_size) else {
            return Ok(None);
        };
        if !worthwhile(&plan) {
            return Ok(None);
        }
        let Some(encryptor) = StreamEncryptor::append(&ctx.master, &base.header, plan.from_segment)
        else {
            return Ok(None);
        };
        // The new version keeps the base's salt and kind (only an epoch is added): its
        // attributes are bound to the same, as the encryptor's header says.
        let metadata = Metadata::from([(
            ATTRS_METADATA_NAME.to_string(),
            seal_attrs(&ctx.master, attrs, &AttrsBinding::of(encryptor.header())),
        )]);
        let store = &ctx.store;
        let upload_id = store.create_multipart(key, &metadata).await?;
        let mut appender = Self {
            ctx: ctx.clone(),
            key: key.to_string(),
            upload_id,
            parts: Vec::new(),
            encryptor: Some(encryptor),
            buffer: Vec::new(),
            ciphertext_bytes: 0,
        };
        let started = async {
            appender.send_kept(&base, plan.kept).await?;
            appender.write(&base.last_segment).await
        }
        .await;
        if let Err(e) = started {
            appender.abort().await;
            return Err(e);
        }
        Ok(Some(appender))
    }

    /// Part 1 (new header + the first kept bytes, fetched) and the copied parts.
    async fn send_kept(
        &mut self,
        base: &AppendBase<'_>,
        kept: Range<u64>,
    ) -> Result<(), WriteError> {
        let store = self.ctx.store.clone();
        // Part 1 takes what the copies could not: at least MIN_PART, and all of it when the
        // rest would be a copy smaller than a part.
        let mut fetched_end = kept.start + MIN_PART;
        if kept.end - fetched_end < MIN_PART {
            fetched_end = kept.end;
        }
        let mut first = self.encryptor().header().to_bytes();
        let body = store
            .get_range(base.key, kept.start..fetched_end, Some(base.etag))
            .await?
            .body
            .collect()
            .await?;
        if body.len() as u64 != fetched_end - kept.start {
            return Err(StoreError::fatal("the version to append to ended early").into());
        }
        first.extend_from_slice(&body);
        self.upload(Bytes::from(first)).await?;
        let copied = fetched_end..kept.end;
        if copied.is_empty() {
            return Ok(());
        }
        let len = copied.end - copied.start;
        let chunks = len.div_ceil(COPY_PART.max(len.div_ceil(MAX_COPY_PARTS)));
        let chunk = (copied.end - copied.start).div_ceil(chunks);
        let ranges: Vec<(u32, Range<u64>)> = (0..chunks)
            .map(|i| {
                let start = copied.start + i * chunk;
                (2 + i as u32, start..(start + chunk).min(copied.end))
            })
            .collect();
        let (key, upload_id) = (self.key.clone(), self.upload_id.clone());
        let parts: Vec<CompletedPart> = futures::stream::iter(ranges)
            .map(|(number, range)| {
                let (store, key, upload_id) = (store.clone(), key.clone(), upload_id.clone());
                let (src, etag) = (base.key.to_string(), base.etag.to_string());
                async move {
                    store
                        .upload_part_copy(&key, &upload_id, number, &src, range, Some(&etag))
                        .await
                }
            })
            .buffered(COPIES_IN_FLIGHT)
            .try_collect()
            .await?;
        self.parts.extend(parts);
        self.ciphertext_bytes += copied.end - copied.start;
        Ok(())
    }

    /// Encrypts `data` after what came before; full parts are uploaded as they fill.
    pub async fn write(&mut self, mut data: &[u8]) -> Result<(), WriteError> {
        let layout = self.ctx.layout;
        while !data.is_empty() {
            let limit = part_size(
                self.parts.len() as u32 + 1,
                layout,
                self.ctx.config.part_size,
            );
            let encryptor = self.encryptor.as_mut().expect("not finished");
            let n = encryptor.write(&mut self.buffer, data, limit);
            data = &data[n..];
            if encryptor.is_buffer_full(&self.buffer, limit) {
                let part = std::mem::take(&mut self.buffer);
                self.upload(Bytes::from(part)).await?;
            }
        }
        Ok(())
    }

    /// Seals the last segment, sends the last part and completes the upload (as `guard`
    /// says, see `conflict`).
    pub async fn finish(mut self, guard: Option<&SaveGuard>) -> Result<Committed, WriteError> {
        let encryptor = self.encryptor.take().expect("finished once");
        let plaintext_size = encryptor.plaintext_len();
        encryptor.finish(&mut self.buffer);
        let last = std::mem::take(&mut self.buffer);
        let result = async {
            self.upload(Bytes::from(last)).await?;
            conflict::complete(
                self.ctx.store.as_ref(),
                &self.ctx.conditions,
                &self.key,
                &self.upload_id,
                &self.parts,
                guard,
            )
            .await
        }
        .await;
        match result {
            Ok((put, conflict)) => {
                let ciphertext_size = self.ctx.layout.ciphertext_size(plaintext_size);
                debug_assert!(self.ciphertext_bytes <= ciphertext_size);
                debug!(key = %self.key, plaintext_size, parts = self.parts.len(), "appended");
                self.ctx
                    .stats
                    .multipart_files
                    .fetch_add(1, Ordering::Relaxed);
                Ok(Committed {
                    plaintext_size,
                    ciphertext_size,
                    etag: put.etag,
                    conflict,
                    binding: None,
                })
            }
            Err(e) => {
                self.abort().await;
                Err(e)
            }
        }
    }

    /// Gives up: the multipart upload goes, the old version stays.
    pub async fn abort(&mut self) {
        if let Err(e) = self
            .ctx
            .store
            .abort_multipart(&self.key, &self.upload_id)
            .await
        {
            warn!(key = %self.key, "could not abort an append's upload: {e}");
        }
    }

    fn encryptor(&self) -> &StreamEncryptor {
        self.encryptor.as_ref().expect("not finished")
    }

    async fn upload(&mut self, body: Bytes) -> Result<(), WriteError> {
        let number = self.parts.len() as u32 + 1;
        let len = body.len() as u64;
        let part = self
            .ctx
            .store
            .upload_part(&self.key, &self.upload_id, number, body)
            .await?;
        self.ctx.stats.parts.fetch_add(1, Ordering::Relaxed);
        self.ctx.stats.bytes.fetch_add(len, Ordering::Relaxed);
        self.ciphertext_bytes += len;
        self.parts.push(part);
        Ok(())
    }
}
