//! The filesystem core: namespace, attributes, handles. Async, errno results; the FUSE adapter
//! (`fuse.rs`) only translates kernel requests into these calls.

use std::collections::{BTreeMap, HashMap};
use std::ffi::OsStr;
use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime};

use bytes::Bytes;
use futures::FutureExt;
use futures::future::{BoxFuture, Shared};
use tracing::{debug, info, warn};

use super::inodes::{InodeTable, Node, NodeKind, NodeState, ROOT_INO};
use super::modify::ModifyHandle;
use super::names;
use crate::crypto::{ATTRS_METADATA_NAME, PosixAttrs, open_attrs, seal_attrs};
use crate::read::{ObjectReader, ObjectVersion, ReadContext};
use crate::store::{Metadata, StoreError, StoreErrorKind};
use crate::upload::staging::StagingBudget;
use crate::upload::{ObjectWriter, UploadContext};
use crate::volume::Volume;

pub type FsResult<T> = Result<T, i32>;

/// HEADs (for attributes) in flight at once per mount.
const MAX_CONCURRENT_HEADS: usize = 32;
/// After a second lookup in a listed directory (`ls -l`, `rsync`, `rm -r` look up every
/// entry in order), the attributes of this many following entries are fetched ahead.
const ATTR_READ_AHEAD: usize = 128;
/// How long a metadata-only change waits for a rename that can carry it (rsync sets the
/// times and mode of its temporary file, then renames it) before it is copied in place.
const ATTR_FLUSH_DELAY: Duration = Duration::from_millis(500);
/// Stripes of [`ObjectLocks`].
const OBJECT_LOCK_STRIPES: usize = 256;

/// Settings of a mount that the filesystem core uses.
#[derive(Debug, Clone)]
pub struct FsOptions {
    /// Owner, group and permissions of objects that record none (written by other tools).
    pub uid: u32,
    pub gid: u32,
    pub file_mode: u16,
    pub dir_mode: u16,
    pub metadata_ttl: Duration,
    pub read_only: bool,
    /// Length of the volume's key prefix in the bucket (for S3's 1024-byte key limit).
    pub key_prefix_len: usize,
    /// Where files changed in place are staged (encrypted).
    pub cache_dir: std::path::PathBuf,
    /// Largest file that can be staged.
    pub max_cache_size: u64,
}

/// What the adapter needs to answer the kernel about a node.
#[derive(Debug, Clone)]
pub struct Attr {
    pub ino: u64,
    pub kind: NodeKind,
    pub size: u64,
    pub mtime: SystemTime,
    pub perm: u16,
    pub uid: u32,
    pub gid: u32,
}

/// The caller of a request that creates something: the new node's owner.
#[derive(Debug, Clone, Copy)]
pub struct Caller {
    pub uid: u32,
    pub gid: u32,
    pub pid: u32,
}

/// A setattr request: each field that is `Some` changes.
#[derive(Debug, Clone, Copy, Default)]
pub struct AttrChange {
    pub mode: Option<u32>,
    pub uid: Option<u32>,
    pub gid: Option<u32>,
    pub size: Option<u64>,
    pub mtime: Option<SystemTime>,
}

/// One entry of a directory listing.
#[derive(Debug, Clone)]
pub struct DirEntry {
    pub ino: u64,
    pub name: String,
    pub kind: NodeKind,
}

/// A name in a listing. Sizes, ETags and times are not kept: attributes come from a HEAD
/// (listings carry no user metadata), which also gives those.
#[derive(Debug, Clone)]
struct ListedEntry {
    kind: NodeKind,
    /// The key component the name is stored under (the name itself on plain volumes).
    component: String,
}

/// How a directory rename moves objects: (from, to) keys, long-name side objects to write
/// first, and old side objects to delete with the rest.
#[derive(Debug, Default)]
struct MovePlan {
    moves: Vec<(String, String)>,
    side_objects: Vec<(String, String)>,
    old_side_objects: Vec<String>,
}

/// The keys a name has in a directory.
#[derive(Debug, Clone)]
struct ChildKeys {
    /// Key component (encrypted, or a long-name stand-in, on name-encrypted volumes).
    component: String,
    /// The key it has as a file (or symlink), checked against S3's length limit.
    file: String,
    /// The prefix it has as a directory.
    dir: String,
    /// A long encrypted name's side object: its key and body.
    side: Option<(String, String)>,
}

struct DirListing {
    entries: Arc<BTreeMap<String, ListedEntry>>,
    lookups: AtomicU32,
    valid_until: Instant,
}

/// What a HEAD said about an object.
#[derive(Debug, Clone)]
struct Headed {
    size: u64,
    etag: Option<String>,
    last_modified: SystemTime,
    attrs: Option<PosixAttrs>,
}

type HeadResult = Result<Option<Arc<Headed>>, i32>;
type HeadFuture = Shared<BoxFuture<'static, HeadResult>>;

/// A file opened for writing.
pub struct WriteHandle {
    pub ino: u64,
    /// The process that opened the file: its close() commits; others' flushes do not
    /// (a shell redirection or `dd` in a pipe closes copies of the descriptor early).
    pub opener_pid: u32,
    pub writer: ObjectWriter,
    /// The inode has been told how the version ended (it is no longer being written).
    pub settled: bool,
}

enum Handle {
    Read(Arc<ObjectReader>),
    /// The inode it writes, and the writer.
    Write(u64, Arc<tokio::sync::Mutex<WriteHandle>>),
    /// A descriptor of a file being changed in place (opened for writing without O_TRUNC,
    /// or any open while such a change is under way).
    Modify(ModifyOpen),
    Dir(Arc<Vec<DirEntry>>),
}

struct ModifyOpen {
    /// The process that opened it: its close() saves the file.
    opener_pid: u32,
    /// Opened for writing (counted in the node's writers).
    writes: bool,
    /// Shared by every descriptor of the file.
    state: SharedModify,
}

type SharedModify = Arc<tokio::sync::Mutex<ModifyHandle>>;

pub struct Filesystem {
    volume: Arc<Volume>,
    options: FsOptions,
    inodes: Mutex<InodeTable>,
    listings: Mutex<HashMap<u64, DirListing>>,
    /// Names known not to exist, until the metadata TTL passes or this mount creates them.
    negative: Mutex<HashMap<(u64, String), Instant>>,
    /// Bumped whenever this mount changes a directory: a listing or probe that started
    /// before the change is not cached over it.
    generations: Mutex<HashMap<u64, u64>>,
    /// HEADs by key, shared by everyone who asks while one is in flight and kept for the
    /// metadata TTL: attributes are fetched once per object, also when read ahead.
    heads: Mutex<HashMap<String, (Instant, HeadFuture)>>,
    head_slots: Arc<tokio::sync::Semaphore>,
    /// Nodes with a delayed attribute save pending (one per node, however many changes).
    flushes_scheduled: Mutex<std::collections::HashSet<u64>>,
    /// Serialise what changes one object in the bucket: an attribute save (a copy of the
    /// object onto itself) against its rename or removal. Concurrent, a self-copy that a
    /// store finishes after the delete brings the old name back (seen on Garage).
    object_locks: ObjectLocks,
    /// Files being changed in place: their shared state and how many descriptors use it.
    modifying: Mutex<HashMap<u64, (SharedModify, usize)>>,
    /// `--max-cache-size`, shared by all staging files.
    staging_budget: Arc<StagingBudget>,
    /// Keys already logged as hidden (names that do not decrypt), so each is logged once.
    hidden_logged: Mutex<std::collections::HashSet<String>>,
    handles: Mutex<HashMap<u64, Handle>>,
    next_handle: AtomicU64,
    read: Arc<ReadContext>,
    upload: Arc<UploadContext>,
    /// When the mount started: the mtime of directories that record none.
    mounted_at: SystemTime,
    /// LIST requests made, for tests and metrics.
    pub list_requests: AtomicU64,
    /// Releases still committing (shutdown waits for them).
    releasing: AtomicU64,
}

impl Filesystem {
    pub fn new(
        volume: Arc<Volume>,
        options: FsOptions,
        read: Arc<ReadContext>,
        upload: Arc<UploadContext>,
    ) -> Self {
        let mounted_at = SystemTime::now();
        let max_cache_size = options.max_cache_size;
        let root = NodeState {
            size: 0,
            ciphertext_size: 0,
            etag: None,
            attrs: PosixAttrs {
                mode: libc::S_IFDIR | u32::from(options.dir_mode),
                uid: options.uid,
                gid: options.gid,
                mtime: mounted_at,
            },
            attrs_dirty: false,
            valid_until: far_future(),
        };
        Self {
            volume,
            options,
            inodes: Mutex::new(InodeTable::new(root)),
            listings: Mutex::new(HashMap::new()),
            negative: Mutex::new(HashMap::new()),
            generations: Mutex::new(HashMap::new()),
            heads: Mutex::new(HashMap::new()),
            head_slots: Arc::new(tokio::sync::Semaphore::new(MAX_CONCURRENT_HEADS)),
            flushes_scheduled: Mutex::new(std::collections::HashSet::new()),
            object_locks: ObjectLocks::default(),
            modifying: Mutex::new(HashMap::new()),
            staging_budget: StagingBudget::new(max_cache_size),
            hidden_logged: Mutex::new(std::collections::HashSet::new()),
            handles: Mutex::new(HashMap::new()),
            next_handle: AtomicU64::new(1),
            read,
            upload,
            mounted_at,
            list_requests: AtomicU64::new(0),
            releasing: AtomicU64::new(0),
        }
    }

    pub fn options(&self) -> &FsOptions {
        &self.options
    }

    // ---- attributes and lookup ----

    fn attr_of(&self, node: &Node) -> Attr {
        Attr {
            ino: node.ino,
            kind: node.kind,
            size: match node.kind {
                NodeKind::Dir => 0,
                _ => node.state.size,
            },
            mtime: node.state.attrs.mtime,
            perm: node.state.attrs.permissions(),
            uid: node.state.attrs.uid,
            gid: node.state.attrs.gid,
        }
    }

    fn node(&self, ino: u64) -> FsResult<Node> {
        self.inodes
            .lock()
            .unwrap()
            .get(ino)
            .cloned()
            .ok_or(libc::ENOENT)
    }

    /// The plaintext path of the directory `ino` relative to the volume (`""` for the root):
    /// what name encryption binds a directory's entries to. The kernel keeps a directory's
    /// inode while it holds any entry below it, so the walk up always finds the parents.
    fn dir_path(&self, ino: u64) -> FsResult<String> {
        let inodes = self.inodes.lock().unwrap();
        let mut parts = Vec::new();
        let mut at = ino;
        while at != ROOT_INO {
            let node = inodes.get(at).ok_or(libc::ENOENT)?;
            parts.push(node.name.clone());
            at = node.parent;
        }
        parts.reverse();
        Ok(parts.join("/"))
    }

