//! Lookups by name: the HEAD cache (one request per object, shared and kept for the
//! metadata TTL, read ahead during walks), listings as negative caches, and probes of names
//! not listed.

use super::*;
use crate::crypto::Layout;
use crate::store::{Listing, ObjectInfo, etag_md5};
use std::sync::atomic::AtomicU64;

/// What a lookup (a HEAD, or the GET of an object's header that stands for one) said about
/// an object.
#[derive(Debug, Clone)]
pub(super) struct Headed {
    pub(super) size: u64,
    pub(super) etag: Option<String>,
    pub(super) last_modified: SystemTime,
    pub(super) recorded: Recorded,
    /// What attributes sealed for this object are bound to; `None` when it has no header of
    /// ours (an empty directory marker of an older build, a foreign object).
    pub(super) binding: Option<AttrsBinding>,
    /// The kind its header names.
    pub(super) header_kind: Option<ObjectKind>,
}

/// The attributes an object records, as far as they can be believed.
#[derive(Debug, Clone, Copy)]
pub(super) enum Recorded {
    /// Sealed for this very object version and verified.
    Bound(PosixAttrs),
    /// Recorded by an older build, bound to no object (they could come from another one).
    Unbound(PosixAttrs),
    /// None recorded.
    Missing,
    /// Recorded, but they do not verify as this object's: moved from another object,
    /// replayed from an earlier version, or tampered with. Logged.
    Invalid,
}

/// How far a lookup gets on what this mount holds.
enum Held<'n> {
    Answer(Attr),
    /// S3 has to be asked about this name (a valid key component) in this directory.
    Ask(&'n str, Box<Node>),
}

pub(super) type HeadResult = FsResult<Option<Arc<Headed>>>;
pub(super) type HeadFuture = Shared<BoxFuture<'static, HeadResult>>;

impl FsCore {
    /// HEAD of `key`, shared with concurrent askers and cached for the metadata TTL.
    /// `Ok(None)`: no such object.
    pub(super) async fn head(&self, key: &str) -> HeadResult {
        self.head_cached(key, false).await
    }

    /// Like [`Self::head`], for a file looked up by name: the same request also brings its
    /// first segment into the read cache (a file opened by name is usually read next, and
    /// one of up to a segment then needs no request of its own).
    pub(super) async fn head_for_reading(&self, key: &str) -> HeadResult {
        self.head_cached(key, true).await
    }

