//! The read path: ranged GETs of whole segments, verified and decrypted before any byte is
//! returned, with sequential prefetch and an LRU cache of decrypted segments.

mod adopt;
mod ahead;
mod cache;
mod pool;
#[cfg(test)]
mod test_support;

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use bytes::{Bytes, BytesMut};
use tokio::sync::{OnceCell, watch};
use tracing::{debug, warn};

pub use ahead::PrefetchConfig;
use ahead::SequentialState;
pub use cache::{SegmentCache, SegmentId};
pub use pool::{BufferPool, PooledBuffer};

use crate::crypto::{CryptoError, Header, Layout, MasterKey, ObjectDecryptor, ObjectKind};
use crate::store::{ObjectStore, StoreError};

/// What a reader needs that is shared by all open files.
pub struct ReadContext {
    pub store: Arc<dyn ObjectStore>,
    pub master: Arc<MasterKey>,
    pub layout: Layout,
    pub cache: SegmentCache,
    pub prefetch: PrefetchConfig,
    /// Segment buffers: each fetched segment is read, verified and decrypted in one, which
    /// the cache then holds and replies are copied from.
    pub buffers: Arc<BufferPool>,
    pub stats: ReadStats,
    /// The cache's size in bytes, which the readers open at once share for read-ahead.
    cache_bytes: u64,
    /// Readers open now (each `ObjectReader` counts itself in and out).
    open_readers: AtomicUsize,
}

/// What the read path fetched, logged when the mount ends: segments fetched beyond what was
/// read mean read-ahead that was thrown away (a cache too small for the readers at once).
#[derive(Debug, Default)]
pub struct ReadStats {
    /// GETs of segments, read-ahead and on demand.
    pub gets: AtomicU64,
    /// Segments those GETs brought, each verified and decrypted.
    pub segments_fetched: AtomicU64,
    /// Segments that lookups brought along with the metadata (no request of their own).
    pub segments_from_lookups: AtomicU64,
}

impl ReadStats {
    pub fn get(counter: &AtomicU64) -> u64 {
        counter.load(Ordering::Relaxed)
    }

    fn add(counter: &AtomicU64, n: u64) {
        counter.fetch_add(n, Ordering::Relaxed);
    }
}

impl ReadContext {
    /// A context with a cache of `cache_bytes` of plaintext.
    pub fn new(
        store: Arc<dyn ObjectStore>,
        master: Arc<MasterKey>,
        layout: Layout,
        cache_bytes: u64,
        prefetch: PrefetchConfig,
    ) -> Self {
        let segment = u64::from(layout.plaintext_segment_size());
        // As many free buffers as the cache and one reader's read-ahead can hold at once:
        // the memory of segment buffers is then the most ever in use, allocated once.
        let max_free = (cache_bytes + prefetch.max_window) / segment + prefetch.chunk_segments;
        Self {
            store,
            master,
            layout,
            cache: SegmentCache::new(cache_bytes, layout.plaintext_segment_size()),
            prefetch,
            buffers: BufferPool::new(
                layout.ciphertext_segment_size() as usize,
                usize::try_from(max_free).unwrap_or(usize::MAX),
            ),
            stats: ReadStats::default(),
            cache_bytes,
            open_readers: AtomicUsize::new(0),
        }
    }
}

impl ReadContext {
    /// The decryptor of a file's contents, from its header `bytes`.
    fn file_decryptor(
        &self,
        bytes: &[u8],
        ciphertext_size: u64,
    ) -> Result<ObjectDecryptor, CryptoError> {
        let decryptor = ObjectDecryptor::new(&self.master, self.layout, bytes, ciphertext_size)?;
        // A symlink's target (or any other kind) never reads as a file's contents: the kind
        // is bound into the keys, so a moved object cannot claim another.
        if decryptor.kind() != ObjectKind::File {
            return Err(CryptoError::CorruptHeader(format!(
                "a {:?} object where a file's contents were expected",
                decryptor.kind()
            )));
        }
        Ok(decryptor)
    }

    /// Verifies and decrypts segment `seg` of `key`, whose ciphertext `buf` holds, and caches
    /// the plaintext. Nothing is cached when the check fails.
    fn open_into_cache(
        &self,
        key: &str,
        decryptor: &ObjectDecryptor,
        seg: u64,
        mut buf: PooledBuffer,
    ) -> Result<Bytes, CryptoError> {
        let len = decryptor.open_segment(seg, buf.vec())?;
        let plain = buf.freeze(len);
        self.cache.insert(
            SegmentId::new(key, decryptor.segment_identity(seg)),
            plain.clone(),
        );
        Ok(plain)
    }
}