    /// The keys of `name` in the directory `parent`; ENAMETOOLONG if its key would pass S3's
    /// limit.
    fn child_keys(&self, parent: &Node, name: &str) -> FsResult<ChildKeys> {
        let encoded = self.volume.names.encode(&self.dir_path(parent.ino)?, name);
        let file = names::file_key(&parent.key, &encoded.component, self.volume_prefix_len())?;
        let dir = names::dir_prefix(&parent.key, &encoded.component);
        let side = encoded.side_body.map(|body| {
            (
                names::side_object_key(&parent.key, &encoded.component),
                body,
            )
        });
        Ok(ChildKeys {
            component: encoded.component,
            file,
            dir,
            side,
        })
    }

    /// Stores a long encrypted name's side object, before the entry it names appears.
    async fn put_side_object(&self, child: &ChildKeys) -> FsResult<()> {
        if let Some((key, body)) = &child.side {
            self.volume
                .store
                .put(key, Bytes::from(body.clone()), &Metadata::new())
                .await
                .map_err(|e| log_store("PUT", key, e))?;
        }
        Ok(())
    }

    /// Removes a long encrypted name's side object once its entry is gone (best effort: an
    /// orphan side object is hidden and harmless; fsck lists it).
    async fn delete_side_object(&self, child: &ChildKeys) {
        if let Some((key, _)) = &child.side
            && let Err(e) = self.volume.store.delete(key).await
        {
            warn!(key = %key, "could not remove a long name's side object: {e}");
        }
    }

    /// The attributes of an object that records none.
    fn default_attrs(&self, kind: NodeKind, mtime: SystemTime) -> PosixAttrs {
        let perm = match kind {
            NodeKind::Dir => self.options.dir_mode,
            NodeKind::Symlink => 0o777,
            NodeKind::File => self.options.file_mode,
        };
        PosixAttrs {
            mode: kind.type_bits() | u32::from(perm),
            uid: self.options.uid,
            gid: self.options.gid,
            mtime,
        }
    }

    /// The user metadata that records `attrs` with an object.
    fn attrs_metadata(&self, attrs: &PosixAttrs) -> Metadata {
        Metadata::from([(
            ATTRS_METADATA_NAME.to_string(),
            seal_attrs(&self.volume.master, attrs),
        )])
    }

    /// A file's (or symlink's) state from a HEAD.
    fn file_state(&self, key: &str, h: &Headed) -> (NodeKind, NodeState) {
        let attrs = h
            .attrs
            .filter(|a| NodeKind::from_mode(a.mode) != NodeKind::Dir)
            .unwrap_or_else(|| self.default_attrs(NodeKind::File, h.last_modified));
        let kind = NodeKind::from_mode(attrs.mode);
        let size = match self.volume.layout.plaintext_size(h.size) {
            Ok(size) => size,
            Err(_) => {
                // Not our format: shown with its raw size, reads fail with EIO.
                debug!(key = %key, "size is not one of our objects'");
                h.size
            }
        };
        let state = NodeState {
            size,
            ciphertext_size: h.size,
            etag: h.etag.clone(),
            attrs,
            attrs_dirty: false,
            valid_until: Instant::now() + self.options.metadata_ttl,
        };
        (kind, state)
    }

    /// A directory's state from the HEAD of its marker (`None`: no marker).
    fn dir_state(&self, marker: Option<&Headed>) -> NodeState {
        let attrs = marker
            .and_then(|h| {
                h.attrs
                    .or_else(|| Some(self.default_attrs(NodeKind::Dir, h.last_modified)))
            })
            .filter(|a| NodeKind::from_mode(a.mode) == NodeKind::Dir)
            .unwrap_or_else(|| self.default_attrs(NodeKind::Dir, self.mounted_at));
        NodeState {
            size: 0,
            ciphertext_size: 0,
            etag: marker.and_then(|h| h.etag.clone()),
            attrs,
            attrs_dirty: false,
            valid_until: Instant::now() + self.options.metadata_ttl,
        }
    }

    /// HEAD of `key`, shared with concurrent askers and cached for the metadata TTL.
    /// `Ok(None)`: no such object.
    async fn head(&self, key: &str) -> HeadResult {
        let future = {
            let mut heads = self.heads.lock().unwrap();
            let now = Instant::now();
            match heads.get(key) {
                Some((until, f)) if *until > now => f.clone(),
                _ => {
                    if heads.len() > 100_000 {
                        heads.retain(|_, (until, _)| *until > now);
                    }
                    let f = self.head_future(key.to_string());
                    heads.insert(
                        key.to_string(),
                        (now + self.options.metadata_ttl, f.clone()),
                    );
                    f
                }
            }
        };
        let result = future.await;
        if result.is_err() {
            // Failures are not cached: the next ask tries again.
            self.forget_head(key);
        }
        result
    }

    fn head_future(&self, key: String) -> HeadFuture {
        let store = self.volume.store.clone();
        let master = self.volume.master.clone();
        let slots = self.head_slots.clone();
        async move {
            let _slot = slots.acquire_owned().await.expect("never closed");
            match store.head(&key).await {
                Ok(info) => {
                    let attrs = info.metadata.get(ATTRS_METADATA_NAME).and_then(|sealed| {
                        open_attrs(&master, sealed)
                            .map_err(|e| {
                                warn!(key = %key, "recorded attributes ignored: {e}");
                            })
                            .ok()
                    });
                    Ok(Some(Arc::new(Headed {
                        size: info.size,
                        etag: info.etag,
                        last_modified: info.last_modified.unwrap_or(SystemTime::UNIX_EPOCH),
                        attrs,
                    })))
                }
                Err(e) if e.kind == StoreErrorKind::NotFound => Ok(None),
                Err(e) => Err(log_store("HEAD", &key, e)),
            }
        }
        .boxed()
        .shared()
    }

    /// Forgets the cached HEAD of `key` (this mount changed the object).
    fn forget_head(&self, key: &str) {
        self.heads.lock().unwrap().remove(key);
    }

    /// Starts HEADs for the entries listed after `name` in `parent`, so that a walk over the
    /// directory finds their attributes ready.
    fn read_ahead_attrs(
        &self,
        parent_key: &str,
        entries: &BTreeMap<String, ListedEntry>,
        name: &str,
    ) {
        use std::ops::Bound::{Excluded, Unbounded};
        let following = entries.range::<str, _>((Excluded(name), Unbounded));
        for (_, entry) in following.take(ATTR_READ_AHEAD) {
            let key = match entry.kind {
                NodeKind::Dir => names::dir_prefix(parent_key, &entry.component),
                _ => match names::file_key(parent_key, &entry.component, 0) {
                    Ok(k) => k,
                    Err(_) => continue,
                },
            };
            let fresh = self
                .heads
                .lock()
                .unwrap()
                .get(&key)
                .is_some_and(|(until, _)| *until > Instant::now());
            if !fresh {
                let future = {
                    let mut heads = self.heads.lock().unwrap();
                    let f = self.head_future(key.clone());
                    heads.insert(key, (Instant::now() + self.options.metadata_ttl, f.clone()));
                    f
                };
                tokio::spawn(future);
            }
        }
    }

    pub async fn lookup(&self, parent: u64, name: &OsStr) -> FsResult<Attr> {
        let name = names::to_key_component(name, parent == ROOT_INO)
            .map_err(|e| if e == libc::EPERM { libc::ENOENT } else { e })?;
        let parent_node = self.node(parent)?;
        if parent_node.kind != NodeKind::Dir {
            return Err(libc::ENOTDIR);
        }
        // A file being written here exists before the bucket shows it.
        {
            let mut inodes = self.inodes.lock().unwrap();
            let known = inodes
                .child(parent, name)
                .filter(|n| {
                    n.writers > 0 || n.state.attrs_dirty || n.state.valid_until > Instant::now()
                })
                .map(|n| n.ino);
            if let Some(ino) = known {
                let node = inodes.get_mut(ino).expect("just seen");
                node.lookups += 1;
                return Ok(self.attr_of(node));
            }
        }
        let slot = (parent, name.to_string());
        if self
            .negative
            .lock()
            .unwrap()
            .get(&slot)
            .is_some_and(|until| *until > Instant::now())
        {
            return Err(libc::ENOENT);
        }
        let child = self.child_keys(&parent_node, name)?;
        let mut listed = self.fresh_listing_entry(parent, &parent_node.key, name);
        if listed.is_none() && self.was_walked(parent) {
            // A walk (`ls -l`, `rsync`) outlived the listing: listing again costs one LIST
            // per 1000 names, probing each name costs one each.
            self.listing(parent).await?;
            listed = self.fresh_listing_entry(parent, &parent_node.key, name);
        }
        let found = match listed {
            Some(Some(kind)) => self.resolve(&child, kind).await?,
            Some(None) => None,
            None => {
                let generation = self.generation(parent);
                let found = self.probe(&child).await?;
                if self.generation(parent) == generation {
                    found
                } else {
                    // This mount changed the directory while we asked: ask again.
                    self.forget_head(&child.file);
                    self.forget_head(&child.dir);
                    self.probe(&child).await?
                }
            }
        };
        let Some((kind, state)) = found else {
            let mut negative = self.negative.lock().unwrap();
            // Bounded: expired entries go when the cache grows large.
            if negative.len() > 100_000 {
                let now = Instant::now();
                negative.retain(|_, until| *until > now);
            }
            negative.insert(slot, Instant::now() + self.options.metadata_ttl);
            return Err(libc::ENOENT);
        };
        let key = match kind {
            NodeKind::Dir => child.dir,
            _ => child.file,
        };
        let mut inodes = self.inodes.lock().unwrap();
        // This mount may have learned something newer while we asked S3 (a chmod or utimes
        // saved meanwhile, a write): what it knows wins over the older answer.
        let newer = inodes
            .child(parent, name)
            .filter(|n| {
                n.kind == kind
                    && (n.writers > 0
                        || n.state.attrs_dirty
                        || n.state.valid_until > Instant::now())
            })
            .map(|n| n.ino);
        if let Some(ino) = newer {
            let node = inodes.get_mut(ino).expect("just seen");
            node.lookups += 1;
            return Ok(self.attr_of(node));
        }
        let ino = inodes.upsert(parent, name, kind, key, state, true);
        Ok(self.attr_of(inodes.get(ino).expect("just inserted")))
    }

    /// `Some(Some(kind))` / `Some(None)` from a fresh listing of `parent` (the listing is also
    /// the negative cache); `None` when no fresh listing exists. A second lookup in the same
    /// listing starts reading the following entries' attributes ahead.
    fn fresh_listing_entry(
        &self,
        parent: u64,
        parent_key: &str,
        name: &str,
    ) -> Option<Option<NodeKind>> {
        let (entries, walk) = {
            let listings = self.listings.lock().unwrap();
            let listing = listings.get(&parent)?;
            if listing.valid_until <= Instant::now() {
                return None;
            }
            let lookups = listing.lookups.fetch_add(1, Ordering::Relaxed) + 1;
            (listing.entries.clone(), lookups >= 2)
        };
        let kind = entries.get(name).map(|e| e.kind);
        if kind.is_some() && walk {
            self.read_ahead_attrs(parent_key, &entries, name);
        }
        Some(kind)
    }

