//! `s3cryptfs mount`: opens the volume, mounts it, serves it until unmounted or signalled.
//!
//! Without `--foreground` the command starts itself again in the background and returns only
//! once the mount is live (exit 0) or has failed (the child's error and exit status), as a
//! mount(8) helper must.

use std::io::{Read, Write};
use std::os::fd::{AsRawFd, BorrowedFd, FromRawFd};
use std::os::unix::process::CommandExt;
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::time::Duration;

use fuser::{MountOption, SessionACL};
use nix::fcntl::{FcntlArg, FdFlag, OFlag, fcntl};
use nix::mount::{MntFlags, umount2};
use tokio::signal::unix::{SignalKind, signal};
use tracing::{info, warn};

use super::args::{MountArgs, PASSPHRASE_ENV, Secret};
use super::{EXIT_FAILURE, EXIT_STORE, EXIT_USAGE, fail, runtime};
use crate::fs::{FsCore, FsOptions, FuseAdapter, NameTotals, raise_read_ahead};
use crate::read::{PrefetchConfig, ReadContext, ReadStats};
use crate::store::ConditionSupport;
use crate::upload::{MemoryBudget, UploadConfig, UploadContext, UploadStats};

/// The background child reports readiness on this inherited descriptor.
const READY_FD_ENV: &str = "S3CRYPTFS_READY_FD";
/// The background child reads its key or passphrase from this inherited descriptor.
const SECRET_FD_ENV: &str = "S3CRYPTFS_SECRET_FD";
/// The most a handed-over secret can be (a tag and a passphrase of the longest accepted).
const HANDOFF_MAX: usize = 8192;
/// How long opening the volume may take before the mount gives up (never a hung mount).
const OPEN_TIMEOUT: Duration = Duration::from_secs(60);
/// How long shutdown waits for each file still being written.
const SHUTDOWN_COMMIT_TIMEOUT: Duration = Duration::from_secs(300);

/// Whether this process is the daemon a background `mount` started (its logs cannot go to
/// the caller's stderr once the mount is live).
pub(super) fn is_background_daemon() -> bool {
    std::env::var_os(READY_FD_ENV).is_some()
}

/// `argv`: this command's arguments (after the program name), as the background child needs
/// them (a mount helper's arguments are already translated).
pub fn run(args: MountArgs, argv: &[std::ffi::OsString]) -> i32 {
    if let Err(e) = clear_stale_mount(&args.mountpoint) {
        return fail(EXIT_USAGE, e);
    }
    if !args.mountpoint.is_dir() {
        return fail(
            EXIT_USAGE,
            format!(
                "mount point {} is not a directory",
                args.mountpoint.display()
            ),
        );
    }
    if !args.foreground {
        // Read here (a passphrase can be typed at this terminal) and handed to the daemon
        // through a pipe: never on its argv or in its environment.
        return match args.key.secret(false) {
            Ok(secret) => run_in_background(argv, &secret),
            Err(e) => fail(EXIT_USAGE, e),
        };
    }
    if !args.allow_core_dumps {
        refuse_core_dumps();
    }
    let secret = handed_over_secret().unwrap_or_else(|| args.key.secret(false));
    if let Ok(secret) = &secret
        && std::env::var_os(PASSPHRASE_ENV).is_some()
    {
        // The daemon runs for the life of the mount, and its environment as it was started
        // stays readable in /proc/PID/environ whatever is unset later: start again (the
        // same process, so systemd and the caller keep their PID) without the variable,
        // the passphrase handed over through a pipe.
        let failed = exec_without_passphrase(argv, secret);
        warn!("could not start again without ${PASSPHRASE_ENV} in the environment: {failed}");
    }
    // Not passed on to anything the daemon starts. Before any other thread exists.
    // SAFETY: no other thread has been started yet (the runtime is made in `serve`).
    unsafe { std::env::remove_var(PASSPHRASE_ENV) };
    let ready = ReadyPipe::from_env();
    let code = match secret {
        Ok(secret) => serve(args, secret, &ready),
        Err(e) => fail(EXIT_USAGE, e),
    };
    if code != 0 {
        ready.report(&format!("failed {code}"));
    }
    code
}

