//! `s3cryptfs mount`: opens the volume, mounts it, serves it until unmounted or signalled.
//!
//! Without `--foreground` the command starts itself again in the background and returns only
//! once the mount is live (exit 0) or has failed (the child's error and exit status), as a
//! mount(8) helper must.

use std::os::fd::FromRawFd;
use std::sync::Arc;
use std::time::Duration;

use fuser::{MountOption, SessionACL};
use nix::fcntl::{FcntlArg, fcntl};
use tokio::signal::unix::{SignalKind, signal};
use tracing::{info, warn};

use super::args::{MountArgs, PASSPHRASE_ENV, Secret};
use super::daemon::{
    ReadyPipe, exec_without_passphrase, handed_over_secret, refuse_core_dumps, run_in_background,
};
use super::mount_point::{clear_stale_mount, unmount};
use super::{EXIT_FAILURE, EXIT_STORE, EXIT_USAGE, fail, runtime};
use crate::fs::{FsCore, FsOptions, FuseAdapter, NameTotals, raise_read_ahead};
use crate::read::{PrefetchConfig, ReadContext, ReadStats};
use crate::store::ConditionSupport;
use crate::upload::{MemoryBudget, UploadConfig, UploadContext, UploadStats};

/// How long opening the volume may take before the mount gives up (never a hung mount).
const OPEN_TIMEOUT: Duration = Duration::from_secs(60);
/// How long shutdown waits for each file still being written.
const SHUTDOWN_COMMIT_TIMEOUT: Duration = Duration::from_secs(300);

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