    /// Whether names of `parent`'s (possibly expired) listing were being looked up in turn.
    fn was_walked(&self, parent: u64) -> bool {
        self.listings
            .lock()
            .unwrap()
            .get(&parent)
            .is_some_and(|l| l.lookups.load(Ordering::Relaxed) >= 2)
    }

    /// A listed name's attributes: the HEAD of the file, or of the directory's marker.
    async fn resolve(
        &self,
        child: &ChildKeys,
        listed: NodeKind,
    ) -> FsResult<Option<(NodeKind, NodeState)>> {
        if listed == NodeKind::Dir {
            let marker = self.head(&child.dir).await?;
            return Ok(Some((NodeKind::Dir, self.dir_state(marker.as_deref()))));
        }
        let key = &child.file;
        Ok(self.head(key).await?.map(|h| self.file_state(key, &h)))
    }

    /// Asks S3 whether a name is a directory (any key under its prefix) or a file. The
    /// directory wins when both exist.
    async fn probe(&self, child: &ChildKeys) -> FsResult<Option<(NodeKind, NodeState)>> {
        let store = &self.volume.store;
        let file_key = child.file.clone();
        let sub = child.dir.clone();
        self.list_requests.fetch_add(1, Ordering::Relaxed);
        let (head, list) =
            tokio::join!(self.head(&file_key), store.list_page(&sub, Some("/"), None));
        let list = list.map_err(|e| log_store("LIST", &sub, e))?;
        if !list.objects.is_empty() || !list.common_prefixes.is_empty() {
            let marker = if list.objects.iter().any(|o| o.key == sub) {
                self.head(&sub).await?
            } else {
                None
            };
            return Ok(Some((NodeKind::Dir, self.dir_state(marker.as_deref()))));
        }
        Ok(head?.map(|h| self.file_state(&file_key, &h)))
    }

    pub async fn getattr(&self, ino: u64) -> FsResult<Attr> {
        let node = self.node(ino)?;
        if ino == ROOT_INO
            || node.writers > 0
            || node.state.attrs_dirty
            || node.state.valid_until > Instant::now()
        {
            return Ok(self.attr_of(&node));
        }
        let (kind, state) = match node.kind {
            NodeKind::Dir => (
                NodeKind::Dir,
                self.dir_state(self.head(&node.key).await?.as_deref()),
            ),
            _ => match self.head(&node.key).await? {
                Some(h) => self.file_state(&node.key, &h),
                None => return Err(libc::ENOENT),
            },
        };
        if kind != node.kind {
            // Replaced by a different kind of object: the kernel must look the name up again.
            return Err(libc::ENOENT);
        }
        let mut inodes = self.inodes.lock().unwrap();
        let node = inodes.get_mut(ino).ok_or(libc::ENOENT)?;
        // Unless this mount changed or refreshed the node while we asked.
        if node.writers == 0 && !node.state.attrs_dirty && node.state.valid_until <= Instant::now()
        {
            node.state = state;
        }
        Ok(self.attr_of(node))
    }

    pub fn forget(&self, ino: u64, count: u64) {
        self.inodes.lock().unwrap().forget(ino, count);
    }

    /// chmod, chown, utimes and truncate. Mode, owner and times are recorded with the object:
    /// while it is being written they go with its upload; otherwise they are saved shortly
    /// after with a server-side copy, unless a rename carries them first.
    pub async fn setattr(
        self: &Arc<Self>,
        ino: u64,
        change: AttrChange,
        fh: Option<u64>,
    ) -> FsResult<Attr> {
        if let Some(size) = change.size {
            // A file changed in place (through this descriptor or another), or a new file's
            // descriptor written again after its fsync: resized in its staged contents.
            let in_place = match fh.and_then(|fh| self.modify_handle(fh)) {
                Some(m) => Some(m),
                None => match self.modify_state(ino) {
                    Some(m) => Some(m),
                    None => match fh {
                        Some(fh) => self.continue_in_place(fh).await,
                        None => None,
                    },
                },
            };
            if let Some(m) = in_place {
                let mut h = m.lock().await;
                h.set_len(&self.options.cache_dir, &self.staging_budget, size)
                    .await?;
                self.changed_in_place(ino, size);
            } else if let Some(h) = fh.and_then(|fh| self.write_handle(fh)) {
                let current = h.lock().await.writer.len();
                if size != current {
                    info!(
                        ino,
                        size,
                        current,
                        "a new version being streamed cannot be resized before it is saved"
                    );
                    return Err(libc::EINVAL);
                }
            } else if size != self.getattr(ino).await?.size {
                // truncate(2) by path: changed in place like an open, ftruncate and close.
                let fh = self.open(ino, libc::O_WRONLY, std::process::id()).await?;
                let saved = async {
                    let m = self.modify_handle(fh).ok_or(libc::EIO)?;
                    let mut h = m.lock().await;
                    h.set_len(&self.options.cache_dir, &self.staging_budget, size)
                        .await?;
                    self.changed_in_place(ino, size);
                    self.commit_in_place(&mut h).await
                }
                .await;
                self.release(ino, fh).await;
                saved?;
            }
        }
        if change.mode.is_none()
            && change.uid.is_none()
            && change.gid.is_none()
            && change.mtime.is_none()
        {
            return self.getattr(ino).await;
        }
        self.writable()?;
        // Start from what the bucket says, not from stale attributes.
        self.getattr(ino).await?;
        let (attr, writing) = {
            let mut inodes = self.inodes.lock().unwrap();
            let node = inodes.get_mut(ino).ok_or(libc::ENOENT)?;
            let mut attrs = node.state.attrs;
            if let Some(mode) = change.mode {
                attrs.mode = (attrs.mode & libc::S_IFMT) | (mode & 0o7777);
            }
            attrs.uid = change.uid.unwrap_or(attrs.uid);
            attrs.gid = change.gid.unwrap_or(attrs.gid);
            attrs.mtime = change.mtime.unwrap_or(attrs.mtime);
            if attrs != node.state.attrs {
                node.state.attrs = attrs;
                node.state.attrs_dirty = true;
            }
            (
                self.attr_of(node),
                node.writers > 0 && node.state.attrs_dirty,
            )
        };
        if writing {
            // Carried by the upload when it can be; commit() checks again and saves the rest.
            if let Some(handle) = self.writer_of(ino) {
                let mut h = handle.lock().await;
                let metadata = self.attrs_metadata(&self.node(ino)?.state.attrs);
                h.writer.set_metadata(metadata);
            }
        } else if self.node(ino)?.state.attrs_dirty {
            self.schedule_attr_flush(ino);
        }
        Ok(attr)
    }

    fn schedule_attr_flush(self: &Arc<Self>, ino: u64) {
        if !self.flushes_scheduled.lock().unwrap().insert(ino) {
            return; // chmod, chown and utimes in a row are saved together
        }
        let fs = self.clone();
        tokio::spawn(async move {
            tokio::time::sleep(ATTR_FLUSH_DELAY).await;
            fs.flushes_scheduled.lock().unwrap().remove(&ino);
            let _ = fs.flush_attrs(ino).await;
        });
    }

    /// Saves a node's changed attributes: a copy of the object onto itself with new metadata
    /// (for a directory, its marker is written).
    async fn flush_attrs(&self, ino: u64) -> FsResult<()> {
        let _saving = self.object_locks.lock(&[ino]).await;
        let Ok(node) = self.node(ino) else {
            return Ok(());
        };
        if !node.state.attrs_dirty || node.writers > 0 {
            return Ok(());
        }
        let attrs = node.state.attrs;
        let metadata = self.attrs_metadata(&attrs);
        let store = &self.volume.store;
        let saved = match node.kind {
            NodeKind::Dir => store.put(&node.key, Bytes::new(), &metadata).await,
            _ => store.copy(&node.key, &node.key, Some(&metadata)).await,
        };
        self.forget_head(&node.key);
        match saved {
            Ok(put) => {
                let mut inodes = self.inodes.lock().unwrap();
                if let Some(n) = inodes.get_mut(ino) {
                    if n.key == node.key {
                        n.state.etag = put.etag.or(n.state.etag.take());
                    }
                    if n.state.attrs == attrs {
                        n.state.attrs_dirty = false;
                        n.state.valid_until = Instant::now() + self.options.metadata_ttl;
                    }
                }
                inodes.release_if_unused(ino);
                Ok(())
            }
            // Renamed or removed meanwhile: whoever did that carried or dropped the change.
            Err(e) if e.kind == StoreErrorKind::NotFound => Ok(()),
            Err(e) => Err(log_store("saving attributes of", &node.key, e)),
        }
    }

    /// Saves every pending attribute change now (fsync of the directory, unmount).
    pub async fn flush_all_attrs(&self) {
        let dirty = self.inodes.lock().unwrap().dirty();
        for ino in dirty {
            if let Err(errno) = self.flush_attrs(ino).await {
                warn!(ino, errno, "attributes not saved");
            }
        }
    }

    // ---- directories ----

    async fn listing(&self, ino: u64) -> FsResult<Arc<BTreeMap<String, ListedEntry>>> {
        {
            let listings = self.listings.lock().unwrap();
            if let Some(l) = listings.get(&ino)
                && l.valid_until > Instant::now()
            {
                return Ok(l.entries.clone());
            }
        }
        let node = self.node(ino)?;
        let generation = self.generation(ino);
        let listing = self
            .volume
            .store
            .list_all(&node.key, Some("/"))
            .await
            .map_err(|e| log_store("LIST", &node.key, e))?;
        self.list_requests
            .fetch_add(listing.requests as u64, Ordering::Relaxed);
        let is_root = ino == ROOT_INO;
        let dir_path = self.dir_path(ino)?;
        let mut entries = BTreeMap::new();
        let mut long_names = Vec::new();
        let listed = listing
            .common_prefixes
            .iter()
            .map(|p| (p.as_str(), NodeKind::Dir))
            .chain(
                listing
                    .objects
                    .iter()
                    .map(|o| (o.key.as_str(), NodeKind::File)),
            );
        for (key, kind) in listed {
            let component = key[node.key.len()..].trim_end_matches('/');
            if kind == NodeKind::File && key.len() == node.key.len() {
                continue; // this directory's own marker
            }
            let name = match self.volume.names.classify(&dir_path, component, is_root) {
                names::Listed::Name(name) => name,
                names::Listed::LongName => {
                    long_names.push((component.to_string(), kind));
                    continue;
                }
                names::Listed::SideObject => continue,
                names::Listed::Hidden => {
                    self.note_hidden(key, is_root && component == crate::volume::RESERVED_NAME);
                    continue;
                }
            };
            self.add_listed(&mut entries, name, kind, component, key);
        }
        // Long encrypted names: each one's side object holds the name.
        let side_bodies = futures::future::join_all(long_names.iter().map(|(stand_in, _)| {
            let key = names::side_object_key(&node.key, stand_in);
            async move { self.volume.read_side_object(&key).await }
        }))
        .await;
        for ((stand_in, kind), body) in long_names.into_iter().zip(side_bodies) {
            let key = format!("{}{stand_in}", node.key);
            match body.and_then(|b| self.volume.names.decode_long(&dir_path, &stand_in, &b)) {
                Some(name) => self.add_listed(&mut entries, name, kind, &stand_in, &key),
                None => self.note_hidden(&key, false),
            }
        }
        let entries = Arc::new(entries);
        let walked = if self.was_walked(ino) { 2 } else { 0 };
        if self.generation(ino) == generation {
            self.listings.lock().unwrap().insert(
                ino,
                DirListing {
                    entries: entries.clone(),
                    lookups: AtomicU32::new(walked),
                    valid_until: Instant::now() + self.options.metadata_ttl,
                },
            );
        }
        Ok(entries)
    }

