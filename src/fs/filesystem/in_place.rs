//! The glue between open descriptors and a file changed in place (`fs::modify`): the state
//! that all descriptors of the file share, and its save as a new version.

use super::*;

impl FsCore {
    /// A new file's descriptor whose version was already saved (by fsync) and that is
    /// written again: from now on it is changed in place, starting from that version, as if
    /// it had been opened again without O_TRUNC. (SQLite fsyncs its journal, then rewrites
    /// the journal's header.) `None` for any other descriptor.
    pub(super) async fn continue_in_place(&self, fh: u64) -> Option<SharedModify> {
        let handle = self.write_handle(fh)?;
        let h = handle.lock().await;
        let committed = h.writer.committed()?.clone();
        let etag = committed.etag.clone()?;
        let version = ObjectVersion {
            key: h.writer.key().to_string(),
            etag,
            ciphertext_size: committed.ciphertext_size,
        };
        let base = ObjectReader::new(self.read.clone(), version).ok()?;
        let state = {
            let mut modifying = self.modifying.lock().unwrap();
            let (state, users) = modifying.entry(h.ino).or_insert_with(|| {
                let handle = ModifyHandle::new(h.ino, Arc::new(base), committed.plaintext_size);
                (Arc::new(tokio::sync::Mutex::new(handle)), 0)
            });
            *users += 1;
            state.clone()
        };
        if let Some(n) = self.inodes.lock().unwrap().get_mut(h.ino) {
            // The saved writer stopped counting at its commit; the descriptor writes again.
            n.writers += 1;
        }
        self.handles.lock().unwrap().insert(
            fh,
            Handle::Modify(ModifyOpen {
                opener_pid: h.opener_pid,
                writes: true,
                state: state.clone(),
            }),
        );
        Some(state)
    }

    pub(super) async fn write_in_place(
        &self,
        handle: &tokio::sync::Mutex<ModifyHandle>,
        offset: u64,
        data: &[u8],
    ) -> FsResult<u32> {
        let mut h = handle.lock().await;
        h.write(&self.options.cache_dir, &self.staging_budget, offset, data)
            .await?;
        self.changed_in_place(h.ino, h.len());
        Ok(data.len() as u32)
    }

    /// What `stat` shows of a file changed in place: its new size, and now as its mtime.
    pub(super) fn changed_in_place(&self, ino: u64, size: u64) {
        if let Some(node) = self.inodes.lock().unwrap().get_mut(ino) {
            node.state.size = size;
            node.state.attrs.mtime = SystemTime::now();
        }
    }

    /// Saves a file changed in place as a new version of its object (nothing to do if it
    /// did not change since the last save).
    pub(super) async fn commit_in_place(&self, h: &mut ModifyHandle) -> FsResult<()> {
        if !h.dirty {
            return Ok(());
        }
        // Not while a rename moves the object: the new version goes where the name is now.
        let _saving = self.object_locks.lock(&[h.ino]).await;
        let node = self.node(h.ino)?;
        let metadata = self.attrs_metadata(&node.state.attrs);
        let result = match h.save_appended(&self.upload, &node.key, &metadata).await? {
            Some(done) => done,
            None => {
                let mut writer = ObjectWriter::new(self.upload.clone(), node.key.clone(), metadata);
                let uploaded = h.upload(&mut writer).await;
                match uploaded {
                    Ok(()) => writer.commit().await.map_err(FsError::from),
                    Err(e) => {
                        writer.abort().await;
                        Err(e)
                    }
                }
                .map_err(|e| e.context(format!("{}: file not saved", node.key)))?
            }
        };
        h.dirty = false;
        // Later appends start from the version just saved.
        if let Some(etag) = &result.etag
            && let Ok(reader) = ObjectReader::new(
                self.read.clone(),
                ObjectVersion {
                    key: node.key.clone(),
                    etag: etag.clone(),
                    ciphertext_size: result.ciphertext_size,
                },
            )
        {
            h.rebase(Arc::new(reader), result.plaintext_size);
        }
        if let Some(n) = self.inodes.lock().unwrap().get_mut(h.ino) {
            n.state.size = result.plaintext_size;
            n.state.ciphertext_size = result.ciphertext_size;
            n.state.etag = result.etag;
            n.state.attrs_dirty = false;
        }
        self.read.cache.invalidate(&node.key);
        self.forget_head(&node.key);
        Ok(())
    }

    pub(super) fn modify_handle(&self, fh: u64) -> Option<SharedModify> {
        match self.handles.lock().unwrap().get(fh) {
            Some(Handle::Modify(m)) => Some(m.state.clone()),
            _ => None,
        }
    }

    /// The shared state of a file being changed in place.
    pub(super) fn modify_state(&self, ino: u64) -> Option<SharedModify> {
        self.modifying
            .lock()
            .unwrap()
            .get(&ino)
            .map(|(state, _)| state.clone())
    }

    /// A new descriptor on a file already being changed in place, if it is.
    pub(super) fn join_modify(&self, ino: u64, pid: u32, writes: bool) -> Option<u64> {
        let state = {
            let mut modifying = self.modifying.lock().unwrap();
            let (state, users) = modifying.get_mut(&ino)?;
            *users += 1;
            state.clone()
        };
        {
            let mut inodes = self.inodes.lock().unwrap();
            if writes && let Some(n) = inodes.get_mut(ino) {
                n.writers += 1;
            }
            inodes.open(ino);
        }
        Some(self.add_handle(Handle::Modify(ModifyOpen {
            opener_pid: pid,
            writes,
            state,
        })))
    }

    /// A descriptor of a file changed in place is gone; the last one drops the shared state
    /// (and its staging file).
    pub(super) fn leave_modify(&self, ino: u64) {
        let mut modifying = self.modifying.lock().unwrap();
        if let Some((_, users)) = modifying.get_mut(&ino) {
            *users -= 1;
            if *users == 0 {
                modifying.remove(&ino);
            }
        }
    }
}
