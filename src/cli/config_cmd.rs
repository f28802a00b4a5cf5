//! `s3cryptfs config export|import`: the volume config as a file, an offline backup of what
//! unlocks the volume. Losing both config objects loses the data even with the key; an
//! exported config brings them back.

use std::io::Write;
use std::os::unix::fs::OpenOptionsExt;

use super::args::{ConfigExportArgs, ConfigImportArgs};
use super::unlock::open_slot;
use super::{EXIT_FAILURE, EXIT_STORE, EXIT_USAGE, fail, runtime};
use crate::crypto::VolumeConfig;
use crate::volume::{CONFIG_COPY_KEY, CONFIG_KEY, ConfigCopy, Volume, read_config_copy};

/// An exported config is a few KiB; a larger file is not one.
const MAX_EXPORT_SIZE: u64 = 1024 * 1024;

pub fn export(args: ConfigExportArgs) -> i32 {
    runtime().block_on(async move {
        let config = match super::keys::config_at(&args.volume).await {
            Ok(c) => c,
            Err(code) => return code,
        };
        let json = config.to_json();
        match &args.output {
            None => {
                if std::io::stdout().write_all(&json).is_err() {
                    return EXIT_FAILURE;
                }
            }
            Some(path) => {
                let written = std::fs::OpenOptions::new()
                    .write(true)
                    .create_new(true)
                    .mode(0o600)
                    .open(path)
                    .and_then(|mut f| f.write_all(&json).and_then(|()| f.sync_all()));
                if let Err(e) = written {
                    return fail(EXIT_USAGE, format!("{}: {e}", path.display()));
                }
                eprintln!(
                    "exported the config of volume {} ({} key slot(s)) to {}",
                    config.volume_id,
                    config.key_slots.len(),
                    path.display()
                );
            }
        }
        0
    })
}

pub fn import(args: ConfigImportArgs) -> i32 {
    let imported = match read_export(&args.input) {
        Ok(c) => c,
        Err(e) => return fail(EXIT_USAGE, e),
    };
    let config = match args.volume.connection.store_config(&args.volume.location) {
        Ok(c) => c,
        Err(e) => return fail(EXIT_USAGE, e),
    };
    let secret = match args.volume.key.secret(false) {
        Ok(s) => s,
        Err(e) => return fail(EXIT_USAGE, e),
    };
    let location = config.location();
    runtime().block_on(async move {
        // The given key must open the file: a config nobody can unlock would lose the volume.
        let input = args.input.display().to_string();
        if let Err((code, message)) = open_slot(&imported, &secret, &input, &config).await {
            return fail(code, message);
        }
        let store = match super::connect(config.clone()).await {
            Ok(s) => s,
            Err(e) => return fail(EXIT_STORE, e),
        };
        for key in [CONFIG_KEY, CONFIG_COPY_KEY] {
            match read_config_copy(store.as_ref(), key).await {
                Ok(ConfigCopy::Read(present)) if present.volume_id != imported.volume_id => {
                    return fail(
                        EXIT_USAGE,
                        format!(
                            "{location} holds volume {}, not {} (the imported one): refusing to \
                             replace its config",
                            present.volume_id, imported.volume_id
                        ),
                    );
                }
                Ok(_) => {}
                Err(e) => return fail(EXIT_STORE, e),
            }
        }
        match Volume::write_config(store.as_ref(), &imported).await {
            Ok(()) => {
                println!(
                    "{location}: imported the config of volume {} ({} key slot(s))",
                    imported.volume_id,
                    imported.key_slots.len()
                );
                0
            }
            Err(e) => fail(e.exit_code(), e),
        }
    })
}

fn read_export(path: &std::path::Path) -> Result<VolumeConfig, String> {
    let size = std::fs::metadata(path)
        .map_err(|e| format!("{}: {e}", path.display()))?
        .len();
    if size > MAX_EXPORT_SIZE {
        return Err(format!(
            "{} has {size} bytes: not an exported config",
            path.display()
        ));
    }
    let bytes = std::fs::read(path).map_err(|e| format!("{}: {e}", path.display()))?;
    VolumeConfig::from_json(&bytes).map_err(|e| format!("{}: {e}", path.display()))
}
