//! The filesystem core: namespace, attributes, handles. Async, errno results; the FUSE adapter
//! (`fuse.rs`) only translates kernel requests into these calls.

use std::collections::{BTreeMap, HashMap};
use std::ffi::OsStr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use bytes::Bytes;
use futures::FutureExt;
use futures::future::{BoxFuture, Shared};
use tokio::time::Instant;
use tracing::{debug, info, warn};

use super::inodes::{InodeTable, Node, NodeKind, NodeState, ROOT_INO};
use super::modify::ModifyHandle;
use crate::crypto::{
    ATTRS_METADATA_NAME, AttrsBinding, BINDING_METADATA_NAME, CryptoError, Header, MasterKey,
    ObjectKind, PosixAttrs, attrs_metadata, open_attrs, open_unbound_attrs,
};
use crate::object_keys as names;
use crate::read::{ObjectReader, ObjectVersion, ReadContext};
use crate::store::{Metadata, StoreErrorKind};
use crate::upload::staging::StagingBudget;
use crate::upload::{KeepSent, ObjectWriter, UploadContext};
use crate::volume::Volume;

pub use super::error::{FsError, FsResult};

mod attrs;
mod conflicts;
mod dir_cache;
mod entries;
mod files;
mod handles;
mod heads;
mod in_place;
mod listing;
mod lookup;
mod object_locks;
mod open_files;
mod rename;
mod rename_plan;

use dir_cache::{DirCache, ListedEntry};
use entries::ChildKeys;
use handles::{Handle, HandleTable, ModifyOpen, SharedModify, WriteHandle};
use heads::{HeadFuture, Headed, Recorded};
use object_locks::ObjectLocks;

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
    /// Largest new file whose parts already sent are kept locally, so that it can still be
    /// changed behind its end (`--keep-sent-parts`; 0: never).
    pub keep_sent_parts: u64,
    /// Other users can reach the mount (`allow_other`): attributes not verified as their
    /// object's own are not believed (docs/SEMANTICS.md, "Attributes").
    pub shared: bool,
    /// This machine's name, in conflict names.
    pub host: String,
    /// What a save does when another mount saved or removed the file first.
    pub on_conflict: crate::upload::OnConflict,
}

/// What the adapter needs to answer the kernel about a node.
#[derive(Debug, Clone)]
pub struct Attr {
    pub ino: u64,
    pub kind: NodeKind,
    pub size: u64,
    pub mtime: SystemTime,
    pub ctime: SystemTime,
    pub atime: SystemTime,
    /// Links: 2 for a directory, 1 for anything else, 0 for an open file whose name is gone.
    pub nlink: u32,
    pub perm: u16,
    pub uid: u32,
    pub gid: u32,
    /// Device number (device nodes only).
    pub rdev: u32,
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
    pub atime: Option<SystemTime>,
}

/// One entry of a directory listing.
#[derive(Debug, Clone)]
pub struct DirEntry {
    pub ino: u64,
    pub name: String,
    pub kind: NodeKind,
}

/// The filesystem core: the namespace this mount knows (inodes, listings, negative entries,
/// HEAD cache), open handles, and the operations the FUSE adapter forwards.
///
/// The namespace this mount knows has two owners: `inodes` (the inode table, `inodes.rs`) and
/// `dirs` (listings, negative entries and generations, `dir_cache.rs`); only their methods
/// change them.
///
/// Lock order. The std mutexes below are never held across an `.await`; where two are held at
/// once they are taken in this order: `inodes` → `dirs` (a commit records its name in the
/// listing under the inode lock, so that a racing rename sees either the old name listed or
/// the new one). `modifying`, `handles`, `heads`, `lists_ahead`, `flushes_scheduled` and
/// `hidden_logged` are taken alone. The async `object_locks` are taken before any of these,
/// all of one operation's objects at once (in stripe order), and never while holding a std
/// mutex; a `ModifyHandle`'s async mutex may be held while taking them (a save), never the
/// reverse.
pub struct FsCore {
    volume: Arc<Volume>,
    options: FsOptions,
    inodes: Mutex<InodeTable>,
    /// Listings, negative entries and generations of directories.
    dirs: Mutex<DirCache>,
    /// HEADs by key, shared by everyone who asks while one is in flight and kept for the
    /// metadata TTL: attributes are fetched once per object, also when read ahead.
    heads: Mutex<HashMap<String, (Instant, HeadFuture)>>,
    head_slots: Arc<tokio::sync::Semaphore>,
    /// LISTs of directories made ahead of their listing (a walk that descends, a lookup that
    /// listed a name to find it is a directory; see [`listing::ListAhead`]), by directory
    /// key. Locked alone, never with another lock held.
    lists_ahead: Mutex<HashMap<String, listing::ListAhead>>,
    /// Whether lookups ask with a HEAD first (see [`heads::LookupsByHead`]).
    lookups_by_head: Arc<heads::LookupsByHead>,
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
    handles: Mutex<HandleTable>,
    next_handle: AtomicU64,
    read: Arc<ReadContext>,
    upload: Arc<UploadContext>,
    /// When the mount started: the mtime of directories that record none.
    mounted_at: SystemTime,
    /// LIST requests made, for tests and metrics.
    pub list_requests: AtomicU64,
    /// Releases still committing (shutdown waits for them).
    releasing: AtomicU64,
    /// Notified when a commit or a release ends: what `wait_for_commit` and
    /// `wait_for_releases` wait on.
    settled: tokio::sync::Notify,
}

