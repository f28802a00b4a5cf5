//! Key slots, the recovery key and the config's two copies through the command line, on a
//! real server: `init` (recovery key), `key list|add|remove`, `rekey`, `fsck
//! --repair-config`, `config export|import`.

mod common;

use std::path::{Path, PathBuf};
use std::process::Output;

use common::ServerKind;
use common::mount::{TestVolume, stderr};
use s3cryptfs::store::ObjectStore;

on_both_servers!(slots_recovery_and_config_copies);

fn stdout(out: &Output) -> String {
    String::from_utf8_lossy(&out.stdout).to_string()
}

/// The recovery key `init` or `key add --recovery` printed: 16 groups of 4 hex digits.
fn printed_recovery_key(out: &Output) -> String {
    stdout(out)
        .lines()
        .map(str::trim)
        .find(|line| {
            let groups: Vec<&str> = line.split('-').collect();
            groups.len() == 16
                && groups
                    .iter()
                    .all(|g| g.len() == 4 && g.bytes().all(|b| b.is_ascii_hexdigit()))
        })
        .unwrap_or_else(|| panic!("no recovery key printed: {}", stdout(out)))
        .to_string()
}

struct Cli<'a> {
    v: &'a TestVolume,
    location: String,
}

impl Cli<'_> {
    /// `s3cryptfs ARGS... LOCATION-after-the-subcommand` with `key_args` for unlocking.
    fn run(&self, command: &[&str], rest: &[&str], key_args: &[&str]) -> Output {
        let mut args: Vec<&str> = command.to_vec();
        args.push(&self.location);
        args.extend_from_slice(rest);
        args.extend_from_slice(key_args);
        self.v.cli(&args, &[])
    }

    fn cat(&self, key_args: &[&str]) -> Output {
        self.run(&["cat"], &["doc"], key_args)
    }

    fn config_bytes(&self) -> (Option<Vec<u8>>, Option<Vec<u8>>) {
        let read = |key: &str| {
            futures::executor::block_on(async {
                match self.v.store.get_range(key, 0..1 << 20, None).await {
                    Ok(r) => Some(r.body.collect().await.unwrap().to_vec()),
                    Err(_) => None,
                }
            })
        };
        (
            read(".s3cryptfs/volume.json"),
            read(".s3cryptfs/volume.copy.json"),
        )
    }
}

/// `cat doc` printed the document.
fn assert_reads_doc(out: &Output) {
    assert_eq!(
        out.stdout,
        b"kept through every key change",
        "{}",
        stderr(out)
    );
}

fn path_arg(p: &Path) -> String {
    p.to_string_lossy().to_string()
}