    async fn head_cached(&self, key: &str, with_first_segment: bool) -> HeadResult {
        let future = {
            let mut heads = self.heads.lock().unwrap();
            let now = Instant::now();
            match heads.get(key) {
                Some((until, f)) if *until > now => f.clone(),
                _ => {
                    if heads.len() > 100_000 {
                        heads.retain(|_, (until, _)| *until > now);
                    }
                    let f = self.head_future(key.to_string(), with_first_segment);
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

    fn head_future(&self, key: String, with_first_segment: bool) -> HeadFuture {
        let store = self.volume.store.clone();
        let master = self.volume.master.clone();
        let layout = self.volume.layout;
        let slots = self.head_slots.clone();
        let read = with_first_segment.then(|| self.read.clone());
        let by_head = self.lookups_by_head.clone();
        let mut len = layout.header_len() as u64;
        if with_first_segment {
            len += layout.ciphertext_segment_size();
        }
        async move {
            let _slot = slots.acquire_owned().await.expect("never closed");
            // Attributes bound to the body's digest are checked by a HEAD (on Garage a fifth
            // of the server's work of a ranged GET): the ETag is that digest. Others (objects
            // of multipart uploads and of older builds, servers whose ETags are not MD5
            // digests) are checked against the header, which comes with the metadata in one
            // ranged GET. Which one is asked first follows what this volume's objects are.
            if !with_first_segment && by_head.worth_trying() {
                let info = match store.head(&key).await {
                    Ok(info) => info,
                    Err(e) if e.kind == StoreErrorKind::NotFound => return Ok(None),
                    Err(e) => return Err(FsError::store("HEAD", &key, e)),
                };
                if let Some(headed) = headed_by_digest(&master, layout, &key, &info) {
                    by_head.record(true);
                    return Ok(Some(Arc::new(headed)));
                }
            }
            match store.head_with_prefix(&key, len).await {
                Ok((info, prefix)) => {
                    let header = Header::parse(&prefix, layout).ok();
                    if let (Some(read), Some(etag), Some(ObjectKind::File)) =
                        (read, &info.etag, header.map(|h| h.kind()))
                    {
                        let version = ObjectVersion {
                            key: key.clone(),
                            etag: etag.clone(),
                            ciphertext_size: info.size,
                        };
                        // A prefix that fails its checks is only not kept: the read that
                        // follows fetches the object and reports (and logs) what is wrong.
                        if let Err(e) = read.adopt_prefix(&version, &prefix) {
                            debug!(key = %key, "first segment not cached: {e}");
                        }
                    }
                    let binding = header.as_ref().map(|h| {
                        let named = info.metadata.get(BINDING_METADATA_NAME);
                        AttrsBinding::of_object(h, named.map(String::as_str))
                    });
                    if !with_first_segment {
                        // Whether a HEAD could have checked it: a digest named, and the ETag.
                        let etag_md5 = info.etag.as_deref().and_then(etag_md5);
                        let named_md5 = binding.and_then(|b| b.body_md5());
                        by_head.record(etag_md5.is_some() && named_md5 == etag_md5);
                    }
                    let sealed = info.metadata.get(ATTRS_METADATA_NAME);
                    Ok(Some(Arc::new(Headed {
                        size: info.size,
                        etag: info.etag,
                        last_modified: info.last_modified.unwrap_or(SystemTime::UNIX_EPOCH),
                        recorded: recorded_attrs(&master, &key, sealed, binding.as_ref()),
                        binding,
                        header_kind: header.map(|h| h.kind()),
                    })))
                }
                Err(e) if e.kind == StoreErrorKind::NotFound => Ok(None),
                Err(e) => Err(FsError::store("HEAD", &key, e)),
            }
        }
        .boxed()
        .shared()
    }

    /// Forgets the cached HEAD of `key` (this mount changed the object).
    pub(super) fn forget_head(&self, key: &str) {
        self.heads.lock().unwrap().remove(key);
    }

    /// Starts HEADs for the entries listed after `name` in `parent`, so that a walk over the
    /// directory finds their attributes ready: up to [`ATTR_READ_AHEAD`] entries ahead, asked
    /// for in batches once half of them have been passed (not on every lookup: a walk of
    /// 10,000 names would otherwise look at 1.28 million entries).
    pub(super) fn read_ahead_attrs(
        &self,
        parent: u64,
        parent_key: &str,
        entries: &BTreeMap<String, ListedEntry>,
        name: &str,
    ) {
        use std::ops::Bound::{Excluded, Included, Unbounded};
        let asked_to = self.dirs.lock().unwrap().read_ahead_to(parent);
        let (start, still_ahead) = match &asked_to {
            Some(to) if to.as_str() > name => {
                let ahead = entries
                    .range::<str, _>((Excluded(name), Included(to.as_str())))
                    .count();
                (to.as_str(), ahead)
            }
            _ => (name, 0),
        };
        if still_ahead >= ATTR_READ_AHEAD / 2 {
            return;
        }
        let batch: Vec<(&String, &ListedEntry)> = entries
            .range::<str, _>((Excluded(start), Unbounded))
            .take(ATTR_READ_AHEAD - still_ahead)
            .collect();
        let Some((last, _)) = batch.last() else {
            return;
        };
        self.dirs
            .lock()
            .unwrap()
            .set_read_ahead_to(parent, (*last).clone());
        for (_, entry) in batch {
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
                    let f = self.head_future(key.clone(), false);
                    heads.insert(key, (Instant::now() + self.options.metadata_ttl, f.clone()));
                    f
                };
                tokio::spawn(future);
            }
        }
    }

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
        self.fresh_listing_entry(parent, &parent_node.key, name);
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
            if let Some(listing) = Listing::from_only_page(&sub, &list) {
                self.keep_listed_ahead(&sub, dir_generation, listing);
            }
            let marker = if list.objects.iter().any(|o| o.key == sub) {
                self.head(&sub).await?
            } else {
                None
            };
            return Ok(Some((NodeKind::Dir, self.dir_state(marker.as_deref()))));
        }
        Ok(None)
    }
}

