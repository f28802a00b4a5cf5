//! Where the logs go: a file (`--log-file`); the systemd journal for a mount daemon that
//! runs in the background (started by fstab, `mount -t`, a `.mount` unit or a plain
//! `s3cryptfs mount`, whose stderr is gone once it is live) or whose stderr systemd already
//! reads; syslog for a background daemon where there is no journal; else stderr.

use std::path::Path;

use tracing_subscriber::EnvFilter;
use tracing_subscriber::Layer as _;
use tracing_subscriber::layer::SubscriberExt as _;
use tracing_subscriber::util::SubscriberInitExt as _;

/// Set by systemd when a service's stderr goes to the journal.
const JOURNAL_STREAM_ENV: &str = "JOURNAL_STREAM";
/// Where syslog(3) sends its messages (a syslog daemon listens there).
const SYSLOG_SOCKET: &str = "/dev/log";

/// Where [`init`] sent the logs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Destination {
    File,
    Journal,
    Syslog,
    Stderr,
}

/// Sets up logging at `level` (`RUST_LOG` overrides). `daemon`: this is a mount daemon, which
/// logs to the journal when there is one (priorities from levels: error 3, warn 4, info 5,
/// debug 6, trace 7), else to syslog (facility daemon, the same severities), unless given a
/// file.
pub fn init(level: &str, file: Option<&Path>, daemon: bool) -> Result<Destination, String> {
    // The SDK's own logs are noisy at info; keep them at warn unless RUST_LOG says otherwise.
    let default = format!(
        "{level},aws_config=warn,aws_smithy_runtime=warn,aws_sdk_s3=warn,aws_sdk_kms=warn,fuser=error"
    );
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new(default));
    let under_systemd = std::env::var_os(JOURNAL_STREAM_ENV).is_some();
    let (layer, destination) = if let Some(path) = file {
        let file = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(path)
            .map_err(|e| format!("cannot open log file {}: {e}", path.display()))?;
        let layer = tracing_subscriber::fmt::layer()
            .with_target(false)
            .with_ansi(false)
            .with_writer(std::sync::Mutex::new(file))
            .boxed();
        (layer, Destination::File)
    } else if let Some(journal) = (daemon || under_systemd)
        .then(tracing_journald::layer)
        .and_then(Result::ok)
    {
        let layer = journal
            .with_syslog_identifier("s3cryptfs".to_string())
            .boxed();
        (layer, Destination::Journal)
    } else if let Some(syslog) = (daemon && std::path::Path::new(SYSLOG_SOCKET).exists())
        .then(|| {
            let (options, facility) = (
                syslog_tracing::Options::LOG_PID,
                syslog_tracing::Facility::Daemon,
            );
            syslog_tracing::Syslog::new(c"s3cryptfs", options, facility)
        })
        .flatten()
    {
        // syslog stamps and tags each line itself; levels become severities as in the journal.
        let layer = tracing_subscriber::fmt::layer()
            .with_target(false)
            .with_ansi(false)
            .without_time()
            .with_writer(syslog)
            .boxed();
        (layer, Destination::Syslog)
    } else {
        let layer = tracing_subscriber::fmt::layer()
            .with_target(false)
            .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
            .with_writer(std::io::stderr);
        // The journal stamps each line itself.
        let layer = if under_systemd {
            layer.without_time().boxed()
        } else {
            layer.boxed()
        };
        (layer, Destination::Stderr)
    };
    let _ = tracing_subscriber::registry()
        .with(filter)
        .with(layer)
        .try_init();
    Ok(destination)
}
