//! Changing an existing file in place (overwrite, append, truncate, random writes).
//!
//! A file opened for writing without O_TRUNC reads from its current version until the first
//! change. Changes that only add bytes past the end of that version (appends, `>>`) are kept
//! in an encrypted staging file of their own (the *tail*), so nothing is downloaded; on a
//! format-2 volume they are saved by [`crate::upload::append`], which keeps the version's
//! ciphertext and sends only the tail. Any other change (a write or truncation inside the
//! version) first copies the version into an encrypted staging file
//! ([`crate::upload::staging`]) where every later change lands, and saving streams it
//! through a new [`ObjectWriter`]. Either way the object gets a new version and no keystream
//! is ever reused for different plaintext (docs/FORMAT.md §8, §15).
//!
//! One [`ModifyHandle`] exists per file being changed, shared by every descriptor open on it
//! in this mount (writers and readers alike), so they all see one set of contents, as on a
//! local disk: concurrent writers interleave and the last write of a byte wins.

use std::path::Path;
use std::sync::Arc;

use super::error::{FsError, FsResult};
use bytes::{Bytes, BytesMut};

use crate::crypto::PosixAttrs;
use crate::read::ObjectReader;
use crate::store::WriteCondition;
use crate::upload::append::{AppendBase, Appender, MIN_KEPT, worthwhile};
use crate::upload::staging::{StagingBudget, StagingFile, local_io};
use crate::upload::{Committed, ObjectWriter, SaveGuard, UploadContext, WriteError};

/// Bytes copied per step between the object, the staging file and the upload.
const CHUNK: u64 = 1024 * 1024;

/// Where the current contents live.
enum Contents {
    /// The version as it is (nothing changed yet).
    Base,
    /// The version, then the bytes in the tail (appended; holes read as zeros).
    Appended(StagingFile),
    /// Everything, in a staging file.
    Staged(StagingFile),
}

pub struct ModifyHandle {
    pub ino: u64,
    /// The saved version the contents start from; `None` for a new file whose stream went on
    /// in place after its first parts were sent (all of it is staged, nothing saved yet).
    base: Option<Arc<ObjectReader>>,
    base_len: u64,
    contents: Contents,
    /// Changed since the last commit.
    pub dirty: bool,
    /// What the next save expects under the file's name: the version it started from, or
    /// no file at all for one this mount created (see `upload::conflict`).
    pub expect: Option<WriteCondition>,
}

impl ModifyHandle {
    pub fn new(ino: u64, base: Arc<ObjectReader>, base_len: u64) -> Self {
        Self {
            ino,
            expect: Some(WriteCondition::Matches(base.version().etag.clone())),
            base: Some(base),
            base_len,
            contents: Contents::Base,
            dirty: false,
        }
    }

    /// A file with no saved version: all of it is in `staging`, to be saved.
    pub fn unsaved(ino: u64, staging: StagingFile) -> Self {
        Self {
            ino,
            base: None,
            base_len: 0,
            contents: Contents::Staged(staging),
            dirty: true,
            expect: None,
        }
    }

    /// The key of the version the contents start from (`None`: no saved version).
    pub fn base_key(&self) -> Option<&str> {
        self.base.as_ref().map(|b| b.version().key.as_str())
    }

    /// The saved version; only the staged contents have none.
    fn base(&self) -> FsResult<&ObjectReader> {
        self.base.as_deref().ok_or_else(|| {
            FsError::failed(libc::EIO, "a file with no saved version read its version")
        })
    }

    pub fn len(&self) -> u64 {
        match &self.contents {
            Contents::Base => self.base_len,
            Contents::Appended(tail) => self.base_len + tail.len(),
            Contents::Staged(staging) => staging.len(),
        }
    }

    /// The appended bytes, when that is all that changed since the version was saved.
    fn appended(&self) -> Option<&StagingFile> {
        match &self.contents {
            Contents::Appended(tail) => Some(tail),
            _ => None,
        }
    }

    /// Whether the contents still read the version `etag` of `key` (nothing staged yet).
    pub fn reads_version(&self, key: &str, etag: &str) -> bool {
        self.base.as_ref().is_some_and(|b| {
            let v = b.version();
            v.key == key && v.etag == etag && !matches!(self.contents, Contents::Staged(_))
        })
    }

    /// The object under `key` goes: the contents read `copy` (the same bytes under another
    /// key) instead.
    pub fn move_base(&mut self, key: &str, copy: Arc<ObjectReader>) {
        if self.base_key() == Some(key) {
            self.expect = Some(WriteCondition::Matches(copy.version().etag.clone()));
            self.base = Some(copy);
        }
    }

    /// After a save: the new version is the base, and only later changes are pending.
    pub fn rebase(&mut self, base: Arc<ObjectReader>, len: u64) {
        self.base = Some(base);
        self.base_len = len;
        // Staged contents stay where they are (they are the file); only the tail mode reads
        // through the version.
        if !matches!(self.contents, Contents::Staged(_)) {
            self.contents = Contents::Base;
        }
    }

