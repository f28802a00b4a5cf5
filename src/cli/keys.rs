//! `s3cryptfs key list|add|remove`: the volume's key slots. Each slot wraps the same master
//! key under its own user key, so adding or removing one rewrites only the config (both of
//! its copies), never an object.

use super::args::{KeyAddArgs, KeyArgs, KeyRemoveArgs, LocationArgs, NewKeyArgs, VolumeArgs};
use super::unlock::new_kms_key;
use super::{EXIT_STORE, EXIT_USAGE, fail, new_user_key, runtime, unlock};
use crate::crypto::{KeySlot, KeySource, UserKey, VolumeConfig};
use crate::store::StoreConfig;
use crate::volume::{Volume, read_config};

/// The user key and key source of a new slot, from --new-key-file (optionally generated
/// first) or --new-passphrase-file (or a passphrase typed twice on a terminal).
pub(super) fn new_slot_key(new: &NewKeyArgs) -> Result<(UserKey, KeySource), String> {
    if new.new_key_file.is_none() && new.new_passphrase_file.is_none() {
        if std::io::IsTerminal::is_terminal(&std::io::stdin()) {
            return KeyArgs::default()
                .prompt_passphrase(true)
                .and_then(|secret| new_user_key(&secret, new.kdf_cost));
        }
        return Err("give the new key with --new-key-file or --new-passphrase-file".into());
    }
    if new.generate_key {
        let path = new
            .new_key_file
            .as_deref()
            .expect("clap requires --new-key-file");
        UserKey::generate_key_file(path).map_err(|e| e.to_string())?;
    }
    let args = KeyArgs {
        key_file: new.new_key_file.clone(),
        passphrase_file: new.new_passphrase_file.clone(),
        ..KeyArgs::default()
    };
    let secret = args.secret(true)?;
    new_user_key(&secret, new.kdf_cost)
}

/// Prints a new recovery key the one time it is shown.
pub(super) fn print_recovery_key(key: &UserKey, slot: &str) {
    println!(
        "\nRecovery key (slot '{slot}'). Write it down and keep it away from the volume's other \
         keys; it is shown only now:\n\n    {}\n\nIt unlocks the volume if every other key is lost: \
         put it in a file and pass --key-file FILE.\n",
        key.recovery_text().as_str()
    );
}

pub fn list(args: LocationArgs) -> i32 {
    runtime().block_on(async move {
        let config = match config_at(&args).await {
            Ok(c) => c,
            Err(code) => return code,
        };
        println!("{:<24} {:<12} DETAILS", "NAME", "KIND");
        for slot in &config.key_slots {
            println!(
                "{:<24} {:<12} {}",
                slot.name,
                slot.source.kind_name(),
                details(slot)
            );
        }
        0
    })
}

/// The config of the volume at `args`, read without a key (it holds only wrapped keys); an
/// error is printed and its exit status returned.
pub(super) async fn config_at(args: &LocationArgs) -> Result<VolumeConfig, i32> {
    let config = args
        .connection
        .store_config(&args.location)
        .map_err(|e| fail(EXIT_USAGE, e))?;
    let location = config.location();
    let store = super::connect(config)
        .await
        .map_err(|e| fail(EXIT_STORE, e))?;
    read_config(store.as_ref(), &location)
        .await
        .map_err(|e| fail(e.exit_code(), e))
}

fn details(slot: &KeySlot) -> String {
    match &slot.source {
        KeySource::KeyFile => "a 32-byte key file or systemd credential".into(),
        KeySource::Passphrase { log_n, r, p, .. } => {
            format!("scrypt N=2^{log_n} r={r} p={p}")
        }
        KeySource::Recovery => "a recovery key written down when it was made".into(),
        KeySource::Kms { key_id, .. } => format!("AWS KMS key {key_id}"),
    }
}

pub fn add(args: KeyAddArgs) -> i32 {
    let prepared = if args.recovery {
        Some((UserKey::generate(), KeySource::Recovery))
    } else if args.new.new_kms_key_id.is_some() {
        None // made once the volume's id is known
    } else {
        match new_slot_key(&args.new) {
            Ok(k) => Some(k),
            Err(e) => return fail(EXIT_USAGE, e),
        }
    };
    let kms_key_id = args.new.new_kms_key_id.clone();
    let endpoint = args.volume.key.kms_endpoint_url.clone();
    let (wanted_name, recovery) = (args.name.clone(), args.recovery);
    with_unlocked(&args.volume, |volume, connection| async move {
        let (user_key, source) = match prepared {
            Some(k) => k,
            None => {
                let key_id = kms_key_id.as_deref().expect("checked above");
                new_kms_key(&volume.config, key_id, endpoint.as_deref(), &connection).await?
            }
        };
        let mut changed = volume.config.clone();
        let name = changed
            .add_slot(&volume.master, wanted_name.as_deref(), &user_key, source)
            .map_err(|e| (EXIT_USAGE, e.to_string()))?;
        save(&volume, &changed).await?;
        if recovery {
            print_recovery_key(&user_key, &name);
        }
        println!("added key slot '{name}'");
        Ok(())
    })
}

pub fn remove(args: KeyRemoveArgs) -> i32 {
    let name = args.name.clone();
    with_unlocked(&args.volume, |volume, _| async move {
        let own = volume.config.key_slots[volume.unlocked_slot].name == name;
        let mut changed = volume.config.clone();
        changed
            .remove_slot(&name)
            .map_err(|e| (EXIT_USAGE, e.to_string()))?;
        save(&volume, &changed).await?;
        println!("removed key slot '{name}'");
        if own {
            println!("(it was the slot just used to unlock the volume)");
        }
        println!(
            "Its key no longer opens this config, but it still opens any copy made before: \
             `config export` files, backups of the bucket, and older versions of \
             .s3cryptfs/volume.json and volume.copy.json if the bucket keeps versions. If \
             the key leaked, its holder may already have the master key: copy the files \
             into a new volume to be rid of it."
        );
        Ok(())
    })
}

/// Unlocks the volume and runs `work` on it in the runtime; its error is printed and
/// becomes the exit status.
fn with_unlocked<W, F>(volume_args: &VolumeArgs, work: W) -> i32
where
    W: FnOnce(Volume, StoreConfig) -> F,
    F: std::future::Future<Output = Result<(), (i32, String)>>,
{
    let connection = match volume_args.connection.store_config(&volume_args.location) {
        Ok(c) => c,
        Err(e) => return fail(EXIT_USAGE, e),
    };
    let secret = match volume_args.key.secret(false) {
        Ok(s) => s,
        Err(e) => return fail(EXIT_USAGE, e),
    };
    runtime().block_on(async move {
        let store = match super::connect(connection.clone()).await {
            Ok(s) => s,
            Err(e) => return fail(EXIT_STORE, e),
        };
        let volume = match unlock(store, &connection, &secret).await {
            Ok(v) => v,
            Err((code, message)) => return fail(code, message),
        };
        match work(volume, connection).await {
            Ok(()) => 0,
            Err((code, message)) => fail(code, message),
        }
    })
}

/// Writes a changed config to both of the volume's config objects.
async fn save(volume: &Volume, config: &VolumeConfig) -> Result<(), (i32, String)> {
    Volume::write_config(volume.store.as_ref(), config)
        .await
        .map_err(|e| (e.exit_code(), e.to_string()))
}