/// No core dump of the daemon: it would hold the keys and recent plaintext. Not dumpable
/// also keeps other processes of the same user from attaching to it (ptrace) or reading its
/// memory through /proc.
fn refuse_core_dumps() {
    use nix::sys::resource::{Resource, setrlimit};
    if let Err(e) = nix::sys::prctl::set_dumpable(false) {
        warn!("cannot mark the daemon not dumpable: {e}");
    }
    if let Err(e) = setrlimit(Resource::RLIMIT_CORE, 0, 0) {
        warn!("cannot turn core dumps off: {e}");
    }
}

/// Replaces this process with itself (same arguments) minus the passphrase variable, the
/// secret handed over through a pipe. Returns only if that failed.
fn exec_without_passphrase(argv: &[std::ffi::OsString], secret: &Secret) -> String {
    let pipe = secret_pipe(secret).and_then(|fd| {
        // Kept across exec, which is what it is for.
        fcntl(&fd, FcntlArg::F_SETFD(FdFlag::empty()))
            .map(|_| fd)
            .map_err(|e| e.to_string())
    });
    let fd = match pipe {
        Ok(fd) => fd,
        Err(e) => return e,
    };
    let exe = match std::env::current_exe() {
        Ok(exe) => exe,
        Err(e) => return e.to_string(),
    };
    let err = Command::new(exe)
        .args(argv)
        .env(SECRET_FD_ENV, fd.as_raw_fd().to_string())
        .env_remove(PASSPHRASE_ENV)
        .exec();
    err.to_string()
}

/// A pipe holding the handed-over form of `secret`, written whole and closed: its read end.
fn secret_pipe(secret: &Secret) -> Result<std::os::fd::OwnedFd, String> {
    let (read_end, write_end) = nix::unistd::pipe2(OFlag::O_CLOEXEC).map_err(|e| e.to_string())?;
    // The secret fits the pipe's buffer (64 KiB; it is at most HANDOFF_MAX), so it is all
    // written at once, and the reader reads to EOF.
    let handoff = secret.to_handoff();
    debug_assert!(handoff.len() <= HANDOFF_MAX);
    std::fs::File::from(write_end)
        .write_all(&handoff)
        .map_err(|e| format!("cannot hand the key over: {e}"))?;
    Ok(read_end)
}

/// The key or passphrase the parent of a background daemon handed over, if it did.
fn handed_over_secret() -> Option<Result<Secret, String>> {
    let fd = std::env::var(SECRET_FD_ENV)
        .ok()
        .and_then(|v| v.parse::<i32>().ok())
        .filter(|fd| *fd > 2 && std::path::Path::new(&format!("/proc/self/fd/{fd}")).exists());
    // SAFETY: called from `run` before any other thread is started.
    unsafe { std::env::remove_var(SECRET_FD_ENV) };
    // SAFETY: the descriptor is open (checked above) and was made for us by the parent
    // (`run_in_background`); nothing else in this process owns it.
    let pipe = unsafe { std::fs::File::from_raw_fd(fd?) };
    let mut bytes = zeroize::Zeroizing::new(Vec::with_capacity(HANDOFF_MAX));
    let read = pipe
        .take(HANDOFF_MAX as u64)
        .read_to_end(&mut bytes)
        .map_err(|e| format!("cannot read the key handed over by the parent: {e}"));
    Some(read.and_then(|_| Secret::from_handoff(&bytes)))
}

