//! From what the user gave (a key, a passphrase, `--kms`) to the volume's master key: which
//! key slots each can open, in what order they are tried, and what is said when none fits.

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as BASE64;

use super::args::Secret;
use super::{EXIT_STORE, EXIT_USAGE, EXIT_WRONG_KEY};
use crate::crypto::{CryptoError, KeySource, MasterKey, UserKey, VolumeConfig};
use crate::store::{KmsKeys, ObjectStore, StoreConfig};
use crate::volume::{Volume, VolumeError, read_config};

/// KMS ciphertext blobs of a 32-byte key are about 200 bytes; a slot's is refused past this
/// before it is decoded (the config is the provider's to edit).
const MAX_KMS_BLOB: usize = 6144;

/// Reads the volume config, opens the first key slot the user's secret fits (a passphrase
/// goes through each passphrase slot's scrypt parameters) and unlocks the volume.
pub(crate) async fn unlock(
    store: std::sync::Arc<dyn ObjectStore>,
    connection: &StoreConfig,
    secret: &Secret,
) -> Result<Volume, (i32, String)> {
    let location = connection.location();
    let config = read_config(store.as_ref(), &location)
        .await
        .map_err(|e| (e.exit_code(), e.to_string()))?;
    let (slot, master) = open_slot(&config, secret, &location, connection).await?;
    Volume::with_master(store, &location, config, slot, master)
        .map_err(|e| (e.exit_code(), e.to_string()))
}

/// The index of the slot `secret` opens and the master key. `connection` gives KMS its
/// credentials and region.
pub(crate) async fn open_slot(
    config: &VolumeConfig,
    secret: &Secret,
    location: &str,
    connection: &StoreConfig,
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
        Secret::Kms { endpoint } => {
            open_kms_slot(config, endpoint.as_deref(), location, connection).await
        }
    }
}

/// Asks KMS for each KMS slot's key in turn; the first that unwraps the master key wins.
async fn open_kms_slot(
    config: &VolumeConfig,
    endpoint: Option<&str>,
    location: &str,
    connection: &StoreConfig,
) -> Result<(usize, MasterKey), (i32, String)> {
    let slots: Vec<(usize, &str, &str)> = config
        .key_slots
        .iter()
        .enumerate()
        .filter_map(|(index, slot)| match &slot.source {
            KeySource::Kms {
                key_id,
                encrypted_key,
            } => Some((index, key_id.as_str(), encrypted_key.as_str())),
            _ => None,
        })
        .collect();
    if slots.is_empty() {
        return Err((EXIT_USAGE, wrong_kind(config, "a KMS key")));
    }
    let kms = KmsKeys::connect(connection, endpoint)
        .await
        .map_err(|e| (EXIT_STORE, e.to_string()))?;
    let mut last_error = None;
    for (index, key_id, encrypted) in slots {
        let name = &config.key_slots[index].name;
        if encrypted.len() > MAX_KMS_BLOB {
            last_error = Some((
                EXIT_USAGE,
                format!(
                    "key slot '{name}': its KMS ciphertext is {} bytes long",
                    encrypted.len()
                ),
            ));
            continue;
        }
        let Ok(blob) = BASE64.decode(encrypted) else {
            last_error = Some((
                EXIT_USAGE,
                format!("key slot '{name}': its KMS ciphertext is not base64"),
            ));
            continue;
        };
        let plaintext = match kms.decrypt(key_id, &blob, &config.volume_id).await {
            Ok(p) => p,
            Err(e) => {
                last_error = Some((EXIT_STORE, format!("key slot '{name}': {e}")));
                continue;
            }
        };
        let user_key = UserKey::from_raw(&plaintext).map_err(|e| (EXIT_STORE, e.to_string()))?;
        match config.unlock_slot(index, &user_key) {
            Ok(master) => return Ok((index, master)),
            Err(e) => {
                let e = VolumeError::from_unlock(location, e);
                last_error = Some((e.exit_code(), format!("key slot '{name}': {e}")));
            }
        }
    }
    Err(last_error.expect("at least one KMS slot was tried"))
}

/// A new KMS slot's key: random, encrypted by the KMS key `key_id` for this volume.
pub(crate) async fn new_kms_key(
    config: &VolumeConfig,
    key_id: &str,
    endpoint: Option<&str>,
    connection: &StoreConfig,
) -> Result<(UserKey, KeySource), (i32, String)> {
    let kms = KmsKeys::connect(connection, endpoint)
        .await
        .map_err(|e| (EXIT_STORE, e.to_string()))?;
    let user_key = UserKey::generate();
    let blob = kms
        .encrypt(key_id, user_key.expose(), &config.volume_id)
        .await
        .map_err(|e| (EXIT_STORE, e.to_string()))?;
    let source = KeySource::Kms {
        key_id: key_id.to_string(),
        encrypted_key: BASE64.encode(blob),
    };
    Ok((user_key, source))
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
        Secret::Kms { .. } => Err(
            "a KMS key is added to a volume that exists: init with a key \
             file or passphrase, then `s3cryptfs key add --new-kms-key-id KEY_ID`"
                .into(),
        ),
    }
}
