//! `s3cryptfs rekey`: unlocks the volume with the current key or passphrase and wraps its
//! master key under a new one. Objects are encrypted under keys derived from the master key,
//! which does not change, so no data is rewritten. (Rotating the master key itself means
//! copying the data into a new volume: `s3cryptfs get`/`put` or a mount of each.)

use super::args::{KeyArgs, RekeyArgs};
use super::{EXIT_STORE, EXIT_USAGE, fail, new_user_key, runtime, unlock};
use crate::volume::Volume;

pub fn run(args: RekeyArgs) -> i32 {
    if args.new_key_file.is_none() && args.new_passphrase_file.is_none() {
        return fail(
            EXIT_USAGE,
            "give the new key with --new-key-file or --new-passphrase-file",
        );
    }
    if args.generate_key {
        let path = args
            .new_key_file
            .as_deref()
            .expect("clap requires --new-key-file");
        if let Err(e) = crate::crypto::UserKey::generate_key_file(path) {
            return fail(EXIT_USAGE, e);
        }
    }
    let new_args = KeyArgs {
        key_file: args.new_key_file.clone(),
        key_credential: None,
        passphrase_file: args.new_passphrase_file.clone(),
    };
    let new_secret = match new_args.secret(true) {
        Ok(s) => s,
        Err(e) => return fail(EXIT_USAGE, e),
    };
    let (new_key, new_source) = match new_user_key(&new_secret, args.kdf_cost) {
        Ok(k) => k,
        Err(e) => return fail(EXIT_USAGE, e),
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
        let store = match super::connect(config).await {
            Ok(s) => s,
            Err(e) => return fail(EXIT_STORE, e),
        };
        let volume = match unlock(store.clone(), &location, &old_secret).await {
            Ok(v) => v,
            Err((code, message)) => return fail(code, message),
        };
        let old_key = match old_secret.user_key(&volume.config) {
            Ok(k) => k,
            Err(e) => return fail(EXIT_USAGE, e),
        };
        let rewrapped = match volume.config.rewrap(&old_key, &new_key, new_source) {
            Ok(c) => c,
            Err(e) => return fail(EXIT_USAGE, e),
        };
        match Volume::write_config(store.as_ref(), &rewrapped).await {
            Ok(()) => {
                println!("{location}: now unlocked by the new key; the old one no longer works");
                0
            }
            Err(e) => fail(e.exit_code(), e),
        }
    })
}
