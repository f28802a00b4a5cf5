//! The write path: sequential writes are encrypted segment by segment into part buffers that
//! a background uploader sends as S3 multipart parts while the application keeps writing.
//! A file that ends before its first part fills goes up as one PutObject. See docs/WRITE_PATH.md.

pub mod append;
mod budget;
mod conflict;
mod finish;
mod in_flight;
mod parts;
mod sent_copy;
pub mod staging;

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Instant;

use bytes::Bytes;
use tokio::task::JoinHandle;
use tracing::{debug, info, warn};

pub use budget::{MemoryBudget, Reservation};
pub use conflict::{Conflict, ConflictName, OnConflict, SaveGuard};
use in_flight::join_part;
pub use parts::{DEFAULT_PART_SIZE, MAX_PART_SIZE, MIN_PART_SIZE, part_size};
use sent_copy::SentCopy;
pub use sent_copy::{KeepSent, LocalObject};

use crate::crypto::{
    AttrsBinding, Layout, MasterKey, ObjectKind, PosixAttrs, StreamEncryptor, attrs_metadata,
};
use crate::store::{CompletedPart, ConditionSupport, Metadata, ObjectStore, StoreError};

/// Measured on Garage (2 cores, 1 GiB `cp`s): 3 parts of 8 MiB write as fast as 4 once a
/// full part waits for whichever upload finishes first, with 8 MiB less memory.
pub const DEFAULT_PARTS_IN_FLIGHT: usize = 3;

/// Write-path settings.
#[derive(Debug, Clone, Copy)]
pub struct UploadConfig {
    /// Part buffers of one file at once: its parts uploading and the one filling. A full
    /// part that makes this many waits for the first upload to finish before write() goes on.
    pub parts_in_flight: usize,
    /// Plaintext bytes in each of a file's first 1000 parts (`parts::part_size`).
    pub part_size: u64,
}

impl Default for UploadConfig {
    fn default() -> Self {
        Self {
            parts_in_flight: DEFAULT_PARTS_IN_FLIGHT,
            part_size: DEFAULT_PART_SIZE,
        }
    }
}

/// Counters for the whole mount (the seed of its metrics).
#[derive(Debug, Default)]
pub struct UploadStats {
    pub single_put_files: AtomicU64,
    pub multipart_files: AtomicU64,
    pub parts: AtomicU64,
    pub bytes: AtomicU64,
    pub failures: AtomicU64,
    /// Writes to new files taken at once by `write_now`, and those that went through `write`.
    pub writes_at_once: AtomicU64,
    pub writes_waited: AtomicU64,
}

/// Shared by every writer of a mount.
pub struct UploadContext {
    pub store: Arc<dyn ObjectStore>,
    pub master: Arc<MasterKey>,
    pub layout: Layout,
    pub budget: MemoryBudget,
    pub config: UploadConfig,
    pub stats: UploadStats,
    /// Which conditional writes the server enforces (the mount's probe); saves check the
    /// rest themselves (see `conflict`).
    pub conditions: ConditionSupport,
}

/// Why a write or a commit failed.
#[derive(Debug, Clone, thiserror::Error)]
pub enum WriteError {
    #[error("write at offset {offset} but the file has {written} bytes: only sequential writes")]
    NotSequential { offset: u64, written: u64 },
    #[error("the upload memory budget is exhausted")]
    OutOfMemory,
    #[error("upload failed: {0}")]
    Upload(#[from] StoreError),
    #[error("the file was already committed")]
    Committed,
    #[error("{0}")]
    Conflict(String),
}

impl WriteError {
    pub fn errno(&self) -> i32 {
        match self {
            WriteError::NotSequential { .. } => libc::EINVAL,
            WriteError::OutOfMemory => libc::ENOMEM,
            WriteError::Upload(e) if e.errno() == libc::EACCES => libc::EACCES,
            WriteError::Upload(_) => libc::EIO,
            WriteError::Committed => libc::EBADF,
            WriteError::Conflict(_) => libc::EIO,
        }
    }
}

/// What a successful commit produced.
#[derive(Debug, Clone)]
pub struct Committed {
    pub plaintext_size: u64,
    pub ciphertext_size: u64,
    pub etag: Option<String>,
    /// Another mount had saved (or removed) the file first, and both versions were kept.
    pub conflict: Option<Conflict>,
    /// What the saved version's attributes are bound to, when it was sent in one request
    /// (its header and body digest); `None`: read its header when attributes are saved.
    pub binding: Option<AttrsBinding>,
}

struct Multipart {
    upload_id: String,
    done: Vec<CompletedPart>,
    in_flight: Vec<JoinHandle<Result<CompletedPart, StoreError>>>,
}

/// What [`ObjectWriter::retarget`] did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Retarget {
    /// Nothing was uploaded yet: the version goes straight to the new key.
    Moved,
    /// The upload runs under the old key; the object moves when it is complete.
    AtCommit,
    /// Too late: the version is committed under the old key.
    AlreadyCommitted,
}

