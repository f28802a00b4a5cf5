//! The mount-wide upload memory budget, and the pool of part buffers it governs.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use tracing::warn;

use super::WriteError;

/// Budget accounting unit: permits are KiB.
const UNIT: usize = 1024;
/// Free buffers kept for reuse (beyond that they are freed).
const POOLED_BUFFERS: usize = 8;
/// Only buffers up to this size are pooled: the large parts of huge files are rare and would
/// pin a lot of memory outside the budget.
const POOLED_MAX: usize = 16 * 1024 * 1024;
/// How long a writer already uploading waits for more memory before giving up.
const LATER_BUFFER_WAIT: Duration = Duration::from_secs(600);

#[derive(Clone)]
pub struct MemoryBudget {
    permits: Arc<Semaphore>,
    total_units: usize,
    pool: Arc<Mutex<Vec<Vec<u8>>>>,
    first_buffer_wait: Duration,
}

impl MemoryBudget {
    /// A budget of `bytes`. A new writer waits up to `first_buffer_wait` for its first buffer
    /// before failing with ENOMEM.
    pub fn new(bytes: u64, first_buffer_wait: Duration) -> Self {
        let total_units = ((bytes as usize) / UNIT).max(1);
        Self {
            permits: Arc::new(Semaphore::new(total_units)),
            total_units,
            pool: Arc::new(Mutex::new(Vec::new())),
            first_buffer_wait,
        }
    }

    /// Bytes not reserved right now.
    pub fn available(&self) -> u64 {
        (self.permits.available_permits() * UNIT) as u64
    }

    /// Reserves `bytes` (capped at the whole budget, so one huge part can still proceed).
    /// With `may_fail`, gives up with [`WriteError::OutOfMemory`] after the configured wait.
    pub async fn reserve(&self, bytes: usize, may_fail: bool) -> Result<Reservation, WriteError> {
        let units = bytes.div_ceil(UNIT).min(self.total_units) as u32;
        let acquire = self.permits.clone().acquire_many_owned(units);
        let permit = if may_fail {
            match tokio::time::timeout(self.first_buffer_wait, acquire).await {
                Ok(p) => p,
                Err(_) => {
                    warn!(
                        "upload memory budget exhausted for {:?}: refusing a new writer (raise --max-upload-memory or write fewer files at once)",
                        self.first_buffer_wait
                    );
                    return Err(WriteError::OutOfMemory);
                }
            }
        } else {
            // A writer whose own parts are uploading gets memory back as they finish; only
            // memory held by other, idle writers can keep it waiting this long.
            match tokio::time::timeout(LATER_BUFFER_WAIT, acquire).await {
                Ok(p) => p,
                Err(_) => {
                    warn!(
                        "no upload memory for {LATER_BUFFER_WAIT:?}: other open files hold the budget (raise --max-upload-memory)"
                    );
                    return Err(WriteError::OutOfMemory);
                }
            }
        }
        .expect("the semaphore is never closed");
        Ok(Reservation {
            _permit: permit,
            pool: self.pool.clone(),
        })
    }
}

/// A share of the budget, released when dropped.
pub struct Reservation {
    _permit: OwnedSemaphorePermit,
    pool: Arc<Mutex<Vec<Vec<u8>>>>,
}

impl Reservation {
    /// An empty buffer with at least `capacity`, from the pool when one fits.
    pub fn take_buffer(&self, capacity: usize) -> Vec<u8> {
        let mut pool = self.pool.lock().unwrap();
        if let Some(i) = pool
            .iter()
            .position(|b| b.capacity() >= capacity && b.capacity() <= capacity * 2)
        {
            return pool.swap_remove(i);
        }
        drop(pool);
        Vec::with_capacity(capacity)
    }

    /// Returns a buffer to the pool (the reservation is released by dropping `self`).
    pub fn return_buffer(self, mut buffer: Vec<u8>) {
        if buffer.capacity() > POOLED_MAX {
            return;
        }
        buffer.clear();
        let mut pool = self.pool.lock().unwrap();
        if pool.len() < POOLED_BUFFERS {
            pool.push(buffer);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn first_buffer_fails_when_exhausted_later_ones_wait() {
        let budget = MemoryBudget::new(4 * 1024 * 1024, Duration::from_millis(50));
        let a = budget.reserve(3 * 1024 * 1024, true).await.unwrap();
        assert!(matches!(
            budget.reserve(2 * 1024 * 1024, true).await,
            Err(WriteError::OutOfMemory)
        ));
        let waiter = {
            let budget = budget.clone();
            tokio::spawn(async move { budget.reserve(2 * 1024 * 1024, false).await.map(|_| ()) })
        };
        tokio::time::sleep(Duration::from_millis(100)).await;
        assert!(!waiter.is_finished(), "waits while the budget is held");
        drop(a);
        waiter.await.unwrap().unwrap();
        assert_eq!(budget.available(), 4 * 1024 * 1024);
    }

    #[tokio::test]
    async fn buffers_are_recycled() {
        let budget = MemoryBudget::new(1 << 20, Duration::from_secs(1));
        let r = budget.reserve(1000, false).await.unwrap();
        let buf = r.take_buffer(1000);
        let ptr = buf.as_ptr();
        r.return_buffer(buf);
        let r = budget.reserve(1000, false).await.unwrap();
        let again = r.take_buffer(500);
        assert_eq!(again.as_ptr(), ptr);
    }
}
