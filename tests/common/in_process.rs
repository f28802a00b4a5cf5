//! The filesystem core on an in-memory store, driven directly: no FUSE, no server. Calls go
//! through the same entry points the FUSE adapter uses (lookup, create, open, write, flush,
//! release, ...), with this process as the caller.

use std::ffi::OsStr;
use std::sync::Arc;
use std::time::Duration;

use s3cryptfs::crypto::{KeySource, UserKey};
use s3cryptfs::fs::{
    Attr, AttrChange, Caller, DirEntry, FsCore, FsError, FsOptions, NodeKind, ROOT_INO,
};
use s3cryptfs::read::{PrefetchConfig, ReadContext};
use s3cryptfs::store::fault::FaultStore;
use s3cryptfs::store::memory::MemoryStore;
use s3cryptfs::store::{ConditionSupport, ObjectStore};
use s3cryptfs::upload::{MemoryBudget, OnConflict, UploadConfig, UploadContext, UploadStats};
use s3cryptfs::volume::{Volume, VolumeShape};

pub type Errno = i32;

/// What the application would see of a core error.
fn errno(e: FsError) -> Errno {
    e.errno()
}

/// An operation through one descriptor of a new file.
#[derive(Debug, Clone)]
pub enum FileOp {
    Write(u64, Vec<u8>),
    Truncate(u64),
    Read(u64, u32),
}

/// Settings of an in-process mount that tests vary.
#[derive(Debug, Clone)]
pub struct Settings {
    pub encrypt_names: bool,
    pub read_only: bool,
    /// `--max-cache-size`
    pub max_cache_size: u64,
    /// `--keep-sent-parts`
    pub keep_sent_parts: u64,
    /// `--max-upload-memory`, and how long a new writer waits for its first buffer.
    pub upload_memory: u64,
    pub first_buffer_wait: Duration,
    /// `--metadata-ttl`: how long what this mount learnt of the bucket is trusted.
    pub metadata_ttl: Duration,
    /// `--allow-other`: other users reach the mount.
    pub shared: bool,
    /// `--on-conflict`, and the host name conflict names carry.
    pub on_conflict: OnConflict,
    pub host: String,
    /// What the mount's probe found the store enforces (the memory store enforces all,
    /// unless told to ignore them).
    pub conditions: ConditionSupport,
    /// `init --object-format`: the default (3), or an older one.
    pub object_format: u32,
}

impl Default for Settings {
    fn default() -> Self {
        Self {
            encrypt_names: false,
            read_only: false,
            max_cache_size: 1 << 30,
            keep_sent_parts: 1 << 30,
            upload_memory: 64 << 20,
            first_buffer_wait: Duration::from_secs(30),
            metadata_ttl: Duration::from_secs(5),
            shared: false,
            on_conflict: OnConflict::KeepBoth,
            host: "host-a".to_string(),
            conditions: ConditionSupport::ALL,
            object_format: s3cryptfs::crypto::VOLUME_FORMAT_VERSION,
        }
    }
}

/// A volume on an in-memory store, with faults injectable in front of it, and the core of a
/// "mount" of it (remountable).
pub struct Core {
    pub memory: Arc<MemoryStore>,
    pub faults: Arc<FaultStore>,
    pub fs: Arc<FsCore>,
    pub settings: Settings,
    key: UserKey,
    staging: tempfile::TempDir,
}

impl Core {
    /// A new volume (format 2, 64 KiB segments) and a core mounted on it.
    pub async fn new(encrypt_names: bool) -> Self {
        Self::with(Settings {
            encrypt_names,
            ..Settings::default()
        })
        .await
    }

    pub async fn with(settings: Settings) -> Self {
        let encrypt_names = settings.encrypt_names;
        let memory = Arc::new(MemoryStore::new());
        let key = UserKey::from_key_bytes(&[7u8; 32]).expect("a 32-byte key");
        let shape = VolumeShape {
            segment_size: 65536,
            encrypt_names,
            object_format: settings.object_format,
        };
        Volume::init(
            memory.as_ref(),
            "memory://volume",
            &key,
            KeySource::KeyFile,
            shape,
            false,
        )
        .await
        .expect("init");
        let faults = Arc::new(FaultStore::new(memory.clone()));
        let staging = tempfile::tempdir().expect("staging dir");
        let fs = Self::mount(faults.clone(), &key, staging.path(), &settings).await;
        Self {
            memory,
            faults,
            fs,
            settings,
            key,
            staging,
        }
    }

