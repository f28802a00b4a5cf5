//! Making and removing entries: mkdir, mknod, symlink (small objects written at once),
//! readlink, unlink and rmdir, and the keys (and long-name side objects) a name has.

use super::*;

/// The most plaintext a small object holds: a symlink's target (PATH_MAX) is the largest.
const MAX_SMALL_OBJECT_CONTENT: u64 = 4096 + 1024;

/// A device node's number, from its object's plaintext (8 bytes, little-endian).
fn device_number(key: &str, body: &[u8]) -> FsResult<u32> {
    <[u8; 8]>::try_from(body)
        .ok()
        .and_then(|b| u32::try_from(u64::from_le_bytes(b)).ok())
        .ok_or_else(|| {
            FsError::failed(
                libc::EIO,
                format!("{key}: not a device number ({} bytes)", body.len()),
            )
        })
}

/// The keys a name has in a directory.
#[derive(Debug, Clone)]
pub(super) struct ChildKeys {
    /// Key component (encrypted, or a long-name stand-in, on name-encrypted volumes).
    pub(super) component: String,
    /// The key it has as a file (or symlink), checked against S3's length limit.
    pub(super) file: String,
    /// The prefix it has as a directory.
    pub(super) dir: String,
    /// A long encrypted name's side object: its key and body.
    pub(super) side: Option<(String, String)>,
}

impl FsCore {
    /// The plaintext path of the directory `ino` relative to the volume (`""` for the root):
    /// what name encryption binds a directory's entries to. The kernel keeps a directory's
    /// inode while it holds any entry below it, so the walk up always finds the parents.
    pub(super) fn dir_path(&self, ino: u64) -> FsResult<String> {
        let inodes = self.inodes.lock().unwrap();
        let mut parts = Vec::new();
        let mut at = ino;
        while at != ROOT_INO {
            let node = inodes.get(at).ok_or(FsError::answer(libc::ENOENT))?;
            parts.push(node.name.clone());
            at = node.parent;
        }
        parts.reverse();
        Ok(parts.join("/"))
    }

