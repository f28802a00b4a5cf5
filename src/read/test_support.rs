//! What the read path's unit tests share: a context over an in-memory store, and files
//! put there as a writer would.

use std::sync::Arc;

use bytes::Bytes;

use super::{ObjectVersion, PrefetchConfig, ReadContext};
use crate::crypto::{Layout, MasterKey, ObjectKind, encrypt_to_vec};
use crate::store::ObjectStore;
use crate::store::memory::MemoryStore;

/// The segment size of the tests' volumes: small, so files of many segments stay small.
pub const SEGMENT: usize = 4096;

/// A context of object `format` with a cache of `cache_bytes`, GETs of `chunk_segments`
/// and read-ahead of up to `max_window` bytes (starting at one segment; none if 0).
pub fn context(
    store: Arc<dyn ObjectStore>,
    format: u8,
    cache_bytes: u64,
    chunk_segments: u64,
    max_window: u64,
) -> Arc<ReadContext> {
    let layout = Layout::with_format(SEGMENT as u32, format).unwrap();
    Arc::new(ReadContext::new(
        store,
        Arc::new(MasterKey::generate()),
        layout,
        cache_bytes,
        PrefetchConfig {
            chunk_segments,
            initial_window: (SEGMENT as u64).min(max_window),
            max_window,
        },
    ))
}

/// Stores `plain` encrypted under `key`: its ciphertext and the version stored.
pub async fn put_file(
    ctx: &ReadContext,
    store: &MemoryStore,
    key: &str,
    plain: &[u8],
) -> (Vec<u8>, ObjectVersion) {
    let object = encrypt_to_vec(&ctx.master, ctx.layout, ObjectKind::File, plain);
    let put = store
        .put(key, Bytes::from(object.clone()), &Default::default())
        .await
        .unwrap();
    let version = ObjectVersion {
        key: key.to_string(),
        etag: put.etag.unwrap(),
        ciphertext_size: object.len() as u64,
    };
    (object, version)
}