    async fn mount(
        store: Arc<dyn ObjectStore>,
        key: &UserKey,
        staging: &std::path::Path,
        settings: &Settings,
    ) -> Arc<FsCore> {
        let volume = Arc::new(
            Volume::open(store, "memory://volume", key)
                .await
                .expect("open volume"),
        );
        let options = FsOptions {
            uid: 0,
            gid: 0,
            file_mode: 0o644,
            dir_mode: 0o755,
            metadata_ttl: settings.metadata_ttl,
            read_only: settings.read_only,
            key_prefix_len: 0,
            cache_dir: staging.to_path_buf(),
            max_cache_size: settings.max_cache_size,
            keep_sent_parts: settings.keep_sent_parts,
            shared: settings.shared,
            host: settings.host.clone(),
            on_conflict: settings.on_conflict,
        };
        let read = Arc::new(ReadContext::new(
            volume.store.clone(),
            volume.master.clone(),
            volume.layout,
            16 << 20,
            PrefetchConfig::default(),
        ));
        let upload = Arc::new(UploadContext {
            store: volume.store.clone(),
            master: volume.master.clone(),
            layout: volume.layout,
            budget: MemoryBudget::new(settings.upload_memory, settings.first_buffer_wait),
            config: UploadConfig {
                parts_in_flight: 2,
                ..UploadConfig::default()
            },
            stats: UploadStats::default(),
            conditions: settings.conditions,
        });
        Arc::new(FsCore::new(volume, options, read, upload))
    }

    /// Saves everything as an unmount does, then mounts the volume afresh: nothing this
    /// mount cached survives.
    pub async fn remount(&mut self) {
        self.fs.wait_for_releases(Duration::from_secs(30)).await;
        self.fs.commit_all(Duration::from_secs(30)).await;
        self.fs = Self::mount(
            self.faults.clone(),
            &self.key,
            self.staging.path(),
            &self.settings,
        )
        .await;
    }

    /// A second mount of the same volume, with its own caches and staging directory, as on
    /// another machine.
    pub async fn another_mount(&self) -> Self {
        self.another_mount_with(self.settings.clone()).await
    }

    /// Like [`Self::another_mount`], with its own settings.
    pub async fn another_mount_with(&self, settings: Settings) -> Self {
        let staging = tempfile::tempdir().expect("staging dir");
        let fs = Self::mount(self.faults.clone(), &self.key, staging.path(), &settings).await;
        Self {
            memory: self.memory.clone(),
            faults: self.faults.clone(),
            fs,
            settings,
            key: self.key.clone(),
            staging,
        }
    }

    /// The object key of `path` ("a/b", a directory's ending in '/'), as this volume's names
    /// encode it.
    pub async fn key(&self, path: &str) -> String {
        self.keys(&[path.to_string()]).await.remove(0)
    }

    /// The object keys of `paths`, as [`Self::key`] gives each.
    pub async fn keys(&self, paths: &[String]) -> Vec<String> {
        use s3cryptfs::object_keys::join_path;
        let volume = Volume::open(self.memory.clone(), "memory://volume", &self.key)
            .await
            .expect("open volume");
        let key_of = |path: &str| {
            let mut key = String::new();
            let mut dir = String::new();
            let parts: Vec<&str> = path.split('/').collect();
            for (i, name) in parts.iter().enumerate() {
                if name.is_empty() {
                    continue;
                }
                key.push_str(&volume.names.encode(&dir, name).component);
                if i + 1 < parts.len() {
                    key.push('/');
                }
                dir = join_path(&dir, name);
            }
            key
        };
        paths.iter().map(|p| key_of(p)).collect()
    }

    pub fn caller() -> Caller {
        Caller {
            uid: 0,
            gid: 0,
            pid: std::process::id(),
        }
    }

    /// The inode of `path` (components from the root), looked up one by one as the kernel does.
    pub async fn resolve(&self, path: &[String]) -> Result<Attr, Errno> {
        let mut attr = self.fs.getattr(ROOT_INO).await.map_err(errno)?;
        for name in path {
            attr = self
                .fs
                .lookup(attr.ino, OsStr::new(name))
                .await
                .map_err(errno)?;
        }
        Ok(attr)
    }

