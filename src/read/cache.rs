//! A bounded LRU cache of decrypted segments, shared by all open files, and of the
//! decryptors of the versions read lately.
//!
//! A segment is keyed by what it was verified under (its object's salt and header, its
//! epoch, index and whether it is the last), not by what the server says about versions: a
//! server that gives a new version an old ETag cannot get the old version's plaintext mixed
//! into the new one's, since the new one's segments do not verify under the old identity.
//! A decryptor is found again by object key, ETag and size, so a file opened again reads
//! its cached segments without asking for its header; if the server has since put other
//! bytes under that ETag, they fail to verify (EIO), they are never mixed in.

use std::num::NonZeroUsize;
use std::sync::{Arc, Mutex};

use bytes::Bytes;
use lru::LruCache;

use crate::crypto::{ObjectDecryptor, SegmentIdentity};

/// Decryptors kept for versions read lately (each holds a few hundred bytes of key state).
const DECRYPTORS: usize = 1024;

/// A cached segment: the object it was read from (to drop its segments when this mount
/// replaces or deletes it) and what it was verified under.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct SegmentId {
    key: Arc<str>,
    identity: SegmentIdentity,
}

impl SegmentId {
    pub fn new(key: &str, identity: SegmentIdentity) -> Self {
        Self {
            key: key.into(),
            identity,
        }
    }
}

/// A version as the server describes it: where a decryptor is looked for again.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
struct VersionId {
    key: Arc<str>,
    etag: Arc<str>,
    ciphertext_size: u64,
}

impl VersionId {
    fn new(key: &str, etag: &str, ciphertext_size: u64) -> Self {
        Self {
            key: key.into(),
            etag: etag.into(),
            ciphertext_size,
        }
    }
}

pub struct SegmentCache {
    entries: Mutex<LruCache<SegmentId, Bytes>>,
    decryptors: Mutex<LruCache<VersionId, Arc<ObjectDecryptor>>>,
}

impl SegmentCache {
    /// A cache of about `bytes` of plaintext in segments of `segment_size` (at least one).
    pub fn new(bytes: u64, segment_size: u32) -> Self {
        let count = (bytes / segment_size as u64).max(1) as usize;
        Self {
            entries: Mutex::new(LruCache::new(NonZeroUsize::new(count).expect("count >= 1"))),
            decryptors: Mutex::new(LruCache::new(
                NonZeroUsize::new(DECRYPTORS).expect("non-zero"),
            )),
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

    /// The decryptor of a version read before, by key, ETag and ciphertext size.
    pub fn decryptor(&self, key: &str, etag: &str, size: u64) -> Option<Arc<ObjectDecryptor>> {
        let id = VersionId::new(key, etag, size);
        self.decryptors.lock().unwrap().get(&id).cloned()
    }

    pub fn keep_decryptor(&self, key: &str, etag: &str, size: u64, d: Arc<ObjectDecryptor>) {
        let id = VersionId::new(key, etag, size);
        self.decryptors.lock().unwrap().put(id, d);
    }

    /// Drops every segment and decryptor of `key` (all versions): used when this mount
    /// replaces or deletes it, so the memory goes to what is still read.
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
        drop(entries);
        let mut decryptors = self.decryptors.lock().unwrap();
        let stale: Vec<VersionId> = decryptors
            .iter()
            .filter(|(id, _)| &*id.key == key)
            .map(|(id, _)| id.clone())
            .collect();
        for id in stale {
            decryptors.pop(&id);
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
    use crate::crypto::{Layout, MasterKey, ObjectKind, encrypt_to_vec};

    /// The decryptor of a fresh 3-segment object.
    fn decryptor(master: &MasterKey) -> ObjectDecryptor {
        let layout = Layout::with_format(4096, 2).unwrap();
        let object = encrypt_to_vec(master, layout, ObjectKind::File, &[1u8; 10_000]);
        ObjectDecryptor::new(master, layout, &object, object.len() as u64).unwrap()
    }

    #[test]
    fn bounded_and_keyed_by_what_was_verified() {
        let master = MasterKey::generate();
        let (v1, v2) = (decryptor(&master), decryptor(&master));
        let cache = SegmentCache::new(2 * 4096, 4096);
        cache.insert(
            SegmentId::new("a", v1.segment_identity(0)),
            Bytes::from_static(b"v1"),
        );
        assert_eq!(
            cache.get(&SegmentId::new("a", v2.segment_identity(0))),
            None,
            "another version (another salt) misses, whatever its ETag"
        );
        cache.insert(
            SegmentId::new("a", v1.segment_identity(1)),
            Bytes::from_static(b"x"),
        );
        cache.insert(
            SegmentId::new("a", v1.segment_identity(2)),
            Bytes::from_static(b"y"),
        );
        assert_eq!(cache.len(), 2);
        assert_eq!(
            cache.get(&SegmentId::new("a", v1.segment_identity(0))),
            None,
            "oldest evicted"
        );
        cache.keep_decryptor("a", "e1", 10, Arc::new(v1));
        assert!(
            cache.decryptor("a", "e1", 11).is_none(),
            "another size misses"
        );
        assert!(cache.decryptor("a", "e1", 10).is_some());
        cache.invalidate("a");
        assert!(cache.is_empty());
        assert!(cache.decryptor("a", "e1", 10).is_none());
    }
}
