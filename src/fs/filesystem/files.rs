//! Files: create and open, reads, streamed writes of new versions, close (flush/release),
//! fsync, and the commit that saves a new version.

use super::*;
use crate::store::WriteCondition;

impl FsCore {
    pub async fn create(
        &self,
        parent: u64,
        name: &OsStr,
        mode: u32,
        caller: Caller,
    ) -> FsResult<(Attr, u64)> {
        self.writable()?;
        let parent_node = self.dir_node(parent)?;
        let name = key_component(name, parent == ROOT_INO)?;
        let child = self.child_keys(&parent_node, name)?;
        // A long name's side object goes first: the file must never be in the bucket
        // without its name.
        self.put_side_object(&child).await?;
        let key = child.file;
        let attrs = self.new_attrs(NodeKind::File, mode, caller);
        let state = NodeState {
            size: 0,
            ciphertext_size: 0,
            etag: None,
            attrs,
            attrs_dirty: false,
            valid_until: Instant::now(),
            rdev: 0,
            binding: None,
        };
        let ino = {
            let mut inodes = self.inodes.lock().unwrap();
            let ino = inodes.upsert(parent, name, NodeKind::File, key.clone(), state, true);
            let node = inodes.get_mut(ino).expect("just inserted");
            node.writers += 1;
            node.state.size = 0;
            node.state.attrs = attrs;
            node.open_handles += 1;
            ino
        };
        self.dirs.lock().unwrap().forget_negative(parent, name);
        self.entries_changed(parent);
        let fh = self.add_writer(
            ino,
            key,
            process_of(caller.pid),
            &attrs,
            false,
            Some(WriteCondition::Absent),
        );
        let attr = self.attr_of(&self.node(ino)?);
        Ok((attr, fh))
    }

