//! `s3cryptfs key list|add|remove`: the volume's key slots. Each slot wraps the same master
//! key under its own user key, so adding or removing one rewrites only the config (both of
//! its copies), never an object.

use super::args::{KeyAddArgs, KeyArgs, KeyRemoveArgs, LocationArgs, NewKeyArgs, Secret};
use super::{EXIT_STORE, EXIT_USAGE, fail, new_user_key, runtime, unlock};
use crate::crypto::{KeySlot, KeySource, UserKey};
use crate::volume::{Volume, read_config};

/// The user key and key source of a new slot, from --new-key-file (optionally generated
/// first) or --new-passphrase-file (or a passphrase typed twice on a terminal).
pub(super) fn new_slot_key(new: &NewKeyArgs) -> Result<(UserKey, KeySource), String> {
    if new.new_key_file.is_none() && new.new_passphrase_file.is_none() {
        if std::io::IsTerminal::is_terminal(&std::io::stdin()) {
            let typed = KeyArgs {
                key_file: None,
                key_credential: None,
                passphrase_file: None,
            };
            return typed
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
        key_credential: None,
        passphrase_file: new.new_passphrase_file.clone(),
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
    let config = match args.connection.store_config(&args.location) {
        Ok(c) => c,
        Err(e) => return fail(EXIT_USAGE, e),
    };
    let location = config.location();
    runtime().block_on(async move {
        let store = match super::connect(config).await {
            Ok(s) => s,
            Err(e) => return fail(EXIT_STORE, e),
        };
        let config = match read_config(store.as_ref(), &location).await {
            Ok(c) => c,
            Err(e) => return fail(e.exit_code(), e),
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
    let (user_key, source) = if args.recovery {
        (UserKey::generate(), KeySource::Recovery)
    } else {
        match new_slot_key(&args.new) {
            Ok(k) => k,
            Err(e) => return fail(EXIT_USAGE, e),
        }
    };
    change_slots(&args.volume.key, &args.volume, |volume, config| {
        let name = config
            .add_slot(&volume.master, args.name.as_deref(), &user_key, source)
            .map_err(|e| e.to_string())?;
        Ok(move || {
            if args.recovery {
                print_recovery_key(&user_key, &name);
            }
            println!("added key slot '{name}'");
        })
    })
}

pub fn remove(args: KeyRemoveArgs) -> i32 {
    change_slots(&args.volume.key, &args.volume, |volume, config| {
        let unlocked_with = &volume.config.key_slots[volume.unlocked_slot].name;
        let own = *unlocked_with == args.name;
        config.remove_slot(&args.name).map_err(|e| e.to_string())?;
        let name = args.name.clone();
        Ok(move || {
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
        })
    })
}

/// Unlocks the volume, lets `change` edit a copy of its config and writes the result to both
/// config objects; `change` returns what to print once the config is written.
fn change_slots<F, Done>(key: &KeyArgs, volume_args: &super::args::VolumeArgs, change: F) -> i32
where
    F: FnOnce(&Volume, &mut crate::crypto::VolumeConfig) -> Result<Done, String>,
    Done: FnOnce(),
{
    let config = match volume_args.connection.store_config(&volume_args.location) {
        Ok(c) => c,
        Err(e) => return fail(EXIT_USAGE, e),
    };
    let secret: Secret = match key.secret(false) {
        Ok(s) => s,
        Err(e) => return fail(EXIT_USAGE, e),
    };
    let location = config.location();
    runtime().block_on(async move {
        let store = match super::connect(config).await {
            Ok(s) => s,
            Err(e) => return fail(EXIT_STORE, e),
        };
        let volume = match unlock(store.clone(), &location, &secret).await {
            Ok(v) => v,
            Err((code, message)) => return fail(code, message),
        };
        let mut changed = volume.config.clone();
        let done = match change(&volume, &mut changed) {
            Ok(done) => done,
            Err(e) => return fail(EXIT_USAGE, e),
        };
        match Volume::write_config(store.as_ref(), &changed).await {
            Ok(()) => {
                done();
                0
            }
            Err(e) => fail(e.exit_code(), e),
        }
    })
}
