//! Directory listings: LIST of a directory into its entries (names decoded, long names read
//! from their side objects, foreign keys hidden), kept in the `DirCache`; opendir/readdir.

use super::*;

/// A d_ino for a listed name without an inode: stable, non-zero, and outside the range of
/// real inode numbers (which count up from 1).
pub(super) fn synthetic_ino(dir_prefix: &str, name: &str) -> u64 {
    use std::hash::{Hash, Hasher};
    let mut h = std::collections::hash_map::DefaultHasher::new();
    (dir_prefix, name).hash(&mut h);
    h.finish() | (1 << 63)
}

impl FsCore {
    pub(super) async fn listing(&self, ino: u64) -> FsResult<dir_cache::Entries> {
        if let Some(entries) = self.dirs.lock().unwrap().fresh_entries(ino, Instant::now()) {
            return Ok(entries);
        }
        let node = self.node(ino)?;
        let generation = self.generation(ino);
        let listing = self
            .volume
            .store
            .list_all(&node.key, Some("/"))
            .await
            .map_err(|e| FsError::store("LIST", &node.key, e))?;
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
                    self.note_hidden(
                        key,
                        is_root && component == crate::object_keys::RESERVED_NAME,
                    );
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
        match self.handles.lock().unwrap().get(fh) {
            Some(Handle::Dir(entries)) => Ok(entries.clone()),
            _ => Err(FsError::answer(libc::EBADF)),
        }
    }

    pub fn releasedir(&self, ino: u64, fh: u64) {
        self.handles.lock().unwrap().remove(fh);
        self.inodes.lock().unwrap().close(ino);
    }

    /// Records in the cached listing of `dir` (if any) that this mount made `name` exist as
    /// `kind`, or removed it (`None`), so that the next lookups there need no request.
    pub(super) fn update_listing(&self, dir: u64, name: &str, kind: Option<(NodeKind, String)>) {
        let entry = kind.map(|(kind, component)| ListedEntry { kind, component });
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
