//! The filesystem core: namespace, attributes, handles. Async, errno results; the FUSE adapter
//! (`fuse.rs`) only translates kernel requests into these calls.

use std::collections::{BTreeMap, HashMap};
use std::ffi::OsStr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime};

use bytes::Bytes;
use tracing::{debug, info, warn};

use super::inodes::{InodeTable, Node, NodeKind, NodeState, ROOT_INO};
use super::names;
use crate::read::{ObjectReader, ObjectVersion, ReadContext};
use crate::store::{Metadata, StoreError, StoreErrorKind};
use crate::upload::{ObjectWriter, UploadContext};
use crate::volume::Volume;

pub type FsResult<T> = Result<T, i32>;

/// Settings of a mount that the filesystem core uses.
#[derive(Debug, Clone)]
pub struct FsOptions {
    pub uid: u32,
    pub gid: u32,
    pub file_mode: u16,
    pub dir_mode: u16,
    pub metadata_ttl: Duration,
    pub read_only: bool,
    /// Length of the volume's key prefix in the bucket (for S3's 1024-byte key limit).
    pub key_prefix_len: usize,
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

/// One entry of a directory listing.
#[derive(Debug, Clone)]
pub struct DirEntry {
    pub ino: u64,
    pub name: String,
    pub kind: NodeKind,
}

#[derive(Debug, Clone)]
struct ListedEntry {
    kind: NodeKind,
    ciphertext_size: u64,
    etag: Option<String>,
    mtime: SystemTime,
}

struct DirListing {
    entries: BTreeMap<String, ListedEntry>,
    valid_until: Instant,
}

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
    Write(Arc<tokio::sync::Mutex<WriteHandle>>),
    /// A write-mode open that may not write (an existing file without O_TRUNC).
    NoWrite,
    Dir(Arc<Vec<DirEntry>>),
}

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
    handles: Mutex<HashMap<u64, Handle>>,
    next_handle: AtomicU64,
    read: Arc<ReadContext>,
    upload: Arc<UploadContext>,
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
        let root = NodeState {
            size: 0,
            ciphertext_size: 0,
            etag: None,
            mtime: SystemTime::now(),
            valid_until: far_future(),
        };
        Self {
            volume,
            options,
            inodes: Mutex::new(InodeTable::new(root)),
            listings: Mutex::new(HashMap::new()),
            negative: Mutex::new(HashMap::new()),
            generations: Mutex::new(HashMap::new()),
            handles: Mutex::new(HashMap::new()),
            next_handle: AtomicU64::new(1),
            read,
            upload,
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
                NodeKind::File => node.state.size,
                NodeKind::Dir => 0,
            },
            mtime: node.state.mtime,
            perm: match node.kind {
                NodeKind::File => self.options.file_mode,
                NodeKind::Dir => self.options.dir_mode,
            },
            uid: self.options.uid,
            gid: self.options.gid,
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

    fn state_from_listing(&self, e: &ListedEntry) -> NodeState {
        NodeState {
            size: self
                .volume
                .layout
                .plaintext_size(e.ciphertext_size)
                // Not our format: shown with its raw size, reads fail with EIO.
                .unwrap_or(e.ciphertext_size),
            ciphertext_size: e.ciphertext_size,
            etag: e.etag.clone(),
            mtime: e.mtime,
            valid_until: Instant::now() + self.options.metadata_ttl,
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
                .filter(|n| n.writers > 0 || n.state.valid_until > Instant::now())
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
        let entry = match self.fresh_listing_entry(parent, name) {
            Some(found) => found,
            None => {
                let generation = self.generation(parent);
                let found = self.probe(&parent_node.key, name).await?;
                if self.generation(parent) == generation {
                    found
                } else {
                    // This mount changed the directory while we asked: ask again.
                    self.probe(&parent_node.key, name).await?
                }
            }
        };
        let (kind, state) = match entry {
            Some(e) => (e.kind, self.state_from_listing(&e)),
            None => {
                let mut negative = self.negative.lock().unwrap();
                // Bounded: expired entries go when the cache grows large.
                if negative.len() > 100_000 {
                    let now = Instant::now();
                    negative.retain(|_, until| *until > now);
                }
                negative.insert(slot, Instant::now() + self.options.metadata_ttl);
                return Err(libc::ENOENT);
            }
        };
        let key = match kind {
            NodeKind::File => names::file_key(&parent_node.key, name, self.volume_prefix_len())?,
            NodeKind::Dir => names::dir_prefix(&parent_node.key, name),
        };
        let mut inodes = self.inodes.lock().unwrap();
        let ino = inodes.upsert(parent, name, kind, key, state, true);
        Ok(self.attr_of(inodes.get(ino).expect("just inserted")))
    }

    /// `Some(Some(entry))` / `Some(None)` from a fresh listing of `parent` (the listing is also
    /// the negative cache); `None` when no fresh listing exists.
    fn fresh_listing_entry(&self, parent: u64, name: &str) -> Option<Option<ListedEntry>> {
        let listings = self.listings.lock().unwrap();
        let listing = listings.get(&parent)?;
        (listing.valid_until > Instant::now()).then(|| listing.entries.get(name).cloned())
    }

    /// Asks S3 whether `dir_prefix + name` is a directory (any key under `name/`) or a file.
    /// The directory wins when both exist.
    async fn probe(&self, dir_prefix: &str, name: &str) -> FsResult<Option<ListedEntry>> {
        let store = &self.volume.store;
        let file_key = names::file_key(dir_prefix, name, 0)?;
        let sub = names::dir_prefix(dir_prefix, name);
        self.list_requests.fetch_add(1, Ordering::Relaxed);
        let (head, list) = tokio::join!(
            store.head(&file_key),
            store.list_page(&sub, Some("/"), None)
        );
        let list = list.map_err(|e| log_store("LIST", &sub, e))?;
        if !list.objects.is_empty() || !list.common_prefixes.is_empty() {
            return Ok(Some(ListedEntry {
                kind: NodeKind::Dir,
                ciphertext_size: 0,
                etag: None,
                mtime: list
                    .objects
                    .first()
                    .and_then(|o| o.last_modified)
                    .unwrap_or_else(SystemTime::now),
            }));
        }
        match head {
            Ok(info) => Ok(Some(ListedEntry {
                kind: NodeKind::File,
                ciphertext_size: info.size,
                etag: info.etag,
                mtime: info.last_modified.unwrap_or_else(SystemTime::now),
            })),
            Err(e) if e.kind == StoreErrorKind::NotFound => Ok(None),
            Err(e) => Err(log_store("HEAD", &file_key, e)),
        }
    }

    pub async fn getattr(&self, ino: u64) -> FsResult<Attr> {
        let node = self.node(ino)?;
        if node.kind == NodeKind::Dir || node.writers > 0 || node.state.valid_until > Instant::now()
        {
            return Ok(self.attr_of(&node));
        }
        let info = self
            .volume
            .store
            .head(&node.key)
            .await
            .map_err(|e| log_store("HEAD", &node.key, e))?;
        let state = self.state_from_listing(&ListedEntry {
            kind: NodeKind::File,
            ciphertext_size: info.size,
            etag: info.etag,
            mtime: info.last_modified.unwrap_or_else(SystemTime::now),
        });
        let mut inodes = self.inodes.lock().unwrap();
        let node = inodes.get_mut(ino).ok_or(libc::ENOENT)?;
        if node.writers == 0 {
            node.state = state;
        }
        Ok(self.attr_of(node))
    }

    pub fn forget(&self, ino: u64, count: u64) {
        self.inodes.lock().unwrap().forget(ino, count);
    }

    /// Accepts only what the object already says: sizes other than the current one are
    /// refused (changing existing files is not supported yet); mode, owner and times are
    /// mount-wide settings for now.
    pub async fn setattr(&self, ino: u64, size: Option<u64>, fh: Option<u64>) -> FsResult<Attr> {
        if let Some(size) = size {
            let current = match fh.and_then(|fh| self.write_handle(fh)) {
                Some(h) => h.lock().await.writer.len(),
                None => self.getattr(ino).await?.size,
            };
            if size != current {
                info!(
                    ino,
                    size, current, "truncate to a different size is not supported yet"
                );
                return Err(libc::EPERM);
            }
        }
        self.getattr(ino).await
    }

    // ---- directories ----

    async fn listing(&self, ino: u64) -> FsResult<BTreeMap<String, ListedEntry>> {
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
        let mut entries = BTreeMap::new();
        for prefix in &listing.common_prefixes {
            let component = prefix[node.key.len()..].trim_end_matches('/');
            match names::from_key_component(component, is_root) {
                Some(name) => {
                    entries.insert(
                        name.to_string(),
                        ListedEntry {
                            kind: NodeKind::Dir,
                            ciphertext_size: 0,
                            etag: None,
                            mtime: SystemTime::now(),
                        },
                    );
                }
                None => debug!(prefix = %prefix, "hiding a prefix that cannot be a directory name"),
            }
        }
        for object in listing.objects {
            let component = &object.key[node.key.len()..];
            if component.is_empty() {
                continue; // this directory's own marker
            }
            let Some(name) = names::from_key_component(component, is_root) else {
                debug!(key = %object.key, "hiding a key that cannot be a file name");
                continue;
            };
            if entries.contains_key(name) {
                debug!(key = %object.key, "a directory of the same name hides this object");
                continue;
            }
            entries.insert(
                name.to_string(),
                ListedEntry {
                    kind: NodeKind::File,
                    ciphertext_size: object.size,
                    etag: object.etag,
                    mtime: object.last_modified.unwrap_or_else(SystemTime::now),
                },
            );
        }
        if self.generation(ino) == generation {
            self.listings.lock().unwrap().insert(
                ino,
                DirListing {
                    entries: entries.clone(),
                    valid_until: Instant::now() + self.options.metadata_ttl,
                },
            );
        }
        Ok(entries)
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
        for (name, e) in &listed {
            // No inode is made for a listed name: the kernel looks a name up before it uses
            // it, and `find` over millions of keys must not grow the table. Names not looked
            // up yet get a stable synthetic number for d_ino.
            let child = inodes
                .child(ino, name)
                .map_or_else(|| synthetic_ino(&node.key, name), |n| n.ino);
            entries.push(DirEntry {
                ino: child,
                name: name.clone(),
                kind: e.kind,
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

    pub async fn mkdir(&self, parent: u64, name: &OsStr) -> FsResult<Attr> {
        self.writable()?;
        let parent_node = self.node(parent)?;
        let name = names::to_key_component(name, parent == ROOT_INO)?;
        match self.lookup(parent, OsStr::new(name)).await {
            Ok(_) => {
                self.forget_name(parent, name);
                return Err(libc::EEXIST);
            }
            Err(libc::ENOENT) => {}
            Err(e) => return Err(e),
        }
        let prefix = names::dir_prefix(&parent_node.key, name);
        names::file_key(&parent_node.key, name, 0)?;
        self.volume
            .store
            .put(&prefix, Bytes::new(), &Metadata::new())
            .await
            .map_err(|e| log_store("PUT", &prefix, e))?;
        self.invalidate_listing(parent);
        let state = NodeState {
            size: 0,
            ciphertext_size: 0,
            etag: None,
            mtime: SystemTime::now(),
            valid_until: Instant::now() + self.options.metadata_ttl,
        };
        let mut inodes = self.inodes.lock().unwrap();
        let ino = inodes.upsert(parent, name, NodeKind::Dir, prefix, state, true);
        Ok(self.attr_of(inodes.get(ino).expect("just inserted")))
    }

    pub async fn unlink(&self, parent: u64, name: &OsStr) -> FsResult<()> {
        self.writable()?;
        let attr = self.lookup(parent, name).await?;
        let node = self.node(attr.ino)?;
        self.forget(attr.ino, 1);
        if node.kind == NodeKind::Dir {
            return Err(libc::EISDIR);
        }
        if node.writers > 0 {
            info!(key = %node.key, "refusing to unlink a file that is still being written");
            return Err(libc::EBUSY);
        }
        self.volume
            .store
            .delete(&node.key)
            .await
            .map_err(|e| log_store("DELETE", &node.key, e))?;
        self.read.cache.invalidate(&node.key);
        self.invalidate_listing(parent);
        self.inodes.lock().unwrap().remove_name(parent, &node.name);
        Ok(())
    }

    pub async fn rmdir(&self, parent: u64, name: &OsStr) -> FsResult<()> {
        self.writable()?;
        let attr = self.lookup(parent, name).await?;
        let node = self.node(attr.ino)?;
        self.forget(attr.ino, 1);
        if node.kind != NodeKind::Dir {
            return Err(libc::ENOTDIR);
        }
        // Checked against S3, not just the cache: anything under the prefix but the marker.
        let page = self
            .volume
            .store
            .list_page(&node.key, None, None)
            .await
            .map_err(|e| log_store("LIST", &node.key, e))?;
        let has_children = page.objects.iter().any(|o| o.key != node.key)
            || !self
                .inodes
                .lock()
                .unwrap()
                .pending_children(node.ino)
                .is_empty();
        if has_children {
            return Err(libc::ENOTEMPTY);
        }
        self.volume
            .store
            .delete(&node.key)
            .await
            .map_err(|e| log_store("DELETE", &node.key, e))?;
        self.invalidate_listing(parent);
        self.invalidate_listing(node.ino);
        self.inodes.lock().unwrap().remove_name(parent, &node.name);
        Ok(())
    }

    /// rename(2) of a file: a server-side copy to the new key, then a delete of the old one.
    /// Directories answer EXDEV, which makes `mv` copy them entry by entry instead.
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
        if node.kind == NodeKind::Dir {
            info!(key = %node.key, "renaming a directory is not supported yet: EXDEV");
            return Err(libc::EXDEV);
        }
        if node.writers > 0 {
            info!(key = %node.key, "refusing to rename a file that is still being written");
            return Err(libc::EBUSY);
        }
        let target_parent = self.node(new_parent)?;
        if target_parent.kind != NodeKind::Dir {
            return Err(libc::ENOTDIR);
        }
        let new_name = names::to_key_component(new_name, new_parent == ROOT_INO)?;
        let new_key = names::file_key(&target_parent.key, new_name, self.volume_prefix_len())?;
        if new_key == node.key {
            return Ok(());
        }
        match self.lookup(new_parent, OsStr::new(new_name)).await {
            Ok(existing) => {
                self.forget(existing.ino, 1);
                if no_replace {
                    return Err(libc::EEXIST);
                }
                let existing = self.node(existing.ino)?;
                if existing.kind == NodeKind::Dir {
                    return Err(libc::EISDIR);
                }
                if existing.writers > 0 {
                    return Err(libc::EBUSY);
                }
            }
            Err(libc::ENOENT) => {}
            Err(e) => return Err(e),
        }
        let store = &self.volume.store;
        // Copy first: if anything fails, the file is still under its old name; if the delete
        // fails after the copy, it exists under both (never under neither).
        let copied = store
            .copy(&node.key, &new_key, None)
            .await
            .map_err(|e| log_store("COPY", &node.key, e))?;
        store
            .delete(&node.key)
            .await
            .map_err(|e| log_store("DELETE", &node.key, e))?;
        self.read.cache.invalidate(&node.key);
        self.read.cache.invalidate(&new_key);
        {
            let mut inodes = self.inodes.lock().unwrap();
            inodes.rename(node.ino, new_parent, new_name, new_key);
            if let Some(n) = inodes.get_mut(node.ino) {
                n.state.etag = copied.etag;
                // The copy's ETag and size are asked of S3 on next use.
                n.state.valid_until = Instant::now();
            }
        }
        self.invalidate_listing(parent);
        self.invalidate_listing(new_parent);
        Ok(())
    }

    // ---- files ----

    pub async fn create(&self, parent: u64, name: &OsStr, pid: u32) -> FsResult<(Attr, u64)> {
        self.writable()?;
        let parent_node = self.node(parent)?;
        if parent_node.kind != NodeKind::Dir {
            return Err(libc::ENOTDIR);
        }
        let name = names::to_key_component(name, parent == ROOT_INO)?;
        let key = names::file_key(&parent_node.key, name, self.volume_prefix_len())?;
        let state = NodeState {
            size: 0,
            ciphertext_size: 0,
            etag: None,
            mtime: SystemTime::now(),
            valid_until: Instant::now(),
        };
        let ino = {
            let mut inodes = self.inodes.lock().unwrap();
            let ino = inodes.upsert(parent, name, NodeKind::File, key.clone(), state, true);
            let node = inodes.get_mut(ino).expect("just inserted");
            node.writers += 1;
            node.state.size = 0;
            node.open_handles += 1;
            ino
        };
        self.negative
            .lock()
            .unwrap()
            .remove(&(parent, name.to_string()));
        let fh = self.add_writer(ino, key, process_of(pid));
        let attr = self.attr_of(&self.node(ino)?);
        Ok((attr, fh))
    }

    pub async fn open(&self, ino: u64, flags: i32, pid: u32) -> FsResult<u64> {
        let node = self.node(ino)?;
        if node.kind == NodeKind::Dir {
            return Err(libc::EISDIR);
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
            {
                let mut inodes = self.inodes.lock().unwrap();
                let node = inodes.get_mut(ino).ok_or(libc::ENOENT)?;
                if node.writers > 0 {
                    return Err(libc::EBUSY);
                }
                if !truncate && node.state.size > 0 {
                    // Opening is allowed (touch, utimes); writing is refused at write().
                    node.open_handles += 1;
                    drop(inodes);
                    return Ok(self.add_handle(Handle::NoWrite));
                }
                node.writers += 1;
                node.state.size = 0;
                node.open_handles += 1;
            }
            return Ok(self.add_writer(ino, node.key.clone(), pid));
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
        let node = self.node(ino)?;
        let etag = node.state.etag.clone().ok_or_else(|| {
            warn!(key = %node.key, "the server gave no ETag for this object");
            libc::EIO
        })?;
        let reader = ObjectReader::new(
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
        })?;
        self.inodes.lock().unwrap().open(ino);
        Ok(self.add_handle(Handle::Read(Arc::new(reader))))
    }

    pub async fn read(&self, fh: u64, offset: u64, size: u32) -> FsResult<Bytes> {
        let reader = match self.handles.lock().unwrap().get(&fh) {
            Some(Handle::Read(r)) => r.clone(),
            Some(_) => return Err(libc::EBADF),
            None => return Err(libc::EBADF),
        };
        reader.read(offset, size).await.map_err(|e| e.errno())
    }

    pub async fn write(&self, fh: u64, offset: u64, data: &[u8]) -> FsResult<u32> {
        let handle = match self.handles.lock().unwrap().get(&fh) {
            Some(Handle::Write(h)) => h.clone(),
            Some(Handle::NoWrite) => {
                info!("writing into an existing file without O_TRUNC is not supported yet");
                return Err(libc::EPERM);
            }
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
            node.state.mtime = SystemTime::now();
        }
        Ok(data.len() as u32)
    }

    /// close(): the opening process's flush commits the file and returns the upload's result;
    /// the last release commits what no flush did.
    pub async fn flush(&self, fh: u64, pid: u32) -> FsResult<()> {
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

    pub async fn fsync(&self, fh: u64) -> FsResult<()> {
        match self.write_handle(fh) {
            Some(handle) => self.commit(&mut *handle.lock().await).await,
            None => Ok(()),
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
            if let Some(Handle::Write(handle)) = handle {
                let mut h = handle.lock().await;
                if let Err(errno) = fs.commit(&mut h).await {
                    warn!(key = %h.writer.key(), errno, "file could not be saved at release");
                }
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
        // Idempotent: a second call returns the first one's result.
        let result = h.writer.commit().await;
        if std::mem::replace(&mut h.settled, true) {
            return result.map(|_| ()).map_err(|e| e.errno());
        }
        let key = h.writer.key().to_string();
        let parent = {
            let mut inodes = self.inodes.lock().unwrap();
            let node = inodes.get_mut(h.ino);
            match (&result, node) {
                (Ok(done), Some(node)) => {
                    node.writers = node.writers.saturating_sub(1);
                    node.state = NodeState {
                        size: done.plaintext_size,
                        ciphertext_size: done.ciphertext_size,
                        etag: done.etag.clone(),
                        mtime: SystemTime::now(),
                        // Without an ETag, ask S3 on next use.
                        valid_until: if done.etag.is_some() {
                            Instant::now() + self.options.metadata_ttl
                        } else {
                            Instant::now()
                        },
                    };
                    Some(node.parent)
                }
                (Err(_), Some(node)) => {
                    // The previous version (if any) is still in the bucket: forget what we
                    // believed, the next use asks S3.
                    node.writers = node.writers.saturating_sub(1);
                    node.state.valid_until = Instant::now();
                    Some(node.parent)
                }
                _ => None,
            }
        };
        self.read.cache.invalidate(&key);
        if let Some(parent) = parent {
            self.invalidate_listing(parent);
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
                Handle::Write(w) => Some(w.clone()),
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

    fn add_writer(&self, ino: u64, key: String, pid: u32) -> u64 {
        let writer = ObjectWriter::new(self.upload.clone(), key, Metadata::new());
        self.add_handle(Handle::Write(Arc::new(tokio::sync::Mutex::new(
            WriteHandle {
                ino,
                opener_pid: pid,
                writer,
                settled: false,
            },
        ))))
    }

    fn write_handle(&self, fh: u64) -> Option<Arc<tokio::sync::Mutex<WriteHandle>>> {
        match self.handles.lock().unwrap().get(&fh) {
            Some(Handle::Write(h)) => Some(h.clone()),
            _ => None,
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