/// Why a read failed; the errno is what the application sees.
#[derive(Debug, Clone, thiserror::Error)]
pub enum ReadError {
    #[error("{0}")]
    Store(#[from] StoreError),
    #[error("object '{key}' cannot be read: {reason}")]
    Corrupt { key: String, reason: String },
}

impl ReadError {
    pub fn errno(&self) -> i32 {
        match self {
            ReadError::Store(e) => e.errno(),
            ReadError::Corrupt { .. } => libc::EIO,
        }
    }

    fn corrupt(key: &str, err: CryptoError) -> Self {
        ReadError::Corrupt {
            key: key.to_string(),
            reason: err.to_string(),
        }
    }
}

/// One version of one object, as a listing or HEAD described it.
#[derive(Debug, Clone)]
pub struct ObjectVersion {
    pub key: String,
    pub etag: String,
    pub ciphertext_size: u64,
}

/// Reads one object version for one open file handle.
pub struct ObjectReader {
    ctx: Arc<ReadContext>,
    version: Arc<ObjectVersion>,
    plaintext_size: u64,
    decryptor: Arc<OnceCell<Arc<ObjectDecryptor>>>,
    state: Mutex<SequentialState>,
    /// GETs under way.
    inflight: Arc<Mutex<ahead::InFlightFetches>>,
    /// The furthest end of any read so far, in plaintext bytes: read-ahead GETs read no
    /// further than their window past it.
    furthest: watch::Sender<u64>,
}

impl Drop for ObjectReader {
    fn drop(&mut self) {
        self.ctx.open_readers.fetch_sub(1, Ordering::Relaxed);
    }
}

impl ObjectReader {
    /// The version this reader reads.
    pub fn version(&self) -> &ObjectVersion {
        &self.version
    }

    /// A reader for `version`. Fails at once (EIO) if its size is impossible for our format.
    pub fn new(ctx: Arc<ReadContext>, version: ObjectVersion) -> Result<Self, ReadError> {
        let plaintext_size = ctx
            .layout
            .plaintext_size(version.ciphertext_size)
            .map_err(|e| ReadError::corrupt(&version.key, e))?;
        let window = ctx.prefetch.initial_window;
        // A version read before: its cached segments are found without asking for its header.
        let known = ctx
            .cache
            .decryptor(&version.key, &version.etag, version.ciphertext_size);
        ctx.open_readers.fetch_add(1, Ordering::Relaxed);
        Ok(Self {
            ctx,
            version: Arc::new(version),
            plaintext_size,
            decryptor: Arc::new(OnceCell::new_with(known)),
            state: Mutex::new(SequentialState::new(window)),
            inflight: Arc::default(),
            furthest: watch::Sender::new(0),
        })
    }

    pub fn plaintext_size(&self) -> u64 {
        self.plaintext_size
    }

    /// The header this version's segments are verified under, once one was read.
    pub fn verified_header(&self) -> Option<Header> {
        self.decryptor.get().map(|d| *d.header())
    }

    /// Reads up to `size` bytes at `offset` (fewer at the end of the object).
    pub async fn read(&self, offset: u64, size: u32) -> Result<Bytes, ReadError> {
        let end = (offset + size as u64).min(self.plaintext_size);
        if offset >= end {
            return Ok(Bytes::new());
        }
        let layout = self.ctx.layout;
        let first = layout.segment_of(offset);
        let last = layout.segment_of(end - 1);
        self.furthest.send_if_modified(|furthest| {
            let further = end > *furthest;
            *furthest = (*furthest).max(end);
            further
        });
        let sequential = self.schedule_prefetch(offset, end);

        // Slices of the segments first, copied out only once all are here: a request waiting
        // for its segments holds no buffer of its own (the kernel keeps dozens waiting while
        // it reads ahead), and one that lies within one segment is replied without a copy.
        let mut pieces = Vec::with_capacity((last - first + 1) as usize);
        let mut fetched = VecDeque::new();
        let mut seg = first;
        while seg <= last {
            let plain = match fetched.pop_front().or_else(|| self.cached(seg)) {
                Some(p) => p,
                None => {
                    fetched = self.wait_or_fetch(seg, last + 1).await?.into();
                    fetched.pop_front().expect("fetched at least one segment")
                }
            };
            let range = layout.segment_plaintext_range(seg, self.plaintext_size);
            let from = offset.max(range.start) - range.start;
            let to = end.min(range.end) - range.start;
            pieces.push(plain.slice(from as usize..to as usize));
            if sequential {
                self.served(seg, to - from, range.end - range.start);
            }
            seg += 1;
        }
        if pieces.len() == 1 {
            return Ok(pieces.pop().expect("one piece"));
        }
        let mut out = BytesMut::with_capacity((end - offset) as usize);
        for piece in pieces {
            out.extend_from_slice(&piece);
        }
        Ok(out.freeze())
    }