    /// Adds a listed name; a directory hides a file of the same name.
    fn add_listed(
        &self,
        entries: &mut BTreeMap<String, ListedEntry>,
        name: String,
        kind: NodeKind,
        component: &str,
        key: &str,
    ) {
        if entries.get(&name).is_some_and(|e| e.kind == NodeKind::Dir) {
            debug!(key = %key, "a directory of the same name hides this object");
            return;
        }
        entries.insert(
            name,
            ListedEntry {
                kind,
                component: component.to_string(),
            },
        );
    }

    /// A listed key that cannot be shown: hidden, and logged once (on name-encrypted volumes
    /// a key that does not decrypt is a foreign or tampered object; `fsck` lists them).
    fn note_hidden(&self, key: &str, reserved: bool) {
        if reserved {
            return;
        }
        if !self.volume.names.encrypts() {
            debug!(key = %key, "hiding a key that cannot be a file name");
            return;
        }
        let mut logged = self.hidden_logged.lock().unwrap();
        if logged.len() > 10_000 {
            logged.clear();
        }
        if logged.insert(key.to_string()) {
            warn!(key = %key, "hiding an object whose name does not decrypt (foreign or tampered)");
        }
    }

    pub async fn opendir(&self, ino: u64) -> FsResult<u64> {
        let node = self.node(ino)?;
        if node.kind != NodeKind::Dir {
            return Err(libc::ENOTDIR);
        }
        let listed = self.listing(ino).await?;
        let mut entries = vec![
            DirEntry {
                ino,
                name: ".".into(),
                kind: NodeKind::Dir,
            },
            DirEntry {
                ino: node.parent,
                name: "..".into(),
                kind: NodeKind::Dir,
            },
        ];
        let mut inodes = self.inodes.lock().unwrap();
        for pending in inodes.pending_children(ino) {
            if !listed.contains_key(&pending.name) {
                entries.push(DirEntry {
                    ino: pending.ino,
                    name: pending.name.clone(),
                    kind: pending.kind,
                });
            }
        }
        for (name, e) in listed.iter() {
            // No inode is made for a listed name: the kernel looks a name up before it uses
            // it, and `find` over millions of keys must not grow the table. Names not looked
            // up yet get a stable synthetic number for d_ino.
            // A looked-up name's kind is known exactly (a listing cannot tell a symlink).
            let (child, kind) = inodes.child(ino, name).map_or_else(
                || (synthetic_ino(&node.key, name), e.kind),
                |n| (n.ino, n.kind),
            );
            entries.push(DirEntry {
                ino: child,
                name: name.clone(),
                kind,
            });
        }
        inodes.open(ino);
        drop(inodes);
        Ok(self.add_handle(Handle::Dir(Arc::new(entries))))
    }

    pub fn readdir(&self, fh: u64) -> FsResult<Arc<Vec<DirEntry>>> {
        match self.handles.lock().unwrap().get(&fh) {
            Some(Handle::Dir(entries)) => Ok(entries.clone()),
            _ => Err(libc::EBADF),
        }
    }

    pub fn releasedir(&self, ino: u64, fh: u64) {
        self.handles.lock().unwrap().remove(&fh);
        self.inodes.lock().unwrap().close(ino);
    }

    /// Fails with EEXIST when `parent/name` exists (forgetting the lookup made to find out).
    async fn ensure_absent(&self, parent: u64, name: &str) -> FsResult<()> {
        match self.lookup(parent, OsStr::new(name)).await {
            Ok(_) => {
                self.forget_name(parent, name);
                Err(libc::EEXIST)
            }
            Err(libc::ENOENT) => Ok(()),
            Err(e) => Err(e),
        }
    }

    fn new_attrs(&self, kind: NodeKind, mode: u32, caller: Caller) -> PosixAttrs {
        PosixAttrs {
            mode: kind.type_bits() | (mode & 0o7777),
            uid: caller.uid,
            gid: caller.gid,
            mtime: SystemTime::now(),
        }
    }

    /// Records a node this mount just made (its object is in the bucket).
    fn add_made_node(
        &self,
        parent: u64,
        name: &str,
        kind: NodeKind,
        child: &ChildKeys,
        state: NodeState,
    ) -> Attr {
        let key = match kind {
            NodeKind::Dir => child.dir.clone(),
            _ => child.file.clone(),
        };
        self.forget_head(&key);
        self.update_listing(parent, name, Some((kind, child.component.clone())));
        let mut inodes = self.inodes.lock().unwrap();
        let ino = inodes.upsert(parent, name, kind, key, state, true);
        self.attr_of(inodes.get(ino).expect("just inserted"))
    }

    fn committed_state(
        &self,
        size: u64,
        ciphertext_size: u64,
        etag: Option<String>,
        attrs: PosixAttrs,
    ) -> NodeState {
        NodeState {
            size,
            ciphertext_size,
            // Without an ETag, ask S3 on next use.
            valid_until: if etag.is_some() {
                Instant::now() + self.options.metadata_ttl
            } else {
                Instant::now()
            },
            etag,
            attrs,
            attrs_dirty: false,
        }
    }

    pub async fn mkdir(
        &self,
        parent: u64,
        name: &OsStr,
        mode: u32,
        caller: Caller,
    ) -> FsResult<Attr> {
        self.writable()?;
        let parent_node = self.dir_node(parent)?;
        let name = names::to_key_component(name, parent == ROOT_INO)?;
        self.ensure_absent(parent, name).await?;
        let child = self.child_keys(&parent_node, name)?;
        let prefix = child.dir.clone();
        let attrs = self.new_attrs(NodeKind::Dir, mode, caller);
        self.put_side_object(&child).await?;
        let put = self
            .volume
            .store
            .put(&prefix, Bytes::new(), &self.attrs_metadata(&attrs))
            .await
            .map_err(|e| log_store("PUT", &prefix, e))?;
        let state = self.committed_state(0, 0, put.etag, attrs);
        let attr = self.add_made_node(parent, name, NodeKind::Dir, &child, state);
        // A new directory is known to be empty: lookups in it (`rsync`, `tar x` check each
        // name before creating it) need no request until the metadata TTL passes.
        self.listings.lock().unwrap().insert(
            attr.ino,
            DirListing {
                entries: Arc::new(BTreeMap::new()),
                lookups: AtomicU32::new(0),
                valid_until: Instant::now() + self.options.metadata_ttl,
            },
        );
        Ok(attr)
    }

    /// mknod(2) of a regular file: an empty file, saved at once. Devices, FIFOs and sockets
    /// cannot be stored (EPERM).
    pub async fn mknod(
        &self,
        parent: u64,
        name: &OsStr,
        mode: u32,
        caller: Caller,
    ) -> FsResult<Attr> {
        self.writable()?;
        if mode & libc::S_IFMT != libc::S_IFREG && mode & libc::S_IFMT != 0 {
            info!("mknod of a device, FIFO or socket is not supported: EPERM");
            return Err(libc::EPERM);
        }
        let parent_node = self.dir_node(parent)?;
        let name = names::to_key_component(name, parent == ROOT_INO)?;
        let child = self.child_keys(&parent_node, name)?;
        self.ensure_absent(parent, name).await?;
        let attrs = self.new_attrs(NodeKind::File, mode, caller);
        self.put_small(parent, name, &child, NodeKind::File, b"", attrs)
            .await
    }

    /// symlink(2): the target is stored encrypted, as a small object of the symlink kind.
    pub async fn symlink(
        &self,
        parent: u64,
        name: &OsStr,
        target: &std::path::Path,
        caller: Caller,
    ) -> FsResult<Attr> {
        use std::os::unix::ffi::OsStrExt;
        self.writable()?;
        let parent_node = self.dir_node(parent)?;
        let name = names::to_key_component(name, parent == ROOT_INO)?;
        let child = self.child_keys(&parent_node, name)?;
        let target = target.as_os_str().as_bytes();
        if target.is_empty() || target.len() > 4095 {
            return Err(if target.is_empty() {
                libc::ENOENT
            } else {
                libc::ENAMETOOLONG
            });
        }
        self.ensure_absent(parent, name).await?;
        let attrs = self.new_attrs(NodeKind::Symlink, 0o777, caller);
        self.put_small(parent, name, &child, NodeKind::Symlink, target, attrs)
            .await
    }

    /// Encrypts and PUTs a small object (an empty file, a symlink) and records its node.
    async fn put_small(
        &self,
        parent: u64,
        name: &str,
        child: &ChildKeys,
        kind: NodeKind,
        plaintext: &[u8],
        attrs: PosixAttrs,
    ) -> FsResult<Attr> {
        let key = child.file.clone();
        self.put_side_object(child).await?;
        let object_kind = match kind {
            NodeKind::Symlink => crate::crypto::ObjectKind::Symlink,
            _ => crate::crypto::ObjectKind::File,
        };
        let body = crate::crypto::encrypt_to_vec(
            &self.volume.master,
            self.volume.layout,
            object_kind,
            plaintext,
        );
        let ciphertext_size = body.len() as u64;
        let put = self
            .volume
            .store
            .put(&key, Bytes::from(body), &self.attrs_metadata(&attrs))
            .await
            .map_err(|e| log_store("PUT", &key, e))?;
        self.read.cache.invalidate(&key);
        let state = self.committed_state(plaintext.len() as u64, ciphertext_size, put.etag, attrs);
        Ok(self.add_made_node(parent, name, kind, child, state))
    }

