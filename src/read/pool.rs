//! Segment buffers reused from a bounded pool.
//!
//! A cold read allocates one segment-sized buffer per 64 KiB fetched and frees it once the
//! reader has it; the allocator keeps much of what was freed (in several arenas, one per
//! thread that freed), so the daemon's resident memory grew to about twice what the cache
//! and read-ahead hold. Buffers taken from here go back here when the last `Bytes` that
//! shares them is dropped, and the next fetch takes them again: the memory a read needs is
//! allocated once.

use std::sync::{Arc, Mutex};

use bytes::Bytes;

/// Free buffers of one size, at most `max_free` of them (the rest are freed).
pub struct BufferPool {
    free: Mutex<Vec<Vec<u8>>>,
    buffer_len: usize,
    max_free: usize,
}

impl BufferPool {
    /// A pool of buffers of `buffer_len` bytes that keeps up to `max_free` free ones.
    pub fn new(buffer_len: usize, max_free: usize) -> Arc<Self> {
        Arc::new(Self {
            free: Mutex::new(Vec::new()),
            buffer_len,
            max_free,
        })
    }

    /// An empty buffer with room for `buffer_len` bytes: a free one if there is one.
    pub fn take(self: &Arc<Self>) -> PooledBuffer {
        let reused = self.free.lock().unwrap().pop();
        let buf = reused.unwrap_or_else(|| Vec::with_capacity(self.buffer_len));
        PooledBuffer {
            buf,
            len: None,
            pool: self.clone(),
        }
    }

    /// Free buffers held now.
    pub fn free_buffers(&self) -> usize {
        self.free.lock().unwrap().len()
    }

    fn give_back(&self, mut buf: Vec<u8>) {
        if buf.capacity() != self.buffer_len {
            return;
        }
        let mut free = self.free.lock().unwrap();
        if free.len() < self.max_free {
            buf.clear();
            free.push(buf);
        }
    }
}

/// A buffer from a [`BufferPool`]; it returns there when dropped.
pub struct PooledBuffer {
    buf: Vec<u8>,
    /// What [`PooledBuffer::freeze`] shows of it (a decrypted segment is shorter than the
    /// ciphertext it was decrypted from, in place).
    len: Option<usize>,
    pool: Arc<BufferPool>,
}

impl PooledBuffer {
    /// The bytes, to be filled.
    pub fn vec(&mut self) -> &mut Vec<u8> {
        &mut self.buf
    }

    /// Shared, read-only bytes of its first `len` bytes; the buffer returns to the pool when
    /// the last clone is dropped.
    pub fn freeze(mut self, len: usize) -> Bytes {
        assert!(len <= self.buf.len());
        self.len = Some(len);
        Bytes::from_owner(self)
    }
}

impl AsRef<[u8]> for PooledBuffer {
    fn as_ref(&self) -> &[u8] {
        &self.buf[..self.len.unwrap_or(self.buf.len())]
    }
}

impl Drop for PooledBuffer {
    fn drop(&mut self) {
        self.pool.give_back(std::mem::take(&mut self.buf));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn buffers_come_back_when_the_last_clone_is_dropped() {
        let pool = BufferPool::new(1024, 2);
        let mut a = pool.take();
        a.vec().extend_from_slice(&[7u8; 1000]);
        let ptr = a.vec().as_ptr();
        let frozen = a.freeze(10);
        assert_eq!(&frozen[..], &[7u8; 10]);
        let clone = frozen.clone();
        drop(frozen);
        assert_eq!(pool.free_buffers(), 0, "a clone still holds it");
        drop(clone);
        assert_eq!(pool.free_buffers(), 1);
        let mut again = pool.take();
        assert_eq!(again.vec().as_ptr(), ptr, "the same memory, reused");
        assert!(again.vec().is_empty());
        assert_eq!(again.vec().capacity(), 1024);
    }

    #[test]
    fn the_pool_keeps_at_most_its_bound() {
        let pool = BufferPool::new(64, 2);
        let taken: Vec<_> = (0..5).map(|_| pool.take()).collect();
        drop(taken);
        assert_eq!(pool.free_buffers(), 2);
        // A buffer that grew past its size is not kept: the pool holds one size only.
        let mut grown = pool.take();
        grown.vec().extend_from_slice(&[0u8; 100]);
        drop(grown);
        assert_eq!(pool.free_buffers(), 1);
    }
}
