//! `s3cryptfs init`: writes the volume config for an existing key, with a recovery key
//! unless told not to.

use super::args::InitArgs;
use super::{EXIT_STORE, EXIT_USAGE, fail, runtime};
use crate::crypto::{KeySource, UserKey, VolumeConfig};
use crate::volume::Volume;

pub fn run(args: InitArgs) -> i32 {
    let config = match args.connection.store_config(&args.location) {
        Ok(c) => c,
        Err(e) => return fail(EXIT_USAGE, e),
    };
    if args.generate_key {
        let path = args
            .key
            .key_file
            .as_deref()
            .expect("clap requires --key-file");
        if let Err(e) = UserKey::generate_key_file(path) {
            return fail(EXIT_USAGE, e);
        }
        eprintln!(
            "wrote a new key to {}: keep a copy somewhere safe, it is the only way to the data",
            path.display()
        );
    }
    let (user_key, key_source) = match args
        .key
        .secret(true)
        .and_then(|secret| super::new_user_key(&secret, args.kdf_cost))
    {
        Ok(k) => k,
        Err(e) => return fail(EXIT_USAGE, e),
    };
    let (mut volume_config, master) = match VolumeConfig::create_with_format(
        &user_key,
        key_source,
        args.segment_size,
        args.encrypt_names,
        args.object_format,
    ) {
        Ok(created) => created,
        Err(e) => return fail(EXIT_USAGE, e),
    };
    let recovery = if args.no_recovery_key {
        None
    } else {
        let key = UserKey::generate();
        match volume_config.add_slot(&master, None, &key, KeySource::Recovery) {
            Ok(name) => Some((key, name)),
            Err(e) => return fail(EXIT_USAGE, e),
        }
    };
    drop(master);
    let location = config.location();
    runtime().block_on(async move {
        let store = match super::connect(config).await {
            Ok(s) => s,
            Err(e) => return fail(EXIT_STORE, e),
        };
        if let Err(e) = Volume::create(store.as_ref(), &location, &volume_config, args.force).await
        {
            return fail(e.exit_code(), e);
        }
        println!(
            "created volume {} at {location} (object format {}, segment size {}, {} names)",
            volume_config.volume_id,
            volume_config.format_version,
            volume_config.segment_size,
            if volume_config.encrypt_names {
                "encrypted"
            } else {
                "plain"
            }
        );
        if let Some((key, name)) = &recovery {
            super::keys::print_recovery_key(key, name);
        }
        0
    })
}