    /// readlink(2): fetches, verifies and decrypts the symlink object.
    pub async fn readlink(&self, ino: u64) -> FsResult<Vec<u8>> {
        let node = self.node(ino)?;
        if node.kind != NodeKind::Symlink {
            return Err(libc::EINVAL);
        }
        let store = &self.volume.store;
        let size = node.state.ciphertext_size;
        let mut object = vec![0u8; size as usize];
        let mut got = store
            .get_range(&node.key, 0..size, node.state.etag.as_deref())
            .await
            .map_err(|e| log_store("GET", &node.key, e))?;
        if got.range.end - got.range.start != size {
            warn!(key = %node.key, "symlink object changed size");
            return Err(libc::EIO);
        }
        got.body
            .read_exact(&mut object)
            .await
            .map_err(|e| log_store("GET", &node.key, e))?;
        match crate::crypto::decrypt_to_vec(&self.volume.master, self.volume.layout, &object) {
            Ok((crate::crypto::ObjectKind::Symlink, target)) => Ok(target),
            Ok(_) => {
                warn!(key = %node.key, "recorded as a symlink but the object is not one");
                Err(libc::EIO)
            }
            Err(e) => {
                warn!(key = %node.key, "symlink cannot be read: {e}");
                Err(libc::EIO)
            }
        }
    }

    pub async fn unlink(&self, parent: u64, name: &OsStr) -> FsResult<()> {
        self.writable()?;
        let attr = self.lookup(parent, name).await?;
        let node = self.node(attr.ino)?;
        self.forget(attr.ino, 1);
        if node.kind == NodeKind::Dir {
            return Err(libc::EISDIR);
        }
        // A file closed a moment ago is released (and saved) just after close() returns.
        if node.writers > 0 && !self.wait_for_commit(node.ino).await {
            info!(key = %node.key, "refusing to unlink a file that is still being written");
            return Err(libc::EBUSY);
        }
        let node = self.node(node.ino).unwrap_or(node);
        self.remove_entry(parent, &node).await
    }

    pub async fn rmdir(&self, parent: u64, name: &OsStr) -> FsResult<()> {
        self.writable()?;
        let attr = self.lookup(parent, name).await?;
        let node = self.node(attr.ino)?;
        self.forget(attr.ino, 1);
        if node.kind != NodeKind::Dir {
            return Err(libc::ENOTDIR);
        }
        if !self.dir_is_empty(&node).await? {
            return Err(libc::ENOTEMPTY);
        }
        self.remove_entry(parent, &node).await?;
        self.invalidate_listing(node.ino);
        Ok(())
    }

    /// unlink/rmdir once checked: the object (or marker) goes, then its long name's side
    /// object, and the name leaves every cache.
    async fn remove_entry(&self, parent: u64, node: &Node) -> FsResult<()> {
        let _removing = self.object_locks.lock(&[node.ino]).await;
        self.volume
            .store
            .delete(&node.key)
            .await
            .map_err(|e| log_store("DELETE", &node.key, e))?;
        self.read.cache.invalidate(&node.key);
        self.forget_head(&node.key);
        self.update_listing(parent, &node.name, None);
        let child = self.child_keys(&self.node(parent)?, &node.name)?;
        self.delete_side_object(&child).await;
        let mut inodes = self.inodes.lock().unwrap();
        if let Some(n) = inodes.get_mut(node.ino) {
            // Nothing left to save attributes to.
            n.state.attrs_dirty = false;
        }
        inodes.remove_name(parent, &node.name);
        Ok(())
    }

    /// Checked against S3, not just the cache: anything under the prefix but the marker, or
    /// a file being written there.
    async fn dir_is_empty(&self, dir: &Node) -> FsResult<bool> {
        let page = self
            .volume
            .store
            .list_page(&dir.key, None, None)
            .await
            .map_err(|e| log_store("LIST", &dir.key, e))?;
        let pending = !self
            .inodes
            .lock()
            .unwrap()
            .pending_children(dir.ino)
            .is_empty();
        Ok(!pending && page.objects.iter().all(|o| o.key == dir.key))
    }

    /// rename(2). A file: a server-side copy to the new key (carrying changed attributes),
    /// then a delete of the old one; a file still being written is committed under the new
    /// name. A directory: every object under it is copied, then the old ones deleted.
    pub async fn rename(
        &self,
        parent: u64,
        name: &OsStr,
        new_parent: u64,
        new_name: &OsStr,
        no_replace: bool,
    ) -> FsResult<()> {
        self.writable()?;
        let src = self.lookup(parent, name).await?;
        self.forget(src.ino, 1);
        let node = self.node(src.ino)?;
        let target_parent = self.dir_node(new_parent)?;
        let new_name = names::to_key_component(new_name, new_parent == ROOT_INO)?;
        let new_child = self.child_keys(&target_parent, new_name)?;
        let old_child = self.child_keys(&self.node(parent)?, &node.name)?;
        let new_key = match node.kind {
            NodeKind::Dir => new_child.dir.clone(),
            _ => new_child.file.clone(),
        };
        if new_key == node.key {
            return Ok(());
        }
        // Where a directory's entries are bound to (name encryption), before and after.
        let old_path = names::join_path(&self.dir_path(parent)?, &node.name);
        let new_path = names::join_path(&self.dir_path(new_parent)?, new_name);
        // What is at the new name: refused, or replaced.
        let mut replaced = None;
        match self.lookup(new_parent, OsStr::new(new_name)).await {
            Ok(existing) => {
                self.forget(existing.ino, 1);
                if no_replace {
                    return Err(libc::EEXIST);
                }
                let existing = self.node(existing.ino)?;
                match (node.kind == NodeKind::Dir, existing.kind == NodeKind::Dir) {
                    (false, true) => return Err(libc::EISDIR),
                    (true, false) => return Err(libc::ENOTDIR),
                    (true, true) if !self.dir_is_empty(&existing).await? => {
                        return Err(libc::ENOTEMPTY);
                    }
                    _ => {}
                }
                if existing.writers > 0 {
                    return Err(libc::EBUSY);
                }
                replaced = Some(existing);
            }
            Err(libc::ENOENT) => {}
            Err(e) => return Err(e),
        }
        if let Some(state) = self.modify_state(node.ino) {
            // Its contents must not depend on the object under the old name any more.
            state
                .lock()
                .await
                .detach(&self.options.cache_dir, &self.staging_budget)
                .await?;
        }
        self.put_side_object(&new_child).await?;
        // Held to the end once taken: no attribute save of the file or of the one it replaces
        // runs while they move. (A directory's rename saves pending attributes first.)
        let mut _moving = None;
        if node.kind == NodeKind::Dir {
            self.rename_dir(&node, &new_key, &old_path, &new_path)
                .await?;
        } else if self.streams_of(node.ino) > 1 {
            info!(key = %node.key, "refusing to rename a file that two writers are replacing");
            return Err(libc::EBUSY);
        } else if self.modify_state(node.ino).is_some()
            || !(node.writers > 0 && self.rename_writing(&node, &new_key).await?)
        {
            // A version whose commit is under way (its last close) is renamed once it is in.
            // A file changed in place is renamed as it is saved; its next save goes to the
            // new name.
            if node.writers > 0
                && self.modify_state(node.ino).is_none()
                && !self.wait_for_commit(node.ino).await
            {
                return Err(libc::EBUSY);
            }
            let mut objects = vec![node.ino];
            objects.extend(replaced.as_ref().map(|r| r.ino));
            _moving = Some(self.object_locks.lock(&objects).await);
            let node = self.node(node.ino)?;
            self.rename_file(&node, &new_key).await?;
        }
        if let Some(replaced) = replaced
            && replaced.kind == NodeKind::Dir
            && replaced.key != new_key
        {
            // An empty directory replaced by a directory: its marker is gone too.
            let _ = self.volume.store.delete(&replaced.key).await;
        }
        {
            let mut inodes = self.inodes.lock().unwrap();
            inodes.rename(node.ino, new_parent, new_name, new_key.clone());
            if let Some(n) = inodes.get_mut(node.ino)
                && n.writers == 0
            {
                // The copy's ETag is asked of S3 on next use.
                n.state.valid_until = Instant::now();
            }
        }
        if node.kind == NodeKind::Dir {
            self.rekey_below(node.ino);
        }
        if old_child.side.as_ref().map(|s| &s.0) != new_child.side.as_ref().map(|s| &s.0) {
            self.delete_side_object(&old_child).await;
        }
        self.forget_head(&node.key);
        self.forget_head(&new_key);
        self.update_listing(parent, &node.name, None);
        self.update_listing(
            new_parent,
            new_name,
            Some((node.kind, new_child.component.clone())),
        );
        Ok(())
    }

    async fn rename_file(&self, node: &Node, new_key: &str) -> FsResult<()> {
        let store = &self.volume.store;
        // Changed attributes ride along with the copy instead of a copy of their own.
        let carried = node
            .state
            .attrs_dirty
            .then(|| self.attrs_metadata(&node.state.attrs));
        // Copy first: if anything fails, the file is still under its old name; if the delete
        // fails after the copy, it exists under both (never under neither).
        store
            .copy(&node.key, new_key, carried.as_ref())
            .await
            .map_err(|e| log_store("COPY", &node.key, e))?;
        if carried.is_some()
            && let Some(n) = self.inodes.lock().unwrap().get_mut(node.ino)
            && n.state.attrs == node.state.attrs
        {
            n.state.attrs_dirty = false;
        }
        store
            .delete(&node.key)
            .await
            .map_err(|e| log_store("DELETE", &node.key, e))?;
        self.read.cache.invalidate(&node.key);
        self.read.cache.invalidate(new_key);
        Ok(())
    }

    /// A file still being written: its version is committed under the new name, and what the
    /// old name held (an earlier version) goes now, as a rename would take it away. False
    /// when the version is already committed (or committing): then it is renamed as a file.
    async fn rename_writing(&self, node: &Node, new_key: &str) -> FsResult<bool> {
        let Some(handle) = self.writer_of(node.ino) else {
            return Ok(false);
        };
        match handle.lock().await.writer.retarget(new_key.to_string()) {
            crate::upload::Retarget::AlreadyCommitted => return Ok(false),
            crate::upload::Retarget::AtCommit => return Ok(true),
            crate::upload::Retarget::Moved => {}
        }
        self.volume
            .store
            .delete(&node.key)
            .await
            .map_err(|e| log_store("DELETE", &node.key, e))?;
        self.read.cache.invalidate(&node.key);
        Ok(true)
    }

