//! The glue between open descriptors and a file changed in place (`fs::modify`): the state
//! that all descriptors of the file share, and its save as a new version.

use super::*;
use crate::fs::modify::new_staging;
use crate::store::WriteCondition;
use crate::upload::staging::local_io;

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
        // Saved under the conflict name (another mount had saved first): the contents go on
        // from there, and the next save still expects what this one did.
        let conflict = committed.conflict.as_ref().filter(|c| c.holds_this_save);
        let version = ObjectVersion {
            key: conflict.map_or_else(|| h.writer.key().to_string(), |c| c.kept_at.clone()),
            etag,
            ciphertext_size: committed.ciphertext_size,
        };
        let base = ObjectReader::new(self.read.clone(), version).ok()?;
        let state = {
            let mut modifying = self.modifying.lock().unwrap();
            let (state, users) = modifying.entry(h.ino).or_insert_with(|| {
                let mut handle = ModifyHandle::new(h.ino, Arc::new(base), committed.plaintext_size);
                if conflict.is_some() {
                    handle.expect = h.expect.clone();
                }
                (Arc::new(tokio::sync::Mutex::new(handle)), 0)
            });
            *users += 1;
            state.clone()
        };
        if let Some(n) = self.inodes.lock().unwrap().get_mut(h.ino) {
            // The saved writer stopped counting at its commit; the descriptor writes again.
            n.writers += 1;
        }
        self.writes_in_place(fh, h.opener_pid, &state);
        Some(state)
    }

    /// A new file being streamed, on an operation a stream cannot serve (a write behind or
    /// past its end, a resize, a read, a second descriptor): while no part has been sent,
    /// its version so far is finished under a hidden pending key (never under the file's
    /// name), and the descriptor goes on as a change in place of that version, saved under
    /// the file's name at close or fsync. Once parts are out (their upload is under the
    /// file's name), the stream stops and its local copy of them becomes the staged file
    /// (see [`Self::stage_sent_stream`]). `None` when the descriptor is not such a stream,
    /// or its sent parts were not kept.
    pub(super) async fn divert_stream(&self, fh: u64) -> FsResult<Option<SharedModify>> {
        let Some(handle) = self.write_handle(fh) else {
            return Ok(None);
        };
        {
            let mut h = handle.lock().await;
            if h.writer.has_sent_parts() {
                return self.stage_sent_stream(fh, &mut h).await;
            }
            if !h.writer.is_committed() {
                let pending = names::pending_key();
                debug!(key = %h.writer.key(), pending = %pending, "new file goes on in place");
                h.writer.retarget(pending);
                // Under the hidden key nothing else saves: the expectation is the name's.
                let expect = h.expect.take();
                let saved = self.commit(&mut h).await;
                h.expect = expect;
                saved?;
            }
        }
        let Some(state) = self.continue_in_place(fh).await else {
            return Ok(None);
        };
        {
            let mut m = state.lock().await;
            if m.base_key()
                .is_some_and(|k| k.starts_with(names::PENDING_PREFIX))
            {
                // Not under its name yet: the next close or fsync must save it there, with
                // what the stream's save would have expected.
                m.dirty = true;
                m.expect = handle.lock().await.expect.clone();
            }
        }
        Ok(Some(state))
    }

    /// A stream whose parts are out goes on in place: its multipart upload is aborted and
    /// the file so far (the local copy of the sent parts and the rest) is decrypted into a
    /// staging file, saved under the file's name at close or fsync. Nothing is downloaded,
    /// and nothing partial ever shows under the name. `None` when the copy was not kept
    /// (the file outgrew `--keep-sent-parts`, or the local disk failed): the stream goes on.
    async fn stage_sent_stream(
        &self,
        fh: u64,
        h: &mut WriteHandle,
    ) -> FsResult<Option<SharedModify>> {
        let key = h.writer.key().to_string();
        let local = match h.writer.into_local_object().await {
            Ok(Some(local)) => local,
            Ok(None) => {
                info!(
                    key = %key,
                    "a write behind the parts already sent of a new file cannot be served: \
                     they were not kept locally (see --keep-sent-parts)"
                );
                return Ok(None);
            }
            Err(e) => return Err(FsError::from(e).context(format!("{key}: write failed"))),
        };
        let mut staging = new_staging(&self.options.cache_dir, &self.staging_budget)?;
        let upload = &self.upload;
        let size = local_io(|| local.decrypt_into(&upload.master, upload.layout, &mut staging))
            .map_err(|e| {
                FsError::failed(
                    libc::EIO,
                    format!("{key}: write failed: the local copy of its sent parts: {e}"),
                )
            })?;
        drop(local);
        debug!(key = %key, size, "new file goes on in place from its sent parts");
        // The descriptor keeps counting as a writer, now of the contents in place.
        h.settled = true;
        let mut unsaved = ModifyHandle::unsaved(h.ino, staging);
        unsaved.expect = h.expect.clone();
        let state = Arc::new(tokio::sync::Mutex::new(unsaved));
        self.modifying
            .lock()
            .unwrap()
            .insert(h.ino, (state.clone(), 1));
        self.writes_in_place(fh, h.opener_pid, &state);
        Ok(Some(state))
    }

    /// Descriptor `fh` (a new file's) goes on writing the contents in place `state`.
    fn writes_in_place(&self, fh: u64, opener_pid: u32, state: &SharedModify) {
        self.handles.lock().unwrap().insert(
            fh,
            Handle::Modify(ModifyOpen {
                opener_pid,
                writes: true,
                state: state.clone(),
            }),
        );
    }

    /// A new descriptor on a file being streamed by one other descriptor: the stream goes on
    /// in place (see [`Self::divert_stream`]) and the new descriptor shares it. `None` when
    /// there is no single stream that can go on in place.
    pub(super) async fn join_stream(
        &self,
        ino: u64,
        pid: u32,
        writes: bool,
    ) -> FsResult<Option<u64>> {
        let stream = {
            let handles = self.handles.lock().unwrap();
            match handles.streams_of(ino) {
                1 => handles.stream_handle(ino),
                _ => None,
            }
        };
        let Some(fh) = stream else {
            return Ok(None);
        };
        // Closed a moment ago, its release still to come (and saving it): waited for instead.
        match self.write_handle(fh) {
            Some(h) if !h.lock().await.closed => {}
            _ => return Ok(None),
        }
        if self.divert_stream(fh).await?.is_none() {
            return Ok(None);
        }
        Ok(self.join_modify(ino, pid, writes))
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
            node.state.attrs.touch(SystemTime::now());
        }
    }

    /// Saves a file changed in place as a new version of its object (nothing to do if it
    /// did not change since the last save).
    pub(super) async fn commit_in_place(&self, h: &mut ModifyHandle) -> FsResult<()> {
        if self.is_unlinked(h.ino) {
            h.dirty = false;
            self.keep_pending_base(h);
            return Ok(());
        }
        if !h.dirty {
            return Ok(());
        }
        // Not while a rename moves the object: the new version goes where the name is now.
        let _saving = self.object_locks.lock(&[h.ino]).await;
        let node = self.node(h.ino)?;
        let attrs = node.state.attrs;
        let expected = self.expectation(h.ino, h.expect.clone());
        let guard = self.save_guard(h.ino, expected.clone());
        let result = match h
            .save_appended(&self.upload, &node.key, &attrs, guard.as_ref())
            .await?
        {
            Some(done) => done,
            None => {
                let mut writer = self.new_writer(node.key.clone(), attrs);
                writer.guard(guard);
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
        if let Some(pending) = h
            .base_key()
            .filter(|k| k.starts_with(names::PENDING_PREFIX))
        {
            // The file is under its name now: its pending version is not needed any more.
            let pending = pending.to_string();
            if let Err(e) = self.volume.store.delete(&pending).await {
                warn!(key = %pending, "could not remove a pending version (fsck lists it): {e}");
            }
        }
        // Later appends start from the version just saved. Saved under the conflict name,
        // it is read from there, and the next save still expects what this one did.
        let kept_aside = result.conflict.as_ref().filter(|c| c.holds_this_save);
        if let Some(etag) = &result.etag
            && let Ok(reader) = ObjectReader::new(
                self.read.clone(),
                ObjectVersion {
                    key: kept_aside.map_or_else(|| node.key.clone(), |c| c.kept_at.clone()),
                    etag: etag.clone(),
                    ciphertext_size: result.ciphertext_size,
                },
            )
        {
            h.rebase(Arc::new(reader), result.plaintext_size);
            if kept_aside.is_none() {
                h.expect = Some(WriteCondition::Matches(etag.clone()));
            }
        }
        self.after_conflict(h.ino, &result);
        if kept_aside.is_some() {
            return Ok(());
        }
        if result.conflict.is_none() {
            self.saved_here(h.ino, expected, result.etag.as_deref());
        }
        if let Some(n) = self.inodes.lock().unwrap().get_mut(h.ino) {
            n.state.size = result.plaintext_size;
            n.state.ciphertext_size = result.ciphertext_size;
            n.state.etag = result.etag;
            n.state.attrs_dirty = false;
            // A new version: its header is read when attributes are next saved.
            n.state.binding = None;
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