    /// The parent's inode and the last name of `path`.
    /// As the kernel's path walk: the parent must be a directory (ENOTDIR).
    pub async fn parent_of<'p>(&self, path: &'p [String]) -> Result<(u64, &'p str), Errno> {
        let (name, parent) = path.split_last().expect("not the root");
        let parent = self.resolve(parent).await?;
        if parent.kind != NodeKind::Dir {
            return Err(libc::ENOTDIR);
        }
        Ok((parent.ino, name.as_str()))
    }

    /// open(O_WRONLY|O_CREAT|O_TRUNC), sequential writes of `chunks`, close.
    pub async fn write_new(&self, path: &[String], chunks: &[Vec<u8>]) -> Result<(), Errno> {
        let (parent, name) = self.parent_of(path).await?;
        let found = self
            .fs
            .lookup(parent, OsStr::new(name))
            .await
            .map_err(errno);
        let (ino, fh) = match found {
            Ok(attr) if attr.kind == NodeKind::Dir => return Err(libc::EISDIR),
            Ok(attr) => {
                let fh = self
                    .fs
                    .open(attr.ino, libc::O_WRONLY | libc::O_TRUNC, std::process::id())
                    .await
                    .map_err(errno)?;
                (attr.ino, fh)
            }
            Err(libc::ENOENT) => {
                let (attr, fh) = self
                    .fs
                    .create(parent, OsStr::new(name), 0o644, Self::caller())
                    .await
                    .map_err(errno)?;
                (attr.ino, fh)
            }
            Err(e) => return Err(e),
        };
        let mut offset = 0u64;
        let mut result = Ok(());
        for chunk in chunks {
            if let Err(e) = self.fs.write(fh, offset, chunk).await.map_err(errno) {
                result = Err(e);
                break;
            }
            offset += chunk.len() as u64;
        }
        self.close(ino, fh, result).await
    }

    /// A new file (create, as `open(O_RDWR|O_CREAT|O_TRUNC)` does), then `ops` through that
    /// one descriptor: writes anywhere, resizes, reads back; then close. The bytes each read
    /// returned, in order.
    pub async fn new_file_ops(
        &self,
        path: &[String],
        ops: &[FileOp],
    ) -> Result<Vec<Vec<u8>>, Errno> {
        let (parent, name) = self.parent_of(path).await?;
        let (ino, fh) = match self.fs.lookup(parent, OsStr::new(name)).await {
            Ok(attr) if attr.kind == NodeKind::Dir => return Err(libc::EISDIR),
            Ok(attr) => {
                let flags = libc::O_RDWR | libc::O_TRUNC;
                let fh = self
                    .fs
                    .open(attr.ino, flags, std::process::id())
                    .await
                    .map_err(errno)?;
                (attr.ino, fh)
            }
            Err(e) if e.is(libc::ENOENT) => {
                let (attr, fh) = self
                    .fs
                    .create(parent, OsStr::new(name), 0o644, Self::caller())
                    .await
                    .map_err(errno)?;
                (attr.ino, fh)
            }
            Err(e) => return Err(e.errno()),
        };
        let (reads, result) = self.run_ops(ino, fh, ops).await;
        self.close(ino, fh, result).await.map(|_| reads)
    }

    /// `ops` through descriptor `fh` of `ino`, up to the first failure: the bytes each read
    /// returned, and how it ended.
    async fn run_ops(
        &self,
        ino: u64,
        fh: u64,
        ops: &[FileOp],
    ) -> (Vec<Vec<u8>>, Result<(), Errno>) {
        let mut reads = Vec::new();
        for op in ops {
            let done = match op {
                FileOp::Write(offset, data) => self.fs.write(fh, *offset, data).await.map(|_| ()),
                FileOp::Truncate(size) => {
                    let change = AttrChange {
                        size: Some(*size),
                        ..Default::default()
                    };
                    self.fs.setattr(ino, change, Some(fh)).await.map(|_| ())
                }
                FileOp::Read(offset, len) => self.fs.read(fh, *offset, *len).await.map(|b| {
                    reads.push(b.to_vec());
                }),
            };
            if let Err(e) = done {
                return (reads, Err(e.errno()));
            }
        }
        (reads, Ok(()))
    }

    /// An existing file opened for reading and writing, then unlinked (`to` = `None`) or
    /// renamed to `to` while open, then `ops` through that descriptor, then close: the bytes
    /// each read returned.
    pub async fn ops_after_losing_name(
        &self,
        path: &[String],
        to: Option<&[String]>,
        ops: &[FileOp],
    ) -> Result<Vec<Vec<u8>>, Errno> {
        let attr = self.resolve(path).await?;
        if attr.kind == NodeKind::Dir {
            return Err(libc::EISDIR);
        }
        let fh = self
            .fs
            .open(attr.ino, libc::O_RDWR, std::process::id())
            .await
            .map_err(errno)?;
        let moved = match to {
            None => self.unlink(path).await,
            Some(to) => self.rename(path, to).await,
        };
        let (reads, result) = match moved {
            Ok(()) => self.run_ops(attr.ino, fh, ops).await,
            Err(e) => (Vec::new(), Err(e)),
        };
        self.close(attr.ino, fh, result).await.map(|_| reads)
    }

    /// open(O_WRONLY) without O_TRUNC, a write at `offset`, close.
    pub async fn write_at(&self, path: &[String], offset: u64, data: &[u8]) -> Result<(), Errno> {
        let attr = self.resolve(path).await?;
        let fh = self
            .fs
            .open(attr.ino, libc::O_WRONLY, std::process::id())
            .await
            .map_err(errno)?;
        let written = self
            .fs
            .write(fh, offset, data)
            .await
            .map_err(errno)
            .map(|_| ());
        self.close(attr.ino, fh, written).await
    }

    /// close(): the opener's flush (which returns the save's result), then the release.
    pub async fn close(&self, ino: u64, fh: u64, before: Result<(), Errno>) -> Result<(), Errno> {
        let flushed = self.fs.flush(fh, std::process::id()).await.map_err(errno);
        self.fs.release(ino, fh).await;
        before.and(flushed)
    }

    /// truncate(2) by path.
    pub async fn truncate(&self, path: &[String], size: u64) -> Result<(), Errno> {
        let change = AttrChange {
            size: Some(size),
            ..Default::default()
        };
        self.setattr(path, change).await
    }

    /// chmod(2).
    pub async fn chmod(&self, path: &[String], mode: u32) -> Result<(), Errno> {
        let change = AttrChange {
            mode: Some(mode),
            ..Default::default()
        };
        self.setattr(path, change).await
    }

    /// chmod(2) and chown(2) at once.
    pub async fn chmod_chown(&self, path: &[String], mode: u32, uid: u32) -> Result<(), Errno> {
        let change = AttrChange {
            mode: Some(mode),
            uid: Some(uid),
            ..Default::default()
        };
        self.setattr(path, change).await
    }

    /// The volume's master key, as the provider never has it (to forge what older builds
    /// wrote).
    pub async fn master(&self) -> Arc<s3cryptfs::crypto::MasterKey> {
        Volume::open(self.memory.clone(), "memory://volume", &self.key)
            .await
            .expect("open volume")
            .master
    }

    /// A setattr by path (no descriptor); a directory cannot be resized (EISDIR).
    async fn setattr(&self, path: &[String], change: AttrChange) -> Result<(), Errno> {
        let attr = self.resolve(path).await?;
        if change.size.is_some() && attr.kind == NodeKind::Dir {
            return Err(libc::EISDIR);
        }
        self.fs
            .setattr(attr.ino, change, None)
            .await
            .map_err(errno)
            .map(|_| ())
    }

    /// The whole contents of a file, read in `chunk`-byte requests as the kernel would.
    pub async fn read_all(&self, path: &[String], chunk: u32) -> Result<Vec<u8>, Errno> {
        let attr = self.resolve(path).await?;
        if attr.kind == NodeKind::Dir {
            return Err(libc::EISDIR);
        }
        let fh = self
            .fs
            .open(attr.ino, libc::O_RDONLY, std::process::id())
            .await
            .map_err(errno)?;
        let mut out = Vec::new();
        let result = loop {
            match self
                .fs
                .read(fh, out.len() as u64, chunk)
                .await
                .map_err(errno)
            {
                Ok(b) if b.is_empty() => break Ok(()),
                Ok(b) => out.extend_from_slice(&b),
                Err(e) => break Err(e),
            }
        };
        self.fs.release(attr.ino, fh).await;
        result.map(|_| out)
    }

    pub async fn mkdir(&self, path: &[String], mode: u32) -> Result<(), Errno> {
        let (parent, name) = self.parent_of(path).await?;
        self.fs
            .mkdir(parent, OsStr::new(name), mode, Self::caller())
            .await
            .map_err(errno)
            .map(|_| ())
    }

    pub async fn unlink(&self, path: &[String]) -> Result<(), Errno> {
        let (parent, name) = self.parent_of(path).await?;
        self.fs
            .unlink(parent, OsStr::new(name))
            .await
            .map_err(errno)
    }

    pub async fn rmdir(&self, path: &[String]) -> Result<(), Errno> {
        let (parent, name) = self.parent_of(path).await?;
        self.fs.rmdir(parent, OsStr::new(name)).await.map_err(errno)
    }

    pub async fn rename(&self, from: &[String], to: &[String]) -> Result<(), Errno> {
        let (parent, name) = self.parent_of(from).await?;
        let (new_parent, new_name) = self.parent_of(to).await?;
        self.fs
            .rename(
                parent,
                OsStr::new(name),
                new_parent,
                OsStr::new(new_name),
                false,
            )
            .await
            .map_err(errno)
    }

    /// The entries of a directory (without `.` and `..`), sorted by name.
    pub async fn list(&self, path: &[String]) -> Result<Vec<DirEntry>, Errno> {
        let attr = self.resolve(path).await?;
        let fh = self.fs.opendir(attr.ino).await.map_err(errno)?;
        let entries = self.fs.readdir(fh).map_err(errno);
        self.fs.releasedir(attr.ino, fh);
        let mut entries: Vec<DirEntry> = entries?
            .iter()
            .filter(|e| e.name != "." && e.name != "..")
            .cloned()
            .collect();
        entries.sort_by(|a, b| a.name.cmp(&b.name));
        Ok(entries)
    }
}
