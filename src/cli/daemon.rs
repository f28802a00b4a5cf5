//! How `s3cryptfs mount` becomes a daemon without exposing its key: a background start
//! whose parent waits on a readiness pipe (as a mount(8) helper must), the key or passphrase
//! handed to the child through a pipe (never on its argv or in its environment), and the
//! hardening of the daemon's process (no core dumps, not traceable).

use std::io::{Read, Write};
use std::os::fd::{AsRawFd, BorrowedFd, FromRawFd};
use std::os::unix::process::CommandExt;
use std::process::{Command, Stdio};

use nix::fcntl::{FcntlArg, FdFlag, OFlag, fcntl};
use tracing::warn;

use super::args::{PASSPHRASE_ENV, Secret};
use super::{EXIT_FAILURE, fail};

/// The background child reports readiness on this inherited descriptor.
const READY_FD_ENV: &str = "S3CRYPTFS_READY_FD";
/// The background child reads its key or passphrase from this inherited descriptor.
const SECRET_FD_ENV: &str = "S3CRYPTFS_SECRET_FD";
/// The most a handed-over secret can be (a tag and a passphrase of the longest accepted).
const HANDOFF_MAX: usize = 8192;

/// Whether this process is the daemon a background `mount` started (its logs cannot go to
/// the caller's stderr once the mount is live).
pub(super) fn is_background_daemon() -> bool {
    std::env::var_os(READY_FD_ENV).is_some()
}

/// No core dump of the daemon: it would hold the keys and recent plaintext. Not dumpable
/// also keeps other processes of the same user from attaching to it (ptrace) or reading its
/// memory through /proc.
pub(super) fn refuse_core_dumps() {
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
pub(super) fn exec_without_passphrase(argv: &[std::ffi::OsString], secret: &Secret) -> String {
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
pub(super) fn handed_over_secret() -> Option<Result<Secret, String>> {
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

/// Re-runs this command in the foreground as a detached child, hands it `secret` through a
/// pipe, and waits for its report.
pub(super) fn run_in_background(argv: &[std::ffi::OsString], secret: &Secret) -> i32 {
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
pub(super) struct ReadyPipe(std::sync::Mutex<Option<std::fs::File>>);

impl ReadyPipe {
    pub(super) fn from_env() -> Self {
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
    pub(super) fn report(&self, what: &str) {
        // Taken: the pipe is closed when `f` goes, and nothing can write to it after.
        if let Some(mut f) = self.0.lock().unwrap().take() {
            let _ = writeln!(f, "{what}");
            if let Ok(null) = std::fs::OpenOptions::new().write(true).open("/dev/null") {
                let _ = nix::unistd::dup2_stderr(&null);
            }
        }
    }
}