fn serve(args: MountArgs, secret: Secret, ready: &ReadyPipe) -> i32 {
    let store_config = match args.connection.store_config(&args.location) {
        Ok(c) => c,
        Err(e) => return fail(EXIT_USAGE, e),
    };
    let location = store_config.location();
    let key_prefix_len = store_config.prefix.len();
    let rt = runtime();

    if let Some(addr) = args.metrics_addr {
        let installed = rt.block_on(async { crate::metrics::install(addr) });
        if let Err(e) = installed {
            return fail(EXIT_USAGE, e);
        }
    }
    let opened = rt.block_on(async {
        tokio::time::timeout(OPEN_TIMEOUT, async {
            let store_err = |e: crate::store::StoreError| (EXIT_STORE, e.to_string());
            let store = super::connect(store_config.clone())
                .await
                .map_err(store_err)?;
            super::unlock(store, &store_config, &secret)
                .await
                .map_err(|e| (e.0, e.1))
        })
        .await
    });
    let volume = match opened {
        Ok(Ok(v)) => Arc::new(v),
        Ok(Err((code, message))) => return fail(code, message),
        Err(_) => {
            return fail(
                EXIT_STORE,
                format!(
                    "could not reach {location} within {OPEN_TIMEOUT:?}: is the endpoint right and up?"
                ),
            );
        }
    };
    drop(secret);
    // Which conditional writes the server enforces (docs/STORE.md): asked once, on a hidden
    // scratch key that fsck would list if a crash left it. Saves check the others with HEADs.
    let mut conditions = ConditionSupport::default();
    if !args.read_only {
        let scratch = crate::object_keys::pending_key();
        match rt.block_on(crate::store::conditions::probe(
            volume.store.as_ref(),
            &scratch,
        )) {
            Ok(found) => {
                info!("conditional writes on {location}: {found}");
                conditions = found;
            }
            Err(e) => warn!(
                "could not find out which conditional writes {location} enforces (saves check \
                 with HEAD requests instead): {e}"
            ),
        }
    }

    let fs_options = FsOptions {
        uid: args.uid.unwrap_or_else(|| nix::unistd::getuid().as_raw()),
        gid: args.gid.unwrap_or_else(|| nix::unistd::getgid().as_raw()),
        file_mode: args.file_mode,
        dir_mode: args.dir_mode,
        cache_dir: staging_dir(args.cache_dir.as_deref()),
        max_cache_size: args.max_cache_size,
        keep_sent_parts: args.keep_sent_parts,
        shared: args.allow_other,
        metadata_ttl: Duration::from_secs_f64(args.metadata_ttl.max(0.0)),
        read_only: args.read_only,
        key_prefix_len,
        host: nix::unistd::gethostname()
            .ok()
            .and_then(|h| h.into_string().ok())
            .unwrap_or_else(|| "unknown-host".to_string()),
        on_conflict: args.on_conflict.into(),
    };
    let read = Arc::new(ReadContext::new(
        volume.store.clone(),
        volume.master.clone(),
        volume.layout,
        args.cache_size,
        PrefetchConfig {
            max_window: args.max_prefetch.max(1024 * 1024),
            ..PrefetchConfig::default()
        },
    ));
    let upload = Arc::new(UploadContext {
        store: volume.store.clone(),
        master: volume.master.clone(),
        layout: volume.layout,
        budget: MemoryBudget::new(args.max_upload_memory, Duration::from_secs(30)),
        config: UploadConfig {
            parts_in_flight: args.parts_in_flight.max(1),
            part_size: args.part_size,
        },
        stats: UploadStats::default(),
        conditions,
    });
    let fs = Arc::new(FsCore::new(
        volume,
        fs_options,
        read.clone(),
        upload.clone(),
    ));
    let adapter = FuseAdapter::new(fs.clone(), rt.handle().clone());
    let name_totals = adapter.totals();

    let mut config = fuser::Config::default();
    config.mount_options = vec![
        MountOption::FSName(format!("s3cryptfs:{location}")),
        MountOption::Subtype("s3cryptfs".into()),
        MountOption::DefaultPermissions,
        MountOption::NoDev,
        MountOption::NoSuid,
        MountOption::NoAtime,
        if args.noexec {
            MountOption::NoExec
        } else {
            MountOption::Exec
        },
        if args.read_only {
            MountOption::RO
        } else {
            MountOption::RW
        },
    ];
    if args.auto_unmount {
        config.mount_options.push(MountOption::AutoUnmount);
    }
    config.acl = match (args.allow_other, args.auto_unmount) {
        (true, _) => SessionACL::All,
        // fusermount3 watches for the daemon's exit only on mounts root may use.
        (false, true) => SessionACL::RootAndOwner,
        (false, false) => SessionACL::Owner,
    };
    config.n_threads = Some(2);
    // Handlers go in before READY=1 is sent: a SIGTERM that follows readiness at once must
    // get the graceful path, not the default action (killed, mount left behind).
    let (mut term, mut int) = {
        let _guard = rt.enter();
        (
            signal(SignalKind::terminate()).expect("SIGTERM handler"),
            signal(SignalKind::interrupt()).expect("SIGINT handler"),
        )
    };
    // With --auto-unmount, fusermount3 mounts and then stays to watch us: it must not keep
    // the caller's stderr (a caller reading our output to its end would wait for it).
    let notifier = adapter.notifier_slot();
    let session = match while_stderr_is_null(args.auto_unmount, || {
        fuser::Session::new(adapter, &args.mountpoint, &config)
    }) {
        Ok(s) => s,
        Err(e) => {
            return fail(
                EXIT_FAILURE,
                format!("cannot mount on {}: {e}", args.mountpoint.display()),
            );
        }
    };
    let _ = notifier.set(session.notifier());
    let background = match session.spawn() {
        Ok(b) => b,
        Err(e) => return fail(EXIT_FAILURE, format!("cannot start the FUSE session: {e}")),
    };
    raise_read_ahead(
        &args.mountpoint,
        (args.max_prefetch / 1024).min(64 * 1024) as u32,
    );
    info!(
        mountpoint = %args.mountpoint.display(),
        cache_size = %super::args::show_size(args.cache_size),
        max_prefetch = %super::args::show_size(args.max_prefetch),
        max_upload_memory = %super::args::show_size(args.max_upload_memory),
        part_size = %super::args::show_size(args.part_size),
        parts_in_flight = args.parts_in_flight,
        max_cache_size = %super::args::show_size(args.max_cache_size),
        keep_sent_parts = %super::args::show_size(args.keep_sent_parts),
        "mounted {location}"
    );
    let _ = sd_notify::notify(&[sd_notify::NotifyState::Ready]);
    ready.report("ready");

    let mountpoint = args.mountpoint.clone();
    rt.block_on(async {
        let mut session_done = tokio::task::spawn_blocking(move || background.join());
        tokio::select! {
            _ = term.recv() => info!("SIGTERM: saving open files, then unmounting"),
            _ = int.recv() => info!("SIGINT: saving open files, then unmounting"),
            result = &mut session_done => {
                if let Ok(Err(e)) = result {
                    warn!("FUSE session ended: {e}");
                }
                fs.wait_for_releases(SHUTDOWN_COMMIT_TIMEOUT).await;
                fs.flush_all_attrs().await;
                info!("unmounted");
                return;
            }
        }
        let _ = sd_notify::notify(&[sd_notify::NotifyState::Stopping]);
        // A second signal stops at once.
        tokio::spawn(async move {
            tokio::select! { _ = term.recv() => {}, _ = int.recv() => {} }
            warn!("second signal: exiting without waiting for uploads");
            std::process::exit(EXIT_FAILURE);
        });
        fs.commit_all(SHUTDOWN_COMMIT_TIMEOUT).await;
        unmount(&mountpoint);
        let _ = session_done.await;
        fs.wait_for_releases(SHUTDOWN_COMMIT_TIMEOUT).await;
        fs.flush_all_attrs().await;
        info!("unmounted");
    });
    log_upload_totals(&upload.stats);
    log_read_totals(&read.stats);
    log_name_totals(&name_totals);
    0
}

