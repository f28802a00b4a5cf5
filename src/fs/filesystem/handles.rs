//! Open handles: what a file handle number stands for (a reader, a new version being
//! streamed, a file changed in place, a directory listing).

use super::*;
use crate::store::WriteCondition;

/// A file opened for writing.
pub struct WriteHandle {
    pub ino: u64,
    /// The process that opened the file: its close() commits; others' flushes do not
    /// (a shell redirection or `dd` in a pipe closes copies of the descriptor early).
    pub opener_pid: u32,
    pub writer: ObjectWriter,
    /// The inode has been told how the version ended (it is no longer being written).
    pub settled: bool,
    /// The opener closed its descriptor: what is left is the release, which saves the file
    /// if the close did not.
    pub closed: bool,
    /// Opened with O_TRUNC over a file that had contents: the opener's close commits even
    /// with nothing written, so a failed save of the now empty file is reported there rather
    /// than leaving the old contents with close() returning 0.
    pub empties_file: bool,
    /// What its save expects under the name: no file (created here), the version it
    /// replaces, or `None` when that is not known.
    pub expect: Option<WriteCondition>,
}

pub(super) enum Handle {
    /// The inode it reads, and the reader.
    Read(u64, Arc<ObjectReader>),
    /// The inode it writes, and the writer.
    Write(u64, Arc<tokio::sync::Mutex<WriteHandle>>),
    /// A descriptor of a file being changed in place (opened for writing without O_TRUNC,
    /// or any open while such a change is under way).
    Modify(ModifyOpen),
    Dir(Arc<Vec<DirEntry>>),
}

pub(super) struct ModifyOpen {
    /// The process that opened it: its close() saves the file.
    pub(super) opener_pid: u32,
    /// Opened for writing (counted in the node's writers).
    pub(super) writes: bool,
    /// Shared by every descriptor of the file.
    pub(super) state: SharedModify,
}

pub(super) type SharedModify = Arc<tokio::sync::Mutex<ModifyHandle>>;

type SharedWriter = Arc<tokio::sync::Mutex<WriteHandle>>;

/// Open handles by number, with readers and the new versions being streamed indexed by
/// inode: a rename, an unlink, an open or a setattr finds a file's descriptors without a scan
/// of every open handle.
#[derive(Default)]
pub(super) struct HandleTable {
    by_number: HashMap<u64, Handle>,
    /// Inode → numbers of its `Handle::Write` handles.
    streams: HashMap<u64, Vec<u64>>,
    /// Inode → numbers of its `Handle::Read` handles.
    readers: HashMap<u64, Vec<u64>>,
}

impl HandleTable {
    pub(super) fn get(&self, fh: u64) -> Option<&Handle> {
        self.by_number.get(&fh)
    }

    /// Adds `handle` as `fh`, or replaces what `fh` was (a new file's descriptor that goes on
    /// as a change in place).
    pub(super) fn insert(&mut self, fh: u64, handle: Handle) {
        if let Some(old) = self.by_number.remove(&fh) {
            self.unindex(fh, &old);
        }
        match &handle {
            Handle::Write(ino, _) => self.streams.entry(*ino).or_default().push(fh),
            Handle::Read(ino, _) => self.readers.entry(*ino).or_default().push(fh),
            _ => {}
        }
        self.by_number.insert(fh, handle);
    }

    pub(super) fn remove(&mut self, fh: u64) -> Option<Handle> {
        let handle = self.by_number.remove(&fh)?;
        self.unindex(fh, &handle);
        Some(handle)
    }

    fn unindex(&mut self, fh: u64, handle: &Handle) {
        let (index, ino) = match handle {
            Handle::Write(ino, _) => (&mut self.streams, ino),
            Handle::Read(ino, _) => (&mut self.readers, ino),
            _ => return,
        };
        if let Some(fhs) = index.get_mut(ino) {
            fhs.retain(|f| *f != fh);
            if fhs.is_empty() {
                index.remove(ino);
            }
        }
    }