    /// The keys of `name` in the directory `parent`; ENAMETOOLONG if its key would pass S3's
    /// limit.
    pub(super) fn child_keys(&self, parent: &Node, name: &str) -> FsResult<ChildKeys> {
        let encoded = self.volume.names.encode(&self.dir_path(parent.ino)?, name);
        let file = names::file_key(&parent.key, &encoded.component, self.volume_prefix_len())
            .map_err(|errno| {
                FsError::refused(
                    errno,
                    format!(
                        "{}{}: the key would pass S3's limit of {} bytes",
                        parent.key,
                        encoded.component,
                        names::MAX_KEY_BYTES
                    ),
                )
            })?;
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
    pub(super) async fn put_side_object(&self, child: &ChildKeys) -> FsResult<()> {
        if let Some((key, body)) = &child.side {
            self.volume
                .store
                .put(key, Bytes::from(body.clone()), &Metadata::new())
                .await
                .map_err(|e| FsError::store("PUT", key, e))?;
        }
        Ok(())
    }

    /// Removes a long encrypted name's side object once its entry is gone (best effort: an
    /// orphan side object is hidden and harmless; fsck lists it).
    pub(super) async fn delete_side_object(&self, child: &ChildKeys) {
        if let Some((key, _)) = &child.side
            && let Err(e) = self.volume.store.delete(key).await
        {
            warn!(key = %key, "could not remove a long name's side object: {e}");
        }
    }

    /// Fails with EEXIST when `parent/name` exists (forgetting the lookup made to find out).
    pub(super) async fn ensure_absent(&self, parent: u64, name: &str) -> FsResult<()> {
        match self.lookup(parent, OsStr::new(name)).await {
            Ok(_) => {
                self.forget_name(parent, name);
                Err(FsError::answer(libc::EEXIST))
            }
            Err(e) if e.is(libc::ENOENT) => Ok(()),
            Err(e) => Err(e),
        }
    }

    /// Records a node this mount just made (its object is in the bucket).
    pub(super) fn add_made_node(
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
        self.entries_changed(parent);
        let mut inodes = self.inodes.lock().unwrap();
        let ino = inodes.upsert(parent, name, kind, key, state, true);
        self.attr_of(inodes.get(ino).expect("just inserted"))
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
        let name = key_component(name, parent == ROOT_INO)?;
        self.ensure_absent(parent, name).await?;
        let child = self.child_keys(&parent_node, name)?;
        let prefix = child.dir.clone();
        let attrs = self.new_attrs(NodeKind::Dir, mode, caller);
        self.put_side_object(&child).await?;
        // The marker holds an empty object of our format: its header is what the
        // directory's attributes are bound to.
        let (marker, binding) = self.sealed_object(ObjectKind::Directory, b"");
        let put = self
            .volume
            .store
            .put(&prefix, marker, &self.attrs_metadata(&attrs, &binding))
            .await
            .map_err(|e| FsError::store("PUT", &prefix, e))?;
        let state = self.committed_state(0, 0, put.etag, attrs, Some(binding));
        let attr = self.add_made_node(parent, name, NodeKind::Dir, &child, state);
        // A new directory is known to be empty: lookups in it (`rsync`, `tar x` check each
        // name before creating it) need no request until the metadata TTL passes.
        self.dirs
            .lock()
            .unwrap()
            .new_empty_dir(attr.ino, self.options.metadata_ttl);
        Ok(attr)
    }

    /// mknod(2): an empty regular file, a FIFO, a socket (`bind`) or a device, saved at once
    /// as a small object whose recorded mode says what it is; a device's number is its
    /// encrypted body. The kernel serves FIFOs, sockets and devices itself.
    pub async fn mknod(
        &self,
        parent: u64,
        name: &OsStr,
        mode: u32,
        rdev: u32,
        caller: Caller,
    ) -> FsResult<Attr> {
        self.writable()?;
        let kind = match mode & libc::S_IFMT {
            0 => NodeKind::File,
            bits => NodeKind::from_mode(bits),
        };
        if !(kind == NodeKind::File || kind.is_special()) {
            return Err(FsError::answer(libc::EINVAL));
        }
        let parent_node = self.dir_node(parent)?;
        let name = key_component(name, parent == ROOT_INO)?;
        let child = self.child_keys(&parent_node, name)?;
        self.ensure_absent(parent, name).await?;
        let attrs = self.new_attrs(kind, mode, caller);
        let body = if kind.is_device() {
            u64::from(rdev).to_le_bytes().to_vec()
        } else {
            Vec::new()
        };
        self.put_small(parent, name, &child, kind, &body, attrs)
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
        let name = key_component(name, parent == ROOT_INO)?;
        let child = self.child_keys(&parent_node, name)?;
        let target = target.as_os_str().as_bytes();
        if target.is_empty() || target.len() > 4095 {
            return Err(if target.is_empty() {
                FsError::answer(libc::ENOENT)
            } else {
                FsError::answer(libc::ENAMETOOLONG)
            });
        }
        self.ensure_absent(parent, name).await?;
        let attrs = self.new_attrs(NodeKind::Symlink, 0o777, caller);
        self.put_small(parent, name, &child, NodeKind::Symlink, target, attrs)
            .await
    }

    /// Encrypts and PUTs a small object (an empty file, a symlink) and records its node.
    /// A small object of `kind` holding `plaintext`, encrypted whole, and what attributes
    /// sealed for it are bound to.
    pub(super) fn sealed_object(
        &self,
        kind: ObjectKind,
        plaintext: &[u8],
    ) -> (Bytes, AttrsBinding) {
        let layout = self.volume.layout;
        let body = crate::crypto::encrypt_to_vec(&self.volume.master, layout, kind, plaintext);
        let header = Header::parse(&body, layout).expect("a header just written parses");
        // Sent whole in one request: its ETag will be this digest, which lets a HEAD check
        // the attributes' binding.
        let binding = AttrsBinding::of(&header).with_body_md5(crate::store::content_md5(&body));
        (Bytes::from(body), binding)
    }

    pub(super) async fn put_small(
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
            NodeKind::Symlink => ObjectKind::Symlink,
            _ => ObjectKind::File,
        };
        let (body, binding) = self.sealed_object(object_kind, plaintext);
        let ciphertext_size = body.len() as u64;
        let put = self
            .volume
            .store
            .put(&key, body, &self.attrs_metadata(&attrs, &binding))
            .await
            .map_err(|e| FsError::store("PUT", &key, e))?;
        self.read.cache.invalidate(&key);
        let size = plaintext.len() as u64;
        let mut state = self.committed_state(size, ciphertext_size, put.etag, attrs, Some(binding));
        if kind.is_device() {
            state.rdev = device_number(&key, plaintext)?;
        }
        Ok(self.add_made_node(parent, name, kind, child, state))
    }

    /// The device number a device node's object holds.
    pub(super) async fn read_device_number(&self, key: &str, state: &NodeState) -> FsResult<u32> {
        let body = self
            .read_small(key, state, crate::crypto::ObjectKind::File, "device node")
            .await?;
        device_number(key, &body)
    }

