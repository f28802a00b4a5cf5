//! The FUSE adapter: turns fuser callbacks into calls on [`FsCore`], run as tokio tasks
//! that reply when done, so a slow S3 request never holds up the kernel's other requests.

use std::ffi::OsStr;
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, SystemTime};

use fuser::{
    AccessFlags, Errno, FileHandle, FopenFlags, Generation, INodeNo, InitFlags, KernelConfig,
    LockOwner, OpenFlags, RenameFlags, ReplyAttr, ReplyCreate, ReplyData, ReplyDirectory,
    ReplyDirectoryPlus, ReplyEmpty, ReplyEntry, ReplyOpen, ReplyStatfs, ReplyWrite, Request,
    TimeOrNow, WriteFlags,
};
use tokio::runtime::Handle;
use tracing::debug;

use super::filesystem::{AttrChange, FsCore};

mod convert;
mod entries_plus;

use convert::{caller, errno, file_attr, file_type, open_reply_flags, system_time};

/// The kernel caps a single write request at 1 MiB (256 pages).
pub const MAX_WRITE: u32 = 1024 * 1024;
/// Read-ahead the kernel may do on our behalf per file.
pub const MAX_READAHEAD: u32 = 1024 * 1024;
const GENERATION: Generation = Generation(1);

pub struct FuseAdapter {
    fs: Arc<FsCore>,
    rt: Handle,
    ttl: Duration,
    /// Set once the session exists (it is made from the adapter).
    notifier: Arc<std::sync::OnceLock<fuser::Notifier>>,
    totals: Arc<NameTotals>,
}

/// How the kernel came by the attributes of names: logged at unmount (tests read them).
#[derive(Default)]
pub struct NameTotals {
    /// LOOKUP requests.
    pub lookups: AtomicU64,
    /// Entries handed over with their attributes by READDIRPLUS (no LOOKUP needed for them).
    pub listed_with_attrs: AtomicU64,
}

impl FuseAdapter {
    pub fn new(fs: Arc<FsCore>, rt: Handle) -> Self {
        let ttl = fs.options().metadata_ttl;
        Self {
            fs,
            rt,
            ttl,
            notifier: Arc::default(),
            totals: Arc::default(),
        }
    }

    /// The counts of how names were looked up, shared with the caller.
    pub fn totals(&self) -> Arc<NameTotals> {
        self.totals.clone()
    }

    /// Where the session's notifier goes, once the session is made.
    pub fn notifier_slot(&self) -> Arc<std::sync::OnceLock<fuser::Notifier>> {
        self.notifier.clone()
    }

    /// Runs `f` on the runtime; the reply is sent from the task.
    fn spawn<F>(&self, f: F)
    where
        F: std::future::Future<Output = ()> + Send + 'static,
    {
        self.rt.spawn(f);
    }
}

impl fuser::Filesystem for FuseAdapter {
    fn init(&mut self, _req: &Request, config: &mut KernelConfig) -> std::io::Result<()> {
        if let Err(nearest) = config.set_max_write(MAX_WRITE) {
            let _ = config.set_max_write(nearest);
        }
        if let Err(nearest) = config.set_max_readahead(MAX_READAHEAD) {
            let _ = config.set_max_readahead(nearest);
        }
        let _ = config.set_max_background(64);
        // O_TRUNC arrives with open() instead of as a separate truncate beforehand, so that
        // replacing a file is one new version, not a truncate followed by a write.
        let _ = config.add_capabilities(InitFlags::FUSE_ATOMIC_O_TRUNC);
        // Entries come with their attributes where this mount has them (`ls -l` of small
        // files then needs no LOOKUP per name). "Auto": the kernel asks for them at the start
        // of a listing and while the program looks at what it was given, plain READDIR
        // otherwise (`find`, `ls` without -l).
        let _ = config
            .add_capabilities(InitFlags::FUSE_DO_READDIRPLUS | InitFlags::FUSE_READDIRPLUS_AUTO);
        Ok(())
    }