impl FsCore {
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
                ctime: mounted_at,
                atime: mounted_at,
            },
            attrs_dirty: false,
            valid_until: far_future(),
            rdev: 0,
            binding: None,
        };
        Self {
            volume,
            options,
            inodes: Mutex::new(InodeTable::new(root)),
            dirs: Mutex::new(DirCache::default()),
            heads: Mutex::new(HashMap::new()),
            head_slots: Arc::new(tokio::sync::Semaphore::new(MAX_CONCURRENT_HEADS)),
            lists_ahead: Mutex::new(HashMap::new()),
            lookups_by_head: Arc::default(),
            flushes_scheduled: Mutex::new(std::collections::HashSet::new()),
            object_locks: ObjectLocks::default(),
            modifying: Mutex::new(HashMap::new()),
            staging_budget: StagingBudget::new(max_cache_size),
            hidden_logged: Mutex::new(std::collections::HashSet::new()),
            handles: Mutex::new(HandleTable::default()),
            next_handle: AtomicU64::new(1),
            read,
            upload,
            mounted_at,
            list_requests: AtomicU64::new(0),
            releasing: AtomicU64::new(0),
            settled: tokio::sync::Notify::new(),
        }
    }

    pub fn options(&self) -> &FsOptions {
        &self.options
    }

    fn attr_of(&self, node: &Node) -> Attr {
        Attr {
            ino: node.ino,
            kind: node.kind,
            size: match node.kind {
                NodeKind::File | NodeKind::Symlink => node.state.size,
                _ => 0,
            },
            mtime: node
                .state
                .attrs
                .mtime
                .max(node.entries_changed.unwrap_or(UNIX_EPOCH)),
            ctime: node
                .state
                .attrs
                .ctime
                .max(node.entries_changed.unwrap_or(UNIX_EPOCH)),
            atime: node.state.attrs.atime,
            nlink: match node.kind {
                NodeKind::Dir => 2,
                _ if node.unlinked => 0,
                _ => 1,
            },
            perm: node.state.attrs.permissions(),
            uid: node.state.attrs.uid,
            gid: node.state.attrs.gid,
            rdev: node.state.rdev,
        }
    }

    /// An entry of directory `dir` was added, removed or renamed by this mount: its mtime
    /// and ctime move, as on a local disk. Kept in memory only: recording it would cost a
    /// write of the directory's marker per change (docs/SEMANTICS.md).
    fn entries_changed(&self, dir: u64) {
        if let Some(n) = self.inodes.lock().unwrap().get_mut(dir) {
            n.entries_changed = Some(SystemTime::now());
        }
    }

    fn node(&self, ino: u64) -> FsResult<Node> {
        self.inodes
            .lock()
            .unwrap()
            .get(ino)
            .cloned()
            .ok_or(FsError::answer(libc::ENOENT))
    }

    pub fn forget(&self, ino: u64, count: u64) {
        self.inodes.lock().unwrap().forget(ino, count);
    }

    pub fn statfs_files(&self) -> u64 {
        self.inodes.lock().unwrap().len() as u64
    }

    fn writable(&self) -> FsResult<()> {
        if self.options.read_only {
            Err(FsError::answer(libc::EROFS))
        } else {
            Ok(())
        }
    }

    fn volume_prefix_len(&self) -> usize {
        self.options.key_prefix_len
    }

    /// EFBIG for a file size whose object would pass S3's limit on one object.
    fn within_object_limit(&self, size: u64) -> FsResult<()> {
        if self.volume.layout.ciphertext_size(size) > crate::store::MAX_OBJECT {
            return Err(FsError::refused(
                libc::EFBIG,
                format!("a file of {size} bytes would pass S3's 5 TiB limit on one object"),
            ));
        }
        Ok(())
    }

    fn dir_node(&self, ino: u64) -> FsResult<Node> {
        let node = self.node(ino)?;
        if node.kind != NodeKind::Dir {
            return Err(FsError::answer(libc::ENOTDIR));
        }
        Ok(node)
    }
}

/// A name from the kernel as its key component, or why it cannot be one.
fn key_component(name: &OsStr, parent_is_root: bool) -> FsResult<&str> {
    names::to_key_component(name, parent_is_root).map_err(|errno| {
        let why = match errno {
            libc::ENAMETOOLONG => "it is longer than 255 bytes",
            libc::EPERM => "it is reserved for the volume's own objects",
            _ if name.to_str().is_none() => "it is not valid UTF-8 (S3 keys are UTF-8)",
            _ => "it is not a file name",
        };
        FsError::refused(errno, format!("the name {name:?} cannot be stored: {why}"))
    })
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

fn far_future() -> Instant {
    Instant::now() + Duration::from_secs(100 * 365 * 24 * 3600)
}
