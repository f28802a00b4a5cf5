//! A local copy of the parts a new file's stream has already sent, so that a program that
//! goes back into them (zip patching the header of the entry it just wrote, a linker or a
//! muxer patching its output's header, a database) can still change the file. The stream
//! then stops, its multipart upload is aborted (nothing of it ever appears under the file's
//! name), and the file goes on as a change in place whose staging file is decrypted from
//! this copy: nothing is downloaded, no byte is lost.
//!
//! The copy is the ciphertext exactly as it was sent, so nothing reaches the local disk in
//! the clear. Its file is created already unlinked under `--cache-dir` (gone on every exit
//! path), counts against `--max-cache-size` with the staging files, and is kept only while
//! the file is within `--keep-sent-parts`: a stream that grows past that drops its copy, and
//! from then on a write behind its sent parts fails with EINVAL (docs/SEMANTICS.md).

use std::fs::File;
use std::io;
use std::os::unix::fs::FileExt;
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use super::staging::{StagingBudget, StagingFile, local_io};
use crate::crypto::{Layout, MasterKey, ObjectDecryptor};

/// Where and how much of a new file's sent parts are kept.
#[derive(Clone)]
pub struct KeepSent {
    pub dir: PathBuf,
    pub budget: Arc<StagingBudget>,
    /// Largest stream (in ciphertext bytes) whose sent parts are kept.
    pub limit: u64,
}

/// The copy being written as parts are sent.
pub(super) struct SentCopy {
    file: Arc<File>,
    /// Bytes handed out to writers so far (and reserved in the budget).
    len: u64,
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
            budget: keep.budget.clone(),
            failed: Arc::new(AtomicBool::new(false)),
        })
    }

    /// Room for the next `bytes` of the stream, at the copy's end. Fails when the local
    /// disk budget is used up.
    pub(super) fn next(&mut self, bytes: u64) -> io::Result<CopyTarget> {
        self.budget.reserve(bytes)?;
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

    /// The whole object: the copy of the sent parts and `rest` (the last part, finished).
    pub(super) fn complete(mut self, rest: &[u8]) -> io::Result<LocalObject> {
        let target = self.next(rest.len() as u64)?;
        local_io(|| target.write(rest));
        if !self.intact() {
            return Err(io::Error::other("a part's local copy could not be written"));
        }
        Ok(LocalObject { copy: self })
    }
}

impl Drop for SentCopy {
    fn drop(&mut self) {
        self.budget.release(self.len);
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