    fn lookup(&self, _req: &Request, parent: INodeNo, name: &OsStr, reply: ReplyEntry) {
        self.totals.lookups.fetch_add(1, Ordering::Relaxed);
        // In a walk (`ls -l`) the attributes were read ahead: answering here saves a task
        // and a wake-up per name (a fifth of the daemon's CPU for `ls -l` of 10,000 files).
        let now = {
            let _runtime = self.rt.enter();
            self.fs.lookup_now(parent.0, name)
        };
        match now {
            Some(Ok(a)) => return reply.entry(&self.ttl, &file_attr(&a), GENERATION),
            Some(Err(e)) => return reply.error(errno("lookup", e)),
            None => {}
        }
        let (fs, name, ttl) = (self.fs.clone(), name.to_owned(), self.ttl);
        self.spawn(async move {
            match fs.lookup(parent.0, &name).await {
                Ok(a) => reply.entry(&ttl, &file_attr(&a), GENERATION),
                Err(e) => reply.error(errno("lookup", e)),
            }
        });
    }

    fn forget(&self, _req: &Request, ino: INodeNo, nlookup: u64) {
        self.fs.forget(ino.0, nlookup);
    }

    fn getattr(&self, _req: &Request, ino: INodeNo, _fh: Option<FileHandle>, reply: ReplyAttr) {
        let (fs, ttl) = (self.fs.clone(), self.ttl);
        self.spawn(async move {
            match fs.getattr(ino.0).await {
                Ok(a) => reply.attr(&ttl, &file_attr(&a)),
                Err(e) => reply.error(errno("getattr", e)),
            }
        });
    }

    fn setattr(
        &self,
        _req: &Request,
        ino: INodeNo,
        mode: Option<u32>,
        uid: Option<u32>,
        gid: Option<u32>,
        size: Option<u64>,
        atime: Option<TimeOrNow>,
        mtime: Option<TimeOrNow>,
        _ctime: Option<SystemTime>,
        fh: Option<FileHandle>,
        _crtime: Option<SystemTime>,
        _chgtime: Option<SystemTime>,
        _bkuptime: Option<SystemTime>,
        _flags: Option<fuser::BsdFileFlags>,
        reply: ReplyAttr,
    ) {
        // The atime is what utimes sets: reads do not move it (the mount is noatime).
        let change = AttrChange {
            mode,
            uid,
            gid,
            size,
            mtime: mtime.map(system_time),
            atime: atime.map(system_time),
        };
        let (fs, ttl) = (self.fs.clone(), self.ttl);
        self.spawn(async move {
            match fs.setattr(ino.0, change, fh.map(|f| f.0)).await {
                Ok(a) => reply.attr(&ttl, &file_attr(&a)),
                Err(e) => reply.error(errno("setattr", e)),
            }
        });
    }

    fn fallocate(
        &self,
        _req: &Request,
        ino: INodeNo,
        fh: FileHandle,
        offset: u64,
        length: u64,
        mode: i32,
        reply: ReplyEmpty,
    ) {
        let fs = self.fs.clone();
        self.spawn(async move {
            match fs.fallocate(ino.0, fh.0, offset, length, mode).await {
                Ok(()) => reply.ok(),
                Err(e) => reply.error(errno("fallocate", e)),
            }
        });
    }

    fn mkdir(
        &self,
        req: &Request,
        parent: INodeNo,
        name: &OsStr,
        mode: u32,
        _umask: u32,
        reply: ReplyEntry,
    ) {
        // The kernel has applied the umask to `mode` already (no FUSE_DONT_MASK).
        let (fs, name, ttl, caller) = (self.fs.clone(), name.to_owned(), self.ttl, caller(req));
        self.spawn(async move {
            match fs.mkdir(parent.0, &name, mode, caller).await {
                Ok(a) => reply.entry(&ttl, &file_attr(&a), GENERATION),
                Err(e) => reply.error(errno("mkdir", e)),
            }
        });
    }

    fn mknod(
        &self,
        req: &Request,
        parent: INodeNo,
        name: &OsStr,
        mode: u32,
        _umask: u32,
        rdev: u32,
        reply: ReplyEntry,
    ) {
        let (fs, name, ttl, caller) = (self.fs.clone(), name.to_owned(), self.ttl, caller(req));
        self.spawn(async move {
            match fs.mknod(parent.0, &name, mode, rdev, caller).await {
                Ok(a) => reply.entry(&ttl, &file_attr(&a), GENERATION),
                Err(e) => reply.error(errno("mknod", e)),
            }
        });
    }

