//! `s3cryptfs rekey`: unlocks the volume with the current key or passphrase and replaces the
//! key slot it opened by one for a new key. Objects are encrypted under keys derived from the
//! master key, which does not change, so no data is rewritten. (Rotating the master key
//! itself means copying the data into a new volume: `s3cryptfs get`/`put` or a mount of each.)

use super::args::RekeyArgs;
use super::keys::new_slot_key;
use super::unlock::new_kms_key;
use super::{EXIT_STORE, EXIT_USAGE, fail, runtime, unlock};
use crate::volume::Volume;

pub fn run(args: RekeyArgs) -> i32 {
    let new_key = if args.new.new_kms_key_id.is_some() {
        None // made once the volume's id is known
    } else {
        match new_slot_key(&args.new) {
            Ok(k) => Some(k),
            Err(e) => return fail(EXIT_USAGE, e),
        }
    };
    let config = match args.volume.connection.store_config(&args.volume.location) {
        Ok(c) => c,
        Err(e) => return fail(EXIT_USAGE, e),
    };
    let old_secret = match args.volume.key.secret(false) {
        Ok(s) => s,
        Err(e) => return fail(EXIT_USAGE, e),
    };
    let location = config.location();
    runtime().block_on(async move {
        let store = match super::connect(config.clone()).await {
            Ok(s) => s,
            Err(e) => return fail(EXIT_STORE, e),
        };
        let volume = match unlock(store.clone(), &config, &old_secret).await {
            Ok(v) => v,
            Err((code, message)) => return fail(code, message),
        };
        let (new_key, new_source) = match new_key {
            Some(k) => k,
            None => {
                let key_id = args.new.new_kms_key_id.as_deref().expect("checked above");
                let endpoint = args.volume.key.kms_endpoint_url.as_deref();
                match new_kms_key(&volume.config, key_id, endpoint, &config).await {
                    Ok(k) => k,
                    Err((code, message)) => return fail(code, message),
                }
            }
        };
        let slot = volume.unlocked_slot;
        let rewrapped = match volume
            .config
            .rewrap_slot(slot, &volume.master, &new_key, new_source)
        {
            Ok(c) => c,
            Err(e) => return fail(EXIT_USAGE, e),
        };
        match Volume::write_config(store.as_ref(), &rewrapped).await {
            Ok(()) => {
                println!(
                    "{location}: key slot '{}' is now unlocked by the new key; the old one no \
                     longer opens this config (copies made before still open with it: see \
                     `s3cryptfs key remove --help`)",
                    rewrapped.key_slots[slot].name
                );
                0
            }
            Err(e) => fail(e.exit_code(), e),
        }
    })
}
