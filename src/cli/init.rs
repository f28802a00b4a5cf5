//! `s3cryptfs init`: writes the volume config for an existing key.

use super::args::InitArgs;
use super::{EXIT_STORE, EXIT_USAGE, fail, runtime};
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
        if let Err(e) = crate::crypto::UserKey::generate_key_file(path) {
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
    let location = config.location();
    runtime().block_on(async move {
        let store = match super::connect(config).await {
            Ok(s) => s,
            Err(e) => return fail(EXIT_STORE, e),
        };
        match Volume::init(
            store.as_ref(),
            &location,
            &user_key,
            key_source,
            crate::volume::VolumeShape {
                segment_size: args.segment_size,
                encrypt_names: args.encrypt_names,
                object_format: args.object_format,
            },
            args.force,
        )
        .await
        {
            Ok(config) => {
                println!(
                    "created volume {} at {location} (object format {}, segment size {}, {} names)",
                    config.volume_id,
                    config.format_version,
                    config.segment_size,
                    if config.encrypt_names {
                        "encrypted"
                    } else {
                        "plain"
                    }
                );
                0
            }
            Err(e) => fail(e.exit_code(), e),
        }
    })
}
