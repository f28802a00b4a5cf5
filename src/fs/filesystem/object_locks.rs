//! Per-object async locks.

use super::*;

/// Async locks per object, striped by inode number: enough to serialise the few operations
/// that race on one object without a map that grows with the tree.
pub(super) struct ObjectLocks {
    stripes: Vec<tokio::sync::Mutex<()>>,
}

impl Default for ObjectLocks {
    fn default() -> Self {
        Self {
            stripes: (0..OBJECT_LOCK_STRIPES)
                .map(|_| tokio::sync::Mutex::new(()))
                .collect(),
        }
    }
}

impl ObjectLocks {
    /// Locks the stripes of `inos`, always in stripe order, so two callers locking the same
    /// pair cannot wait on each other.
    pub(super) async fn lock(&self, inos: &[u64]) -> Vec<tokio::sync::MutexGuard<'_, ()>> {
        let mut stripes: Vec<usize> = inos
            .iter()
            .map(|ino| (*ino % OBJECT_LOCK_STRIPES as u64) as usize)
            .collect();
        stripes.sort_unstable();
        stripes.dedup();
        let mut guards = Vec::with_capacity(stripes.len());
        for stripe in stripes {
            guards.push(self.stripes[stripe].lock().await);
        }
        guards
    }
}