    /// Every object under the directory is copied to the new prefix, then the old ones are
    /// deleted: a crash in between leaves each object under the old name, the new one or
    /// both, never neither (docs/SEMANTICS.md).
    async fn rename_dir(
        &self,
        node: &Node,
        new_prefix: &str,
        old_path: &str,
        new_path: &str,
    ) -> FsResult<()> {
        use futures::StreamExt;
        if self.inodes.lock().unwrap().writers_under(&node.key) > 0 {
            info!(key = %node.key, "refusing to rename a directory with files being written");
            return Err(libc::EBUSY);
        }
        self.flush_all_attrs().await;
        let store = &self.volume.store;
        let listing = store
            .list_all(&node.key, None)
            .await
            .map_err(|e| log_store("LIST", &node.key, e))?;
        let keys: Vec<String> = listing.objects.into_iter().map(|o| o.key).collect();
        let plan = self
            .plan_moves(&node.key, new_prefix, old_path, new_path, &keys)
            .await?;
        if plan
            .moves
            .iter()
            .any(|(_, to)| self.options.key_prefix_len + to.len() > names::MAX_KEY_BYTES)
        {
            return Err(libc::ENAMETOOLONG);
        }
        let total = plan.moves.len();
        if total > 100 {
            info!(from = %node.key, to = %new_prefix, objects = total, "renaming a directory");
        }
        for (key, body) in &plan.side_objects {
            store
                .put(key, Bytes::from(body.clone()), &Metadata::new())
                .await
                .map_err(|e| log_store("PUT", key, e))?;
        }
        let done = Arc::new(AtomicU64::new(0));
        let copies = futures::stream::iter(plan.moves.clone())
            .map(|(from, to)| {
                let (store, done) = (store.clone(), done.clone());
                let from_dir = node.key.clone();
                async move {
                    let result = store.copy(&from, &to, None).await;
                    let n = done.fetch_add(1, Ordering::Relaxed) + 1;
                    if n % 1000 == 0 {
                        info!(from = %from_dir, copied = n, of = total, "renaming a directory");
                    }
                    result.map_err(|e| log_store("COPY", &from, e))
                }
            })
            .buffer_unordered(8)
            .collect::<Vec<_>>()
            .await;
        if let Some(errno) = copies.iter().find_map(|r| r.as_ref().err()) {
            // Nothing was deleted yet: remove the partial copy so the tree is only where it was.
            let copied: Vec<String> = plan
                .moves
                .iter()
                .map(|(_, to)| to.clone())
                .chain(plan.side_objects.iter().map(|(k, _)| k.clone()))
                .collect();
            if let Err(e) = store.delete_many(&copied).await {
                warn!(to = %new_prefix, "could not remove a partial directory copy: {e}");
            }
            return Err(*errno);
        }
        let old_keys: Vec<String> = plan
            .moves
            .iter()
            .map(|(from, _)| from.clone())
            .chain(plan.old_side_objects.iter().cloned())
            .collect();
        store
            .delete_many(&old_keys)
            .await
            .map_err(|e| log_store("DELETE", &node.key, e))?;
        for key in &old_keys {
            self.read.cache.invalidate(key);
            self.forget_head(key);
        }
        // Listings of directories below moved with them.
        self.listings.lock().unwrap().clear();
        self.negative.lock().unwrap().clear();
        if total > 100 {
            info!(from = %node.key, to = %new_prefix, objects = total, "directory renamed");
        }
        Ok(())
    }

    /// After a directory rename: the keys of the nodes below it, recomputed from their names
    /// top-down (with encrypted names every component below changes, not only the prefix).
    fn rekey_below(&self, dir: u64) {
        let mut pending = vec![dir];
        while let Some(parent) = pending.pop() {
            let Ok(parent_node) = self.node(parent) else {
                continue;
            };
            let children = self.inodes.lock().unwrap().children_of(parent);
            for (ino, name, kind) in children {
                let Ok(keys) = self.child_keys(&parent_node, &name) else {
                    continue;
                };
                let key = if kind == NodeKind::Dir {
                    pending.push(ino);
                    keys.dir
                } else {
                    keys.file
                };
                if let Some(n) = self.inodes.lock().unwrap().get_mut(ino) {
                    n.key = key;
                }
            }
        }
    }