    pub async fn open(&self, ino: u64, flags: i32, pid: u32) -> FsResult<u64> {
        let node = self.node(ino)?;
        match node.kind {
            NodeKind::Dir => return Err(FsError::answer(libc::EISDIR)),
            NodeKind::Symlink => return Err(FsError::answer(libc::ELOOP)),
            NodeKind::File => {}
            // The kernel opens FIFOs, sockets and devices itself, never through us.
            _ => return Err(FsError::answer(libc::ENXIO)),
        }
        let access = flags & libc::O_ACCMODE;
        if access != libc::O_RDONLY {
            self.writable()?;
            let truncate = flags & libc::O_TRUNC != 0;
            if !truncate {
                // Whether the file is empty decides between a new version and no writing at
                // all, so it must be the bucket's answer, not a stale one.
                self.getattr(ino).await?;
            }
            let pid = process_of(pid);
            // Already being changed in place: this descriptor shares those contents.
            if let Some(fh) = self.join_modify(ino, pid, true) {
                if truncate {
                    let state = self.modify_handle(fh).expect("just added");
                    let mut h = state.lock().await;
                    h.set_len(&self.options.cache_dir, &self.staging_budget, 0)
                        .await?;
                    if let Some(n) = self.inodes.lock().unwrap().get_mut(ino) {
                        n.state.size = 0;
                        n.state.attrs.touch(SystemTime::now());
                    }
                }
                return Ok(fh);
            }
            // A new version being streamed goes on in place, shared with this descriptor;
            // once its parts are out, it has to be in before it can be changed in place.
            if !truncate && let Some(fh) = self.join_stream(ino, pid, true).await? {
                return Ok(fh);
            }
            if !truncate && node.writers > 0 && !self.wait_for_commit(ino).await {
                return Err(FsError::refused(
                    libc::EBUSY,
                    format!(
                        "{}: cannot change a file while a new version of it is being written",
                        node.key
                    ),
                ));
            }
            let (attrs, empties_file, replaces) = {
                let mut inodes = self.inodes.lock().unwrap();
                let node = inodes.get_mut(ino).ok_or(FsError::answer(libc::ENOENT))?;
                if node.writers > 0 && !truncate {
                    return Err(FsError::answer(libc::EBUSY));
                }
                if !truncate {
                    // An existing file, kept: changed in place (staged on first change).
                    node.writers += 1;
                    node.open_handles += 1;
                    let (base_len, snapshot) = (node.state.size, node.clone());
                    drop(inodes);
                    let base = match self.reader_for(&snapshot) {
                        Ok(r) => r,
                        Err(e) => {
                            let mut inodes = self.inodes.lock().unwrap();
                            if let Some(n) = inodes.get_mut(ino) {
                                n.writers -= 1;
                            }
                            inodes.close(ino);
                            drop(inodes);
                            self.settled.notify_waiters();
                            return Err(e);
                        }
                    };
                    let state = Arc::new(tokio::sync::Mutex::new(ModifyHandle::new(
                        ino,
                        Arc::new(base),
                        base_len,
                    )));
                    self.modifying
                        .lock()
                        .unwrap()
                        .insert(ino, (state.clone(), 1));
                    return Ok(self.add_handle(Handle::Modify(ModifyOpen {
                        opener_pid: pid,
                        writes: true,
                        state,
                    })));
                }
                // With O_TRUNC while another new version is being written, both are written
                // and the one closed last is the file (last writer wins).
                node.writers += 1;
                let had_contents = node.state.size > 0;
                // The version it replaces, as this mount knows it (another mount's save
                // since then is a conflict). Unknown while this mount writes it too.
                let replaces = node.state.etag.clone().map(WriteCondition::Matches);
                node.state.size = 0;
                node.state.attrs.touch(SystemTime::now());
                node.open_handles += 1;
                (node.state.attrs, had_contents, replaces)
            };
            return Ok(self.add_writer(ino, node.key.clone(), pid, &attrs, empties_file, replaces));
        }
        // Being changed in place: read what the writers see.
        if let Some(fh) = self.join_modify(ino, process_of(pid), false) {
            return Ok(fh);
        }
        if let Some(fh) = self.join_stream(ino, process_of(pid), false).await? {
            return Ok(fh);
        }
        if node.writers > 0 && !self.wait_for_commit(ino).await {
            return Err(FsError::refused(
                libc::EBUSY,
                format!("{}: cannot read a file while it is being written", node.key),
            ));
        }
        // Open-after-close consistency: revalidate stale attributes (another writer may have
        // replaced the object); a reader also needs the ETag to pin the version it reads.
        if node.state.etag.is_none()
            && let Some(n) = self.inodes.lock().unwrap().get_mut(ino)
        {
            n.state.valid_until = Instant::now();
        }
        self.getattr(ino).await?;
        let reader = self.reader_for(&self.node(ino)?)?;
        self.inodes.lock().unwrap().open(ino);
        Ok(self.add_handle(Handle::Read(ino, Arc::new(reader))))
    }

    /// A reader pinned to the version the node's state names.
    pub(super) fn reader_for(&self, node: &Node) -> FsResult<ObjectReader> {
        let etag = node.state.etag.clone().ok_or_else(|| {
            FsError::failed(
                libc::EIO,
                format!("{}: the server gave no ETag for this object", node.key),
            )
        })?;
        ObjectReader::new(
            self.read.clone(),
            ObjectVersion {
                key: node.key.clone(),
                etag,
                ciphertext_size: node.state.ciphertext_size,
            },
        )
        .map_err(FsError::from)
    }

    pub async fn read(&self, fh: u64, offset: u64, size: u32) -> FsResult<Bytes> {
        let (reader, modify) = match self.handles.lock().unwrap().get(fh) {
            Some(Handle::Read(_, r)) => (Some(r.clone()), None),
            Some(Handle::Modify(m)) => (None, Some(m.state.clone())),
            Some(Handle::Write(..)) => (None, None),
            _ => return Err(FsError::answer(libc::EBADF)),
        };
        // A new file read back through its own descriptor (O_RDWR).
        let modify = match (&reader, modify) {
            (None, None) => self.divert_stream(fh).await?.map_or_else(
                || {
                    Err(FsError::refused(
                        libc::EBADF,
                        "a new file whose parts are being sent cannot be read back yet",
                    ))
                },
                |m| Ok(Some(m)),
            )?,
            (_, modify) => modify,
        };
        match (reader, modify) {
            (Some(reader), _) => reader.read(offset, size).await.map_err(FsError::from),
            (_, Some(m)) => m.lock().await.read(offset, size).await,
            _ => Err(FsError::answer(libc::EBADF)),
        }
    }

