//! An encrypted local copy of a file that is being changed in place (random writes,
//! truncation), for the modify path of issue #7. Staged data never reaches the disk in the
//! clear, unlike the plain-text caches users of other tools complain about.
//!
//! The file is cut into 64 KiB blocks, each sealed by [`StagingCipher`] (crypto::staging:
//! AES-256-CTR and HMAC-SHA256 under a key that lives only in memory, a fresh IV for every
//! block write, tags kept in memory), so a block changed on disk behind our back reads as an
//! error, never as wrong bytes. Blocks never written are holes and read as zeros.
//!
//! The backing file is created already unlinked (`tempfile::tempfile_in`), so it disappears
//! on every exit path, `kill -9` included.

use std::io;
use std::os::unix::fs::FileExt;
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use crate::crypto::staging::{SealedBlock, StagingCipher};

/// Plaintext bytes per staged block.
pub const BLOCK: usize = 64 * 1024;

/// What is known of one block: never written (a hole), or what opens its current ciphertext
/// on disk.
#[derive(Clone, Copy)]
enum Block {
    Hole,
    Stored(SealedBlock),
}

/// The `--max-cache-size` shared by every staging file of a mount: the bytes they hold
/// together (their lengths, holes included) never exceed it.
pub struct StagingBudget {
    limit: u64,
    used: AtomicU64,
}

impl StagingBudget {
    pub fn new(limit: u64) -> Arc<Self> {
        Arc::new(Self {
            limit,
            used: AtomicU64::new(0),
        })
    }

    pub fn limit(&self) -> u64 {
        self.limit
    }

    /// Bytes held by staging files now.
    pub fn used(&self) -> u64 {
        self.used.load(Ordering::Relaxed)
    }

    pub(super) fn reserve(&self, bytes: u64) -> io::Result<()> {
        self.reserve_within(bytes, self.limit)
    }

    /// Reserves `bytes` only while everything held stays within `cap` (at most the limit):
    /// what may be given up (the copies of sent parts) leaves room for what may not.
    pub(super) fn reserve_within(&self, bytes: u64, cap: u64) -> io::Result<()> {
        let cap = cap.min(self.limit);
        self.used
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |used| {
                used.checked_add(bytes).filter(|total| *total <= cap)
            })
            .map(|_| ())
            .map_err(|used| {
                io::Error::new(
                    io::ErrorKind::StorageFull,
                    format!(
                        "the --max-cache-size of {} bytes is used up ({used} bytes staged by \
                         files being changed in place, {bytes} more needed)",
                        self.limit
                    ),
                )
            })
    }

    pub(super) fn release(&self, bytes: u64) {
        self.used.fetch_sub(bytes, Ordering::AcqRel);
    }
}

/// Runs local file I/O from a runtime task. On the mount's multi-threaded runtime the worker
/// hands its other tasks to the rest first; a single-threaded runtime (the in-process tests
/// with paused time) has no one to hand them to, and a local read or write just runs.
pub fn local_io<T>(io: impl FnOnce() -> T) -> T {
    use tokio::runtime::{Handle, RuntimeFlavor};
    match Handle::try_current().map(|h| h.runtime_flavor()) {
        Ok(RuntimeFlavor::MultiThread) => tokio::task::block_in_place(io),
        _ => io(),
    }
}

pub struct StagingFile {
    file: std::fs::File,
    cipher: StagingCipher,
    blocks: Vec<Block>,
    /// Also what this file holds of the budget.
    len: u64,
    budget: Arc<StagingBudget>,
}

impl Drop for StagingFile {
    fn drop(&mut self) {
        self.budget.release(self.len);
    }
}

impl StagingFile {
    /// A new, empty staging file in `dir` that grows only as far as `budget` allows.
    pub fn new(dir: &Path, budget: Arc<StagingBudget>) -> io::Result<Self> {
        let file = tempfile::tempfile_in(dir)?;
        Ok(Self {
            file,
            cipher: StagingCipher::new(),
            blocks: Vec::new(),
            len: 0,
            budget,
        })
    }

