//! rename(2): files by a server-side copy and a delete; directories by copying every object
//! below them to the new prefix (re-encrypting names on name-encrypted volumes), then
//! deleting the old ones.

use super::*;

impl FsCore {
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
        let new_name = key_component(new_name, new_parent == ROOT_INO)?;
        let new_child = self.child_keys(&target_parent, new_name)?;
        let old_child = self.child_keys(&self.node(parent)?, &node.name)?;
        let new_key = match node.kind {
            NodeKind::Dir => new_child.dir.clone(),
            _ => new_child.file.clone(),
        };
        if new_key == node.key {
            return Ok(());
        }
        // A directory cannot move below itself (the kernel refuses this before asking us,
        // but the core must not wait on its own locks if asked).
        if node.kind == NodeKind::Dir && new_key.starts_with(&node.key) {
            return Err(FsError::answer(libc::EINVAL));
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
                    return Err(FsError::answer(libc::EEXIST));
                }
                let existing = self.node(existing.ino)?;
                match (node.kind == NodeKind::Dir, existing.kind == NodeKind::Dir) {
                    (false, true) => return Err(FsError::answer(libc::EISDIR)),
                    (true, false) => return Err(FsError::answer(libc::ENOTDIR)),
                    (true, true) if !self.dir_is_empty(&existing).await? => {
                        return Err(FsError::answer(libc::ENOTEMPTY));
                    }
                    _ => {}
                }
                // An open file replaced keeps its descriptors, as on a local disk.
                let existing = self.wait_for_saves(existing.ino).await.unwrap_or(existing);
                self.keep_for_open_descriptors(&existing).await?;
                replaced = Some(existing);
            }
            Err(e) if e.is(libc::ENOENT) => {}
            Err(e) => return Err(e),
        }
        // A new file that went on in place before its first save has nothing under its old
        // name to move: only its name moves, and its save goes to the new one.
        let mut unsaved = false;
        if let Some(state) = self.modify_state(node.ino) {
            let mut h = state.lock().await;
            unsaved = h
                .base_key()
                .is_none_or(|k| k.starts_with(names::PENDING_PREFIX));
            // Its contents must not depend on the object under the old name any more.
            h.detach(&self.options.cache_dir, &self.staging_budget)
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
            return Err(FsError::refused(
                libc::EBUSY,
                format!(
                    "{}: refusing to rename a file that two writers are replacing",
                    node.key
                ),
            ));
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
                return Err(FsError::answer(libc::EBUSY));
            }
            let mut objects = vec![node.ino];
            objects.extend(replaced.as_ref().map(|r| r.ino));
            _moving = Some(self.object_locks.lock(&objects).await);
            if !unsaved && let Some(n) = self.inodes.lock().unwrap().get_mut(node.ino) {
                // A new name is a change of status: the ctime moves, recorded by the copy
                // (which replaces the metadata anyway).
                n.state.attrs.ctime = SystemTime::now();
                n.state.attrs_dirty = true;
            }
            let node = self.node(node.ino)?;
            if !unsaved {
                let copied = self.rename_file(&node, &new_key).await?;
                // Its open readers read it under the new name.
                self.readers_follow_rename(&node, &new_key, copied).await?;
            }
        }
        let replaced_file = replaced
            .as_ref()
            .filter(|r| r.kind != NodeKind::Dir)
            .map(|r| (r.ino, r.open_handles > 0 || r.writers > 0));
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
            // The file replaced lost its name: nothing is left to save its attributes to (a
            // delayed save would seal its values onto the object now under the name, where
            // they do not verify); its open descriptors go on, and nothing they write is saved.
            if let Some((n, open)) =
                replaced_file.and_then(|(ino, open)| Some((inodes.get_mut(ino)?, open)))
            {
                n.state.attrs_dirty = false;
                n.unlinked |= open;
            }
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
        self.entries_changed(parent);
        self.entries_changed(new_parent);
        if node.kind == NodeKind::Dir {
            // Its `..` changed (a local disk moves its mtime and ctime too).
            self.entries_changed(node.ino);
        }
        self.update_listing(parent, &node.name, None);
        self.update_listing(
            new_parent,
            new_name,
            Some((node.kind, new_child.component.clone())),
        );
        Ok(())
    }

    /// Moves a file's object to `new_key`; the ETag of the copy, if the server gave it.
    pub(super) async fn rename_file(&self, node: &Node, new_key: &str) -> FsResult<Option<String>> {
        let store = &self.volume.store;
        // Changed attributes ride along with the copy instead of a copy of their own (the
        // copy keeps the body, and so what they are bound to).
        let carried = if node.state.attrs_dirty {
            let binding = self.binding_of(&node.key, node.state.binding).await?;
            Some(self.attrs_metadata(&node.state.attrs, &binding))
        } else {
            None
        };
        // Copy first: if anything fails, the file is still under its old name; if the delete
        // fails after the copy, it exists under both (never under neither).
        let copied = store
            .copy(&node.key, new_key, carried.as_ref())
            .await
            .map_err(|e| FsError::store("COPY", &node.key, e))?;
        if carried.is_some()
            && let Some(n) = self.inodes.lock().unwrap().get_mut(node.ino)
            && n.state.attrs == node.state.attrs
        {
            n.state.attrs_dirty = false;
        }
        store
            .delete(&node.key)
            .await
            .map_err(|e| FsError::store("DELETE", &node.key, e))?;
        self.read.cache.invalidate(&node.key);
        self.read.cache.invalidate(new_key);
        Ok(copied.etag)
    }

    /// A file still being written: its version is committed under the new name, and what the
    /// old name held (an earlier version) goes now, as a rename would take it away. False
    /// when the version is already committed (or committing): then it is renamed as a file.
    pub(super) async fn rename_writing(&self, node: &Node, new_key: &str) -> FsResult<bool> {
        let Some(handle) = self.writer_of(node.ino) else {
            return Ok(false);
        };
        {
            let mut h = handle.lock().await;
            match h.writer.retarget(new_key.to_string()) {
                crate::upload::Retarget::AlreadyCommitted => return Ok(false),
                retargeted => {
                    // What the save expected was the old name's; the rename replaces what
                    // the new name holds, so the save does too (unchecked, like the rename).
                    h.expect = None;
                    if retargeted == crate::upload::Retarget::AtCommit {
                        return Ok(true);
                    }
                }
            }
        }
        self.volume
            .store
            .delete(&node.key)
            .await
            .map_err(|e| FsError::store("DELETE", &node.key, e))?;
        self.read.cache.invalidate(&node.key);
        Ok(true)
    }

    /// Every object under the directory is copied to the new prefix, then the old ones are
    /// deleted: a crash in between leaves each object under the old name, the new one or
    /// both, never neither (docs/SEMANTICS.md).
    pub(super) async fn rename_dir(
        &self,
        node: &Node,
        new_prefix: &str,
        old_path: &str,
        new_path: &str,
    ) -> FsResult<()> {
        use futures::StreamExt;
        if self.inodes.lock().unwrap().writers_under(&node.key) > 0 {
            return Err(FsError::refused(
                libc::EBUSY,
                format!(
                    "{}: refusing to rename a directory with files being written",
                    node.key
                ),
            ));
        }
        self.flush_all_attrs().await;
        let store = &self.volume.store;
        let listing = store
            .list_all(&node.key, None)
            .await
            .map_err(|e| FsError::store("LIST", &node.key, e))?;
        let keys: Vec<String> = listing.objects.into_iter().map(|o| o.key).collect();
        let codec = &self.volume.names;
        let side_keys = rename_plan::side_object_keys(codec, &keys);
        let bodies = futures::future::join_all(
            side_keys
                .iter()
                .map(|key| self.volume.read_side_object(key)),
        )
        .await;
        let side_bodies = side_keys
            .into_iter()
            .zip(bodies)
            .filter_map(|(key, body)| Some((key.clone(), body?)))
            .collect();
        let plan = rename_plan::plan_moves(
            codec,
            &node.key,
            new_prefix,
            old_path,
            new_path,
            &keys,
            &side_bodies,
        );
        for key in &plan.left_behind {
            self.note_hidden(key, false);
        }
        if plan
            .moves
            .iter()
            .any(|(_, to)| self.options.key_prefix_len + to.len() > names::MAX_KEY_BYTES)
        {
            return Err(FsError::answer(libc::ENAMETOOLONG));
        }
        let total = plan.moves.len();
        if total > 100 {
            info!(from = %node.key, to = %new_prefix, objects = total, "renaming a directory");
        }
        for (key, body) in &plan.side_objects {
            store
                .put(key, Bytes::from(body.clone()), &Metadata::new())
                .await
                .map_err(|e| FsError::store("PUT", key, e))?;
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
                    result.map_err(|e| FsError::store("COPY", &from, e))
                }
            })
            .buffer_unordered(8)
            .collect::<Vec<_>>()
            .await;
        if let Some(e) = copies.into_iter().find_map(Result::err) {
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
            return Err(e);
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
            .map_err(|e| FsError::store("DELETE", &node.key, e))?;
        for key in &old_keys {
            self.read.cache.invalidate(key);
            self.forget_head(key);
        }
        // Listings of directories below moved with them.
        self.dirs.lock().unwrap().clear();
        if total > 100 {
            info!(from = %node.key, to = %new_prefix, objects = total, "directory renamed");
        }
        Ok(())
    }

    /// After a directory rename: the keys of the nodes below it, recomputed from their names
    /// top-down (with encrypted names every component below changes, not only the prefix).
    pub(super) fn rekey_below(&self, dir: u64) {
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
}
