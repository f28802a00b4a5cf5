//! Open files that lose their name (unlink, a rename over them) or move (rename): as on a
//! local disk, their descriptors go on. When the object under the name goes, the descriptors
//! that read it move to a copy under a hidden pending key; an unlinked file's writes are
//! never saved under any name, and what was kept for it is deleted at its last close.

use super::*;

impl FsCore {
    /// Before the object under `node`'s name is deleted or replaced while descriptors of it
    /// are open: the readers pinned to it, and a change in place that still reads it, move
    /// to a server-side copy under a hidden pending key (listed in the node's orphans, so
    /// the last close deletes it; `fsck` removes one a crash left behind).
    pub(super) async fn keep_for_open_descriptors(&self, node: &Node) -> FsResult<()> {
        if node.kind != NodeKind::File || node.open_handles == 0 {
            return Ok(());
        }
        let Some(etag) = node.state.etag.clone() else {
            return Ok(()); // nothing saved under the name yet
        };
        let pinned = |v: &ObjectVersion| v.key == node.key && v.etag == etag;
        let readers: Vec<_> = self
            .handles
            .lock()
            .unwrap()
            .readers_of(node.ino)
            .into_iter()
            .filter(|(_, r)| pinned(r.version()))
            .collect();
        let modify = self.modify_state(node.ino);
        let base_read = match &modify {
            Some(m) => m.lock().await.reads_version(&node.key, &etag),
            None => false,
        };
        if readers.is_empty() && !base_read {
            return Ok(());
        }
        let kept = names::pending_key();
        let copied = self
            .volume
            .store
            .copy(&node.key, &kept, None)
            .await
            .map_err(|e| FsError::store("COPY", &node.key, e))?;
        if let Some(n) = self.inodes.lock().unwrap().get_mut(node.ino) {
            n.orphans.push(kept.clone());
        }
        debug!(key = %node.key, kept = %kept, "an open file's version kept for its descriptors");
        let copy = self
            .version_of_copy(&kept, copied.etag, node.state.ciphertext_size)
            .await?;
        self.move_readers(node.ino, &readers, &copy)?;
        if base_read && let Some(m) = modify {
            let reader = ObjectReader::new(self.read.clone(), copy).map_err(FsError::from)?;
            m.lock().await.move_base(&node.key, Arc::new(reader));
        }
        Ok(())
    }

    /// After a rename moved a file's object from `old_key` (version `etag`) to `new_key`:
    /// its readers read the moved object.
    pub(super) async fn readers_follow_rename(
        &self,
        node: &Node,
        new_key: &str,
        copied_etag: Option<String>,
    ) -> FsResult<()> {
        let Some(etag) = &node.state.etag else {
            return Ok(());
        };
        let readers: Vec<_> = self
            .handles
            .lock()
            .unwrap()
            .readers_of(node.ino)
            .into_iter()
            .filter(|(_, r)| r.version().key == node.key && &r.version().etag == etag)
            .collect();
        if readers.is_empty() {
            return Ok(());
        }
        let moved = self
            .version_of_copy(new_key, copied_etag, node.state.ciphertext_size)
            .await?;
        self.move_readers(node.ino, &readers, &moved)
    }

    /// The version a server-side copy made (its ETag asked of S3 if the copy did not say).
    async fn version_of_copy(
        &self,
        key: &str,
        etag: Option<String>,
        ciphertext_size: u64,
    ) -> FsResult<ObjectVersion> {
        let etag = match etag {
            Some(etag) => etag,
            None => self
                .volume
                .store
                .head(key)
                .await
                .map_err(|e| FsError::store("HEAD", key, e))?
                .etag
                .ok_or_else(|| {
                    FsError::failed(libc::EIO, format!("{key}: the server gave no ETag"))
                })?,
        };
        Ok(ObjectVersion {
            key: key.to_string(),
            etag,
            ciphertext_size,
        })
    }

    /// Each of `readers` (handle number, reader) reads `version` from now on: the same bytes
    /// under another key (segments already verified stay in the cache, which is keyed by
    /// what they were verified under).
    fn move_readers(
        &self,
        ino: u64,
        readers: &[(u64, Arc<ObjectReader>)],
        version: &ObjectVersion,
    ) -> FsResult<()> {
        for (fh, _) in readers {
            let reader =
                ObjectReader::new(self.read.clone(), version.clone()).map_err(FsError::from)?;
            let mut handles = self.handles.lock().unwrap();
            if matches!(handles.get(*fh), Some(Handle::Read(..))) {
                handles.insert(*fh, Handle::Read(ino, Arc::new(reader)));
            }
        }
        Ok(())
    }

    /// The name of `ino` goes while descriptors of it are open: from now on nothing they
    /// write is saved (close and fsync succeed), and the last close deletes what was kept.
    /// (Taken back if the removal fails.)
    pub(super) fn set_unlinked(&self, ino: u64, unlinked: bool) {
        if let Some(n) = self.inodes.lock().unwrap().get_mut(ino) {
            n.unlinked = unlinked;
        }
    }

    /// Lets a save of `ino` that is under way (a close committing a new version or a change
    /// in place) finish, so that it cannot land under a name being removed; the node as it
    /// is then.
    pub(super) async fn wait_for_saves(&self, ino: u64) -> Option<Node> {
        if let Some(stream) = self.writer_of(ino) {
            drop(stream.lock().await);
        }
        if let Some(state) = self.modify_state(ino) {
            drop(state.lock().await);
        }
        // A release takes its handle out of the table before it saves the version: a writer
        // counted with no handle left is such a save, and is waited for (up to 10 s), or it
        // would land under the name after the removal.
        let writing = self.node(ino).is_ok_and(|n| n.writers > 0);
        if writing && self.writer_of(ino).is_none() && self.modify_state(ino).is_none() {
            self.wait_for_commit(ino).await;
        }
        self.node(ino).ok()
    }

    pub(super) fn is_unlinked(&self, ino: u64) -> bool {
        self.inodes
            .lock()
            .unwrap()
            .get(ino)
            .is_some_and(|n| n.unlinked)
    }

    /// The release of a new version of an unlinked file: its upload is given up (nothing
    /// reaches the bucket; the parts sent so far are aborted).
    pub(super) async fn discard(&self, h: &mut WriteHandle) {
        if !h.writer.is_committed() {
            h.writer.abort().await;
        }
        if !std::mem::replace(&mut h.settled, true) {
            if let Some(n) = self.inodes.lock().unwrap().get_mut(h.ino) {
                n.writers = n.writers.saturating_sub(1);
            }
            self.settled.notify_waiters();
        }
    }

    /// A change in place of an unlinked file is not saved; a pending version it went on from
    /// (a new file read back or written out of order) is kept for its descriptors and
    /// deleted at the last close.
    pub(super) fn keep_pending_base(&self, h: &ModifyHandle) {
        let Some(base) = h
            .base_key()
            .filter(|k| k.starts_with(names::PENDING_PREFIX))
        else {
            return;
        };
        if let Some(n) = self.inodes.lock().unwrap().get_mut(h.ino)
            && !n.orphans.iter().any(|k| k == base)
        {
            n.orphans.push(base.to_string());
        }
    }

    /// The last close of an unlinked file: the hidden objects kept for it go.
    pub(super) async fn delete_orphans(&self, orphans: Vec<String>) {
        for key in orphans {
            self.read.cache.invalidate(&key);
            if let Err(e) = self.volume.store.delete(&key).await {
                warn!(key = %key, "could not remove what an unlinked file kept (fsck lists it): {e}");
            }
        }
    }
}