    fn cached(&self, seg: u64) -> Option<Bytes> {
        match self.segment_id(seg) {
            Some(id) => self.ctx.cache.get(&id),
            None => {
                // Nothing can be cached for a version whose header is not known yet.
                crate::metrics::cache_lookup(false);
                None
            }
        }
    }

    /// What `seg` is cached under, once this version's header is known (before, nothing
    /// can be cached for it: segments are cached under what they were verified under).
    fn segment_id(&self, seg: u64) -> Option<SegmentId> {
        let decryptor = self.decryptor.get()?;
        Some(SegmentId::new(
            &self.version.key,
            decryptor.segment_identity(seg),
        ))
    }

    async fn fetch(&self, from: u64, to: u64) -> Result<Vec<Bytes>, ReadError> {
        FetchJob {
            ctx: self.ctx.clone(),
            version: self.version.clone(),
            plaintext_size: self.plaintext_size,
            decryptor: self.decryptor.clone(),
            ahead: None,
        }
        .fetch(from, to)
        .await
    }
}

/// One GET of a run of segments, verified and decrypted into the cache.
struct FetchJob {
    ctx: Arc<ReadContext>,
    version: Arc<ObjectVersion>,
    plaintext_size: u64,
    decryptor: Arc<OnceCell<Arc<ObjectDecryptor>>>,
    /// For read-ahead: paced to the reader, its segments only cached; else a read's own
    /// fetch, which returns them.
    ahead: Option<ahead::ReadAhead>,
}

impl FetchJob {
    /// Fetches segments `from..to`: a read's own fetch returns their plaintext; read-ahead
    /// returns nothing (its segments are in the cache) and stops early if its reader is gone.
    async fn fetch(&self, from: u64, to: u64) -> Result<Vec<Bytes>, ReadError> {
        let layout: Layout = self.ctx.layout;
        let key = &self.version.key;
        let ct_start = if from == 0 {
            0
        } else {
            layout
                .segment_ciphertext_range(from, self.plaintext_size)
                .start
        };
        let ct_end = layout
            .segment_ciphertext_range(to - 1, self.plaintext_size)
            .end;
        let store = &self.ctx.store;
        let mut response = store
            .get_range(key, ct_start..ct_end, Some(&self.version.etag))
            .await
            .inspect_err(|e| {
                if self.ahead.is_none() {
                    warn!(key = %key, "GET failed: {e}");
                }
            })?;
        ReadStats::add(&self.ctx.stats.gets, 1);
        if response.range != (ct_start..ct_end) {
            return Err(self.log_corrupt(CryptoError::Truncated));
        }
        let mut header = None;
        if from == 0 {
            let mut h = vec![0u8; layout.header_len()];
            response.body.read_exact(&mut h).await?;
            header = Some(h);
        }
        let decryptor = self.decryptor(header.as_ref().map(|h| &h[..])).await?;
        // A read's own fetch returns its segments; read-ahead only caches them.
        let mut out = Vec::with_capacity(if self.ahead.is_none() {
            (to - from) as usize
        } else {
            0
        });
        let mut fetched = from;
        for seg in from..to {
            if let Some(ahead) = &self.ahead
                && !ahead
                    .wait_for_room(layout.segment_plaintext_start(seg))
                    .await
            {
                // Its reader is gone.
                break;
            }
            let range = layout.segment_ciphertext_range(seg, self.plaintext_size);
            let mut buf = self.ctx.buffers.take();
            response
                .body
                .read_into(buf.vec(), (range.end - range.start) as usize)
                .await?;
            let plain = self
                .ctx
                .open_into_cache(key, &decryptor, seg, buf)
                .map_err(|e| self.log_corrupt(e))?;
            match &self.ahead {
                Some(ahead) => {
                    ahead.progress.send_replace(seg + 1);
                }
                None => out.push(plain),
            }
            fetched = seg + 1;
            // Counted as they come: a read-ahead whose reader is gone stops short.
            ReadStats::add(&self.ctx.stats.segments_fetched, 1);
        }
        // Segments verified under it: worth finding again when the file is opened again.
        let v = &self.version;
        self.ctx
            .cache
            .keep_decryptor(key, &v.etag, v.ciphertext_size, decryptor.clone());
        debug!(key = %key, segments = ?(from..fetched), "fetched");
        Ok(out)
    }