/// The binding (and object kind) that `key`'s metadata names, if it names one of this
/// volume's format.
fn named_binding(
    layout: Layout,
    key: &str,
    info: &ObjectInfo,
) -> Option<(AttrsBinding, ObjectKind)> {
    let named = info.metadata.get(BINDING_METADATA_NAME)?;
    AttrsBinding::from_metadata(named, layout)
        .inspect_err(|e| debug!(key = %key, "the binding its metadata names is not usable: {e}"))
        .ok()
}

/// What a HEAD of `key` proves when its attributes are bound to the body's digest and the
/// ETag is that digest: the body is the one they were sealed for. `None` otherwise (no such
/// binding, another body's, a server whose ETags are not digests, a value that does not
/// verify): then the header decides, and a value that is not this object's is reported there.
fn headed_by_digest(
    master: &MasterKey,
    layout: Layout,
    key: &str,
    info: &ObjectInfo,
) -> Option<Headed> {
    let sealed = info.metadata.get(ATTRS_METADATA_NAME)?;
    let (binding, kind) = named_binding(layout, key, info)?;
    let etag_md5 = etag_md5(info.etag.as_deref()?)?;
    if binding.body_md5() != Some(etag_md5) {
        return None;
    }
    let attrs = open_attrs(master, sealed, &binding).ok()?;
    Some(Headed {
        size: info.size,
        etag: info.etag.clone(),
        last_modified: info.last_modified.unwrap_or(SystemTime::UNIX_EPOCH),
        recorded: Recorded::Bound(attrs),
        binding: Some(binding),
        header_kind: Some(kind),
    })
}

/// Whether lookups ask with a HEAD first: counts how many of the objects looked up could be
/// checked by one. While few of them can (a volume of older builds' objects, a server whose
/// ETags are not digests), the HEAD would only add a request before the ranged GET.
#[derive(Default)]
pub(super) struct LookupsByHead {
    checkable: AtomicU64,
    not_checkable: AtomicU64,
    /// HEADs asked first before any object could be checked by one.
    tried: AtomicU64,
}

impl LookupsByHead {
    /// HEADs asked first, at most, before one shows that they can serve: the counts are
    /// known only as answers arrive, and a walk starts many lookups at once.
    const LEARNING: u64 = 32;

    fn worth_trying(&self) -> bool {
        let yes = self.checkable.load(Ordering::Relaxed);
        let no = self.not_checkable.load(Ordering::Relaxed);
        if yes == 0 {
            return self.tried.fetch_add(1, Ordering::Relaxed) < Self::LEARNING;
        }
        yes * 4 >= no
    }

    fn record(&self, checkable: bool) {
        let counter = if checkable {
            &self.checkable
        } else {
            &self.not_checkable
        };
        counter.fetch_add(1, Ordering::Relaxed);
    }
}

/// Opens the attributes `sealed` that `key` records, bound to `binding`.
fn recorded_attrs(
    master: &MasterKey,
    key: &str,
    sealed: Option<&String>,
    binding: Option<&AttrsBinding>,
) -> Recorded {
    let Some(sealed) = sealed else {
        return Recorded::Missing;
    };
    let opened = match binding {
        Some(binding) => open_attrs(master, sealed, binding),
        // Without a header of ours only an older build's blob can be there.
        None => Err(CryptoError::UnboundAttributes),
    };
    match opened {
        Ok(attrs) => Recorded::Bound(attrs),
        Err(CryptoError::UnboundAttributes) => match open_unbound_attrs(master, sealed) {
            Ok(attrs) => Recorded::Unbound(attrs),
            Err(e) => {
                warn!(key = %key, "recorded attributes do not verify: {e}");
                Recorded::Invalid
            }
        },
        Err(e) => {
            warn!(key = %key, "recorded attributes are not this object's: {e}");
            Recorded::Invalid
        }
    }
}