async fn slots_recovery_and_config_copies(kind: ServerKind) {
    let v = TestVolume::uninitialised(kind, "keyslots", "ks").await;
    let cli = Cli {
        v: &v,
        location: v.location(),
    };
    let dir = v.dir.path();
    let first = path_arg(&v.key_file);
    let with_first = ["--key-file", first.as_str()];

    // init: a key-file slot and a recovery key, printed once.
    let out = cli.run(&["init"], &[], &with_first);
    assert!(out.status.success(), "{}", stderr(&out));
    let recovery_file: PathBuf = dir.join("recovery.txt");
    std::fs::write(&recovery_file, printed_recovery_key(&out) + "\n").unwrap();
    let recovery = path_arg(&recovery_file);
    let local = dir.join("doc");
    std::fs::write(&local, b"kept through every key change").unwrap();
    let out = cli.run(&["put"], &[&path_arg(&local), "doc"], &with_first);
    assert!(out.status.success(), "{}", stderr(&out));
    let out = cli.run(&["key", "list"], &[], &[]);
    assert!(out.status.success(), "{}", stderr(&out));
    let listing = stdout(&out);
    assert!(
        listing.contains("key-file") && listing.contains("recovery"),
        "{listing}"
    );

    // The written-down recovery key opens the volume like a key file.
    let out = cli.cat(&["--key-file", &recovery]);
    assert_reads_doc(&out);

    // A passphrase slot, added with the key file.
    let passphrase_file = dir.join("passphrase");
    std::fs::write(&passphrase_file, "a long walk to the sea\n").unwrap();
    let passphrase = path_arg(&passphrase_file);
    let out = cli.run(
        &["key", "add"],
        &[
            "--new-passphrase-file",
            &passphrase,
            "--kdf-cost",
            "10",
            "--name",
            "laptop",
        ],
        &with_first,
    );
    assert!(out.status.success(), "{}", stderr(&out));
    let out = cli.cat(&["--passphrase-file", &passphrase]);
    assert_reads_doc(&out);
    // A second key file, added with the passphrase.
    let second = path_arg(&dir.join("second.key"));
    let out = cli.run(
        &["key", "add"],
        &["--new-key-file", &second, "--generate-key"],
        &["--passphrase-file", &passphrase],
    );
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(stdout(&out).contains("key-file-2"), "{}", stdout(&out));
    let with_second = ["--key-file", second.as_str()];
    // A name taken is refused, the config untouched.
    let before = cli.config_bytes();
    let out = cli.run(
        &["key", "add"],
        &["--recovery", "--name", "laptop"],
        &with_second,
    );
    assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));
    assert_eq!(cli.config_bytes(), before);

    // Both copies of the config are there and agree: fsck is clean.
    let (primary, copy) = cli.config_bytes();
    assert!(primary.is_some() && primary == copy, "two equal copies");
    let out = cli.run(&["fsck"], &[], &with_second);
    assert!(out.status.success(), "{}{}", stdout(&out), stderr(&out));

    // An export, for when both are gone.
    let export = dir.join("volume-config.json");
    let out = cli.run(&["config", "export"], &["-o", &path_arg(&export)], &[]);
    assert!(out.status.success(), "{}", stderr(&out));
    use std::os::unix::fs::PermissionsExt;
    assert_eq!(
        std::fs::metadata(&export).unwrap().permissions().mode() & 0o777,
        0o600
    );

    // The main object lost: the copy unlocks, fsck names the loss and repairs it.
    v.store.delete(".s3cryptfs/volume.json").await.unwrap();
    let out = cli.cat(&with_second);
    assert_reads_doc(&out);
    let out = cli.run(&["fsck"], &[], &with_second);
    assert_eq!(out.status.code(), Some(1), "{}", stdout(&out));
    assert!(
        stdout(&out).contains("CONFIG   .s3cryptfs/volume.json: missing"),
        "{}",
        stdout(&out)
    );
    let out = cli.run(&["fsck"], &["--repair-config"], &with_second);
    assert!(
        stdout(&out).contains("REPAIRED .s3cryptfs/volume.json"),
        "{}",
        stdout(&out)
    );
    let out = cli.run(&["fsck"], &[], &with_second);
    assert!(out.status.success(), "{}{}", stdout(&out), stderr(&out));
    // The copy damaged: the same.
    v.store
        .put(
            ".s3cryptfs/volume.copy.json",
            bytes::Bytes::from_static(b"{ not a config"),
            &Default::default(),
        )
        .await
        .unwrap();
    let out = cli.run(&["fsck"], &["--repair-config"], &with_second);
    assert!(
        stdout(&out).contains("REPAIRED .s3cryptfs/volume.copy.json"),
        "{}",
        stdout(&out)
    );
    let (primary, copy) = cli.config_bytes();
    assert_eq!(primary, copy);

    // Both lost: no volume, until the export is imported with a key it holds.
    v.store.delete(".s3cryptfs/volume.json").await.unwrap();
    v.store.delete(".s3cryptfs/volume.copy.json").await.unwrap();
    let out = cli.cat(&with_second);
    assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));
    assert!(
        stderr(&out).contains("no s3cryptfs volume"),
        "{}",
        stderr(&out)
    );
    let wrong = dir.join("wrong.key");
    common::mount::write_key_file(&wrong, 99);
    let out = cli.run(
        &["config", "import"],
        &["-i", &path_arg(&export)],
        &["--key-file", &path_arg(&wrong)],
    );
    assert_eq!(out.status.code(), Some(3), "{}", stderr(&out));
    assert_eq!(
        cli.config_bytes(),
        (None, None),
        "a refused import writes nothing"
    );
    let out = cli.run(
        &["config", "import"],
        &["-i", &path_arg(&export)],
        &with_second,
    );
    assert!(out.status.success(), "{}", stderr(&out));
    let out = cli.cat(&["--key-file", &recovery]);
    assert_reads_doc(&out);
    // Another volume's config is never imported over this one.
    let other = Cli {
        v: &v,
        location: format!("{}-other", v.location()),
    };
    let out = other.run(&["init"], &["--no-recovery-key"], &with_first);
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(!stdout(&out).contains("Recovery key"), "{}", stdout(&out));
    let other_export = dir.join("other-config.json");
    let out = other.run(
        &["config", "export"],
        &["-o", &path_arg(&other_export)],
        &[],
    );
    assert!(out.status.success(), "{}", stderr(&out));
    let before = cli.config_bytes();
    let out = cli.run(
        &["config", "import"],
        &["-i", &path_arg(&other_export)],
        &with_first,
    );
    assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));
    assert!(stderr(&out).contains("refusing"), "{}", stderr(&out));
    assert_eq!(cli.config_bytes(), before);

    // Removing a slot: its key stops opening the volume, the others keep working.
    let out = cli.run(&["key", "remove"], &["--name", "key-file"], &with_second);
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(
        stdout(&out).contains("still opens any copy"),
        "{}",
        stdout(&out)
    );
    let out = cli.cat(&with_first);
    assert_eq!(out.status.code(), Some(3), "{}", stderr(&out));
    // ... but the export made before still holds it: removal does not revoke.
    let exported = std::fs::read(&export).unwrap();
    assert!(String::from_utf8_lossy(&exported).contains("\"key-file\""));
    // rekey replaces the slot the key opened, and only that one.
    let third = path_arg(&dir.join("third.key"));
    let out = cli.run(
        &["rekey"],
        &["--new-key-file", &third, "--generate-key"],
        &with_second,
    );
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(cli.cat(&with_second).status.code(), Some(3));
    for key_args in [
        vec!["--key-file", third.as_str()],
        vec!["--passphrase-file", passphrase.as_str()],
        vec!["--key-file", recovery.as_str()],
    ] {
        let out = cli.cat(&key_args);
        assert_eq!(
            out.stdout,
            b"kept through every key change",
            "{key_args:?}: {}",
            stderr(&out)
        );
    }
    // The last slot is never removed.
    for name in ["laptop", "recovery"] {
        let out = cli.run(
            &["key", "remove"],
            &["--name", name],
            &["--key-file", &third],
        );
        assert!(out.status.success(), "{name}: {}", stderr(&out));
    }
    let before = cli.config_bytes();
    let out = cli.run(
        &["key", "remove"],
        &["--name", "key-file-2"],
        &["--key-file", &third],
    );
    assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));
    assert!(stderr(&out).contains("only key slot"), "{}", stderr(&out));
    assert_eq!(cli.config_bytes(), before);
    let out = cli.cat(&["--key-file", &third]);
    assert_reads_doc(&out);
}