fn log_name_totals(totals: &NameTotals) {
    use std::sync::atomic::Ordering::Relaxed;
    info!(
        lookups = totals.lookups.load(Relaxed),
        listed_with_attrs = totals.listed_with_attrs.load(Relaxed),
        "name totals"
    );
}

/// The staging directory, created (mode 0700) if missing. A directory that cannot be made
/// only matters to files changed in place: those writes then fail with a logged reason.
fn staging_dir(arg: Option<&std::path::Path>) -> std::path::PathBuf {
    use std::os::unix::fs::DirBuilderExt;
    let dir = match arg {
        Some(d) => d.to_path_buf(),
        None if nix::unistd::geteuid().is_root() => "/var/cache/s3cryptfs".into(),
        None => std::env::var_os("XDG_CACHE_HOME")
            .map(std::path::PathBuf::from)
            .or_else(|| std::env::var_os("HOME").map(|h| std::path::Path::new(&h).join(".cache")))
            .unwrap_or_else(std::env::temp_dir)
            .join("s3cryptfs"),
    };
    if let Err(e) = std::fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(&dir)
    {
        warn!(dir = %dir.display(), "cache directory unusable, files cannot be changed in place: {e}");
    }
    dir
}

fn log_upload_totals(stats: &UploadStats) {
    use std::sync::atomic::Ordering::Relaxed;
    info!(
        single_put_files = stats.single_put_files.load(Relaxed),
        multipart_files = stats.multipart_files.load(Relaxed),
        parts = stats.parts.load(Relaxed),
        bytes = stats.bytes.load(Relaxed),
        failed_files = stats.failures.load(Relaxed),
        writes_at_once = stats.writes_at_once.load(Relaxed),
        writes_waited = stats.writes_waited.load(Relaxed),
        "upload totals"
    );
}