/// One file being written, from open to commit.
pub struct ObjectWriter {
    ctx: Arc<UploadContext>,
    key: String,
    /// The attributes the object records, sealed for it when it is sent.
    attrs: Option<PosixAttrs>,
    /// What they are bound to: this version's header.
    binding: AttrsBinding,
    encryptor: Option<StreamEncryptor>,
    /// The part being filled, and the budget it holds.
    buffer: Vec<u8>,
    reservation: Option<Reservation>,
    part_number: u32,
    multipart: Option<Multipart>,
    /// Where the object goes once complete, when the file was renamed after its multipart
    /// upload had started under `key` (the upload's key cannot change).
    final_key: Option<String>,
    /// What the save expects under the key, and what it does otherwise (`None`: it
    /// overwrites whatever is there).
    guard: Option<SaveGuard>,
    /// Renamed while its multipart upload ran: what the guard expected was the old name's.
    renamed: bool,
    /// Where a multipart upload runs instead of under the key, on a server that ends a
    /// key's uploads when the key is written (another mount's save would end this one's):
    /// the completed object is then copied under the key.
    hidden_upload_key: Option<String>,
    /// Whether (and where) the sent parts are kept locally; `None` once given up.
    keep_sent: Option<KeepSent>,
    sent_copy: Option<SentCopy>,
    ciphertext_bytes: u64,
    started: Instant,
    result: Option<Result<Committed, WriteError>>,
}

impl ObjectWriter {
    /// A writer for a new version of `key`. Nothing is reserved or sent until the first write.
    /// `attrs`: what it records besides its contents (`None`: nothing).
    pub fn new(ctx: Arc<UploadContext>, key: String, attrs: Option<PosixAttrs>) -> Self {
        let encryptor = StreamEncryptor::new(&ctx.master, ctx.layout, ObjectKind::File);
        Self {
            ctx,
            key,
            attrs,
            binding: AttrsBinding::of(encryptor.header()),
            encryptor: Some(encryptor),
            buffer: Vec::new(),
            reservation: None,
            part_number: 1,
            multipart: None,
            final_key: None,
            guard: None,
            renamed: false,
            hidden_upload_key: None,
            keep_sent: None,
            sent_copy: None,
            ciphertext_bytes: 0,
            started: Instant::now(),
            result: None,
        }
    }

    /// The key the object will have once committed.
    pub fn key(&self) -> &str {
        self.final_key.as_deref().unwrap_or(&self.key)
    }

    /// The file was renamed while being written: the version is committed under `key`. Before
    /// a multipart upload exists this only changes the target; after, the completed object is
    /// copied to `key` and the upload's key deleted (some servers drop an upload whose key is
    /// deleted, so the old key must stay until then).
    pub fn retarget(&mut self, key: String) -> Retarget {
        if self.result.is_some() {
            return Retarget::AlreadyCommitted;
        }
        if self.multipart.is_none() {
            self.key = key;
            self.final_key = None;
            Retarget::Moved
        } else {
            self.final_key = Some(key);
            self.renamed = true;
            Retarget::AtCommit
        }
    }

    /// Runs a multipart upload, if the file needs one, under `hidden_key` (see
    /// `hidden_upload_key`).
    pub fn upload_under(&mut self, hidden_key: String) {
        self.hidden_upload_key = Some(hidden_key);
    }

    /// What the commit expects to find under the key (see `conflict`). Set just before the
    /// commit, when the file's name and base are known. A version renamed while its
    /// multipart upload ran stays unguarded.
    pub fn guard(&mut self, guard: Option<SaveGuard>) {
        self.guard = guard;
    }

    /// Keeps a local copy of the parts as they are sent (see `sent_copy`), so that the
    /// stream can still turn into a change in place after its first part is out.
    pub fn keep_sent_parts(&mut self, keep: KeepSent) {
        self.keep_sent = Some(keep);
    }

