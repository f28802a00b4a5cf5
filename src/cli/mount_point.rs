//! The mount point: clearing a dead daemon's stale mount before mounting, unmounting at
//! exit, and `s3cryptfs umount`.

use std::process::Command;

use nix::mount::{MntFlags, umount2};
use tracing::warn;

use super::{EXIT_FAILURE, fail};

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

/// A daemon that died (kill -9, OOM) leaves its mount behind, answering ENOTCONN to
/// everything: a restart could not mount there. A stale mount of ours is detached, with a
/// log line; one of another filesystem is left alone and named in the error.
pub(super) fn clear_stale_mount(path: &std::path::Path) -> Result<(), String> {
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

/// Unmounts `path`; while files are still open there, detaches it lazily (the session then
/// ends when the last one is closed). fuser's own unmounter is not used: it skips the unmount
/// when kernel requests are pending on the device.
pub(super) fn unmount(path: &std::path::Path) {
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
