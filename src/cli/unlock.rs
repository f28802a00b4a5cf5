//! From what the user gave (a key, a passphrase) to the volume's master key: which key
//! slots each can open, in what order they are tried, and what is said when none fits.

use super::args::Secret;
use super::{EXIT_USAGE, EXIT_WRONG_KEY};
use crate::crypto::{CryptoError, KeySource, MasterKey, UserKey, VolumeConfig};
use crate::store::ObjectStore;
use crate::volume::{Volume, VolumeError, read_config};

/// Reads the volume config, opens the first key slot the user's secret fits (a passphrase
/// goes through each passphrase slot's scrypt parameters) and unlocks the volume.
pub(crate) async fn unlock(
    store: std::sync::Arc<dyn ObjectStore>,
    location: &str,
    secret: &Secret,
) -> Result<Volume, (i32, String)> {
    let config = read_config(store.as_ref(), location)
        .await
        .map_err(|e| (e.exit_code(), e.to_string()))?;
    let (slot, master) = open_slot(&config, secret, location)?;
    Volume::with_master(store, location, config, slot, master)
        .map_err(|e| (e.exit_code(), e.to_string()))
}

/// The index of the slot `secret` opens and the master key.
pub(crate) fn open_slot(
    config: &VolumeConfig,
    secret: &Secret,
    location: &str,
) -> Result<(usize, MasterKey), (i32, String)> {
    let refused = |e: CryptoError| {
        let e = VolumeError::from_unlock(location, e);
        (e.exit_code(), e.to_string())
    };
    match secret {
        Secret::Key(key) => {
            if !config.key_slots.iter().any(|s| s.source.takes_raw_key()) {
                return Err((EXIT_USAGE, wrong_kind(config, "a key file")));
            }
            config
                .unlock_any(key, |slot| slot.source.takes_raw_key())
                .map_err(|e| match e {
                    CryptoError::WrongKey => (
                        EXIT_WRONG_KEY,
                        format!(
                            "the key does not match the volume at {location} ({})",
                            ways_to_unlock(config)
                        ),
                    ),
                    other => refused(other),
                })
        }
        Secret::Passphrase(passphrase) => {
            let mut tried = false;
            for (index, slot) in config.key_slots.iter().enumerate() {
                if !matches!(slot.source, KeySource::Passphrase { .. }) {
                    continue;
                }
                tried = true;
                let key = UserKey::from_passphrase(passphrase, &slot.source).map_err(|e| {
                    (
                        EXIT_USAGE,
                        format!("key slot '{}' of {location}: {e}", slot.name),
                    )
                })?;
                match config.unlock_slot(index, &key) {
                    Ok(master) => return Ok((index, master)),
                    Err(CryptoError::WrongKey) => {}
                    Err(e) => return Err(refused(e)),
                }
            }
            if !tried {
                return Err((EXIT_USAGE, wrong_kind(config, "a passphrase")));
            }
            Err((
                EXIT_WRONG_KEY,
                format!("the passphrase does not match the volume at {location}"),
            ))
        }
    }
}

/// "This volume is not unlocked with X": what it is unlocked with, and how to pass that.
fn wrong_kind(config: &VolumeConfig, given: &str) -> String {
    format!(
        "{given} does not unlock this volume: {}",
        ways_to_unlock(config)
    )
}

/// "it is unlocked with a key file (--key-file FILE) or a passphrase (...)".
fn ways_to_unlock(config: &VolumeConfig) -> String {
    let mut ways: Vec<&str> = config
        .key_slots
        .iter()
        .map(|slot| match slot.source {
            KeySource::KeyFile => "a key file (--key-file FILE)",
            KeySource::Recovery => "its recovery key (in a file: --key-file FILE)",
            KeySource::Passphrase { .. } => {
                "a passphrase (--passphrase-file FILE, S3CRYPTFS_PASSPHRASE, or typed when asked)"
            }
            KeySource::Kms { .. } => "a key held in AWS KMS (--kms)",
        })
        .collect();
    ways.sort_unstable();
    ways.dedup();
    format!("it is unlocked with {}", ways.join(" or "))
}

/// The user key and key source for a new volume or a new slot.
pub(crate) fn new_user_key(secret: &Secret, kdf_cost: u8) -> Result<(UserKey, KeySource), String> {
    match secret {
        Secret::Key(k) => Ok((k.clone(), KeySource::KeyFile)),
        Secret::Passphrase(p) => {
            let mut source = KeySource::passphrase_default();
            if let KeySource::Passphrase { log_n, .. } = &mut source {
                *log_n = kdf_cost;
            }
            let key = UserKey::from_passphrase(p, &source).map_err(|e| e.to_string())?;
            Ok((key, source))
        }
    }
}