    /// Replaces the attributes the object will record. Returns whether it will: not once the
    /// multipart upload has been created (its metadata is fixed then) or after commit.
    pub fn set_attrs(&mut self, attrs: PosixAttrs) -> bool {
        if self.multipart.is_some() || self.result.is_some() {
            return false;
        }
        self.attrs = Some(attrs);
        true
    }

    /// The user metadata the object carries: its attributes, sealed for `binding` (this
    /// version's header, and its body's digest when the whole body is known).
    fn metadata(&self, binding: &AttrsBinding) -> Metadata {
        let Some(attrs) = &self.attrs else {
            return Metadata::new();
        };
        Metadata::from_iter(attrs_metadata(&self.ctx.master, attrs, binding))
    }

    /// Plaintext bytes written so far.
    pub fn len(&self) -> u64 {
        self.encryptor.as_ref().map_or_else(
            || {
                self.result
                    .as_ref()
                    .and_then(|r| r.as_ref().ok())
                    .map_or(0, |c| c.plaintext_size)
            },
            |e| e.plaintext_len(),
        )
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    pub fn is_committed(&self) -> bool {
        self.result.is_some()
    }

    /// The version this writer saved, once its commit succeeded.
    pub fn committed(&self) -> Option<&Committed> {
        self.result.as_ref().and_then(|r| r.as_ref().ok())
    }

    /// Whether parts of a multipart upload were sent: its key (the file's name) is then fixed.
    pub fn has_sent_parts(&self) -> bool {
        self.multipart.is_some()
    }

    /// Appends `data` at `offset`, which must be the current end of the file. Waits (never
    /// fails) when the file's parts in flight or the mount's memory budget are at their limit.
    pub async fn write(&mut self, offset: u64, data: &[u8]) -> Result<(), WriteError> {
        if self.result.is_some() {
            return Err(WriteError::Committed);
        }
        let written = self.len();
        if offset != written {
            return Err(WriteError::NotSequential { offset, written });
        }
        if let Err(e) = self.write_inner(data).await {
            // The stream cannot continue (a segment may already be sealed as not-last), so the
            // version is abandoned: later commits report this error and nothing is left behind.
            self.abort().await;
            self.result = Some(Err(e.clone()));
            self.ctx.stats.failures.fetch_add(1, Ordering::Relaxed);
            crate::metrics::file_failed();
            return Err(e);
        }
        Ok(())
    }

    /// Writes `data` at once, on the caller's thread and from the caller's buffer, when that
    /// needs no waiting: the stream is at `offset`, a part buffer is held and `data` does not
    /// fill it (all but about one write per part of a sequential stream). `false`, with
    /// nothing written, when [`ObjectWriter::write`] is needed.
    pub fn write_now(&mut self, offset: u64, data: &[u8]) -> bool {
        if self.result.is_some() || self.reservation.is_none() || offset != self.len() {
            return false;
        }
        let limit = self.part_limit();
        let Some(encryptor) = self.encryptor.as_mut() else {
            return false;
        };
        if data.len() > encryptor.room_in_part(&self.buffer, limit) {
            return false;
        }
        let written = encryptor.write(&mut self.buffer, data, limit);
        debug_assert_eq!(written, data.len(), "the room was measured");
        self.ctx
            .stats
            .writes_at_once
            .fetch_add(1, Ordering::Relaxed);
        true
    }

    async fn write_inner(&mut self, mut data: &[u8]) -> Result<(), WriteError> {
        self.ctx.stats.writes_waited.fetch_add(1, Ordering::Relaxed);
        while !data.is_empty() {
            self.ensure_buffer().await?;
            let limit = self.part_limit();
            let encryptor = self.encryptor.as_mut().expect("not committed");
            let n = encryptor.write(&mut self.buffer, data, limit);
            data = &data[n..];
            if encryptor.is_buffer_full(&self.buffer, limit) {
                self.send_part().await?;
            }
        }
        Ok(())
    }

    /// Seals the last segment and makes the object visible under its key: one PutObject for a
    /// small file, else the last part and CompleteMultipartUpload. On failure nothing appears
    /// under the key and no multipart upload is left behind. Idempotent: a second call
    /// returns the first call's result.
    pub async fn commit(&mut self) -> Result<Committed, WriteError> {
        if let Some(result) = &self.result {
            return result.clone();
        }
        let result = self.commit_inner().await;
        // Saved (or given up): the local copy of its parts has no use any more.
        self.sent_copy = None;
        self.keep_sent = None;
        if result.is_err() {
            self.ctx.stats.failures.fetch_add(1, Ordering::Relaxed);
            crate::metrics::file_failed();
            self.abort().await;
        }
        self.buffer = Vec::new();
        self.reservation = None;
        self.result = Some(result.clone());
        result
    }

    async fn commit_inner(&mut self) -> Result<Committed, WriteError> {
        self.ensure_buffer().await?;
        let encryptor = self.encryptor.take().expect("commit runs once");
        let plaintext_size = encryptor.plaintext_len();
        encryptor.finish(&mut self.buffer);
        let ctx = self.ctx.clone();
        let body = Bytes::from(std::mem::take(&mut self.buffer));
        self.ciphertext_bytes += body.len() as u64;
        let mut binding = None;
        let (etag, parts, conflict) = match self.multipart.take() {
            None => {
                let whole = self.binding.with_body_md5(crate::store::content_md5(&body));
                binding = Some(whole);
                let metadata = self.metadata(&whole);
                let (put, conflict) = conflict::put(
                    ctx.store.as_ref(),
                    &ctx.conditions,
                    &self.key,
                    body,
                    &metadata,
                    self.guard.as_ref(),
                )
                .await?;
                ctx.stats.single_put_files.fetch_add(1, Ordering::Relaxed);
                crate::metrics::file_committed("single_put");
                (put.etag, 1, conflict)
            }
            Some(mp) => {
                let upload_id = mp.upload_id.clone();
                self.multipart = Some(mp);
                let last = self.spawn_part(&upload_id, body);
                let mp = self.multipart.as_mut().expect("just put back");
                mp.in_flight.push(last);
                // On error the parts still in flight stay in `self.multipart` for abort().
                while !mp.in_flight.is_empty() {
                    let next = mp.in_flight.remove(0);
                    mp.done.push(join_part(next).await?);
                }
                let mut parts = mp.done.clone();
                parts.sort_by_key(|p| p.part_number);
                let (done, conflict) = self.finish_multipart(&upload_id, &parts).await?;
                ctx.stats.multipart_files.fetch_add(1, Ordering::Relaxed);
                crate::metrics::file_committed("multipart");
                (done.etag, parts.len(), conflict)
            }
        };
        ctx.stats
            .bytes
            .fetch_add(self.ciphertext_bytes, Ordering::Relaxed);
        debug!(
            key = %self.key,
            plaintext_size,
            parts,
            elapsed_ms = self.started.elapsed().as_millis() as u64,
            "committed"
        );
        Ok(Committed {
            plaintext_size,
            ciphertext_size: self.ciphertext_bytes,
            etag,
            binding: binding.filter(|_| conflict.is_none()),
            conflict,
        })
    }

    /// Gives up: aborts the multipart upload (if any) so no parts are left behind.
    pub async fn abort(&mut self) {
        if let Some(mp) = self.multipart.take() {
            // Stop the parts still uploading and wait until they are gone, so none can land
            // after the abort and leave a part behind.
            for handle in mp.in_flight {
                handle.abort();
                let _ = handle.await;
            }
            if let Err(e) = self
                .ctx
                .store
                .abort_multipart(&self.key, &mp.upload_id)
                .await
            {
                warn!(key = %self.key, "could not abort multipart upload {}: {e}", mp.upload_id);
            }
        }
        if self.result.is_none() {
            self.result = Some(Err(WriteError::Upload(StoreError::fatal("aborted"))));
        }
        self.encryptor = None;
        self.sent_copy = None;
        self.keep_sent = None;
    }
}

impl Drop for ObjectWriter {
    fn drop(&mut self) {
        if let Some(mp) = self.multipart.take() {
            // A writer dropped without commit or abort (for example at shutdown): do not leave
            // its parts in the bucket.
            info!(key = %self.key, "abandoning unfinished upload");
            let store = self.ctx.store.clone();
            let key = std::mem::take(&mut self.key);
            if let Ok(rt) = tokio::runtime::Handle::try_current() {
                rt.spawn(async move {
                    for handle in mp.in_flight {
                        handle.abort();
                        let _ = handle.await;
                    }
                    let _ = store.abort_multipart(&key, &mp.upload_id).await;
                });
            }
        }
    }
}