fn log_read_totals(stats: &ReadStats) {
    info!(
        gets = ReadStats::get(&stats.gets),
        segments_fetched = ReadStats::get(&stats.segments_fetched),
        segments_from_lookups = ReadStats::get(&stats.segments_from_lookups),
        "read totals"
    );
}

/// `s3cryptfs umount DIR`: as root, unmount(2) (the daemon then saves what is still being
/// written and exits); otherwise `fusermount3 -u`.
pub fn umount_command(path: &std::path::Path) -> i32 {
    let err = match umount2(path, MntFlags::empty()) {
        Ok(()) => return 0,
        Err(e) => std::io::Error::from(e),
    };
    if err.raw_os_error() == Some(libc::EPERM) {
        return match Command::new("fusermount3").arg("-u").arg(path).status() {
            Ok(s) if s.success() => 0,
            _ => fail(EXIT_FAILURE, format!("cannot unmount {}", path.display())),
        };
    }
    fail(
        EXIT_FAILURE,
        format!("cannot unmount {}: {err}", path.display()),
    )
}

/// Unmounts `path`; while files are still open there, detaches it lazily (the session then
/// ends when the last one is closed). fuser's own unmounter is not used: it skips the unmount
/// when kernel requests are pending on the device.
/// Runs `f` with stderr pointing at /dev/null when `quiet`, so that processes it starts do not
/// inherit ours; stderr is back as it was afterwards.
fn while_stderr_is_null<T>(quiet: bool, f: impl FnOnce() -> T) -> T {
    use std::os::fd::AsFd;
    let saved = quiet
        .then(|| {
            // Close-on-exec, or the very process it is hidden from would inherit it.
            let saved = fcntl(std::io::stderr().as_fd(), FcntlArg::F_DUPFD_CLOEXEC(3)).ok()?;
            // SAFETY: F_DUPFD_CLOEXEC just returned this new descriptor; nothing else owns it.
            let saved = unsafe { std::os::fd::OwnedFd::from_raw_fd(saved) };
            let null = std::fs::OpenOptions::new()
                .write(true)
                .open("/dev/null")
                .ok()?;
            nix::unistd::dup2_stderr(&null).ok()?;
            Some(saved)
        })
        .flatten();
    let result = f();
    if let Some(saved) = saved {
        let _ = nix::unistd::dup2_stderr(&saved);
    }
    result
}