    pub async fn write(&self, fh: u64, offset: u64, data: &[u8]) -> FsResult<u32> {
        self.within_object_limit(offset.saturating_add(data.len() as u64))?;
        if let Some(m) = self.modify_handle(fh) {
            return self.write_in_place(&m, offset, data).await;
        }
        if let Some(m) = self.continue_in_place(fh).await {
            return self.write_in_place(&m, offset, data).await;
        }
        let handle = match self.handles.lock().unwrap().get(fh) {
            Some(Handle::Write(_, h)) => h.clone(),
            _ => return Err(FsError::answer(libc::EBADF)),
        };
        let mut h = handle.lock().await;
        if offset != h.writer.len() {
            drop(h);
            if let Some(m) = self.divert_stream(fh).await? {
                return self.write_in_place(&m, offset, data).await;
            }
            h = handle.lock().await;
        }
        if let Err(e) = h.writer.write(offset, data).await {
            return Err(FsError::from(e).context(format!("{}: write failed", h.writer.key())));
        }
        self.note_written(&h);
        Ok(data.len() as u32)
    }

    /// A write taken on the caller's thread, from the caller's buffer: the FUSE adapter
    /// tries it first, so that most writes of a new file are neither copied nor queued.
    /// `None` (nothing written) unless the file's stream takes it without waiting
    /// (`ObjectWriter::write_now`); then [`FsCore::write`] does it.
    pub fn write_now(&self, fh: u64, offset: u64, data: &[u8]) -> Option<u32> {
        self.within_object_limit(offset.saturating_add(data.len() as u64))
            .ok()?;
        let handle = self.write_handle(fh)?;
        // Held by a flush, a read-back or a write that waits: this one queues behind it.
        let mut h = handle.try_lock().ok()?;
        if !h.writer.write_now(offset, data) {
            return None;
        }
        self.note_written(&h);
        Some(data.len() as u32)
    }

    /// The file's size and mtime after a write to its stream.
    fn note_written(&self, h: &WriteHandle) {
        let size = h.writer.len();
        if let Some(node) = self.inodes.lock().unwrap().get_mut(h.ino) {
            node.state.size = size;
            node.state.attrs.touch(SystemTime::now());
        }
    }

    /// close(): the opening process's flush commits the file and returns the upload's result;
    /// the last release commits what no flush did.
    pub async fn flush(&self, fh: u64, pid: u32) -> FsResult<()> {
        let opened = match self.handles.lock().unwrap().get(fh) {
            Some(Handle::Modify(m)) => {
                Some((m.writes && m.opener_pid == process_of(pid), m.state.clone()))
            }
            _ => None,
        };
        if let Some((saves, state)) = opened {
            if !saves {
                return Ok(());
            }
            return self.commit_in_place(&mut *state.lock().await).await;
        }
        let Some(handle) = self.write_handle(fh) else {
            return Ok(());
        };
        let mut h = handle.lock().await;
        if h.opener_pid != process_of(pid) {
            return Ok(());
        }
        h.closed = true;
        // A new empty file is not committed at flush: a shell redirection opens, dup2()s and
        // closes the original descriptor before anything is written, so the save would only
        // be repeated. Emptying a file that had contents is committed here, so that a failure
        // is close()'s error (what the dup'd descriptor writes later goes on in place). A
        // file whose commit already ran (fsync, a failed write) reports that result again.
        if h.writer.is_empty() && !h.writer.is_committed() && !h.empties_file {
            return Ok(());
        }
        if self.is_unlinked(h.ino) {
            return Ok(()); // nothing of an unlinked file is saved
        }
        self.commit(&mut h).await
    }

    /// fsync(2): commits a file being written; saves changed attributes of any other.
    pub async fn fsync(&self, ino: u64, fh: u64) -> FsResult<()> {
        if let Some(m) = self.modify_handle(fh) {
            return self.commit_in_place(&mut *m.lock().await).await;
        }
        match self.write_handle(fh) {
            Some(_) if self.is_unlinked(ino) => Ok(()),
            Some(handle) => self.commit(&mut *handle.lock().await).await,
            None => self.flush_attrs(ino).await,
        }
    }

