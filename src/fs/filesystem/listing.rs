//! Directory listings: LIST of a directory into its entries (names decoded, long names read
//! from their side objects, foreign keys hidden), kept in the `DirCache`; opendir/readdir.

use super::*;
use crate::store::{Listing, StoreError};

/// A d_ino for a listed name without an inode: stable, non-zero, and outside the range of
/// real inode numbers (which count up from 1).
pub(super) fn synthetic_ino(dir_prefix: &str, name: &str) -> u64 {
    use std::hash::{Hash, Hasher};
    let mut h = std::collections::hash_map::DefaultHasher::new();
    (dir_prefix, name).hash(&mut h);
    h.finish() | (1 << 63)
}

/// Directories listed ahead of a walk that descends (`ls -lR`, `find`, `du`, `rsync` go
/// through the subdirectories of a directory in order): once one of them is opened after its
/// parent's entries were looked up in turn, the LISTs of the next ones run while the walker
/// works in this one, instead of each costing a round trip when it gets there. At most
/// this many LISTs are wasted when the walk stops.
const LIST_AHEAD: usize = 2;
/// Listings made ahead and not used yet are dropped past this many (each holds up to a page
/// of 1000 entries, ~150 KB).
const LISTS_AHEAD_KEPT: usize = 16;

type ListFuture = Shared<BoxFuture<'static, Result<Arc<Listing>, StoreError>>>;

/// A LIST made ahead of a directory's listing: started for a walk that descends, or made
/// by the lookup that found the directory.
pub(super) struct ListAhead {
    /// The directory's generation when it started: a change this mount made since then
    /// may be missing from it, and then it is not used.
    generation: u64,
    started: Instant,
    listing: ListFuture,
}

impl FsCore {
    /// Starts the LISTs of the [`LIST_AHEAD`] directories after `dir` in its parent, if its
    /// parent is being walked and they were looked up (a walker looks at an entry before it
    /// descends into it).
    fn list_siblings_ahead(&self, dir: &Node) {
        use std::ops::Bound::{Excluded, Unbounded};
        if dir.ino == ROOT_INO || !self.was_walked(dir.parent) {
            return;
        }
        let now = Instant::now();
        let Some(entries) = self.dirs.lock().unwrap().fresh_entries(dir.parent, now) else {
            return;
        };
        let siblings: Vec<(u64, String)> = {
            let inodes = self.inodes.lock().unwrap();
            entries
                .range::<str, _>((Excluded(dir.name.as_str()), Unbounded))
                .filter(|(_, e)| e.kind == NodeKind::Dir)
                .take(LIST_AHEAD)
                .filter_map(|(name, _)| {
                    let node = inodes.child(dir.parent, name)?;
                    (node.kind == NodeKind::Dir).then(|| (node.ino, node.key.clone()))
                })
                .collect()
        };
        for (ino, key) in siblings {
            let generation = {
                let dirs = self.dirs.lock().unwrap();
                if dirs.fresh_entries(ino, now).is_some() {
                    continue;
                }
                dirs.generation(ino)
            };
            let mut ahead = self.lists_ahead.lock().unwrap();
            if ahead.contains_key(&key) {
                continue;
            }
            if ahead.len() >= LISTS_AHEAD_KEPT {
                ahead.clear();
            }
            let store = self.volume.store.clone();
            let prefix = key.clone();
            let listing: ListFuture =
                async move { store.list_all(&prefix, Some("/")).await.map(Arc::new) }
                    .boxed()
                    .shared();
            tokio::spawn(listing.clone());
            ahead.insert(
                key,
                ListAhead {
                    generation,
                    started: now,
                    listing,
                },
            );
        }
    }

    /// When `dir` is opened by a walk that looks at every file (`ls -lR`, `du`, `rsync`): one
    /// that looked at the files of its parent, or of the directory before it there (the
    /// walker came from it: a tree whose files are all in subdirectories), reads the
    /// attributes of its first entries ahead at once: the walker will look at them too, and
    /// otherwise the first two lookups of each directory would wait for their HEADs one
    /// after the other before the walk was seen.
    fn walk_into(&self, dir: &Node, entries: &dir_cache::Entries) {
        if dir.ino == ROOT_INO {
            return;
        }
        let (parent_files_walked, parent_walked) = {
            let dirs = self.dirs.lock().unwrap();
            (
                dirs.files_were_walked(dir.parent),
                dirs.was_walked(dir.parent),
            )
        };
        // The previous sibling is looked for only in a walk (it costs a scan of the listing).
        let files_walked = parent_files_walked
            || (parent_walked
                && self
                    .previous_sibling_dir(dir)
                    .is_some_and(|ino| self.dirs.lock().unwrap().files_were_walked(ino)));
        if !files_walked {
            return;
        }
        self.dirs.lock().unwrap().walk_on(dir.ino);
        self.read_ahead_attrs(dir.ino, &dir.key, entries, "");
    }