    /// The object's decryptor, parsing `header` if given, else GETting the header.
    async fn decryptor(&self, header: Option<&[u8]>) -> Result<Arc<ObjectDecryptor>, ReadError> {
        self.decryptor
            .get_or_try_init(|| async {
                let bytes = match header {
                    Some(h) => h.to_vec(),
                    None => {
                        let store = &self.ctx.store;
                        store
                            .get_range(
                                &self.version.key,
                                0..self.ctx.layout.header_len() as u64,
                                Some(&self.version.etag),
                            )
                            .await?
                            .body
                            .collect()
                            .await?
                    }
                };
                let decryptor = self
                    .ctx
                    .file_decryptor(&bytes, self.version.ciphertext_size)
                    .map_err(|e| self.log_corrupt(e))?;
                Ok(Arc::new(decryptor))
            })
            .await
            .cloned()
    }

    /// Read-ahead leaves the log line to the read that then fetches the same segments.
    fn log_corrupt(&self, err: CryptoError) -> ReadError {
        if self.ahead.is_none() {
            warn!(key = %self.version.key, "refusing to return data: {err}");
        }
        ReadError::corrupt(&self.version.key, err)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::crypto::encrypt_to_vec;
    use crate::read::test_support::{SEGMENT, put_file};
    use crate::store::memory::MemoryStore;

    fn context(store: Arc<MemoryStore>) -> Arc<ReadContext> {
        // Two segments per GET and no read-ahead: a small read caches exactly two.
        crate::read::test_support::context(store, 2, 1 << 20, 2, 0)
    }

    async fn put(ctx: &ReadContext, store: &MemoryStore, key: &str, plain: &[u8]) -> ObjectVersion {
        put_file(ctx, store, key, plain).await.1
    }

    #[tokio::test]
    async fn a_reused_etag_never_mixes_two_versions() {
        let store = Arc::new(MemoryStore::new());
        let ctx = context(store.clone());
        let old = vec![1u8; 10 * SEGMENT];
        let new = vec![2u8; 10 * SEGMENT];
        let version = put(&ctx, &store, "f", &old).await;
        let reader = ObjectReader::new(ctx.clone(), version.clone()).unwrap();
        assert_eq!(&reader.read(0, 10).await.unwrap()[..], &old[..10]);
        assert!(!ctx.cache.is_empty(), "the first segments are cached");

        // The server puts another version under the same key and ETag.
        let other = put(&ctx, &store, "other", &new).await;
        store.replace_keeping_etag("f", store.object("other").unwrap());
        assert_eq!(other.ciphertext_size, version.ciphertext_size);
        let reader = ObjectReader::new(ctx.clone(), version).unwrap();
        match reader.read(0, (10 * SEGMENT) as u32).await {
            Ok(got) => assert!(
                got[..] == old[..] || got[..] == new[..],
                "one version or the other, never a mix"
            ),
            Err(e) => assert_eq!(e.errno(), libc::EIO),
        }
    }

    /// A sequential reader's requests are served out of order (the kernel sends several at
    /// once): each segment leaves the cache once all of it was served, whichever request
    /// came first, and nothing is fetched twice.
    #[tokio::test]
    async fn segments_leave_the_cache_once_served_whole() {
        let store = Arc::new(MemoryStore::new());
        let ctx = context(store.clone());
        let plain: Vec<u8> = (0..20 * SEGMENT).map(|i| (i % 251) as u8).collect();
        let version = put(&ctx, &store, "f", &plain).await;
        let reader = ObjectReader::new(ctx.clone(), version).unwrap();
        let requests = store.requests();
        // The second request first: it covers the end of segment 1, the first its start.
        for (offset, len) in [(6000, 6000), (0, 6000), (12_000, 30_000), (42_000, 40_000)] {
            let got = reader.read(offset, len).await.unwrap();
            let end = (offset as usize + len as usize).min(plain.len());
            assert!(got[..] == plain[offset as usize..end], "{offset}");
        }
        assert_eq!(ctx.cache.len(), 0, "every segment was served whole");
        let gets = store.requests() - requests;
        assert!(
            gets <= 12,
            "{gets} GETs for 20 segments fetched two at a time"
        );
    }

    #[tokio::test]
    async fn a_symlink_object_never_reads_as_file_contents() {
        let store = Arc::new(MemoryStore::new());
        let ctx = context(store.clone());
        let object = encrypt_to_vec(&ctx.master, ctx.layout, ObjectKind::Symlink, b"/etc/passwd");
        let size = object.len() as u64;
        let put = store
            .put("link", Bytes::from(object), &Default::default())
            .await
            .unwrap();
        let version = ObjectVersion {
            key: "link".into(),
            etag: put.etag.unwrap(),
            ciphertext_size: size,
        };
        let reader = ObjectReader::new(ctx, version).unwrap();
        let err = reader.read(0, 100).await.unwrap_err();
        assert_eq!(err.errno(), libc::EIO);
    }
}