    fn symlink(
        &self,
        req: &Request,
        parent: INodeNo,
        link_name: &OsStr,
        target: &Path,
        reply: ReplyEntry,
    ) {
        let (fs, name, target, ttl, caller) = (
            self.fs.clone(),
            link_name.to_owned(),
            target.to_owned(),
            self.ttl,
            caller(req),
        );
        self.spawn(async move {
            match fs.symlink(parent.0, &name, &target, caller).await {
                Ok(a) => reply.entry(&ttl, &file_attr(&a), GENERATION),
                Err(e) => reply.error(errno("symlink", e)),
            }
        });
    }

    fn readlink(&self, _req: &Request, ino: INodeNo, reply: ReplyData) {
        let fs = self.fs.clone();
        self.spawn(async move {
            match fs.readlink(ino.0).await {
                Ok(target) => reply.data(&target),
                Err(e) => reply.error(errno("readlink", e)),
            }
        });
    }

    fn unlink(&self, _req: &Request, parent: INodeNo, name: &OsStr, reply: ReplyEmpty) {
        let (fs, name) = (self.fs.clone(), name.to_owned());
        self.spawn(async move {
            match fs.unlink(parent.0, &name).await {
                Ok(()) => reply.ok(),
                Err(e) => reply.error(errno("unlink", e)),
            }
        });
    }

    fn rmdir(&self, _req: &Request, parent: INodeNo, name: &OsStr, reply: ReplyEmpty) {
        let (fs, name) = (self.fs.clone(), name.to_owned());
        self.spawn(async move {
            match fs.rmdir(parent.0, &name).await {
                Ok(()) => reply.ok(),
                Err(e) => reply.error(errno("rmdir", e)),
            }
        });
    }

    fn rename(
        &self,
        _req: &Request,
        parent: INodeNo,
        name: &OsStr,
        newparent: INodeNo,
        newname: &OsStr,
        flags: RenameFlags,
        reply: ReplyEmpty,
    ) {
        if flags.intersects(RenameFlags::RENAME_EXCHANGE | RenameFlags::RENAME_WHITEOUT) {
            // An atomic exchange cannot be built from S3 copies and deletes.
            reply.error(Errno::EINVAL);
            return;
        }
        let no_replace = flags.contains(RenameFlags::RENAME_NOREPLACE);
        let (fs, name, newname) = (self.fs.clone(), name.to_owned(), newname.to_owned());
        self.spawn(async move {
            match fs
                .rename(parent.0, &name, newparent.0, &newname, no_replace)
                .await
            {
                Ok(()) => reply.ok(),
                Err(e) => reply.error(errno("rename", e)),
            }
        });
    }

    fn link(
        &self,
        _req: &Request,
        _ino: INodeNo,
        _newparent: INodeNo,
        _newname: &OsStr,
        reply: ReplyEntry,
    ) {
        // Objects cannot share data: a hard link would have to be a silent copy.
        reply.error(Errno::EPERM);
    }

    fn open(&self, req: &Request, ino: INodeNo, flags: OpenFlags, reply: ReplyOpen) {
        let (fs, pid) = (self.fs.clone(), req.pid());
        self.spawn(async move {
            match fs.open(ino.0, flags.0, pid).await {
                Ok(fh) => reply.opened(FileHandle(fh), open_reply_flags(flags.0)),
                Err(e) => reply.error(errno("open", e)),
            }
        });
    }

    fn read(
        &self,
        _req: &Request,
        _ino: INodeNo,
        fh: FileHandle,
        offset: u64,
        size: u32,
        _flags: OpenFlags,
        _lock_owner: Option<LockOwner>,
        reply: ReplyData,
    ) {
        let fs = self.fs.clone();
        self.spawn(async move {
            match fs.read(fh.0, offset, size).await {
                Ok(data) => reply.data(&data),
                Err(e) => reply.error(errno("read", e)),
            }
        });
    }