    /// Fetches, verifies and decrypts a small object (a symlink's target, a device number)
    /// of the version `state` names. Its size is checked before anything is allocated: a
    /// server that claims more than a small object can hold is not believed.
    async fn read_small(
        &self,
        key: &str,
        state: &NodeState,
        kind: crate::crypto::ObjectKind,
        what: &str,
    ) -> FsResult<Vec<u8>> {
        let size = state.ciphertext_size;
        let most = self.volume.layout.ciphertext_size(MAX_SMALL_OBJECT_CONTENT);
        if size > most {
            return Err(FsError::failed(
                libc::EIO,
                format!("{key}: a {what} of {size} bytes cannot be one of ours (at most {most})"),
            ));
        }
        let mut object = vec![0u8; size as usize];
        let mut got = self
            .volume
            .store
            .get_range(key, 0..size, state.etag.as_deref())
            .await
            .map_err(|e| FsError::store("GET", key, e))?;
        if got.range.end - got.range.start != size {
            return Err(FsError::failed(
                libc::EIO,
                format!("{key}: {what} object changed size"),
            ));
        }
        got.body
            .read_exact(&mut object)
            .await
            .map_err(|e| FsError::store("GET", key, e))?;
        match crate::crypto::decrypt_to_vec(&self.volume.master, self.volume.layout, &object) {
            Ok((found, body)) if found == kind => Ok(body),
            Ok(_) => Err(FsError::failed(
                libc::EIO,
                format!("{key}: recorded as a {what} but the object is not one"),
            )),
            Err(e) => Err(FsError::failed(
                libc::EIO,
                format!("{key}: {what} cannot be read: {e}"),
            )),
        }
    }

    /// readlink(2): fetches, verifies and decrypts the symlink object.
    pub async fn readlink(&self, ino: u64) -> FsResult<Vec<u8>> {
        let node = self.node(ino)?;
        if node.kind != NodeKind::Symlink {
            return Err(FsError::answer(libc::EINVAL));
        }
        self.read_small(
            &node.key,
            &node.state,
            crate::crypto::ObjectKind::Symlink,
            "symlink",
        )
        .await
    }

    pub async fn unlink(&self, parent: u64, name: &OsStr) -> FsResult<()> {
        self.writable()?;
        let attr = self.lookup(parent, name).await?;
        let node = self.node(attr.ino)?;
        self.forget(attr.ino, 1);
        if node.kind == NodeKind::Dir {
            return Err(FsError::answer(libc::EISDIR));
        }
        // An open file loses its name at once, as on a local disk: its descriptors go on
        // (readers from a hidden copy), and nothing they write is saved from now on.
        let node = self.wait_for_saves(node.ino).await.unwrap_or(node);
        let open = node.open_handles > 0 || node.writers > 0;
        if open {
            self.set_unlinked(node.ino, true);
        }
        let removed = match self.keep_for_open_descriptors(&node).await {
            Ok(()) => self.remove_entry(parent, &node).await,
            Err(e) => Err(e),
        };
        if removed.is_err() && open {
            self.set_unlinked(node.ino, false);
        }
        removed
    }

    pub async fn rmdir(&self, parent: u64, name: &OsStr) -> FsResult<()> {
        self.writable()?;
        let attr = self.lookup(parent, name).await?;
        let node = self.node(attr.ino)?;
        self.forget(attr.ino, 1);
        if node.kind != NodeKind::Dir {
            return Err(FsError::answer(libc::ENOTDIR));
        }
        if !self.dir_is_empty(&node).await? {
            return Err(FsError::answer(libc::ENOTEMPTY));
        }
        self.remove_entry(parent, &node).await?;
        self.invalidate_listing(node.ino);
        Ok(())
    }

    /// unlink/rmdir once checked: the object (or marker) goes, then its long name's side
    /// object, and the name leaves every cache.
    pub(super) async fn remove_entry(&self, parent: u64, node: &Node) -> FsResult<()> {
        let _removing = self.object_locks.lock(&[node.ino]).await;
        self.volume
            .store
            .delete(&node.key)
            .await
            .map_err(|e| FsError::store("DELETE", &node.key, e))?;
        self.read.cache.invalidate(&node.key);
        self.forget_head(&node.key);
        self.update_listing(parent, &node.name, None);
        self.entries_changed(parent);
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
    pub(super) async fn dir_is_empty(&self, dir: &Node) -> FsResult<bool> {
        let page = self
            .volume
            .store
            .list_page(&dir.key, None, None)
            .await
            .map_err(|e| FsError::store("LIST", &dir.key, e))?;
        let pending = !self
            .inodes
            .lock()
            .unwrap()
            .pending_children(dir.ino)
            .is_empty();
        Ok(!pending && page.objects.iter().all(|o| o.key == dir.key))
    }
}
