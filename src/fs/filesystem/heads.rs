//! The HEAD cache: one request per object for its attributes, shared by everyone who asks
//! while it is in flight and kept for the metadata TTL, read ahead during walks; and what
//! an answer proves (attributes bound to the body's digest, or to the header read with it).

use super::*;
use crate::crypto::Layout;
use crate::store::{ObjectInfo, etag_md5};
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
        let (future, _) = self.head_shared(key, with_first_segment);
        let result = future.await;
        if result.is_err() {
            // Failures are not cached: the next ask tries again.
            self.forget_head(key);
        }
        result
    }

    /// The cached HEAD of `key` while it is fresh and has not failed, else a new one, cached
    /// (`true`). A HEAD read ahead that failed is asked again here rather than handed to the
    /// lookup that comes for it: nobody was waiting to take it out of the cache.
    fn head_shared(&self, key: &str, with_first_segment: bool) -> (HeadFuture, bool) {
        let mut heads = self.heads.lock().unwrap();
        let now = Instant::now();
        if let Some((until, f)) = heads.get(key)
            && *until > now
            && !f.peek().is_some_and(Result::is_err)
        {
            return (f.clone(), false);
        }
        if heads.len() > 100_000 {
            heads.retain(|_, (until, _)| *until > now);
        }
        let f = self.head_future(key.to_string(), with_first_segment);
        heads.insert(
            key.to_string(),
            (now + self.options.metadata_ttl, f.clone()),
        );
        (f, true)
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
            if let (future, true) = self.head_shared(&key, false) {
                tokio::spawn(future);
            }
        }
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