/// A daemon that died (kill -9, OOM) leaves its mount behind, answering ENOTCONN to
/// everything: a restart could not mount there. A stale mount of ours is detached, with a
/// log line; one of another filesystem is left alone and named in the error.
fn clear_stale_mount(path: &std::path::Path) -> Result<(), String> {
    match std::fs::metadata(path) {
        Err(e) if e.raw_os_error() == Some(libc::ENOTCONN) => {}
        _ => return Ok(()),
    }
    let wanted = std::fs::canonicalize(path.parent().unwrap_or(path))
        .map(|parent| parent.join(path.file_name().unwrap_or_default()))
        .unwrap_or_else(|_| path.to_path_buf());
    let mounts = std::fs::read_to_string("/proc/self/mounts").unwrap_or_default();
    // The newest mount on that path: its source (our FSName is `s3cryptfs:LOCATION`) and type
    // (`fuse` or `fuse.s3cryptfs`, as the kernel and mount(8) name it).
    let found = mounts.lines().rev().find_map(|line| {
        let mut fields = line.split(' ');
        let (source, target, fs_type) = (fields.next()?, fields.next()?, fields.next()?);
        (unescape_mount_path(target) == wanted.to_string_lossy())
            .then(|| (source.to_string(), fs_type.to_string()))
    });
    let ours = |(source, fs_type): &(String, String)| {
        fs_type.starts_with("fuse") && source.starts_with("s3cryptfs:")
    };
    match found {
        Some(mount) if ours(&mount) => {
            warn!(
                "{} is the stale mount of an s3cryptfs daemon that died: detaching it",
                path.display()
            );
            umount2(path, MntFlags::MNT_DETACH)
                .map_err(|e| format!("cannot detach the stale mount on {}: {e}", path.display()))
        }
        Some((source, fs_type)) => Err(format!(
            "{} is a dead mount of something else ({source}, {fs_type}): unmount it first \
             (fusermount -u)",
            path.display()
        )),
        None => Err(format!(
            "{} answers 'transport endpoint is not connected' (a dead FUSE mount?)",
            path.display()
        )),
    }
}

/// Mount points in /proc/self/mounts have space, tab, newline and backslash as octal escapes.
fn unescape_mount_path(field: &str) -> String {
    field
        .replace("\\040", " ")
        .replace("\\011", "\t")
        .replace("\\012", "\n")
        .replace("\\134", "\\")
}

fn unmount(path: &std::path::Path) {
    let Err(err) = umount2(path, MntFlags::empty()) else {
        return;
    };
    warn!(
        "unmount of {} failed ({err}); detaching it lazily",
        path.display()
    );
    if let Err(e) = umount2(path, MntFlags::MNT_DETACH) {
        warn!("lazy unmount failed: {e}");
    }
}