    /// The directory listed just before `dir` in its parent's fresh listing, if this mount
    /// knows it (a walk in name order has been through it).
    fn previous_sibling_dir(&self, dir: &Node) -> Option<u64> {
        use std::ops::Bound::{Excluded, Unbounded};
        let entries = self
            .dirs
            .lock()
            .unwrap()
            .fresh_entries(dir.parent, Instant::now())?;
        let (name, _) = entries
            .range::<str, _>((Unbounded, Excluded(dir.name.as_str())))
            .rev()
            .find(|(_, e)| e.kind == NodeKind::Dir)?;
        let inodes = self.inodes.lock().unwrap();
        inodes
            .child(dir.parent, name)
            .filter(|n| n.kind == NodeKind::Dir)
            .map(|n| n.ino)
    }

    /// Keeps `listing`, made now, as the LIST of `dir_key` made ahead (by a lookup that had
    /// to LIST the name to find it is a directory): the directory's listing if this mount
    /// changes nothing there first, that is if its generation is still `generation`.
    pub(super) fn keep_listed_ahead(&self, dir_key: &str, generation: u64, listing: Listing) {
        let ready: ListFuture = futures::future::ready(Ok(Arc::new(listing)))
            .boxed()
            .shared();
        let mut ahead = self.lists_ahead.lock().unwrap();
        if ahead.len() >= LISTS_AHEAD_KEPT {
            ahead.clear();
        }
        ahead.insert(
            dir_key.to_string(),
            ListAhead {
                generation,
                started: Instant::now(),
                listing: ready,
            },
        );
    }

    /// The LIST of `dir_key` started ahead, if it can stand for one made now: started
    /// within the metadata TTL, and this mount changed nothing there since.
    fn listed_ahead(&self, dir_key: &str, generation: u64) -> Option<ListFuture> {
        let ahead = self.lists_ahead.lock().unwrap().remove(dir_key)?;
        (ahead.generation == generation && ahead.started.elapsed() < self.options.metadata_ttl)
            .then_some(ahead.listing)
    }
}

impl FsCore {
    pub(super) async fn listing(&self, ino: u64) -> FsResult<dir_cache::Entries> {
        if let Some(entries) = self.dirs.lock().unwrap().fresh_entries(ino, Instant::now()) {
            return Ok(entries);
        }
        let node = self.node(ino)?;
        let generation = self.generation(ino);
        let listing = match self.listed_ahead(&node.key, generation) {
            Some(ahead) => ahead.await,
            None => self
                .volume
                .store
                .list_all(&node.key, Some("/"))
                .await
                .map(Arc::new),
        }
        .map_err(|e| FsError::store("LIST", &node.key, e))?;
        self.list_requests
            .fetch_add(listing.requests as u64, Ordering::Relaxed);
        let is_root = ino == ROOT_INO;
        let dir_path = self.dir_path(ino)?;
        let mut entries = BTreeMap::new();
        let mut long_names = Vec::new();
        // Symlink targets and special files' records are under PATH_MAX bytes.
        let small_limit = self.volume.layout.ciphertext_size(libc::PATH_MAX as u64);
        let listed = listing
            .common_prefixes
            .iter()
            .map(|p| (p.as_str(), NodeKind::Dir, false))
            .chain(
                listing
                    .objects
                    .iter()
                    .map(|o| (o.key.as_str(), NodeKind::File, o.size <= small_limit)),
            );
        for (key, kind, small) in listed {
            let component = key[node.key.len()..].trim_end_matches('/');
            if kind == NodeKind::File && key.len() == node.key.len() {
                continue; // this directory's own marker
            }
            let name = match self.volume.names.classify(&dir_path, component, is_root) {
                names::Listed::Name(name) => name,
                names::Listed::LongName => {
                    long_names.push((component.to_string(), kind, small));
                    continue;
                }
                names::Listed::SideObject => continue,
                names::Listed::Hidden => {
                    self.note_hidden(
                        key,
                        is_root && component == crate::object_keys::RESERVED_NAME,
                    );
                    continue;
                }
            };
            let entry = ListedEntry {
                kind,
                component: component.to_string(),
                small,
            };
            self.add_listed(&mut entries, name, entry, key);
        }
        // Long encrypted names: each one's side object holds the name.
        let side_bodies = futures::future::join_all(long_names.iter().map(|(stand_in, ..)| {
            let key = names::side_object_key(&node.key, stand_in);
            async move { self.volume.read_side_object(&key).await }
        }))
        .await;
        for ((stand_in, kind, small), body) in long_names.into_iter().zip(side_bodies) {
            let key = format!("{}{stand_in}", node.key);
            match body.and_then(|b| self.volume.names.decode_long(&dir_path, &stand_in, &b)) {
                Some(name) => {
                    let entry = ListedEntry {
                        kind,
                        component: stand_in,
                        small,
                    };
                    self.add_listed(&mut entries, name, entry, &key)
                }
                None => self.note_hidden(&key, false),
            }
        }
        let entries = Arc::new(entries);
        self.dirs.lock().unwrap().keep_listing(
            ino,
            generation,
            entries.clone(),
            self.options.metadata_ttl,
        );
        Ok(entries)
    }

