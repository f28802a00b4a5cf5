//! A local copy of the parts a new file's stream has already sent, so that a program that
//! goes back into them (zip patching the header of the entry it just wrote, a linker or a
//! muxer patching its output's header, a database) can still change the file. The stream
//! then stops, its multipart upload is aborted (nothing of it ever appears under the file's
//! name), and the file goes on as a change in place whose staging file is decrypted from
//! this copy: nothing is downloaded, no byte is lost.
//!
//! The copy is the ciphertext exactly as it was sent, so nothing reaches the local disk in
//! the clear. Its file is created already unlinked under `--cache-dir` (gone on every exit
//! path), counts against `--max-cache-size` with the staging files (copies together take at
//! most half of it), and is kept only while the file is within `--keep-sent-parts`: a
//! stream that grows past that drops its copy, and from then on a write behind its sent
//! parts fails with EINVAL (docs/SEMANTICS.md). The copy costs page-cache writes, about
//! 2.5 CPU s per GiB kept on the test VM: the reason for the limit.

use std::fs::File;
use std::io;
use std::os::unix::fs::FileExt;
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use tracing::debug;

use super::in_flight::join_part;
use super::staging::{StagingBudget, StagingFile, local_io};
use super::{ObjectWriter, WriteError};
use crate::crypto::{Layout, MasterKey, ObjectDecryptor, TAG_LEN};
use crate::store::StoreError;

/// Where and how much of a new file's sent parts are kept.
#[derive(Clone)]
pub struct KeepSent {
    pub dir: PathBuf,
    pub budget: Arc<StagingBudget>,
    /// Largest stream (in ciphertext bytes) whose sent parts are kept.
    pub limit: u64,
}

impl ObjectWriter {
    /// Stops the stream and hands over the whole file so far as a local encrypted object:
    /// the parts' copy and the rest, sealed as the last part. The multipart upload is
    /// aborted, so nothing of it appears under the key. `None` (and the stream goes on)
    /// when no parts were sent or the copy was not kept.
    pub async fn into_local_object(&mut self) -> Result<Option<LocalObject>, WriteError> {
        if self.result.is_some() || self.multipart.is_none() {
            return Ok(None);
        }
        let Some(mut copy) = self.sent_copy.take() else {
            return Ok(None);
        };
        // Room for the rest and its last tag (TAG_LEN is the longest of any format), while
        // the stream could still go on.
        let rest = (self.buffer.len() + TAG_LEN) as u64;
        if let Err(e) = copy.reserve_rest(rest) {
            debug!(key = %self.key, "no room for the rest of the local copy: {e}");
            self.keep_sent = None;
            return Ok(None);
        }
        // A part's copy is written before its task ends. Whether the part itself arrived
        // only matters if the stream has to go on after all.
        let mp = self.multipart.as_mut().expect("checked");
        let mut failed = None;
        for part in std::mem::take(&mut mp.in_flight) {
            match join_part(part).await {
                Ok(done) => mp.done.push(done),
                Err(e) => failed = Some(e),
            }
        }
        if !copy.intact() {
            self.keep_sent = None;
            if let Some(e) = failed {
                // Neither the copy nor the upload has every part: the version is lost.
                self.result = Some(Err(e.clone()));
                self.abort().await;
                return Err(e);
            }
            return Ok(None);
        }
        let encryptor = self.encryptor.take().expect("not committed");
        encryptor.finish(&mut self.buffer);
        let local = copy.complete(&self.buffer);
        self.abort().await;
        self.buffer = Vec::new();
        self.reservation = None;
        local
            .map(Some)
            .map_err(|e| WriteError::Upload(StoreError::fatal(format!("local copy: {e}"))))
    }

    /// Where the copy of the next `bytes` sent goes, while the copy is kept.
    pub(super) fn copy_target(&mut self, bytes: u64) -> Option<CopyTarget> {
        let keep = self.keep_sent.as_ref()?;
        let within = self.ciphertext_bytes + bytes <= keep.limit;
        let copy = match self.sent_copy.take() {
            Some(copy) => Ok(copy),
            // A copy starts with the first part, or never.
            None if within && self.ciphertext_bytes == 0 => SentCopy::create(keep),
            None => Err(std::io::Error::other("larger than --keep-sent-parts")),
        };
        let target = match copy {
            Ok(mut copy) if within => copy.next(bytes).map(|t| (copy, t)),
            Ok(_) => Err(std::io::Error::other("larger than --keep-sent-parts")),
            Err(e) => Err(e),
        };
        match target {
            Ok((copy, target)) => {
                self.sent_copy = Some(copy);
                Some(target)
            }
            Err(e) => {
                debug!(key = %self.key, "sent parts no longer kept locally: {e}");
                self.keep_sent = None;
                None
            }
        }
    }
}

