//! Lookups by name: answers from what this mount holds (without waiting when it can),
//! listings as negative caches, HEADs of listed names, and probes of names not listed.

use super::*;
use crate::store::Listing;

/// How far a lookup gets on what this mount holds.
enum Held<'n> {
    Answer(Attr),
    /// S3 has to be asked about this name (a valid key component) in this directory.
    Ask(&'n str, Box<Node>),
}

impl FsCore {
    pub async fn lookup(&self, parent: u64, name: &OsStr) -> FsResult<Attr> {
        let (name, parent_node) = match self.lookup_held(parent, name)? {
            Held::Answer(attr) => return Ok(attr),
            Held::Ask(name, parent_node) => (name, parent_node),
        };
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
                let child_generation = self.child_dir_generation(parent, name);
                let found = self.probe(&child, child_generation).await?;
                if self.generation(parent) == generation {
                    found
                } else {
                    // This mount changed the directory while we asked: ask again.
                    self.forget_head(&child.file);
                    self.forget_head(&child.dir);
                    self.probe(&child, child_generation).await?
                }
            }
        };
        let Some((kind, mut state)) = found else {
            return Err(self.not_found(parent, name));
        };
        if kind.is_device() {
            state.rdev = self.read_device_number(&child.file, &state).await?;
        }
        Ok(self.settle_lookup(parent, name, child, kind, state))
    }

    /// A lookup answered from what this mount holds, without waiting for S3: a node it knows,
    /// a fresh listing, and a HEAD already answered (a walk reads them ahead). `None` when
    /// the answer needs a request or a wait; [`Self::lookup`] then gives it. Lets the FUSE
    /// adapter reply on the thread that read the request, without a task and a wake-up.
    pub fn lookup_now(&self, parent: u64, name: &OsStr) -> Option<FsResult<Attr>> {
        self.answer_now(parent, name, true)
    }

    /// The attributes of an entry of the open directory `dir` that READDIRPLUS can hand the
    /// kernel with the entry, if this mount has them without a request or a wait (the small
    /// files HEADed at opendir, names it knows); `None` otherwise. The kernel takes such an
    /// entry as looked up (and forgets it later), so it counts as a lookup here; but not as a
    /// step of a walk: a program that only lists (`ls`, `find`) must not make the attributes
    /// of the directory's other entries be read ahead.
    pub fn entry_attrs_now(&self, dir: u64, name: &OsStr) -> Option<FsResult<Attr>> {
        self.answer_now(dir, name, false)
    }

    /// [`Self::lookup_now`]; `walk_step`: whether the answer counts towards a walk.
    fn answer_now(&self, parent: u64, name: &OsStr, walk_step: bool) -> Option<FsResult<Attr>> {
        let (name, parent_node) = match self.lookup_held(parent, name) {
            Ok(Held::Answer(attr)) => return Some(Ok(attr)),
            Ok(Held::Ask(name, parent_node)) => (name, parent_node),
            Err(e) => return Some(Err(e)),
        };
        let child = match self.child_keys(&parent_node, name) {
            Ok(child) => child,
            Err(e) => return Some(Err(e)),
        };
        // Only a lookup answered here counts towards a walk: one that goes on to wait is
        // counted there, and counting both made a single lookup look like a walk.
        let listed = self
            .dirs
            .lock()
            .unwrap()
            .listed_kind(parent, name, Instant::now())?;
        let found = match listed {
            Some(kind) => self.resolved_now(&child, kind)?,
            None => None,
        };
        if walk_step {
            self.fresh_listing_entry(parent, &parent_node.key, name);
        }
        let Some((kind, state)) = found else {
            return Some(Err(self.not_found(parent, name)));
        };
        if kind.is_device() {
            // Its device number is in its body.
            return None;
        }
        Some(Ok(self.settle_lookup(parent, name, child, kind, state)))
    }

    /// The part of a lookup that needs no request: the name checked, and a node this mount
    /// knows better than S3 (being written, changed, or looked up within the TTL), or a
    /// name known not to exist.
    fn lookup_held<'n>(&self, parent: u64, name: &'n OsStr) -> FsResult<Held<'n>> {
        // The volume's own name at the root is simply not there.
        let name = key_component(name, parent == ROOT_INO).map_err(|e| {
            if e.is(libc::EPERM) {
                FsError::answer(libc::ENOENT)
            } else {
                e
            }
        })?;
        let parent_node = self.node(parent)?;
        if parent_node.kind != NodeKind::Dir {
            return Err(FsError::answer(libc::ENOTDIR));
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
                return Ok(Held::Answer(self.attr_of(node)));
            }
        }
        if self
            .dirs
            .lock()
            .unwrap()
            .is_negative(parent, name, Instant::now())
        {
            return Err(FsError::answer(libc::ENOENT));
        }
        Ok(Held::Ask(name, Box::new(parent_node)))
    }

    /// Remembers that `name` is not in `parent`, and says so.
    fn not_found(&self, parent: u64, name: &str) -> FsError {
        self.dirs
            .lock()
            .unwrap()
            .add_negative(parent, name, self.options.metadata_ttl);
        FsError::answer(libc::ENOENT)
    }

    /// Enters what a lookup found into the inode table, and gives its attributes.
    fn settle_lookup(
        &self,
        parent: u64,
        name: &str,
        child: ChildKeys,
        kind: NodeKind,
        state: NodeState,
    ) -> Attr {
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
            return self.attr_of(node);
        }
        let ino = inodes.upsert(parent, name, kind, key, state, true);
        self.attr_of(inodes.get(ino).expect("just inserted"))
    }

    /// `Some(Some(kind))` / `Some(None)` from a fresh listing of `parent` (the listing is also
    /// the negative cache); `None` when no fresh listing exists. A second lookup in the same
    /// listing starts reading the following entries' attributes ahead.
    pub(super) fn fresh_listing_entry(
        &self,
        parent: u64,
        parent_key: &str,
        name: &str,
    ) -> Option<Option<NodeKind>> {
        let answer = self
            .dirs
            .lock()
            .unwrap()
            .listed(parent, name, Instant::now())?;
        if answer.kind.is_some() && answer.walking {
            self.read_ahead_attrs(parent, parent_key, &answer.entries, name);
        }
        Some(answer.kind)
    }

    /// The generation that `parent/name` will have as a directory: its own if this mount
    /// knows it as one, else that of a new inode.
    fn child_dir_generation(&self, parent: u64, name: &str) -> u64 {
        let known = self
            .inodes
            .lock()
            .unwrap()
            .child(parent, name)
            .filter(|n| n.kind == NodeKind::Dir)
            .map(|n| n.ino);
        known.map_or(0, |ino| self.generation(ino))
    }

    /// Whether names of `parent`'s (possibly expired) listing were being looked up in turn.
    pub(super) fn was_walked(&self, parent: u64) -> bool {
        self.dirs.lock().unwrap().was_walked(parent)
    }

    /// A listed name's attributes: the HEAD of the file, or of the directory's marker.
    pub(super) async fn resolve(
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

    /// [`Self::resolve`] if the HEAD it needs has already been answered; `None` if it has
    /// not (or failed: the lookup that waits for it reports the failure).
    fn resolved_now(
        &self,
        child: &ChildKeys,
        listed: NodeKind,
    ) -> Option<Option<(NodeKind, NodeState)>> {
        let key = match listed {
            NodeKind::Dir => &child.dir,
            _ => &child.file,
        };
        let headed = {
            let heads = self.heads.lock().unwrap();
            let (until, future) = heads.get(key.as_str())?;
            if *until <= Instant::now() {
                return None;
            }
            future.peek()?.as_ref().ok()?.clone()
        };
        if listed == NodeKind::Dir {
            return Some(Some((NodeKind::Dir, self.dir_state(headed.as_deref()))));
        }
        Some(headed.map(|h| self.file_state(key, &h)))
    }

    /// Asks S3 whether a name not listed yet is a file or a directory (any key under its
    /// prefix): the file first, with one request that also brings its first segment for the
    /// read that usually follows, then, only if there is none, the directory. A name that is
    /// both (made by two machines at once, or by another tool) is shown as the file until
    /// its directory is listed; listings show the directory (docs/SEMANTICS.md).
    ///
    /// A directory whose entries all came in that LIST's one page keeps it as its listing
    /// (see [`Self::keep_listed_ahead`]; `dir_generation` is what the directory's generation
    /// is then expected to be): `ls DIR` of a directory not listed yet costs one LIST, not two.
    pub(super) async fn probe(
        &self,
        child: &ChildKeys,
        dir_generation: u64,
    ) -> FsResult<Option<(NodeKind, NodeState)>> {
        let file_key = &child.file;
        if let Some(headed) = self.head_for_reading(file_key).await? {
            return Ok(Some(self.file_state(file_key, &headed)));
        }
        let sub = child.dir.clone();
        self.list_requests.fetch_add(1, Ordering::Relaxed);
        let list = self
            .volume
            .store
            .list_page(&sub, Some("/"), None)
            .await
            .map_err(|e| FsError::store("LIST", &sub, e))?;
        if !list.objects.is_empty() || !list.common_prefixes.is_empty() {
            let has_marker = list.objects.iter().any(|o| o.key == sub);
            if let Some(listing) = Listing::from_only_page(&sub, list) {
                self.keep_listed_ahead(&sub, dir_generation, listing);
            }
            let marker = if has_marker {
                self.head(&sub).await?
            } else {
                None
            };
            return Ok(Some((NodeKind::Dir, self.dir_state(marker.as_deref()))));
        }
        Ok(None)
    }
}