    pub fn len(&self) -> u64 {
        self.len
    }

    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Reads up to `buf.len()` bytes at `offset`; fewer at the end of the file.
    pub fn read_at(&self, offset: u64, buf: &mut [u8]) -> io::Result<usize> {
        if offset >= self.len {
            return Ok(0);
        }
        let n = buf.len().min((self.len - offset) as usize);
        let mut done = 0;
        while done < n {
            let at = offset + done as u64;
            let index = (at / BLOCK as u64) as usize;
            let within = (at % BLOCK as u64) as usize;
            let take = (BLOCK - within).min(n - done);
            let block = self.load(index)?;
            buf[done..done + take].copy_from_slice(&block[within..within + take]);
            done += take;
        }
        Ok(n)
    }

    /// Writes `data` at `offset`, growing the file (a gap reads as zeros).
    pub fn write_at(&mut self, offset: u64, data: &[u8]) -> io::Result<()> {
        let end = offset + data.len() as u64;
        let grown = end.saturating_sub(self.len);
        self.budget.reserve(grown)?;
        let mut done = 0;
        while done < data.len() {
            let at = offset + done as u64;
            let index = (at / BLOCK as u64) as usize;
            let within = (at % BLOCK as u64) as usize;
            let take = (BLOCK - within).min(data.len() - done);
            let stored = self.load(index).and_then(|mut block| {
                block[within..within + take].copy_from_slice(&data[done..done + take]);
                self.store(index, &mut block)
            });
            if let Err(e) = stored {
                self.budget.release(grown);
                return Err(e);
            }
            done += take;
        }
        self.len = self.len.max(end);
        Ok(())
    }

    /// Truncates or extends (with zeros) to `len` bytes.
    pub fn set_len(&mut self, len: u64) -> io::Result<()> {
        if len > self.len {
            self.budget.reserve(len - self.len)?;
        }
        if len < self.len {
            // The tail of the new last block must read as zeros if the file grows again.
            let within = (len % BLOCK as u64) as usize;
            let index = (len / BLOCK as u64) as usize;
            if within > 0 && index < self.blocks.len() {
                let mut block = self.load(index)?;
                block[within..].fill(0);
                self.store(index, &mut block)?;
            }
            let keep = (len as usize).div_ceil(BLOCK);
            self.blocks.truncate(keep);
            self.file.set_len((keep * BLOCK) as u64)?;
            self.budget.release(self.len - len);
        }
        self.len = len;
        Ok(())
    }

    /// The plaintext of block `index` (zeros for a hole or past the stored blocks).
    fn load(&self, index: usize) -> io::Result<Vec<u8>> {
        let mut block = vec![0u8; BLOCK];
        let Some(Block::Stored(sealed)) = self.blocks.get(index).copied() else {
            return Ok(block);
        };
        self.file
            .read_exact_at(&mut block, (index * BLOCK) as u64)?;
        if !self.cipher.open(index as u64, &sealed, &mut block) {
            return Err(io::Error::new(
                io::ErrorKind::InvalidData,
                format!("staged block {index} was changed on the local disk"),
            ));
        }
        Ok(block)
    }

    /// Encrypts `block` (in place) under a fresh generation and writes it as block `index`.
    fn store(&mut self, index: usize, block: &mut [u8]) -> io::Result<()> {
        let sealed = self.cipher.seal(index as u64, block);
        self.file.write_all_at(block, (index * BLOCK) as u64)?;
        if self.blocks.len() <= index {
            self.blocks.resize(index + 1, Block::Hole);
        }
        self.blocks[index] = Block::Stored(sealed);
        Ok(())
    }

    #[cfg(test)]
    fn corrupt_block(&self, index: usize) {
        let mut byte = [0u8; 1];
        let at = (index * BLOCK + 100) as u64;
        self.file.read_exact_at(&mut byte, at).unwrap();
        byte[0] ^= 1;
        self.file.write_all_at(&byte, at).unwrap();
    }

