//! Attributes: what `stat` shows of a node (recorded with its object, or the mount's
//! defaults), chmod/chown/utimes/truncate, and their delayed save (a copy of the object onto
//! itself, unless a rename carries them first).

use super::*;

impl FsCore {
    /// The attributes of an object that records none.
    pub(super) fn default_attrs(&self, kind: NodeKind, mtime: SystemTime) -> PosixAttrs {
        let perm = match kind {
            NodeKind::Dir => self.options.dir_mode,
            NodeKind::Symlink => 0o777,
            _ => self.options.file_mode,
        };
        PosixAttrs {
            mode: kind.type_bits() | u32::from(perm),
            uid: self.options.uid,
            gid: self.options.gid,
            mtime,
            ctime: mtime,
            atime: mtime,
        }
    }

    /// What is shown of an object whose attributes cannot be believed on a shared mount
    /// (missing, recorded by an older build, or not verifying): private to root.
    fn private_attrs(&self, kind: NodeKind, mtime: SystemTime) -> PosixAttrs {
        let perm = match kind {
            NodeKind::Dir => 0o700,
            NodeKind::Symlink => 0o777,
            _ => 0o600,
        };
        PosixAttrs {
            mode: kind.type_bits() | perm,
            uid: 0,
            gid: 0,
            mtime,
            ctime: mtime,
            atime: mtime,
        }
    }

    /// The attributes shown for an object of `kind` (the one its key and header give): what
    /// it records, as far as it can be believed. Attributes verified as the object's own are
    /// shown as recorded. On a mount only its user can reach, an older build's attributes
    /// and the mount's defaults (for objects that record none) are shown as before: no one
    /// else can use them. On a shared mount (`allow_other`) those, and attributes that do
    /// not verify, give nothing to anyone but root.
    pub(super) fn believed_attrs(&self, kind: NodeKind, h: &Headed) -> PosixAttrs {
        let same_kind = |a: &PosixAttrs| {
            let recorded = NodeKind::from_mode(a.mode);
            recorded == kind || (kind == NodeKind::File && recorded.is_special())
        };
        match h.recorded {
            Recorded::Bound(a) if same_kind(&a) => a,
            Recorded::Unbound(a) if same_kind(&a) && !self.options.shared => a,
            Recorded::Missing if !self.options.shared => self.default_attrs(kind, h.last_modified),
            _ => self.private_attrs(kind, h.last_modified),
        }
    }

    /// The user metadata that records `attrs` with the object `binding` names.
    pub(super) fn attrs_metadata(&self, attrs: &PosixAttrs, binding: &AttrsBinding) -> Metadata {
        Metadata::from_iter(attrs_metadata(&self.volume.master, attrs, binding))
    }

    /// What attributes of the saved object `key` are bound to: from this mount's last lookup,
    /// or read from its header now (after this mount saved a new version).
    pub(super) async fn binding_of(
        &self,
        key: &str,
        known: Option<AttrsBinding>,
    ) -> FsResult<AttrsBinding> {
        if let Some(binding) = known {
            return Ok(binding);
        }
        let layout = self.volume.layout;
        let (_, prefix) = self
            .volume
            .store
            .head_with_prefix(key, layout.header_len() as u64)
            .await
            .map_err(|e| FsError::store("GET", key, e))?;
        let header = Header::parse(&prefix, layout).map_err(|e| {
            FsError::failed(libc::EIO, format!("{key}: its header cannot be read: {e}"))
        })?;
        Ok(AttrsBinding::of(&header))
    }

