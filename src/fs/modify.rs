//! Changing an existing file in place (overwrite, append, truncate, random writes).
//!
//! A file opened for writing without O_TRUNC reads from its current version until the first
//! change; then its contents are copied into an encrypted local staging file
//! ([`crate::upload::staging`]) where every later write and truncation lands. Committing
//! streams the staged contents through a new [`ObjectWriter`], so the object gets a new
//! version with a fresh salt: no keystream is ever reused for different plaintext.
//!
//! One [`ModifyHandle`] exists per file being changed, shared by every descriptor open on it
//! in this mount (writers and readers alike), so they all see one set of contents, as on a
//! local disk: concurrent writers interleave and the last write of a byte wins.

use std::path::Path;
use std::sync::Arc;

use bytes::Bytes;
use tracing::warn;

use crate::read::ObjectReader;
use crate::upload::ObjectWriter;
use crate::upload::staging::{StagingBudget, StagingFile};

/// Bytes copied per step between the object, the staging file and the upload.
const CHUNK: u64 = 1024 * 1024;

pub struct ModifyHandle {
    pub ino: u64,
    base: Arc<ObjectReader>,
    base_len: u64,
    staging: Option<StagingFile>,
    /// Changed since the last commit.
    pub dirty: bool,
}

impl ModifyHandle {
    pub fn new(ino: u64, base: Arc<ObjectReader>, base_len: u64) -> Self {
        Self {
            ino,
            base,
            base_len,
            staging: None,
            dirty: false,
        }
    }

    pub fn len(&self) -> u64 {
        self.staging
            .as_ref()
            .map_or(self.base_len, StagingFile::len)
    }

    pub async fn read(&self, offset: u64, size: u32) -> Result<Bytes, i32> {
        match &self.staging {
            Some(staging) => {
                let mut buf = vec![0u8; size as usize];
                let n = tokio::task::block_in_place(|| staging.read_at(offset, &mut buf)).map_err(
                    |e| {
                        warn!("staged read failed: {e}");
                        libc::EIO
                    },
                )?;
                buf.truncate(n);
                Ok(Bytes::from(buf))
            }
            None => self.base.read(offset, size).await.map_err(|e| e.errno()),
        }
    }

    /// Copies the current version into a new staging file, once: its first `keep` bytes,
    /// as far as it has them (a truncation copies no more than it keeps).
    async fn staging(
        &mut self,
        dir: &Path,
        budget: &Arc<StagingBudget>,
        keep: u64,
    ) -> Result<&mut StagingFile, i32> {
        if self.staging.is_none() {
            let mut staging = StagingFile::new(dir, budget.clone()).map_err(|e| {
                warn!(dir = %dir.display(), "cannot create a staging file: {e}");
                io_errno(&e)
            })?;
            let copy = self.base_len.min(keep);
            let mut offset = 0;
            while offset < copy {
                let chunk = self
                    .base
                    .read(offset, CHUNK.min(copy - offset) as u32)
                    .await
                    .map_err(|e| e.errno())?;
                if chunk.is_empty() {
                    return Err(libc::EIO);
                }
                tokio::task::block_in_place(|| staging.write_at(offset, &chunk)).map_err(|e| {
                    warn!("cannot stage a file being changed in place: {e}");
                    io_errno(&e)
                })?;
                offset += chunk.len() as u64;
            }
            self.staging = Some(staging);
        }
        Ok(self.staging.as_mut().expect("just made"))
    }

    pub async fn write(
        &mut self,
        dir: &Path,
        budget: &Arc<StagingBudget>,
        offset: u64,
        data: &[u8],
    ) -> Result<(), i32> {
        let staging = self.staging(dir, budget, u64::MAX).await?;
        tokio::task::block_in_place(|| staging.write_at(offset, data)).map_err(|e| {
            warn!("staged write failed: {e}");
            io_errno(&e)
        })?;
        self.dirty = true;
        Ok(())
    }

    pub async fn set_len(
        &mut self,
        dir: &Path,
        budget: &Arc<StagingBudget>,
        len: u64,
    ) -> Result<(), i32> {
        if len == self.len() {
            return Ok(());
        }
        let staging = self.staging(dir, budget, len).await?;
        tokio::task::block_in_place(|| staging.set_len(len)).map_err(|e| {
            warn!("cannot resize a file being changed in place: {e}");
            io_errno(&e)
        })?;
        self.dirty = true;
        Ok(())
    }

    /// Streams the staged contents into `writer` (a new version).
    pub async fn upload(&self, writer: &mut ObjectWriter) -> Result<(), i32> {
        let Some(staging) = &self.staging else {
            return Ok(());
        };
        let mut buf = vec![0u8; CHUNK as usize];
        let mut offset = 0;
        while offset < staging.len() {
            let n = tokio::task::block_in_place(|| staging.read_at(offset, &mut buf))
                .map_err(|e| io_errno(&e))?;
            writer
                .write(offset, &buf[..n])
                .await
                .map_err(|e| e.errno())?;
            offset += n as u64;
        }
        Ok(())
    }
}

fn io_errno(e: &std::io::Error) -> i32 {
    match e.kind() {
        std::io::ErrorKind::StorageFull => libc::ENOSPC,
        _ => e.raw_os_error().unwrap_or(libc::EIO),
    }
}