    /// The read handles of `ino` with their readers.
    pub(super) fn readers_of(&self, ino: u64) -> Vec<(u64, Arc<ObjectReader>)> {
        let fhs = self.readers.get(&ino).map_or(&[][..], Vec::as_slice);
        fhs.iter()
            .filter_map(|fh| match self.by_number.get(fh) {
                Some(Handle::Read(_, r)) => Some((*fh, r.clone())),
                _ => None,
            })
            .collect()
    }

    /// How many new versions of `ino` are being written (descriptors opened with O_TRUNC).
    pub(super) fn streams_of(&self, ino: u64) -> usize {
        self.streams.get(&ino).map_or(0, Vec::len)
    }

    /// The number of a write handle of `ino`, if it is being written.
    pub(super) fn stream_handle(&self, ino: u64) -> Option<u64> {
        self.streams.get(&ino)?.first().copied()
    }

    /// A write handle of `ino`, if it is being written.
    pub(super) fn writer_of(&self, ino: u64) -> Option<SharedWriter> {
        let fh = self.streams.get(&ino)?.first()?;
        match self.by_number.get(fh) {
            Some(Handle::Write(_, w)) => Some(w.clone()),
            _ => None,
        }
    }

    /// Every write handle (shutdown commits them all).
    pub(super) fn writers(&self) -> Vec<SharedWriter> {
        self.streams
            .values()
            .flatten()
            .filter_map(|fh| match self.by_number.get(fh) {
                Some(Handle::Write(_, w)) => Some(w.clone()),
                _ => None,
            })
            .collect()
    }
}

impl FsCore {
    pub(super) fn add_handle(&self, handle: Handle) -> u64 {
        let fh = self.next_handle.fetch_add(1, Ordering::Relaxed);
        self.handles.lock().unwrap().insert(fh, handle);
        fh
    }

    pub(super) fn add_writer(
        &self,
        ino: u64,
        key: String,
        pid: u32,
        attrs: &PosixAttrs,
        empties_file: bool,
        expect: Option<WriteCondition>,
    ) -> u64 {
        let mut writer = self.new_writer(key, *attrs);
        if self.options.keep_sent_parts > 0 {
            writer.keep_sent_parts(KeepSent {
                dir: self.options.cache_dir.clone(),
                budget: self.staging_budget.clone(),
                limit: self.options.keep_sent_parts,
            });
        }
        self.add_handle(Handle::Write(
            ino,
            Arc::new(tokio::sync::Mutex::new(WriteHandle {
                ino,
                opener_pid: pid,
                writer,
                settled: false,
                closed: false,
                empties_file,
                expect,
            })),
        ))
    }

    /// A writer of a new version of `key`. On a server that ends a key's multipart uploads
    /// when the key is written, its upload (if it needs one) runs under a hidden key, so that
    /// another mount's save of the name cannot end it.
    pub(super) fn new_writer(&self, key: String, attrs: PosixAttrs) -> ObjectWriter {
        let mut writer = ObjectWriter::new(self.upload.clone(), key, Some(attrs));
        if !self.upload.conditions.uploads_survive_overwrite {
            writer.upload_under(names::pending_key());
        }
        writer
    }

    /// How many new versions of the file are being written (descriptors opened with O_TRUNC).
    pub(super) fn streams_of(&self, ino: u64) -> usize {
        self.handles.lock().unwrap().streams_of(ino)
    }

    /// The write handle of a file being written.
    pub(super) fn writer_of(&self, ino: u64) -> Option<SharedWriter> {
        self.handles.lock().unwrap().writer_of(ino)
    }

    /// The length of the new version descriptor `fh` streams, if it is such a descriptor.
    pub(super) async fn stream_len(&self, fh: u64) -> Option<u64> {
        let handle = self.write_handle(fh)?;
        Some(handle.lock().await.writer.len())
    }

    pub(super) fn write_handle(&self, fh: u64) -> Option<SharedWriter> {
        match self.handles.lock().unwrap().get(fh) {
            Some(Handle::Write(_, h)) => Some(h.clone()),
            _ => None,
        }
    }
}