    #[cfg(test)]
    fn raw(&self) -> Vec<u8> {
        let len = self.file.metadata().unwrap().len() as usize;
        let mut raw = vec![0u8; len];
        self.file.read_exact_at(&mut raw, 0).unwrap();
        raw
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// xorshift, for a reproducible random sequence with a printed seed.
    fn next(x: &mut u64) -> u64 {
        *x ^= *x << 13;
        *x ^= *x >> 7;
        *x ^= *x << 17;
        *x
    }

    #[test]
    fn random_operations_match_a_plain_model() {
        let seed = 0x5eed_1234_u64;
        println!("seed {seed:#x}");
        let dir = tempfile::tempdir().unwrap();
        let mut staged = StagingFile::new(dir.path(), StagingBudget::new(64 << 20)).unwrap();
        let mut model: Vec<u8> = Vec::new();
        let mut x = seed;
        for op in 0..3000 {
            match next(&mut x) % 4 {
                0 | 1 => {
                    let offset = next(&mut x) % (4 * BLOCK as u64);
                    let len = (next(&mut x) % (2 * BLOCK as u64)) as usize;
                    let data: Vec<u8> = (0..len).map(|_| next(&mut x) as u8).collect();
                    staged.write_at(offset, &data).unwrap();
                    let end = offset as usize + len;
                    if model.len() < end {
                        model.resize(end, 0);
                    }
                    model[offset as usize..end].copy_from_slice(&data);
                }
                2 => {
                    let len = next(&mut x) % (5 * BLOCK as u64);
                    staged.set_len(len).unwrap();
                    model.resize(len as usize, 0);
                }
                _ => {
                    let offset = next(&mut x) % (5 * BLOCK as u64);
                    let len = (next(&mut x) % (2 * BLOCK as u64)) as usize;
                    let mut buf = vec![0xAAu8; len];
                    let n = staged.read_at(offset, &mut buf).unwrap();
                    let want = model
                        .get(offset as usize..)
                        .map_or(&[][..], |t| &t[..t.len().min(len)]);
                    assert_eq!(&buf[..n], want, "op {op}, seed {seed:#x}");
                }
            }
            assert_eq!(staged.len(), model.len() as u64);
        }
    }

    #[test]
    fn nothing_is_on_disk_in_the_clear() {
        let dir = tempfile::tempdir().unwrap();
        let mut staged = StagingFile::new(dir.path(), StagingBudget::new(1 << 20)).unwrap();
        let secret = b"attack at dawn, the password is hunter2 ".repeat(2000);
        staged.write_at(0, &secret).unwrap();
        let raw = staged.raw();
        assert!(raw.len() >= secret.len());
        assert!(!raw.windows(14).any(|w| w == b"attack at dawn"));
        // Nothing is left in the directory either: the file was never linked there.
        assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 0);
    }

    #[test]
    fn a_block_changed_on_disk_is_an_error_not_data() {
        let dir = tempfile::tempdir().unwrap();
        let mut staged = StagingFile::new(dir.path(), StagingBudget::new(1 << 20)).unwrap();
        staged.write_at(0, &vec![7u8; 3 * BLOCK]).unwrap();
        staged.corrupt_block(1);
        let mut buf = vec![0u8; BLOCK];
        assert!(staged.read_at(0, &mut buf).is_ok());
        let err = staged.read_at(BLOCK as u64, &mut buf).unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::InvalidData);
    }

    #[test]
    fn the_size_limit_is_a_clear_error() {
        let dir = tempfile::tempdir().unwrap();
        let budget = StagingBudget::new(100_000);
        let mut staged = StagingFile::new(dir.path(), budget.clone()).unwrap();
        staged.write_at(0, &[1; 60_000]).unwrap();
        // The budget is shared: a second file gets what the first left.
        let mut other = StagingFile::new(dir.path(), budget.clone()).unwrap();
        other.write_at(0, &[2; 40_000]).unwrap();
        assert_eq!(budget.used(), 100_000);
        let err = staged.write_at(59_999, &[1; 2]).unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::StorageFull);
        assert!(err.to_string().contains("--max-cache-size"));
        assert_eq!(
            other.set_len(40_001).unwrap_err().kind(),
            io::ErrorKind::StorageFull
        );
        assert_eq!((staged.len(), other.len()), (60_000, 40_000));
        // Shrinking and dropping give it back.
        staged.set_len(10_000).unwrap();
        other.write_at(40_000, &[2; 50_000]).unwrap();
        assert_eq!(budget.used(), 100_000);
        drop(other);
        assert_eq!(budget.used(), 10_000);
        drop(staged);
        assert_eq!(budget.used(), 0);
    }

    #[test]
    fn rewriting_a_block_never_reuses_its_iv() {
        let dir = tempfile::tempdir().unwrap();
        let mut staged = StagingFile::new(dir.path(), StagingBudget::new(1 << 20)).unwrap();
        staged.write_at(0, &[1u8; 10]).unwrap();
        let first = staged.raw()[..BLOCK].to_vec();
        staged.write_at(0, &[1u8; 10]).unwrap();
        let second = staged.raw()[..BLOCK].to_vec();
        assert_ne!(
            first, second,
            "the same plaintext rewritten gets a new keystream"
        );
    }
}