    /// Adds a listed name; a directory hides a file of the same name.
    pub(super) fn add_listed(
        &self,
        entries: &mut BTreeMap<String, ListedEntry>,
        name: String,
        entry: ListedEntry,
        key: &str,
    ) {
        if entries.get(&name).is_some_and(|e| e.kind == NodeKind::Dir) {
            debug!(key = %key, "a directory of the same name hides this object");
            return;
        }
        entries.insert(name, entry);
    }

    /// The kinds of the listed objects of `dir` that may be symlinks or special files and
    /// were not looked up yet, from their HEADs (shared with later lookups, and bounded like
    /// them). Only small objects are asked about: anything larger is a regular file.
    async fn kinds_of_small_entries(
        &self,
        dir: &Node,
        listed: &BTreeMap<String, ListedEntry>,
    ) -> HashMap<String, NodeKind> {
        use futures::StreamExt;
        let unknown: Vec<(String, String)> = {
            let inodes = self.inodes.lock().unwrap();
            listed
                .iter()
                .filter(|(name, e)| {
                    e.small && e.kind == NodeKind::File && inodes.child(dir.ino, name).is_none()
                })
                .filter_map(|(name, e)| {
                    let key = names::file_key(&dir.key, &e.component, 0).ok()?;
                    Some((name.clone(), key))
                })
                .collect()
        };
        futures::stream::iter(unknown)
            .map(|(name, key)| async move {
                // Unanswered: shown as a regular file, as before; its lookup will tell.
                let headed = self.head(&key).await.ok().flatten()?;
                Some((name, self.file_state(&key, &headed).0))
            })
            .buffer_unordered(MAX_CONCURRENT_HEADS)
            .filter_map(|kind| async move { kind })
            .collect()
            .await
    }

    /// A listed key that cannot be shown: hidden, and logged once (on name-encrypted volumes
    /// a key that does not decrypt is a foreign or tampered object; `fsck` lists them).
    pub(super) fn note_hidden(&self, key: &str, reserved: bool) {
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
            return Err(FsError::answer(libc::ENOTDIR));
        }
        self.list_siblings_ahead(&node);
        let listed = self.listing(ino).await?;
        self.walk_into(&node, &listed);
        let small_kinds = self.kinds_of_small_entries(&node, &listed).await;
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
            // A looked-up name's kind is known exactly; a small object's from its HEAD.
            let (child, kind) = inodes.child(ino, name).map_or_else(
                || {
                    let kind = small_kinds.get(name).copied().unwrap_or(e.kind);
                    (synthetic_ino(&node.key, name), kind)
                },
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
        match self.handles.lock().unwrap().get(fh) {
            Some(Handle::Dir(entries)) => Ok(entries.clone()),
            _ => Err(FsError::answer(libc::EBADF)),
        }
    }

    /// The attributes of a node this mount holds, as they are now: for the `.` and `..` of
    /// READDIRPLUS, which the kernel shows but does not take as looked up.
    pub fn attr_now(&self, ino: u64) -> Option<Attr> {
        self.node(ino).ok().map(|n| self.attr_of(&n))
    }

    /// The inode number of an entry of `dir` that READDIRPLUS hands over without attributes
    /// (its lookup failed): outside the range of real inodes, so that the kernel's lookup
    /// of it, which it has to make before using the entry, and its FORGET of the stand-in
    /// touch no node.
    pub fn stand_in_ino(&self, dir: u64, name: &str) -> u64 {
        let dir_key = self.node(dir).map(|n| n.key).unwrap_or_default();
        synthetic_ino(&dir_key, name)
    }

    pub fn releasedir(&self, ino: u64, fh: u64) {
        self.handles.lock().unwrap().remove(fh);
        self.inodes.lock().unwrap().close(ino);
    }

    /// Records in the cached listing of `dir` (if any) that this mount made `name` exist as
    /// `kind`, or removed it (`None`), so that the next lookups there need no request.
    pub(super) fn update_listing(&self, dir: u64, name: &str, kind: Option<(NodeKind, String)>) {
        let entry = kind.map(|(kind, component)| ListedEntry {
            kind,
            component,
            small: false,
        });
        self.dirs.lock().unwrap().record(dir, name, entry);
    }

    /// Forgets what is cached about the directory `ino`'s entries (after this mount changed
    /// it): its listing and its negative lookups.
    pub(super) fn invalidate_listing(&self, ino: u64) {
        self.dirs.lock().unwrap().invalidate(ino);
    }

    pub(super) fn generation(&self, ino: u64) -> u64 {
        self.dirs.lock().unwrap().generation(ino)
    }

    pub(super) fn forget_name(&self, parent: u64, name: &str) {
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
