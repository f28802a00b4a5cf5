//! A bounded LRU cache of decrypted segments, shared by all open files.
//!
//! Entries are keyed by object key, ETag and segment index, so a newer version of an object
//! (a different ETag) can never be answered from an older version's segments.

use std::num::NonZeroUsize;
use std::sync::{Arc, Mutex};

use bytes::Bytes;
use lru::LruCache;

#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct SegmentId {
    key: Arc<str>,
    etag: Arc<str>,
    index: u64,
}

impl SegmentId {
    pub fn new(key: &str, etag: &str, index: u64) -> Self {
        Self {
            key: key.into(),
            etag: etag.into(),
            index,
        }
    }
}

pub struct SegmentCache {
    entries: Mutex<LruCache<SegmentId, Bytes>>,
}

impl SegmentCache {
    /// A cache of about `bytes` of plaintext in segments of `segment_size` (at least one).
    pub fn new(bytes: u64, segment_size: u32) -> Self {
        let count = (bytes / segment_size as u64).max(1) as usize;
        Self {
            entries: Mutex::new(LruCache::new(NonZeroUsize::new(count).expect("count >= 1"))),
        }
    }

    pub fn get(&self, id: &SegmentId) -> Option<Bytes> {
        let found = self.entries.lock().unwrap().get(id).cloned();
        crate::metrics::cache_lookup(found.is_some());
        found
    }

    pub fn insert(&self, id: SegmentId, plaintext: Bytes) {
        self.entries.lock().unwrap().put(id, plaintext);
    }

    pub fn remove(&self, id: &SegmentId) {
        self.entries.lock().unwrap().pop(id);
    }

    /// Drops every segment of `key` (all versions): used when this mount replaces or deletes it.
    pub fn invalidate(&self, key: &str) {
        let mut entries = self.entries.lock().unwrap();
        let stale: Vec<SegmentId> = entries
            .iter()
            .filter(|(id, _)| &*id.key == key)
            .map(|(id, _)| id.clone())
            .collect();
        for id in stale {
            entries.pop(&id);
        }
    }

    pub fn len(&self) -> usize {
        self.entries.lock().unwrap().len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bounded_and_version_keyed() {
        let cache = SegmentCache::new(2 * 4096, 4096);
        cache.insert(SegmentId::new("a", "e1", 0), Bytes::from_static(b"v1"));
        assert_eq!(
            cache.get(&SegmentId::new("a", "e2", 0)),
            None,
            "another ETag misses"
        );
        cache.insert(SegmentId::new("a", "e1", 1), Bytes::from_static(b"x"));
        cache.insert(SegmentId::new("a", "e1", 2), Bytes::from_static(b"y"));
        assert_eq!(cache.len(), 2);
        assert_eq!(
            cache.get(&SegmentId::new("a", "e1", 0)),
            None,
            "oldest evicted"
        );
        cache.invalidate("a");
        assert!(cache.is_empty());
    }
}
