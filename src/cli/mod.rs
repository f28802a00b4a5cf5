//! The command line: argument parsing, logging, and one module per subcommand.
//!
//! Exit codes scripts can rely on: 0 success, 1 other failure, 2 bad input or usage,
//! 3 the key does not match the volume, 4 S3 failure (unreachable, bucket missing, denied).

mod args;
mod config_cmd;
mod daemon;
mod fsck;
mod helper;
mod init;
mod key_args;
mod keys;
mod logging;
mod mount;
mod mount_point;
mod recover;
mod rekey;
mod unlock;

use clap::Parser;

pub(crate) use unlock::{new_user_key, unlock};

pub use args::{Cli, Command, ConnectionArgs, KeyArgs, parse_size};

pub const EXIT_FAILURE: i32 = 1;
pub const EXIT_USAGE: i32 = 2;
pub const EXIT_WRONG_KEY: i32 = 3;
pub const EXIT_STORE: i32 = 4;

/// Runs the command line; returns the process exit status.
pub fn main() -> i32 {
    let mut argv: Vec<std::ffi::OsString> = std::env::args_os().collect();
    match helper::as_mount_helper(&argv) {
        None => {}
        Some(Ok(translated)) if translated.is_empty() => return 0, // mount -f: pretend
        Some(Ok(translated)) => argv = translated,
        Some(Err(e)) => return fail(EXIT_USAGE, e),
    }
    let cli = Cli::parse_from(&argv);
    let (log_level, log_file, daemon) = match &cli.command {
        Command::Mount(m) => (
            m.log_level.clone(),
            m.log_file.clone(),
            daemon::is_background_daemon(),
        ),
        _ => ("warn".to_string(), None, false),
    };
    if let Err(e) = logging::init(&log_level, log_file.as_deref(), daemon) {
        return fail(EXIT_USAGE, e);
    }
    match cli.command {
        Command::Init(args) => init::run(args),
        Command::Mount(args) => mount::run(args, &argv[1..]),
        Command::Umount(args) => mount_point::umount_command(&args.mountpoint),
        Command::Ls(args) => recover::ls(args),
        Command::Cat(args) => recover::cat(args),
        Command::Get(args) => recover::get(args),
        Command::Put(args) => recover::put(args),
        Command::Fsck(args) => fsck::run(args),
        Command::Rekey(args) => rekey::run(args),
        Command::Key(args::KeyCommand::List(args)) => keys::list(args),
        Command::Key(args::KeyCommand::Add(args)) => keys::add(args),
        Command::Key(args::KeyCommand::Remove(args)) => keys::remove(args),
        Command::Config(args::ConfigCommand::Export(args)) => config_cmd::export(args),
        Command::Config(args::ConfigCommand::Import(args)) => config_cmd::import(args),
    }
}

/// Prints an error the way every subcommand does, and returns `code`.
pub(crate) fn fail(code: i32, message: impl std::fmt::Display) -> i32 {
    eprintln!("s3cryptfs: {message}");
    code
}

/// Builds the S3 client and checks that the bucket exists and is reachable, so that every
/// command fails the same clear way before it does anything else.
pub(crate) async fn connect(
    config: crate::store::StoreConfig,
) -> Result<std::sync::Arc<dyn crate::store::ObjectStore>, crate::store::StoreError> {
    let store = crate::store::S3Store::connect(config).await?;
    store.check_bucket().await?;
    Ok(std::sync::Arc::new(store))
}

/// A progress bar on stderr when it is a terminal; hidden otherwise (scripts, logs).
pub(crate) fn progress_bar(total: u64, bytes: bool) -> indicatif::ProgressBar {
    if !std::io::IsTerminal::is_terminal(&std::io::stderr()) {
        return indicatif::ProgressBar::hidden();
    }
    let template = if bytes {
        "{bar:40} {bytes}/{total_bytes} {bytes_per_sec} eta {eta}"
    } else {
        "{bar:40} {pos}/{len} objects, eta {eta}"
    };
    let bar = indicatif::ProgressBar::new(total);
    if let Ok(style) = indicatif::ProgressStyle::with_template(template) {
        bar.set_style(style);
    }
    bar
}

pub(crate) fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .thread_name("s3cryptfs-worker")
        .build()
        .expect("cannot start the async runtime")
}