    pub async fn read(&self, offset: u64, size: u32) -> FsResult<Bytes> {
        let end = (offset + u64::from(size)).min(self.len());
        if offset >= end {
            return Ok(Bytes::new());
        }
        match &self.contents {
            Contents::Base => self.base()?.read(offset, size).await.map_err(FsError::from),
            Contents::Staged(staging) => read_staged(staging, offset, end - offset),
            Contents::Appended(tail) => {
                let mut out = BytesMut::with_capacity((end - offset) as usize);
                if offset < self.base_len {
                    let want = (self.base_len.min(end) - offset) as u32;
                    let head = self
                        .base()?
                        .read(offset, want)
                        .await
                        .map_err(FsError::from)?;
                    if head.len() as u32 != want {
                        return Err(FsError::answer(libc::EIO));
                    }
                    out.extend_from_slice(&head);
                }
                let from = offset.max(self.base_len);
                if from < end {
                    let rest = read_staged(tail, from - self.base_len, end - from)?;
                    out.extend_from_slice(&rest);
                }
                Ok(out.freeze())
            }
        }
    }

    /// The contents as one staging file, copied from the version (its first `keep` bytes,
    /// as far as it has them: a truncation copies no more than it keeps) and the tail.
    async fn staged(
        &mut self,
        dir: &Path,
        budget: &Arc<StagingBudget>,
        keep: u64,
    ) -> FsResult<&mut StagingFile> {
        if !matches!(self.contents, Contents::Staged(_)) {
            let mut staging = new_staging(dir, budget)?;
            let copy = self.base_len.min(keep);
            self.copy_base_into(&mut staging, copy).await?;
            if let Contents::Appended(tail) = &self.contents
                && keep > self.base_len
            {
                let mut offset = 0;
                let tail_keep = tail.len().min(keep - self.base_len);
                while offset < tail_keep {
                    let chunk = read_staged(tail, offset, CHUNK.min(tail_keep - offset))?;
                    stage(&mut staging, self.base_len + offset, &chunk)?;
                    offset += chunk.len() as u64;
                }
            }
            self.contents = Contents::Staged(staging);
        }
        match &mut self.contents {
            Contents::Staged(staging) => Ok(staging),
            _ => unreachable!("just staged"),
        }
    }

    async fn copy_base_into(&self, staging: &mut StagingFile, len: u64) -> FsResult<()> {
        let mut offset = 0;
        while offset < len {
            let chunk = self
                .base()?
                .read(offset, CHUNK.min(len - offset) as u32)
                .await
                .map_err(FsError::from)?;
            if chunk.is_empty() {
                return Err(FsError::answer(libc::EIO));
            }
            stage(staging, offset, &chunk)?;
            offset += chunk.len() as u64;
        }
        Ok(())
    }

    /// Whether bytes added past the version go to a tail of their own, the version being
    /// kept as it is in the bucket. Only where the save can keep it (a large version): a
    /// smaller one is copied in at the first change, so that the change never depends on
    /// the version still being in the bucket when it is saved (another mount may replace
    /// it, and its save must not make this one's contents unreadable).
    fn keeps_base(&self) -> bool {
        match self.contents {
            Contents::Staged(_) => false,
            Contents::Appended(_) => true,
            Contents::Base => self.base_len >= MIN_KEPT,
        }
    }

    /// The tail, made on the first append.
    fn tail(&mut self, dir: &Path, budget: &Arc<StagingBudget>) -> FsResult<&mut StagingFile> {
        if matches!(self.contents, Contents::Base) {
            self.contents = Contents::Appended(new_staging(dir, budget)?);
        }
        match &mut self.contents {
            Contents::Appended(tail) => Ok(tail),
            _ => unreachable!("only called without staged contents"),
        }
    }

    /// Copies the version into the staging file now, so the contents no longer depend on
    /// the object under its old name (a rename is about to remove it).
    pub async fn detach(&mut self, dir: &Path, budget: &Arc<StagingBudget>) -> FsResult<()> {
        self.staged(dir, budget, u64::MAX).await.map(|_| ())
    }

    pub async fn write(
        &mut self,
        dir: &Path,
        budget: &Arc<StagingBudget>,
        offset: u64,
        data: &[u8],
    ) -> FsResult<()> {
        if offset >= self.base_len && self.keeps_base() {
            let base_len = self.base_len;
            stage(self.tail(dir, budget)?, offset - base_len, data)?;
        } else {
            stage(self.staged(dir, budget, u64::MAX).await?, offset, data)?;
        }
        self.dirty = true;
        Ok(())
    }

    pub async fn set_len(
        &mut self,
        dir: &Path,
        budget: &Arc<StagingBudget>,
        len: u64,
    ) -> FsResult<()> {
        if len == self.len() {
            return Ok(());
        }
        let target = if len >= self.base_len && self.keeps_base() {
            let base_len = self.base_len;
            (self.tail(dir, budget)?, len - base_len)
        } else {
            (self.staged(dir, budget, len).await?, len)
        };
        let (staging, len) = target;
        local_io(|| staging.set_len(len))
            .map_err(|e| staging_error(e, "cannot resize a file being changed in place"))?;
        self.dirty = true;
        Ok(())
    }