    /// A file's (or symlink's, or special file's) state from a lookup.
    pub(super) fn file_state(&self, key: &str, h: &Headed) -> (NodeKind, NodeState) {
        let kind = match (h.header_kind, h.recorded) {
            (Some(ObjectKind::Symlink), _) => NodeKind::Symlink,
            (_, Recorded::Bound(a) | Recorded::Unbound(a)) => match NodeKind::from_mode(a.mode) {
                k if k.is_special() => k,
                _ => NodeKind::File,
            },
            _ => NodeKind::File,
        };
        let attrs = self.believed_attrs(kind, h);
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
            rdev: 0,
            binding: h.binding,
        };
        (kind, state)
    }

    /// A directory's state from the lookup of its marker (`None`: no marker).
    pub(super) fn dir_state(&self, marker: Option<&Headed>) -> NodeState {
        let implicit = Headed {
            size: 0,
            etag: None,
            last_modified: self.mounted_at,
            recorded: Recorded::Missing,
            binding: None,
            header_kind: None,
        };
        let marker = marker.unwrap_or(&implicit);
        NodeState {
            size: 0,
            ciphertext_size: 0,
            etag: marker.etag.clone(),
            attrs: self.believed_attrs(NodeKind::Dir, marker),
            attrs_dirty: false,
            valid_until: Instant::now() + self.options.metadata_ttl,
            rdev: 0,
            binding: marker.binding,
        }
    }

    /// The mode a write by a caller without CAP_FSETID leaves, when it changes anything: the
    /// kernel clears the set-ID bits itself before a buffered write, but for a handle opened
    /// for direct I/O it flags the write (FUSE_WRITE_KILL_SUIDGID) and leaves that to us.
    /// The set-user-ID bit goes, and the set-group-ID bit when the group may execute (the
    /// kernel's own rule).
    pub fn mode_without_setid(&self, ino: u64) -> Option<u32> {
        let perm = u32::from(self.attr_now(ino)?.perm);
        let mut mode = perm & !libc::S_ISUID;
        if perm & libc::S_IXGRP != 0 {
            mode &= !libc::S_ISGID;
        }
        (mode != perm).then_some(mode)
    }

    pub async fn getattr(&self, ino: u64) -> FsResult<Attr> {
        let node = self.node(ino)?;
        if ino == ROOT_INO
            || node.writers > 0
            || node.unlinked
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
                None => return Err(FsError::answer(libc::ENOENT)),
            },
        };
        if kind != node.kind {
            // Replaced by a different kind of object: the kernel must look the name up again.
            return Err(FsError::answer(libc::ENOENT));
        }
        let mut inodes = self.inodes.lock().unwrap();
        let node = inodes.get_mut(ino).ok_or(FsError::answer(libc::ENOENT))?;
        // Unless this mount changed or refreshed the node while we asked.
        if node.writers == 0 && !node.state.attrs_dirty && node.state.valid_until <= Instant::now()
        {
            // A device's number is in its object, read at lookup: kept.
            let rdev = node.state.rdev;
            node.state = state;
            node.state.rdev = rdev;
        }
        Ok(self.attr_of(node))
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
            self.within_object_limit(size)?;
            // A file changed in place (through this descriptor or another), or a new file's
            // descriptor written again after its fsync: resized in its staged contents.
            // A new file's stream that is resized goes on in place (see `divert_stream`).
            let in_place = match fh
                .and_then(|fh| self.modify_handle(fh))
                .or_else(|| self.modify_state(ino))
            {
                Some(m) => Some(m),
                None => match fh {
                    Some(fh) => match self.continue_in_place(fh).await {
                        Some(m) => Some(m),
                        None if self.stream_len(fh).await != Some(size) => {
                            self.divert_stream(fh).await?
                        }
                        None => None,
                    },
                    None => None,
                },
            };
            if let Some(m) = in_place {
                let mut h = m.lock().await;
                h.set_len(&self.options.cache_dir, &self.staging_budget, size)
                    .await?;
                self.changed_in_place(ino, size);
            } else if let Some(h) = fh.and_then(|fh| self.write_handle(fh)) {
                // A stream whose parts are out.
                let current = h.lock().await.writer.len();
                if size != current {
                    return Err(FsError::refused(
                        libc::EINVAL,
                        format!(
                            "inode {ino}: a new version being streamed ({current} bytes so far) \
                             cannot be resized to {size} before it is saved"
                        ),
                    ));
                }
            } else if size != self.getattr(ino).await?.size {
                // truncate(2) by path: changed in place like an open, ftruncate and close.
                let fh = self.open(ino, libc::O_WRONLY, std::process::id()).await?;
                let saved = async {
                    let m = self.modify_handle(fh).ok_or(FsError::answer(libc::EIO))?;
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
            && change.atime.is_none()
        {
            return self.getattr(ino).await;
        }
        self.writable()?;
        // Start from what the bucket says, not from stale attributes.
        self.getattr(ino).await?;
        let (attr, writing) = {
            let mut inodes = self.inodes.lock().unwrap();
            let node = inodes.get_mut(ino).ok_or(FsError::answer(libc::ENOENT))?;
            let mut attrs = node.state.attrs;
            if let Some(mode) = change.mode {
                attrs.mode = (attrs.mode & libc::S_IFMT) | (mode & 0o7777);
            }
            attrs.uid = change.uid.unwrap_or(attrs.uid);
            attrs.gid = change.gid.unwrap_or(attrs.gid);
            // A directory's entries changed since its times were recorded: that time goes
            // into what is saved now, unless the caller sets the mtime itself (`cp -a`,
            // `rsync -t` set a copied directory's time after filling it).
            let entries_changed = node.entries_changed.take().unwrap_or(UNIX_EPOCH);
            attrs.mtime = change.mtime.unwrap_or(attrs.mtime.max(entries_changed));
            attrs.atime = change.atime.unwrap_or(attrs.atime);
            // chmod, chown and utimes change the status, even to the same values.
            attrs.ctime = SystemTime::now();
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
                h.writer.set_attrs(self.node(ino)?.state.attrs);
            }
        } else if self.node(ino)?.state.attrs_dirty {
            self.schedule_attr_flush(ino);
        }
        Ok(attr)
    }

    pub(super) fn schedule_attr_flush(self: &Arc<Self>, ino: u64) {
        if !self.flushes_scheduled.lock().unwrap().insert(ino) {
            return; // chmod, chown and utimes in a row are saved together
        }
        let fs = self.clone();
        tokio::spawn(async move {
            tokio::time::sleep(ATTR_FLUSH_DELAY).await;
            fs.flushes_scheduled.lock().unwrap().remove(&ino);
            if let Err(e) = fs.flush_attrs(ino).await {
                e.log("saving changed attributes");
            }
        });
    }

    /// fallocate(2) on descriptor `fh`. S3 has no space to reserve, so what is asked comes down
    /// to sizes and zeros: plain allocation grows the file to cover the range (holes read as
    /// zeros), `FALLOC_FL_KEEP_SIZE` alone has nothing to do, punching a hole or zeroing a
    /// range writes zeros there (within the file, unless a zeroed range may extend it).
    /// Anything else (collapse, insert, unshare) is EOPNOTSUPP.
    pub async fn fallocate(
        self: &Arc<Self>,
        ino: u64,
        fh: u64,
        offset: u64,
        length: u64,
        mode: i32,
    ) -> FsResult<()> {
        const KEEP_SIZE: i32 = libc::FALLOC_FL_KEEP_SIZE;
        const PUNCH_HOLE: i32 = libc::FALLOC_FL_PUNCH_HOLE | libc::FALLOC_FL_KEEP_SIZE;
        const ZERO_RANGE: i32 = libc::FALLOC_FL_ZERO_RANGE;
        self.writable()?;
        let end = offset
            .checked_add(length)
            .ok_or(FsError::answer(libc::EFBIG))?;
        let size = self.node(ino)?.state.size;
        let zeros_to = match mode {
            0 => None,
            KEEP_SIZE => return Ok(()),
            PUNCH_HOLE => Some(end.min(size)),
            ZERO_RANGE => Some(end),
            m if m == ZERO_RANGE | KEEP_SIZE => Some(end.min(size)),
            _ => {
                return Err(FsError::refused(
                    libc::EOPNOTSUPP,
                    format!("inode {ino}: fallocate mode {mode:#x} is not supported"),
                ));
            }
        };
        if let Some(to) = zeros_to {
            let zeros = vec![0u8; 1 << 20];
            let mut at = offset;
            while at < to {
                let n = (to - at).min(zeros.len() as u64) as usize;
                self.write(fh, at, &zeros[..n]).await?;
                at += n as u64;
            }
        } else if end > size {
            let grow = AttrChange {
                size: Some(end),
                ..Default::default()
            };
            self.setattr(ino, grow, Some(fh)).await?;
        }
        Ok(())
    }

    /// Saves a node's changed attributes: a copy of the object onto itself with new metadata
    /// (for a directory, its marker is written).
    pub(super) async fn flush_attrs(&self, ino: u64) -> FsResult<()> {
        let _saving = self.object_locks.lock(&[ino]).await;
        let Ok(node) = self.node(ino) else {
            return Ok(());
        };
        if !node.state.attrs_dirty || node.writers > 0 || node.unlinked {
            return Ok(());
        }
        let attrs = node.state.attrs;
        let store = &self.volume.store;
        let (saved, binding) = match node.kind {
            // A new marker, with its attributes bound to it.
            NodeKind::Dir => {
                let (marker, binding) = self.sealed_object(ObjectKind::Directory, b"");
                let metadata = self.attrs_metadata(&attrs, &binding);
                (store.put(&node.key, marker, &metadata).await, binding)
            }
            // The same body (and so the same header) with new metadata.
            _ => {
                let binding = self.binding_of(&node.key, node.state.binding).await?;
                let metadata = self.attrs_metadata(&attrs, &binding);
                let copied = store.copy(&node.key, &node.key, Some(&metadata)).await;
                (copied, binding)
            }
        };
        self.forget_head(&node.key);
        match saved {
            Ok(put) => {
                let mut inodes = self.inodes.lock().unwrap();
                if let Some(n) = inodes.get_mut(ino) {
                    if n.key == node.key {
                        n.state.etag = put.etag.or(n.state.etag.take());
                        n.state.binding = Some(binding);
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
            Err(e) => Err(FsError::store("saving attributes of", &node.key, e)),
        }
    }

    /// Saves every pending attribute change now (fsync of the directory, unmount).
    pub async fn flush_all_attrs(&self) {
        let dirty = self.inodes.lock().unwrap().dirty();
        for ino in dirty {
            if let Err(e) = self.flush_attrs(ino).await {
                e.log("saving changed attributes");
            }
        }
    }

    pub(super) fn new_attrs(&self, kind: NodeKind, mode: u32, caller: Caller) -> PosixAttrs {
        let now = SystemTime::now();
        PosixAttrs {
            mode: kind.type_bits() | (mode & 0o7777),
            uid: caller.uid,
            gid: caller.gid,
            mtime: now,
            ctime: now,
            atime: now,
        }
    }

    pub(super) fn committed_state(
        &self,
        size: u64,
        ciphertext_size: u64,
        etag: Option<String>,
        attrs: PosixAttrs,
        binding: Option<AttrsBinding>,
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
            rdev: 0,
            binding,
        }
    }
}