/// The copy being written as parts are sent.
pub(super) struct SentCopy {
    file: Arc<File>,
    /// Bytes handed out to writers so far.
    len: u64,
    /// What this copy holds of the budget: `len`, and room reserved for the last part.
    held: u64,
    budget: Arc<StagingBudget>,
    /// Set by a part whose copy could not be written: the copy is useless then.
    failed: Arc<AtomicBool>,
}

/// Where one part's ciphertext goes in the copy; written by the part's upload task.
pub(super) struct CopyTarget {
    file: Arc<File>,
    offset: u64,
    failed: Arc<AtomicBool>,
}

impl CopyTarget {
    /// Blocking: meant for `spawn_blocking`.
    pub(super) fn write(&self, data: &[u8]) {
        if let Err(e) = self.file.write_all_at(data, self.offset) {
            tracing::warn!("could not keep a local copy of a sent part: {e}");
            self.failed.store(true, Ordering::Release);
        }
    }
}

impl SentCopy {
    pub(super) fn create(keep: &KeepSent) -> io::Result<Self> {
        Ok(Self {
            file: Arc::new(tempfile::tempfile_in(&keep.dir)?),
            len: 0,
            held: 0,
            budget: keep.budget.clone(),
            failed: Arc::new(AtomicBool::new(false)),
        })
    }

    /// Room for the next `bytes` of the stream, at the copy's end. Fails when the local
    /// disk budget is half used: copies can be given up, staged changes cannot, so copies
    /// never take the room that changes in place need.
    pub(super) fn next(&mut self, bytes: u64) -> io::Result<CopyTarget> {
        self.budget.reserve_within(bytes, self.budget.limit() / 2)?;
        self.held += bytes;
        let offset = self.len;
        self.len += bytes;
        Ok(CopyTarget {
            file: self.file.clone(),
            offset,
            failed: self.failed.clone(),
        })
    }

    /// Whether every part's copy was written so far (call once their tasks are done).
    pub(super) fn intact(&self) -> bool {
        !self.failed.load(Ordering::Acquire)
    }

    /// Makes sure `bytes` more can be written by [`Self::complete`], before the stream is
    /// finished (from then on it cannot go back to streaming).
    pub(super) fn reserve_rest(&mut self, bytes: u64) -> io::Result<()> {
        self.budget.reserve(bytes)?;
        self.held += bytes;
        Ok(())
    }

    /// The whole object: the copy of the sent parts and `rest` (the last part, finished),
    /// within what [`Self::reserve_rest`] reserved.
    pub(super) fn complete(mut self, rest: &[u8]) -> io::Result<LocalObject> {
        let end = self.len + rest.len() as u64;
        if end > self.held {
            return Err(io::Error::other("the last part is larger than reserved"));
        }
        let target = CopyTarget {
            file: self.file.clone(),
            offset: self.len,
            failed: self.failed.clone(),
        };
        self.len = end;
        local_io(|| target.write(rest));
        if !self.intact() {
            return Err(io::Error::other("a part's local copy could not be written"));
        }
        Ok(LocalObject { copy: self })
    }
}

impl Drop for SentCopy {
    fn drop(&mut self) {
        self.budget.release(self.held);
    }
}

/// A whole encrypted object on the local disk, as it would have been uploaded.
pub struct LocalObject {
    copy: SentCopy,
}

impl LocalObject {
    /// Verifies and decrypts every segment into `staging`; returns the plaintext size.
    pub fn decrypt_into(
        &self,
        master: &MasterKey,
        layout: Layout,
        staging: &mut StagingFile,
    ) -> io::Result<u64> {
        let file = &self.copy.file;
        let mut header = vec![0u8; layout.header_len()];
        file.read_exact_at(&mut header, 0)?;
        let corrupt = |e| io::Error::new(io::ErrorKind::InvalidData, format!("{e}"));
        let decryptor =
            ObjectDecryptor::new(master, layout, &header, self.copy.len).map_err(corrupt)?;
        let size = decryptor.plaintext_size();
        let mut segment = vec![0u8; layout.ciphertext_segment_size() as usize];
        for index in 0..decryptor.segment_count() {
            let range = layout.segment_ciphertext_range(index, size);
            let bytes = &mut segment[..(range.end - range.start) as usize];
            file.read_exact_at(bytes, range.start)?;
            let n = decryptor.open_segment(index, bytes).map_err(corrupt)?;
            staging.write_at(layout.segment_plaintext_start(index), &bytes[..n])?;
        }
        staging.set_len(size)?;
        Ok(size)
    }
}