/// Re-runs this command in the foreground as a detached child, hands it `secret` through a
/// pipe, and waits for its report.
fn run_in_background(argv: &[std::ffi::OsString], secret: &Secret) -> i32 {
    let (read_end, write_end) = match nix::unistd::pipe2(OFlag::O_CLOEXEC) {
        Ok(ends) => ends,
        Err(e) => return fail(EXIT_FAILURE, std::io::Error::from(e)),
    };
    let secret_read = match secret_pipe(secret) {
        Ok(fd) => fd,
        Err(e) => return fail(EXIT_FAILURE, e),
    };
    let secret_fd = secret_read.as_raw_fd();
    let exe = match std::env::current_exe() {
        Ok(e) => e,
        Err(e) => return fail(EXIT_FAILURE, e),
    };
    let child_fd = write_end.as_raw_fd();
    let mut cmd = Command::new(exe);
    cmd.args(argv)
        .arg("--foreground")
        .env(READY_FD_ENV, child_fd.to_string())
        .env(SECRET_FD_ENV, secret_fd.to_string())
        .env_remove(PASSPHRASE_ENV)
        .stdin(Stdio::null())
        .stdout(Stdio::null());
    // SAFETY: the closure runs in the forked child before exec, where only async-signal-safe
    // calls are allowed: fcntl(2) and setsid(2) are, and it allocates nothing.
    unsafe {
        cmd.pre_exec(move || {
            // SAFETY: `child_fd` and `secret_fd` are the report pipe's write end and the
            // secret pipe's read end made above, which the parent keeps open until the child
            // has been spawned; the fork inherited them.
            let (report, secret) = (
                BorrowedFd::borrow_raw(child_fd),
                BorrowedFd::borrow_raw(secret_fd),
            );
            // Keep both pipes across exec, and leave the caller's session.
            fcntl(report, FcntlArg::F_SETFD(FdFlag::empty()))?;
            fcntl(secret, FcntlArg::F_SETFD(FdFlag::empty()))?;
            nix::unistd::setsid()?;
            Ok(())
        });
    }
    let mut child = match cmd.spawn() {
        Ok(c) => c,
        Err(e) => return fail(EXIT_FAILURE, format!("cannot start the mount daemon: {e}")),
    };
    drop(write_end);
    drop(secret_read);
    let mut report = String::new();
    let _ = std::fs::File::from(read_end).read_to_string(&mut report);
    if report.trim() == "ready" {
        return 0;
    }
    // The child printed its error to our stderr; pass on its status.
    match child.wait() {
        Ok(status) => status.code().unwrap_or(EXIT_FAILURE).max(1),
        Err(_) => EXIT_FAILURE,
    }
}

/// The write end of the readiness pipe, when started by [`run_in_background`].
struct ReadyPipe(std::sync::Mutex<Option<std::fs::File>>);

impl ReadyPipe {
    fn from_env() -> Self {
        let fd = std::env::var(READY_FD_ENV)
            .ok()
            .and_then(|v| v.parse::<i32>().ok())
            .filter(|fd| *fd > 2 && std::path::Path::new(&format!("/proc/self/fd/{fd}")).exists());
        // SAFETY: the descriptor is open (checked above) and was made for us by the parent
        // (`run_in_background`); nothing else in this process owns it.
        let file = fd.map(|fd| unsafe { std::fs::File::from_raw_fd(fd) });
        // Ours alone again: a process we start (fusermount3) must not hold it open, or the
        // parent would never see it close.
        if let Some(f) = &file {
            let _ = fcntl(f, FcntlArg::F_SETFD(FdFlag::FD_CLOEXEC));
        }
        // SAFETY: called from `run` before the runtime or any other thread is started, so no
        // thread can be reading the environment meanwhile.
        unsafe { std::env::remove_var(READY_FD_ENV) };
        Self(std::sync::Mutex::new(file))
    }

    /// Tells the waiting parent how the mount went, and lets go of everything the parent
    /// waits on: the report pipe and our stderr (the parent's), so that a caller capturing
    /// the command's output is not held until the daemon exits.
    fn report(&self, what: &str) {
        // Taken: the pipe is closed when `f` goes, and nothing can write to it after.
        if let Some(mut f) = self.0.lock().unwrap().take() {
            let _ = writeln!(f, "{what}");
            if let Ok(null) = std::fs::OpenOptions::new().write(true).open("/dev/null") {
                let _ = nix::unistd::dup2_stderr(&null);
            }
        }
    }
}