/// A slot whose key AWS KMS keeps, against moto's KMS (Garage has none).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kms_slot_on_moto() {
    let v = TestVolume::new(ServerKind::Moto, "kmsslot", "k").await;
    let endpoint = v.server.endpoint.clone();
    let kms = s3cryptfs::store::KmsKeys::connect(v.store.config(), Some(&endpoint))
        .await
        .unwrap();
    let key_id = kms.create_key("s3cryptfs test").await.unwrap();
    let cli = Cli {
        v: &v,
        location: v.location(),
    };
    let first = path_arg(&v.key_file);
    let with_first = ["--key-file", first.as_str()];
    let with_kms = ["--kms", "--kms-endpoint-url", endpoint.as_str()];
    let local = v.dir.path().join("doc");
    std::fs::write(&local, b"kept through every key change").unwrap();
    let out = cli.run(&["put"], &[&path_arg(&local), "doc"], &with_first);
    assert!(out.status.success(), "{}", stderr(&out));
    // Before there is a KMS slot, --kms says what does unlock the volume.
    let out = cli.cat(&with_kms);
    assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));
    assert!(stderr(&out).contains("a key file"), "{}", stderr(&out));

    let out = cli.run(
        &["key", "add"],
        &["--new-kms-key-id", &key_id, "--kms-endpoint-url", &endpoint],
        &with_first,
    );
    assert!(out.status.success(), "{}", stderr(&out));
    let listing = stdout(&cli.run(&["key", "list"], &[], &[]));
    assert!(
        listing.contains(&format!("AWS KMS key {key_id}")),
        "{listing}"
    );
    let out = cli.cat(&with_kms);
    assert_reads_doc(&out);

    // A background mount unlocked by KMS.
    let mountpoint = tempfile::tempdir().unwrap();
    let mount_dir = path_arg(mountpoint.path());
    let out = cli.run(&["mount"], &[&mount_dir], &with_kms);
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(
        std::fs::read(mountpoint.path().join("doc")).unwrap(),
        b"kept through every key change"
    );
    let out = std::process::Command::new(common::mount::BIN)
        .args(["umount", &mount_dir])
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", stderr(&out));

    // The slot moved into another volume's config does not open that volume: KMS binds the
    // key to the volume it was made for.
    let other = Cli {
        v: &v,
        location: format!("{}-other", v.location()),
    };
    let out = other.run(&["init"], &["--no-recovery-key"], &with_first);
    assert!(out.status.success(), "{}", stderr(&out));
    let other_store = common::store_for(v.server, &v.bucket, "k-other/").await;
    let read_json = |store: &s3cryptfs::store::S3Store| {
        let store = store.clone();
        async move {
            let body = store
                .get_range(".s3cryptfs/volume.json", 0..1 << 20, None)
                .await
                .unwrap()
                .body
                .collect()
                .await
                .unwrap();
            serde_json::from_slice::<serde_json::Value>(&body).unwrap()
        }
    };
    let ours = read_json(&v.store).await;
    let kms_slot = ours["key_slots"]
        .as_array()
        .unwrap()
        .iter()
        .find(|slot| slot["source"]["type"] == "kms")
        .unwrap()
        .clone();
    let mut theirs = read_json(&other_store).await;
    theirs["key_slots"].as_array_mut().unwrap().push(kms_slot);
    for key in [".s3cryptfs/volume.json", ".s3cryptfs/volume.copy.json"] {
        other_store
            .put(
                key,
                bytes::Bytes::from(serde_json::to_vec(&theirs).unwrap()),
                &Default::default(),
            )
            .await
            .unwrap();
    }
    let out = other.run(&["ls"], &[], &with_kms);
    assert!(
        !out.status.success(),
        "a moved KMS slot unlocked: {}",
        stdout(&out)
    );
    assert!(stderr(&out).contains("KMS Decrypt"), "{}", stderr(&out));

    // Removing the KMS slot, unlocked by KMS itself.
    let out = cli.run(&["key", "remove"], &["--name", "kms"], &with_kms);
    assert!(out.status.success(), "{}", stderr(&out));
    let out = cli.cat(&with_kms);
    assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));
}