    /// The last close of a handle: commits what no flush committed (errors can only be logged
    /// here, which is why the opener's flush commits first).
    pub fn release(
        self: &Arc<Self>,
        ino: u64,
        fh: u64,
    ) -> impl std::future::Future<Output = ()> + Send + 'static {
        // Counted before the future runs, so a shutdown that starts now waits for it.
        self.releasing.fetch_add(1, Ordering::SeqCst);
        let fs = self.clone();
        async move {
            let handle = fs.handles.lock().unwrap().remove(fh);
            if let Some(Handle::Write(_, handle)) = handle {
                let mut h = handle.lock().await;
                // A commit that already ran (at close, fsync) had its result replied and logged.
                let first = !h.settled;
                if fs.is_unlinked(ino) {
                    fs.discard(&mut h).await;
                } else if let Err(e) = fs.commit(&mut h).await
                    && first
                {
                    e.log("saving a file at its release");
                }
            } else if let Some(Handle::Modify(m)) = handle {
                if m.writes {
                    let mut h = m.state.lock().await;
                    if let Err(e) = fs.commit_in_place(&mut h).await {
                        e.log("saving a changed file at its release");
                    }
                    if let Some(n) = fs.inodes.lock().unwrap().get_mut(ino) {
                        n.writers = n.writers.saturating_sub(1);
                    }
                }
                fs.leave_modify(ino);
            }
            let orphans = fs.inodes.lock().unwrap().close_file(ino);
            fs.delete_orphans(orphans).await;
            fs.releasing.fetch_sub(1, Ordering::SeqCst);
            fs.settled.notify_waiters();
        }
    }

    /// A file closed a moment ago may still be committing in its release (the kernel sends
    /// release after close() returns): give it a short while before calling the file busy.
    pub(super) async fn wait_for_commit(&self, ino: u64) -> bool {
        let deadline = Instant::now() + Duration::from_secs(10);
        self.wait_until_settled(
            deadline,
            || !matches!(self.inodes.lock().unwrap().get(ino), Some(n) if n.writers > 0),
        )
        .await
    }

    /// Waits (up to `timeout`) for releases that are still committing files.
    pub async fn wait_for_releases(&self, timeout: Duration) {
        self.wait_until_settled(Instant::now() + timeout, || {
            self.releasing.load(Ordering::SeqCst) == 0
        })
        .await;
    }

    /// Waits until `done()` holds, or `deadline` passes; whether it holds. Woken by
    /// `settled`, which every commit and release notifies when it ends.
    async fn wait_until_settled(&self, deadline: Instant, done: impl Fn() -> bool) -> bool {
        loop {
            let notified = self.settled.notified();
            tokio::pin!(notified);
            // Registered before the check, so a notification between the two is not missed.
            notified.as_mut().enable();
            if done() {
                return true;
            }
            if tokio::time::timeout_at(deadline, notified).await.is_err() {
                return done();
            }
        }
    }

    pub(super) async fn commit(&self, h: &mut WriteHandle) -> FsResult<()> {
        if !h.settled && !h.writer.is_committed() {
            // The attributes as they are now (mode, owner, and the time of the last write or
            // an explicit utimes) go with the upload when it can still take them.
            let attrs = self.node(h.ino).map(|n| n.state.attrs);
            if let Ok(attrs) = attrs
                && h.writer.set_attrs(attrs)
                && let Some(n) = self.inodes.lock().unwrap().get_mut(h.ino)
                && n.state.attrs == attrs
            {
                n.state.attrs_dirty = false;
            }
        }
        let mut expected = None;
        if !h.settled && !h.writer.is_committed() {
            expected = self.expectation(h.ino, h.expect.clone());
            let guard = self.save_guard(h.ino, expected.clone());
            h.writer.guard(guard);
        }
        // Idempotent: a second call returns the first one's result.
        let result = h.writer.commit().await;
        if std::mem::replace(&mut h.settled, true) {
            return result.map(|_| ()).map_err(FsError::from);
        }
        if let Ok(done) = &result
            && done.conflict.is_none()
        {
            self.saved_here(h.ino, expected, done.etag.as_deref());
        }
        let key = h.writer.key().to_string();
        let (parent, dirty) = {
            let mut inodes = self.inodes.lock().unwrap();
            let node = inodes.get_mut(h.ino);
            match (&result, node) {
                (Ok(done), Some(node))
                    if done.conflict.as_ref().is_some_and(|c| c.holds_this_save) =>
                {
                    // Saved under the conflict name: the name holds another mount's version.
                    node.writers = node.writers.saturating_sub(1);
                    node.state.attrs_dirty = false;
                    node.state.etag = None;
                    node.state.valid_until = Instant::now();
                    (Some((node.parent, node.name.clone())), None)
                }
                (Ok(done), Some(node)) => {
                    node.writers = node.writers.saturating_sub(1);
                    let dirty = node.state.attrs_dirty;
                    node.state = self.committed_state(
                        done.plaintext_size,
                        done.ciphertext_size,
                        done.etag.clone(),
                        node.state.attrs,
                        done.binding,
                    );
                    // Changed after the multipart upload began: saved by a copy shortly.
                    node.state.attrs_dirty = dirty;
                    (
                        Some((node.parent, node.name.clone())),
                        dirty.then_some(node.ino),
                    )
                }
                (Err(_), Some(node)) => {
                    // The previous version (if any) is still in the bucket: forget what we
                    // believed, the next use asks S3.
                    node.writers = node.writers.saturating_sub(1);
                    node.state.attrs_dirty = false;
                    node.state.valid_until = Instant::now();
                    (Some((node.parent, node.name.clone())), None)
                }
                _ => (None, None),
            }
        };
        self.settled.notify_waiters();
        self.read.cache.invalidate(&key);
        self.forget_head(&key);
        if let Some((parent, name)) = parent {
            let child = self.node(parent).and_then(|p| self.child_keys(&p, &name));
            // Checked and recorded under the inode lock: a rename of this file that runs now
            // either sees the listing entry (and moves it) or made us see the new name.
            let inodes = self.inodes.lock().unwrap();
            let unmoved = inodes
                .get(h.ino)
                .is_some_and(|n| n.parent == parent && n.name == name && !n.unlinked);
            match child {
                Ok(child) if result.is_ok() && unmoved => {
                    self.update_listing(parent, &name, Some((NodeKind::File, child.component)))
                }
                _ => self.invalidate_listing(parent),
            }
        }
        if let Some(ino) = dirty
            && let Err(e) = self.flush_attrs(ino).await
        {
            e.context(format!("{key}: file saved, but its attributes were not"))
                .log("saving attributes with a file");
        }
        match result {
            Ok(done) => {
                self.after_conflict(h.ino, &done);
                debug!(key = %key, size = done.plaintext_size, "file committed");
                Ok(())
            }
            Err(e) => Err(FsError::from(e).context(format!("{key}: file not saved"))),
        }
    }

    /// Commits every open writer (unmount, SIGTERM), each within `timeout`.
    pub async fn commit_all(&self, timeout: Duration) {
        let writers = self.handles.lock().unwrap().writers();
        let commits = writers.into_iter().map(|handle| async move {
            let saved = tokio::time::timeout(timeout, async {
                let mut h = handle.lock().await;
                if self.is_unlinked(h.ino) {
                    self.discard(&mut h).await;
                    return (h.writer.key().to_string(), Ok(()));
                }
                let result = self.commit(&mut h).await;
                (h.writer.key().to_string(), result)
            })
            .await;
            match saved {
                Ok((key, Ok(()))) => info!(key = %key, "saved at shutdown"),
                Ok((_, Err(e))) => e.log("saving a file at shutdown"),
                Err(_) => {
                    warn!("a file was not saved: shutdown timeout (its upload is left for fsck)")
                }
            }
        });
        futures::future::join_all(commits).await;
        let changed: Vec<_> = self
            .modifying
            .lock()
            .unwrap()
            .values()
            .map(|(state, _)| state.clone())
            .collect();
        for m in changed {
            let saved = tokio::time::timeout(timeout, async {
                self.commit_in_place(&mut *m.lock().await).await
            })
            .await;
            match saved {
                Ok(Ok(())) => {}
                Ok(Err(e)) => e.log("saving a changed file at shutdown"),
                Err(_) => warn!("a file changed in place was not saved: shutdown timeout"),
            }
        }
        self.flush_all_attrs().await;
        // Open descriptors of unlinked files end with the mount.
        let orphans = self.inodes.lock().unwrap().take_all_orphans();
        self.delete_orphans(orphans).await;
    }
}