    /// Where each object under a renamed directory goes. Plain names keep their suffix.
    /// Encrypted names are bound to their parent's path, so every component below is
    /// decrypted under the old path and encrypted under the new one, and long names get new
    /// side objects. Objects whose names do not decrypt are not ours to move: they stay.
    async fn plan_moves(
        &self,
        old_prefix: &str,
        new_prefix: &str,
        old_path: &str,
        new_path: &str,
        keys: &[String],
    ) -> FsResult<MovePlan> {
        let codec = &self.volume.names;
        let mut plan = MovePlan::default();
        if !codec.encrypts() {
            plan.moves = keys
                .iter()
                .map(|k| (k.clone(), format!("{new_prefix}{}", &k[old_prefix.len()..])))
                .collect();
            return Ok(plan);
        }
        let mut sides = BTreeMap::new();
        'keys: for key in keys {
            let parts: Vec<&str> = key[old_prefix.len()..].split('/').collect();
            let (mut op, mut np) = (old_path.to_string(), new_path.to_string());
            let (mut okp, mut nkp) = (old_prefix.to_string(), new_prefix.to_string());
            for (i, component) in parts.iter().enumerate() {
                let last = i + 1 == parts.len();
                if component.is_empty() && last {
                    // a directory marker
                    plan.moves.push((key.clone(), nkp));
                    continue 'keys;
                }
                let name = match codec.classify(&op, component, false) {
                    names::Listed::Name(name) => name,
                    names::Listed::SideObject if last => {
                        plan.old_side_objects.push(key.clone());
                        continue 'keys;
                    }
                    names::Listed::LongName => {
                        let side = names::side_object_key(&okp, component);
                        let body = self.volume.read_side_object(&side).await;
                        match body.and_then(|b| codec.decode_long(&op, component, &b)) {
                            Some(name) => name,
                            None => {
                                self.note_hidden(key, false);
                                continue 'keys;
                            }
                        }
                    }
                    _ => {
                        self.note_hidden(key, false);
                        continue 'keys;
                    }
                };
                let encoded = codec.encode(&np, &name);
                if let Some(body) = encoded.side_body {
                    sides.insert(names::side_object_key(&nkp, &encoded.component), body);
                }
                if last {
                    plan.moves
                        .push((key.clone(), format!("{nkp}{}", encoded.component)));
                } else {
                    op = names::join_path(&op, &name);
                    np = names::join_path(&np, &name);
                    okp = format!("{okp}{component}/");
                    nkp = format!("{nkp}{}/", encoded.component);
                }
            }
        }
        plan.side_objects = sides.into_iter().collect();
        Ok(plan)
    }

    // ---- files ----

    pub async fn create(
        &self,
        parent: u64,
        name: &OsStr,
        mode: u32,
        caller: Caller,
    ) -> FsResult<(Attr, u64)> {
        self.writable()?;
        let parent_node = self.dir_node(parent)?;
        let name = names::to_key_component(name, parent == ROOT_INO)?;
        let child = self.child_keys(&parent_node, name)?;
        // A long name's side object goes first: the file must never be in the bucket
        // without its name.
        self.put_side_object(&child).await?;
        let key = child.file;
        let attrs = self.new_attrs(NodeKind::File, mode, caller);
        let state = NodeState {
            size: 0,
            ciphertext_size: 0,
            etag: None,
            attrs,
            attrs_dirty: false,
            valid_until: Instant::now(),
        };
        let ino = {
            let mut inodes = self.inodes.lock().unwrap();
            let ino = inodes.upsert(parent, name, NodeKind::File, key.clone(), state, true);
            let node = inodes.get_mut(ino).expect("just inserted");
            node.writers += 1;
            node.state.size = 0;
            node.state.attrs = attrs;
            node.open_handles += 1;
            ino
        };
        self.negative
            .lock()
            .unwrap()
            .remove(&(parent, name.to_string()));
        let fh = self.add_writer(ino, key, process_of(caller.pid), &attrs);
        let attr = self.attr_of(&self.node(ino)?);
        Ok((attr, fh))
    }

    pub async fn open(&self, ino: u64, flags: i32, pid: u32) -> FsResult<u64> {
        let node = self.node(ino)?;
        match node.kind {
            NodeKind::Dir => return Err(libc::EISDIR),
            NodeKind::Symlink => return Err(libc::ELOOP),
            NodeKind::File => {}
        }
        let access = flags & libc::O_ACCMODE;
        if access != libc::O_RDONLY {
            self.writable()?;
            let truncate = flags & libc::O_TRUNC != 0;
            if !truncate {
                // Whether the file is empty decides between a new version and no writing at
                // all, so it must be the bucket's answer, not a stale one.
                self.getattr(ino).await?;
            }
            let pid = process_of(pid);
            // Already being changed in place: this descriptor shares those contents.
            if let Some(fh) = self.join_modify(ino, pid, true) {
                if truncate {
                    let state = self.modify_handle(fh).expect("just added");
                    let mut h = state.lock().await;
                    h.set_len(&self.options.cache_dir, &self.staging_budget, 0)
                        .await?;
                    if let Some(n) = self.inodes.lock().unwrap().get_mut(ino) {
                        n.state.size = 0;
                        n.state.attrs.mtime = SystemTime::now();
                    }
                }
                return Ok(fh);
            }
            // A new version being streamed has to be in before it can be changed in place.
            if !truncate && node.writers > 0 && !self.wait_for_commit(ino).await {
                info!(key = %node.key, "cannot change a file while a new version of it is being written");
                return Err(libc::EBUSY);
            }
            let attrs = {
                let mut inodes = self.inodes.lock().unwrap();
                let node = inodes.get_mut(ino).ok_or(libc::ENOENT)?;
                if node.writers > 0 && !truncate {
                    return Err(libc::EBUSY);
                }
                if !truncate {
                    // An existing file, kept: changed in place (staged on first change).
                    node.writers += 1;
                    node.open_handles += 1;
                    let (base_len, snapshot) = (node.state.size, node.clone());
                    drop(inodes);
                    let base = match self.reader_for(&snapshot) {
                        Ok(r) => r,
                        Err(e) => {
                            let mut inodes = self.inodes.lock().unwrap();
                            if let Some(n) = inodes.get_mut(ino) {
                                n.writers -= 1;
                            }
                            inodes.close(ino);
                            return Err(e);
                        }
                    };
                    let state = Arc::new(tokio::sync::Mutex::new(ModifyHandle::new(
                        ino,
                        Arc::new(base),
                        base_len,
                    )));
                    self.modifying
                        .lock()
                        .unwrap()
                        .insert(ino, (state.clone(), 1));
                    return Ok(self.add_handle(Handle::Modify(ModifyOpen {
                        opener_pid: pid,
                        writes: true,
                        state,
                    })));
                }
                // With O_TRUNC while another new version is being written, both are written
                // and the one closed last is the file (last writer wins).
                node.writers += 1;
                node.state.size = 0;
                node.state.attrs.mtime = SystemTime::now();
                node.open_handles += 1;
                node.state.attrs
            };
            return Ok(self.add_writer(ino, node.key.clone(), pid, &attrs));
        }
        // Being changed in place: read what the writers see.
        if let Some(fh) = self.join_modify(ino, process_of(pid), false) {
            return Ok(fh);
        }
        if node.writers > 0 && !self.wait_for_commit(ino).await {
            info!(key = %node.key, "cannot read a file while it is being written");
            return Err(libc::EBUSY);
        }
        // Open-after-close consistency: revalidate stale attributes (another writer may have
        // replaced the object); a reader also needs the ETag to pin the version it reads.
        if node.state.etag.is_none()
            && let Some(n) = self.inodes.lock().unwrap().get_mut(ino)
        {
            n.state.valid_until = Instant::now();
        }
        self.getattr(ino).await?;
        let reader = self.reader_for(&self.node(ino)?)?;
        self.inodes.lock().unwrap().open(ino);
        Ok(self.add_handle(Handle::Read(Arc::new(reader))))
    }

    /// A reader pinned to the version the node's state names.
    fn reader_for(&self, node: &Node) -> FsResult<ObjectReader> {
        let etag = node.state.etag.clone().ok_or_else(|| {
            warn!(key = %node.key, "the server gave no ETag for this object");
            libc::EIO
        })?;
        ObjectReader::new(
            self.read.clone(),
            ObjectVersion {
                key: node.key.clone(),
                etag,
                ciphertext_size: node.state.ciphertext_size,
            },
        )
        .map_err(|e| {
            warn!(key = %node.key, "{e}");
            e.errno()
        })
    }

    pub async fn read(&self, fh: u64, offset: u64, size: u32) -> FsResult<Bytes> {
        let (reader, modify) = match self.handles.lock().unwrap().get(&fh) {
            Some(Handle::Read(r)) => (Some(r.clone()), None),
            Some(Handle::Modify(m)) => (None, Some(m.state.clone())),
            _ => return Err(libc::EBADF),
        };
        match (reader, modify) {
            (Some(reader), _) => reader.read(offset, size).await.map_err(|e| e.errno()),
            (_, Some(m)) => m.lock().await.read(offset, size).await,
            _ => Err(libc::EBADF),
        }
    }

    pub async fn write(&self, fh: u64, offset: u64, data: &[u8]) -> FsResult<u32> {
        if let Some(m) = self.modify_handle(fh) {
            return self.write_in_place(&m, offset, data).await;
        }
        if let Some(m) = self.continue_in_place(fh).await {
            return self.write_in_place(&m, offset, data).await;
        }
        let handle = match self.handles.lock().unwrap().get(&fh) {
            Some(Handle::Write(_, h)) => h.clone(),
            _ => return Err(libc::EBADF),
        };
        let mut h = handle.lock().await;
        if let Err(e) = h.writer.write(offset, data).await {
            warn!(key = %h.writer.key(), "write failed: {e}");
            return Err(e.errno());
        }
        let size = h.writer.len();
        if let Some(node) = self.inodes.lock().unwrap().get_mut(h.ino) {
            node.state.size = size;
            node.state.attrs.mtime = SystemTime::now();
        }
        Ok(data.len() as u32)
    }

    /// A new file's descriptor whose version was already saved (by fsync) and that is
    /// written again: from now on it is changed in place, starting from that version, as if
    /// it had been opened again without O_TRUNC. (SQLite fsyncs its journal, then rewrites
    /// the journal's header.) `None` for any other descriptor.
    async fn continue_in_place(&self, fh: u64) -> Option<SharedModify> {
        let handle = self.write_handle(fh)?;
        let h = handle.lock().await;
        let committed = h.writer.committed()?.clone();
        let etag = committed.etag.clone()?;
        let version = ObjectVersion {
            key: h.writer.key().to_string(),
            etag,
            ciphertext_size: committed.ciphertext_size,
        };
        let base = ObjectReader::new(self.read.clone(), version).ok()?;
        let state = {
            let mut modifying = self.modifying.lock().unwrap();
            let (state, users) = modifying.entry(h.ino).or_insert_with(|| {
                let handle = ModifyHandle::new(h.ino, Arc::new(base), committed.plaintext_size);
                (Arc::new(tokio::sync::Mutex::new(handle)), 0)
            });
            *users += 1;
            state.clone()
        };
        if let Some(n) = self.inodes.lock().unwrap().get_mut(h.ino) {
            // The saved writer stopped counting at its commit; the descriptor writes again.
            n.writers += 1;
        }
        self.handles.lock().unwrap().insert(
            fh,
            Handle::Modify(ModifyOpen {
                opener_pid: h.opener_pid,
                writes: true,
                state: state.clone(),
            }),
        );
        Some(state)
    }

    async fn write_in_place(
        &self,
        handle: &tokio::sync::Mutex<ModifyHandle>,
        offset: u64,
        data: &[u8],
    ) -> FsResult<u32> {
        let mut h = handle.lock().await;
        h.write(&self.options.cache_dir, &self.staging_budget, offset, data)
            .await?;
        self.changed_in_place(h.ino, h.len());
        Ok(data.len() as u32)
    }

    /// What `stat` shows of a file changed in place: its new size, and now as its mtime.
    fn changed_in_place(&self, ino: u64, size: u64) {
        if let Some(node) = self.inodes.lock().unwrap().get_mut(ino) {
            node.state.size = size;
            node.state.attrs.mtime = SystemTime::now();
        }
    }

    /// Saves a file changed in place as a new version of its object (nothing to do if it
    /// did not change since the last save).
    async fn commit_in_place(&self, h: &mut ModifyHandle) -> FsResult<()> {
        if !h.dirty {
            return Ok(());
        }
        // Not while a rename moves the object: the new version goes where the name is now.
        let _saving = self.object_locks.lock(&[h.ino]).await;
        let node = self.node(h.ino)?;
        let metadata = self.attrs_metadata(&node.state.attrs);
        let result = match h.save_appended(&self.upload, &node.key, &metadata).await? {
            Some(done) => done,
            None => {
                let mut writer = ObjectWriter::new(self.upload.clone(), node.key.clone(), metadata);
                let uploaded = h.upload(&mut writer).await;
                match uploaded {
                    Ok(()) => writer.commit().await.map_err(|e| {
                        warn!(key = %node.key, "file not saved: {e}");
                        e.errno()
                    }),
                    Err(errno) => {
                        writer.abort().await;
                        warn!(key = %node.key, errno, "file not saved");
                        Err(errno)
                    }
                }?
            }
        };
        h.dirty = false;
        // Later appends start from the version just saved.
        if let Some(etag) = &result.etag
            && let Ok(reader) = ObjectReader::new(
                self.read.clone(),
                ObjectVersion {
                    key: node.key.clone(),
                    etag: etag.clone(),
                    ciphertext_size: result.ciphertext_size,
                },
            )
        {
            h.rebase(Arc::new(reader), result.plaintext_size);
        }
        if let Some(n) = self.inodes.lock().unwrap().get_mut(h.ino) {
            n.state.size = result.plaintext_size;
            n.state.ciphertext_size = result.ciphertext_size;
            n.state.etag = result.etag;
            n.state.attrs_dirty = false;
        }
        self.read.cache.invalidate(&node.key);
        self.forget_head(&node.key);
        Ok(())
    }

    /// close(): the opening process's flush commits the file and returns the upload's result;
    /// the last release commits what no flush did.
    pub async fn flush(&self, fh: u64, pid: u32) -> FsResult<()> {
        let opened = match self.handles.lock().unwrap().get(&fh) {
            Some(Handle::Modify(m)) => {
                Some((m.writes && m.opener_pid == process_of(pid), m.state.clone()))
            }
            _ => None,
        };
        if let Some((saves, state)) = opened {
            if !saves {
                return Ok(());
            }
            return self.commit_in_place(&mut *state.lock().await).await;
        }
        let Some(handle) = self.write_handle(fh) else {
            return Ok(());
        };
        let mut h = handle.lock().await;
        if h.opener_pid != process_of(pid) {
            return Ok(());
        }
        // An empty file is not committed at flush: a shell redirection opens, dup2()s and
        // closes the original descriptor before anything is written. A file whose commit
        // already ran (fsync, a failed write) reports that result again.
        if h.writer.is_empty() && !h.writer.is_committed() {
            return Ok(());
        }
        self.commit(&mut h).await
    }

    /// fsync(2): commits a file being written; saves changed attributes of any other.
    pub async fn fsync(&self, ino: u64, fh: u64) -> FsResult<()> {
        if let Some(m) = self.modify_handle(fh) {
            return self.commit_in_place(&mut *m.lock().await).await;
        }
        match self.write_handle(fh) {
            Some(handle) => self.commit(&mut *handle.lock().await).await,
            None => self.flush_attrs(ino).await,
        }
    }

    /// The last close of a handle: commits what no flush committed (errors can only be logged
    /// here, which is why the opener's flush commits first).
    pub fn release(
        self: &Arc<Self>,
        ino: u64,
        fh: u64,
    ) -> impl std::future::Future<Output = ()> + Send + 'static {
        // Counted before the future runs, so a shutdown that starts now waits for it.
        self.releasing.fetch_add(1, Ordering::SeqCst);
        let fs = self.clone();
        async move {
            let handle = fs.handles.lock().unwrap().remove(&fh);
            if let Some(Handle::Write(_, handle)) = handle {
                let mut h = handle.lock().await;
                if let Err(errno) = fs.commit(&mut h).await {
                    warn!(key = %h.writer.key(), errno, "file could not be saved at release");
                }
            } else if let Some(Handle::Modify(m)) = handle {
                if m.writes {
                    let mut h = m.state.lock().await;
                    if let Err(errno) = fs.commit_in_place(&mut h).await {
                        warn!(ino, errno, "changed file could not be saved at release");
                    }
                    if let Some(n) = fs.inodes.lock().unwrap().get_mut(ino) {
                        n.writers = n.writers.saturating_sub(1);
                    }
                }
                fs.leave_modify(ino);
            }
            fs.inodes.lock().unwrap().close(ino);
            fs.releasing.fetch_sub(1, Ordering::SeqCst);
        }
    }

    /// A file closed a moment ago may still be committing in its release (the kernel sends
    /// release after close() returns): give it a short while before calling the file busy.
    async fn wait_for_commit(&self, ino: u64) -> bool {
        let deadline = Instant::now() + Duration::from_secs(10);
        while Instant::now() < deadline {
            match self.inodes.lock().unwrap().get(ino) {
                Some(n) if n.writers > 0 => {}
                _ => return true,
            }
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        false
    }

    /// Waits (up to `timeout`) for releases that are still committing files.
    pub async fn wait_for_releases(&self, timeout: Duration) {
        let deadline = Instant::now() + timeout;
        while self.releasing.load(Ordering::SeqCst) > 0 && Instant::now() < deadline {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    async fn commit(&self, h: &mut WriteHandle) -> FsResult<()> {
        if !h.settled && !h.writer.is_committed() {
            // The attributes as they are now (mode, owner, and the time of the last write or
            // an explicit utimes) go with the upload when it can still take them.
            let attrs = self.node(h.ino).map(|n| n.state.attrs);
            if let Ok(attrs) = attrs
                && h.writer.set_metadata(self.attrs_metadata(&attrs))
                && let Some(n) = self.inodes.lock().unwrap().get_mut(h.ino)
                && n.state.attrs == attrs
            {
                n.state.attrs_dirty = false;
            }
        }
        // Idempotent: a second call returns the first one's result.
        let result = h.writer.commit().await;
        if std::mem::replace(&mut h.settled, true) {
            return result.map(|_| ()).map_err(|e| e.errno());
        }
        let key = h.writer.key().to_string();
        let (parent, dirty) = {
            let mut inodes = self.inodes.lock().unwrap();
            let node = inodes.get_mut(h.ino);
            match (&result, node) {
                (Ok(done), Some(node)) => {
                    node.writers = node.writers.saturating_sub(1);
                    let dirty = node.state.attrs_dirty;
                    node.state = self.committed_state(
                        done.plaintext_size,
                        done.ciphertext_size,
                        done.etag.clone(),
                        node.state.attrs,
                    );
                    // Changed after the multipart upload began: saved by a copy shortly.
                    node.state.attrs_dirty = dirty;
                    (
                        Some((node.parent, node.name.clone())),
                        dirty.then_some(node.ino),
                    )
                }
                (Err(_), Some(node)) => {
                    // The previous version (if any) is still in the bucket: forget what we
                    // believed, the next use asks S3.
                    node.writers = node.writers.saturating_sub(1);
                    node.state.attrs_dirty = false;
                    node.state.valid_until = Instant::now();
                    (Some((node.parent, node.name.clone())), None)
                }
                _ => (None, None),
            }
        };
        self.read.cache.invalidate(&key);
        self.forget_head(&key);
        if let Some((parent, name)) = parent {
            let child = self.node(parent).and_then(|p| self.child_keys(&p, &name));
            // Checked and recorded under the inode lock: a rename of this file that runs now
            // either sees the listing entry (and moves it) or made us see the new name.
            let inodes = self.inodes.lock().unwrap();
            let unmoved = inodes
                .get(h.ino)
                .is_some_and(|n| n.parent == parent && n.name == name);
            match child {
                Ok(child) if result.is_ok() && unmoved => {
                    self.update_listing(parent, &name, Some((NodeKind::File, child.component)))
                }
                _ => self.invalidate_listing(parent),
            }
        }
        if let Some(ino) = dirty
            && let Err(errno) = self.flush_attrs(ino).await
        {
            warn!(key = %key, errno, "file saved, but its attributes were not");
        }
        match result {
            Ok(done) => {
                debug!(key = %key, size = done.plaintext_size, "file committed");
                Ok(())
            }
            Err(e) => {
                warn!(key = %key, "file not saved: {e}");
                Err(e.errno())
            }
        }
    }

    /// Commits every open writer (unmount, SIGTERM), each within `timeout`.
    pub async fn commit_all(&self, timeout: Duration) {
        let writers: Vec<_> = self
            .handles
            .lock()
            .unwrap()
            .values()
            .filter_map(|h| match h {
                Handle::Write(_, w) => Some(w.clone()),
                _ => None,
            })
            .collect();
        let commits = writers.into_iter().map(|handle| async move {
            let saved = tokio::time::timeout(timeout, async {
                let mut h = handle.lock().await;
                let result = self.commit(&mut h).await;
                (h.writer.key().to_string(), result)
            })
            .await;
            match saved {
                Ok((key, Ok(()))) => info!(key = %key, "saved at shutdown"),
                Ok((key, Err(errno))) => {
                    warn!(key = %key, errno, "could not be saved at shutdown")
                }
                Err(_) => {
                    warn!("a file was not saved: shutdown timeout (its upload is left for fsck)")
                }
            }
        });
        futures::future::join_all(commits).await;
        let changed: Vec<_> = self
            .modifying
            .lock()
            .unwrap()
            .values()
            .map(|(state, _)| state.clone())
            .collect();
        for m in changed {
            let saved = tokio::time::timeout(timeout, async {
                self.commit_in_place(&mut *m.lock().await).await
            })
            .await;
            if !matches!(saved, Ok(Ok(()))) {
                warn!("a file changed in place could not be saved at shutdown");
            }
        }
        self.flush_all_attrs().await;
    }

    pub fn statfs_files(&self) -> u64 {
        self.inodes.lock().unwrap().len() as u64
    }

    // ---- helpers ----

    fn writable(&self) -> FsResult<()> {
        if self.options.read_only {
            Err(libc::EROFS)
        } else {
            Ok(())
        }
    }

    fn volume_prefix_len(&self) -> usize {
        self.options.key_prefix_len
    }

    fn add_handle(&self, handle: Handle) -> u64 {
        let fh = self.next_handle.fetch_add(1, Ordering::Relaxed);
        self.handles.lock().unwrap().insert(fh, handle);
        fh
    }

    fn add_writer(&self, ino: u64, key: String, pid: u32, attrs: &PosixAttrs) -> u64 {
        let writer = ObjectWriter::new(self.upload.clone(), key, self.attrs_metadata(attrs));
        self.add_handle(Handle::Write(
            ino,
            Arc::new(tokio::sync::Mutex::new(WriteHandle {
                ino,
                opener_pid: pid,
                writer,
                settled: false,
            })),
        ))
    }

    /// How many new versions of the file are being written (descriptors opened with O_TRUNC).
    fn streams_of(&self, ino: u64) -> usize {
        self.handles
            .lock()
            .unwrap()
            .values()
            .filter(|h| matches!(h, Handle::Write(of, _) if *of == ino))
            .count()
    }

    /// The write handle of a file being written.
    fn writer_of(&self, ino: u64) -> Option<Arc<tokio::sync::Mutex<WriteHandle>>> {
        self.handles.lock().unwrap().values().find_map(|h| match h {
            Handle::Write(of, w) if *of == ino => Some(w.clone()),
            _ => None,
        })
    }

    fn dir_node(&self, ino: u64) -> FsResult<Node> {
        let node = self.node(ino)?;
        if node.kind != NodeKind::Dir {
            return Err(libc::ENOTDIR);
        }
        Ok(node)
    }

    fn modify_handle(&self, fh: u64) -> Option<SharedModify> {
        match self.handles.lock().unwrap().get(&fh) {
            Some(Handle::Modify(m)) => Some(m.state.clone()),
            _ => None,
        }
    }

    /// The shared state of a file being changed in place.
    fn modify_state(&self, ino: u64) -> Option<SharedModify> {
        self.modifying
            .lock()
            .unwrap()
            .get(&ino)
            .map(|(state, _)| state.clone())
    }

    /// A new descriptor on a file already being changed in place, if it is.
    fn join_modify(&self, ino: u64, pid: u32, writes: bool) -> Option<u64> {
        let state = {
            let mut modifying = self.modifying.lock().unwrap();
            let (state, users) = modifying.get_mut(&ino)?;
            *users += 1;
            state.clone()
        };
        {
            let mut inodes = self.inodes.lock().unwrap();
            if writes && let Some(n) = inodes.get_mut(ino) {
                n.writers += 1;
            }
            inodes.open(ino);
        }
        Some(self.add_handle(Handle::Modify(ModifyOpen {
            opener_pid: pid,
            writes,
            state,
        })))
    }

    /// A descriptor of a file changed in place is gone; the last one drops the shared state
    /// (and its staging file).
    fn leave_modify(&self, ino: u64) {
        let mut modifying = self.modifying.lock().unwrap();
        if let Some((_, users)) = modifying.get_mut(&ino) {
            *users -= 1;
            if *users == 0 {
                modifying.remove(&ino);
            }
        }
    }

    fn write_handle(&self, fh: u64) -> Option<Arc<tokio::sync::Mutex<WriteHandle>>> {
        match self.handles.lock().unwrap().get(&fh) {
            Some(Handle::Write(_, h)) => Some(h.clone()),
            _ => None,
        }
    }

    /// Records in the cached listing of `dir` (if any) that this mount made `name` exist as
    /// `kind`, or removed it (`None`), so that the next lookups there need no request.
    fn update_listing(&self, dir: u64, name: &str, kind: Option<(NodeKind, String)>) {
        *self.generations.lock().unwrap().entry(dir).or_insert(0) += 1;
        self.negative
            .lock()
            .unwrap()
            .remove(&(dir, name.to_string()));
        if let Some(listing) = self.listings.lock().unwrap().get_mut(&dir) {
            let entries = Arc::make_mut(&mut listing.entries);
            match kind {
                Some((kind, component)) => {
                    entries.insert(name.to_string(), ListedEntry { kind, component })
                }
                None => entries.remove(name),
            };
        }
    }

    /// Forgets what is cached about the directory `ino`'s entries (after this mount changed
    /// it): its listing and its negative lookups.
    fn invalidate_listing(&self, ino: u64) {
        *self.generations.lock().unwrap().entry(ino).or_insert(0) += 1;
        self.listings.lock().unwrap().remove(&ino);
        self.negative
            .lock()
            .unwrap()
            .retain(|(parent, _), _| *parent != ino);
    }

    fn generation(&self, ino: u64) -> u64 {
        self.generations
            .lock()
            .unwrap()
            .get(&ino)
            .copied()
            .unwrap_or(0)
    }

    fn forget_name(&self, parent: u64, name: &str) {
        let ino = self
            .inodes
            .lock()
            .unwrap()
            .child(parent, name)
            .map(|n| n.ino);
        if let Some(ino) = ino {
            self.forget(ino, 1);
        }
    }
}

/// The process a request comes from: FUSE reports the calling thread, and a program may open
/// a file on one thread and close it on another.
fn process_of(tid: u32) -> u32 {
    std::fs::read_to_string(format!("/proc/{tid}/status"))
        .ok()
        .and_then(|status| {
            status
                .lines()
                .find_map(|l| l.strip_prefix("Tgid:"))
                .and_then(|v| v.trim().parse().ok())
        })
        .unwrap_or(tid)
}

/// A d_ino for a listed name without an inode: stable, non-zero, and outside the range of
/// real inode numbers (which count up from 1).
fn synthetic_ino(dir_prefix: &str, name: &str) -> u64 {
    use std::hash::{Hash, Hasher};
    let mut h = std::collections::hash_map::DefaultHasher::new();
    (dir_prefix, name).hash(&mut h);
    h.finish() | (1 << 63)
}

fn far_future() -> Instant {
    Instant::now() + Duration::from_secs(100 * 365 * 24 * 3600)
}

/// Logs a store failure once, with the key, and maps it to an errno.
fn log_store(op: &str, key: &str, e: StoreError) -> i32 {
    if e.kind != StoreErrorKind::NotFound {
        warn!(key = %key, "{op} failed: {e}");
    }
    e.errno()
}

/// Async locks per object, striped by inode number: enough to serialise the few operations
/// that race on one object without a map that grows with the tree.
struct ObjectLocks {
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
    async fn lock(&self, inos: &[u64]) -> Vec<tokio::sync::MutexGuard<'_, ()>> {
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