    fn write(
        &self,
        _req: &Request,
        ino: INodeNo,
        fh: FileHandle,
        offset: u64,
        data: &[u8],
        write_flags: WriteFlags,
        _flags: OpenFlags,
        _lock_owner: Option<LockOwner>,
        reply: ReplyWrite,
    ) {
        // A write through a write-only (direct I/O) handle by a caller without CAP_FSETID
        // drops the file's set-ID bits first, as the kernel does before a buffered write.
        let drop_setid = if write_flags.contains(WriteFlags::FUSE_WRITE_KILL_SUIDGID) {
            self.fs.mode_without_setid(ino.0)
        } else {
            None
        };
        // Most writes of a new file go straight into its part buffer, encrypted here from the
        // request buffer. The others wait (for an upload, a lock, a download), so they are
        // copied out of the session's buffer and done on a runtime worker.
        if drop_setid.is_none()
            && let Some(written) = self.fs.write_now(fh.0, offset, data)
        {
            reply.written(written);
            return;
        }
        let (fs, data) = (self.fs.clone(), data.to_vec());
        self.spawn(async move {
            if let Some(mode) = drop_setid {
                let change = AttrChange {
                    mode: Some(mode),
                    ..AttrChange::default()
                };
                if let Err(e) = fs.setattr(ino.0, change, Some(fh.0)).await {
                    reply.error(errno("write", e));
                    return;
                }
            }
            match fs.write(fh.0, offset, &data).await {
                Ok(n) => reply.written(n),
                Err(e) => reply.error(errno("write", e)),
            }
        });
    }

    fn flush(
        &self,
        req: &Request,
        ino: INodeNo,
        fh: FileHandle,
        _lock_owner: LockOwner,
        reply: ReplyEmpty,
    ) {
        let (fs, pid, notifier) = (self.fs.clone(), req.pid(), self.notifier.clone());
        self.spawn(async move {
            match fs.flush(fh.0, pid).await {
                Ok(()) => reply.ok(),
                Err(e) => {
                    // The save failed: what the kernel believes of the file since the open
                    // (the size an O_TRUNC gave it, the pages written) is not what the bucket
                    // holds, and must not be served for --metadata-ttl. Sent before the
                    // reply, so that close() returns only once it is forgotten (the kernel
                    // holds no lock of the inode while it waits for a flush).
                    if let Some(notifier) = notifier.get()
                        && let Err(e) = notifier.inval_inode(ino, 0, 0)
                    {
                        debug!("could not invalidate the kernel's cache of inode {ino:?}: {e}");
                    }
                    reply.error(errno("flush", e));
                }
            }
        });
    }

    fn release(
        &self,
        _req: &Request,
        ino: INodeNo,
        fh: FileHandle,
        _flags: OpenFlags,
        _lock_owner: Option<LockOwner>,
        _flush: bool,
        reply: ReplyEmpty,
    ) {
        let release = self.fs.release(ino.0, fh.0);
        self.spawn(async move {
            release.await;
            reply.ok();
        });
    }

    fn fsync(
        &self,
        _req: &Request,
        ino: INodeNo,
        fh: FileHandle,
        _datasync: bool,
        reply: ReplyEmpty,
    ) {
        let fs = self.fs.clone();
        self.spawn(async move {
            match fs.fsync(ino.0, fh.0).await {
                Ok(()) => reply.ok(),
                Err(e) => reply.error(errno("fsync", e)),
            }
        });
    }

    fn fsyncdir(
        &self,
        _req: &Request,
        _ino: INodeNo,
        _fh: FileHandle,
        _datasync: bool,
        reply: ReplyEmpty,
    ) {
        // Saves every pending attribute change of the mount (`sync DIR` makes them durable).
        let fs = self.fs.clone();
        self.spawn(async move {
            fs.flush_all_attrs().await;
            reply.ok();
        });
    }

    fn opendir(&self, _req: &Request, ino: INodeNo, _flags: OpenFlags, reply: ReplyOpen) {
        let fs = self.fs.clone();
        self.spawn(async move {
            match fs.opendir(ino.0).await {
                Ok(fh) => reply.opened(FileHandle(fh), FopenFlags::empty()),
                Err(e) => reply.error(errno("opendir", e)),
            }
        });
    }