    /// A file whose only change is bytes appended to its version, on a format-2 volume:
    /// saved by keeping the version's ciphertext (copied server-side) and sending the
    /// appended bytes. `None` when that does not apply (the caller rewrites the file).
    pub async fn save_appended(
        &self,
        upload: &Arc<UploadContext>,
        key: &str,
        attrs: &PosixAttrs,
        guard: Option<&SaveGuard>,
    ) -> FsResult<Option<Committed>> {
        let layout = upload.layout;
        let (Some(tail), Some(plan)) = (self.appended(), layout.append_plan(self.base_len)) else {
            return Ok(None);
        };
        let base_reader = self.base()?;
        let base = base_reader.version().clone();
        if base.key != key || !worthwhile(&plan) {
            return Ok(None);
        }
        // With what failed; access denied stays EACCES, the rest is EIO.
        let fail = |what: &str, e: WriteError| {
            FsError::from(e).context(format!("{key}: file not saved: {what}"))
        };
        let want = (plan.resealed.end - plan.resealed.start) as u32;
        let last_segment = base_reader
            .read(plan.resealed.start, want)
            .await
            .map_err(|e| {
                FsError::from(e).context(format!("{key}: file not saved: reading its last segment"))
            })?;
        if last_segment.len() as u32 != want {
            return Err(FsError::failed(
                libc::EIO,
                format!("{}: file not saved: its last segment read short", key),
            ));
        }
        // The header the base's segments were verified under, not a second copy fetched
        // now: the server cannot slip in another one between the two.
        let header = base_reader.verified_header().ok_or_else(|| {
            FsError::failed(
                libc::EIO,
                format!("{key}: file not saved: its header was not verified"),
            )
        })?;
        let started = Appender::start(
            upload.clone(),
            key,
            AppendBase {
                key: &base.key,
                etag: &base.etag,
                plaintext_size: self.base_len,
                header,
                last_segment,
            },
            attrs,
        )
        .await
        .map_err(|e| fail("appending", e))?;
        let Some(mut appender) = started else {
            return Ok(None);
        };
        let mut offset = 0;
        while offset < tail.len() {
            let written = match read_staged(tail, offset, CHUNK.min(tail.len() - offset)) {
                Ok(chunk) if !chunk.is_empty() => {
                    offset += chunk.len() as u64;
                    appender
                        .write(&chunk)
                        .await
                        .map_err(|e| fail("appending", e))
                }
                Ok(_) => Err(FsError::failed(
                    libc::EIO,
                    format!("{}: file not saved: its staged bytes ended early", key),
                )),
                Err(e) => Err(e),
            };
            if let Err(e) = written {
                appender.abort().await;
                return Err(e);
            }
        }
        appender
            .finish(guard)
            .await
            .map(Some)
            .map_err(|e| fail("appending", e))
    }

    /// Streams the whole contents into `writer` (a new version under a new salt).
    pub async fn upload(&self, writer: &mut ObjectWriter) -> FsResult<()> {
        let len = self.len();
        let mut offset = 0;
        while offset < len {
            let chunk = self.read(offset, CHUNK.min(len - offset) as u32).await?;
            if chunk.is_empty() {
                return Err(FsError::answer(libc::EIO));
            }
            writer.write(offset, &chunk).await.map_err(FsError::from)?;
            offset += chunk.len() as u64;
        }
        Ok(())
    }
}

pub fn new_staging(dir: &Path, budget: &Arc<StagingBudget>) -> FsResult<StagingFile> {
    StagingFile::new(dir, budget.clone()).map_err(|e| {
        staging_error(
            e,
            &format!("cannot create a staging file in {}", dir.display()),
        )
    })
}

fn stage(staging: &mut StagingFile, offset: u64, data: &[u8]) -> FsResult<()> {
    local_io(|| staging.write_at(offset, data))
        .map_err(|e| staging_error(e, "cannot stage a file being changed in place"))
}

/// `len` bytes (fewer at its end) of a staging file from `offset`.
pub fn read_staged(staging: &StagingFile, offset: u64, len: u64) -> FsResult<Bytes> {
    let mut buf = vec![0u8; len as usize];
    let n = local_io(|| staging.read_at(offset, &mut buf))
        .map_err(|e| FsError::failed(libc::EIO, format!("staged read failed: {e}")))?;
    buf.truncate(n);
    Ok(Bytes::from(buf))
}

/// A staging file's I/O error: a full `--max-cache-size` is ENOSPC, the rest keeps its errno.
fn staging_error(e: std::io::Error, what: &str) -> FsError {
    let errno = match e.kind() {
        std::io::ErrorKind::StorageFull => libc::ENOSPC,
        _ => e.raw_os_error().unwrap_or(libc::EIO),
    };
    FsError::failed(errno, format!("{what}: {e}"))
}