    fn readdir(
        &self,
        _req: &Request,
        _ino: INodeNo,
        fh: FileHandle,
        offset: u64,
        mut reply: ReplyDirectory,
    ) {
        match self.fs.readdir(fh.0) {
            Ok(entries) => {
                for (i, e) in entries.iter().enumerate().skip(offset as usize) {
                    if reply.add(INodeNo(e.ino), (i + 1) as u64, file_type(e.kind), &e.name) {
                        break;
                    }
                }
                reply.ok();
            }
            Err(e) => reply.error(errno("readdir", e)),
        }
    }

    /// Entries with their attributes, for those whose attributes this mount has at hand; the
    /// reply ends before the first it has not, and the kernel asks for the rest with READDIR
    /// (or READDIRPLUS again, if the program looks at what it got). Every entry sent with
    /// attributes is a lookup to the kernel, counted like one. A reply may not be empty
    /// before the end, so an entry the mount has to ask S3 about that comes first is looked
    /// up (the program's next step would have looked it up anyway).
    fn readdirplus(
        &self,
        _req: &Request,
        dir: INodeNo,
        fh: FileHandle,
        offset: u64,
        mut reply: ReplyDirectoryPlus,
    ) {
        let entries = match self.fs.readdir(fh.0) {
            Ok(entries) => entries,
            Err(e) => return reply.error(errno("readdirplus", e)),
        };
        let start = offset as usize;
        let sent = {
            let _runtime = self.rt.enter();
            let (fs, ttl, totals) = (&self.fs, self.ttl, &self.totals);
            entries_plus::fill_plus(fs, ttl, totals, dir.0, &entries, start, &mut reply)
        };
        if sent > 0 || start >= entries.len() {
            return reply.ok();
        }
        let (fs, ttl, totals) = (self.fs.clone(), self.ttl, self.totals.clone());
        self.spawn(async move {
            entries_plus::reply_from_lookup(&fs, ttl, &totals, dir.0, &entries, start, reply).await;
        });
    }

    fn releasedir(
        &self,
        _req: &Request,
        ino: INodeNo,
        fh: FileHandle,
        _flags: OpenFlags,
        reply: ReplyEmpty,
    ) {
        self.fs.releasedir(ino.0, fh.0);
        reply.ok();
    }

    fn statfs(&self, _req: &Request, _ino: INodeNo, reply: ReplyStatfs) {
        // S3 has no capacity limit: report a large, stable amount of free space so that tools
        // checking for room before copying proceed.
        const BLOCKS: u64 = 1 << 40;
        let files = self.fs.statfs_files();
        reply.statfs(
            BLOCKS,
            BLOCKS,
            BLOCKS,
            files,
            u64::from(u32::MAX),
            4096,
            255,
            4096,
        );
    }

    fn access(&self, _req: &Request, _ino: INodeNo, _mask: AccessFlags, reply: ReplyEmpty) {
        // Permissions are enforced by the kernel (default_permissions).
        reply.ok();
    }

    fn create(
        &self,
        req: &Request,
        parent: INodeNo,
        name: &OsStr,
        mode: u32,
        _umask: u32,
        flags: i32,
        reply: ReplyCreate,
    ) {
        let (fs, name, ttl, caller) = (self.fs.clone(), name.to_owned(), self.ttl, caller(req));
        let open_flags = open_reply_flags(flags);
        self.spawn(async move {
            match fs.create(parent.0, &name, mode, caller).await {
                Ok((a, fh)) => {
                    reply.created(&ttl, &file_attr(&a), GENERATION, FileHandle(fh), open_flags)
                }
                Err(e) => reply.error(errno("create", e)),
            }
        });
    }
}

/// Raises the kernel's read-ahead for the mount (its bdi), so buffered reads arrive in large
/// requests instead of 128 KiB ones. Best effort: failure only costs throughput.
pub fn raise_read_ahead(mountpoint: &Path, kib: u32) {
    use std::os::unix::fs::MetadataExt;
    let Ok(meta) = std::fs::metadata(mountpoint) else {
        return;
    };
    let dev = meta.dev();
    let (major, minor) = (libc::major(dev), libc::minor(dev));
    let path = format!("/sys/class/bdi/{major}:{minor}/read_ahead_kb");
    match std::fs::write(&path, kib.to_string()) {
        Ok(()) => debug!("set {path} to {kib}"),
        Err(e) => debug!("could not set {path}: {e}"),
    }
}
