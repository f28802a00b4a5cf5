//! Key slots of the volume config (docs/FORMAT.md §10): several unlockers of one master key,
//! the version 1 config still read, recovery keys as written down, and the known-answer
//! vectors of key wrapping and scrypt, rebuilt here from the primitives.

use s3cryptfs::crypto::*;

fn key(byte: u8) -> UserKey {
    UserKey::from_raw(&[byte; 32]).unwrap()
}

fn cheap_passphrase_source() -> KeySource {
    KeySource::Passphrase {
        log_n: 10,
        r: 8,
        p: 1,
        salt: hex::encode([9u8; 32]),
    }
}

#[test]
fn every_slot_unlocks_the_same_master_key_and_slots_come_and_go() {
    let first = key(1);
    let (mut cfg, master) = VolumeConfig::create(&first, KeySource::KeyFile, 4096, false).unwrap();
    assert_eq!(cfg.key_slots.len(), 1);
    assert_eq!(cfg.key_slots[0].name, "key-file");

    let second = key(2);
    let recovery = UserKey::generate();
    let passphrase = UserKey::from_passphrase(b"tr0ub4dor", &cheap_passphrase_source()).unwrap();
    assert_eq!(
        cfg.add_slot(&master, None, &second, KeySource::KeyFile)
            .unwrap(),
        "key-file-2"
    );
    assert_eq!(
        cfg.add_slot(&master, None, &recovery, KeySource::Recovery)
            .unwrap(),
        "recovery"
    );
    assert_eq!(
        cfg.add_slot(
            &master,
            Some("laptop"),
            &passphrase,
            cheap_passphrase_source()
        )
        .unwrap(),
        "laptop"
    );
    let cfg = VolumeConfig::from_json(&cfg.to_json()).unwrap();
    for (expected_slot, user) in [(0, &first), (1, &second), (2, &recovery), (3, &passphrase)] {
        let (slot, unlocked) = cfg.unlock_any(user, |_| true).unwrap();
        assert_eq!(slot, expected_slot);
        assert_eq!(unlocked.expose(), master.expose());
    }
    // A slot is tried only when eligible: the key-file key does not open the passphrase slot.
    assert!(matches!(
        cfg.unlock_any(&first, |s| matches!(s.source, KeySource::Passphrase { .. })),
        Err(CryptoError::WrongKey)
    ));
    assert!(matches!(cfg.unlock(&key(3)), Err(CryptoError::WrongKey)));

    // Names: unique, a small alphabet.
    let mut named = cfg.clone();
    for bad in ["laptop", "", "has space", "slash/", &"x".repeat(65)] {
        assert!(
            named
                .add_slot(&master, Some(bad), &key(4), KeySource::KeyFile)
                .is_err(),
            "{bad:?}"
        );
    }

    // Removing: the removed key stops opening this config; the others keep working.
    let mut removed = cfg.clone();
    removed.remove_slot("key-file").unwrap();
    assert!(matches!(removed.unlock(&first), Err(CryptoError::WrongKey)));
    assert_eq!(removed.unlock(&second).unwrap().expose(), master.expose());
    assert!(removed.remove_slot("key-file").is_err(), "twice");
    removed.remove_slot("key-file-2").unwrap();
    removed.remove_slot("recovery").unwrap();
    let last = removed.remove_slot("laptop").unwrap_err();
    assert!(last.to_string().contains("only key slot"), "{last}");
    assert_eq!(removed.key_slots.len(), 1);

    // Rekeying one slot leaves the others alone.
    let re = cfg.rewrap(&second, &key(5), KeySource::KeyFile).unwrap();
    assert_eq!(re.key_slots[1].name, "key-file-2");
    assert!(matches!(re.unlock(&second), Err(CryptoError::WrongKey)));
    assert_eq!(re.unlock(&key(5)).unwrap().expose(), master.expose());
    assert_eq!(re.unlock(&first).unwrap().expose(), master.expose());
    assert_eq!(re.unlock(&passphrase).unwrap().expose(), master.expose());
}

#[test]
fn slot_counts_names_and_versions_are_checked_when_parsed() {
    let (mut cfg, master) = VolumeConfig::create(&key(1), KeySource::KeyFile, 4096, false).unwrap();
    while cfg.key_slots.len() < MAX_KEY_SLOTS {
        cfg.add_slot(&master, None, &key(2), KeySource::KeyFile)
            .unwrap();
    }
    assert!(
        cfg.add_slot(&master, None, &key(2), KeySource::KeyFile)
            .is_err()
    );
    let json: serde_json::Value = serde_json::from_slice(&cfg.to_json()).unwrap();
    assert_eq!(json["config_version"], 2);
    assert!(json.get("key_source").is_none() && json.get("wrapped_master_key").is_none());

    let parse = |j: &serde_json::Value| VolumeConfig::from_json(&serde_json::to_vec(j).unwrap());
    // One slot too many (a hostile config must not make us try a thousand passphrases).
    let mut too_many = json.clone();
    let extra = json["key_slots"][0].clone();
    let mut extra = extra;
    extra["name"] = "one-more".into();
    too_many["key_slots"].as_array_mut().unwrap().push(extra);
    assert!(parse(&too_many).is_err());
    // Two slots of one name.
    let mut twins = json.clone();
    twins["key_slots"][1]["name"] = twins["key_slots"][0]["name"].clone();
    assert!(parse(&twins).is_err());
    // No slot at all.
    let mut none = json.clone();
    none["key_slots"] = serde_json::json!([]);
    assert!(parse(&none).is_err());
    // A newer config layout is named, not guessed at.
    let mut newer = json.clone();
    newer["config_version"] = 3.into();
    let refused = parse(&newer).unwrap_err();
    assert!(refused.to_string().contains("newer"), "{refused}");
    // Version 2 does not carry the version 1 fields.
    let mut mixed = json.clone();
    mixed["key_source"] = serde_json::json!({"type": "key_file"});
    assert!(parse(&mixed).is_err());
}

#[test]
fn a_version_1_config_is_read_as_one_slot_and_written_back_as_version_2() {
    let user = key(7);
    let (cfg, master) = VolumeConfig::create(&user, KeySource::KeyFile, 65536, true).unwrap();
    // The shape volumes made before key slots have on the bucket.
    let v1 = serde_json::json!({
        "format_version": cfg.format_version,
        "segment_size": cfg.segment_size,
        "volume_id": cfg.volume_id,
        "encrypt_names": cfg.encrypt_names,
        "key_source": {"type": "key_file"},
        "wrapped_master_key": cfg.key_slots[0].wrapped_master_key,
    });
    let read = VolumeConfig::from_json(&serde_json::to_vec(&v1).unwrap()).unwrap();
    assert_eq!(read.key_slots.len(), 1);
    assert_eq!(read.key_slots[0].name, LEGACY_SLOT_NAME);
    assert_eq!(read.unlock(&user).unwrap().expose(), master.expose());
    let again = VolumeConfig::from_json(&read.to_json()).unwrap();
    assert_eq!(again.unlock(&user).unwrap().expose(), master.expose());
    // A version 1 config with half its key fields is refused.
    let mut half = v1.clone();
    half.as_object_mut().unwrap().remove("wrapped_master_key");
    assert!(VolumeConfig::from_json(&serde_json::to_vec(&half).unwrap()).is_err());
}

#[test]
fn a_recovery_key_reads_back_as_written_down() {
    let recovery = UserKey::generate();
    let text = recovery.recovery_text();
    assert_eq!(text.len(), 79);
    let groups: Vec<&str> = text.split('-').collect();
    assert_eq!(groups.len(), 16);
    assert!(
        groups
            .iter()
            .all(|g| g.len() == 4 && g.bytes().all(|b| b.is_ascii_hexdigit()))
    );
    let (cfg, master) = VolumeConfig::create(&recovery, KeySource::Recovery, 4096, false).unwrap();
    let spaced = text.replace('-', " ");
    for written in [format!("{}\n", text.as_str()), text.to_uppercase(), spaced] {
        let read = UserKey::from_key_bytes(written.as_bytes()).unwrap();
        assert_eq!(cfg.unlock(&read).unwrap().expose(), master.expose());
    }
    // A digit lost or mistyped is not the key.
    let short = &text[..text.len() - 1];
    assert!(UserKey::from_key_bytes(short.as_bytes()).is_err());
    let mut typo = text.as_bytes().to_vec();
    typo[0] = if typo[0] == b'0' { b'1' } else { b'0' };
    let typo = UserKey::from_key_bytes(&typo).unwrap();
    assert!(matches!(cfg.unlock(&typo), Err(CryptoError::WrongKey)));
}

// ------------------------------------------------------------ known answers (FORMAT.md §10)

const WRAP_USER_KEY: [u8; 32] = [0x42; 32];
const WRAP_MASTER: [u8; 32] = [0x11; 32];
const WRAP_VOLUME_ID: [u8; 16] = [0x5a; 16];
const WRAP_IV: [u8; 16] = [0x0f; 16];
/// docs/FORMAT.md §10: the wrapped key of the vector.
const WRAP_VECTOR: &str = "Dw8PDw8PDw8PDw8PDw8PD/dcsbB8/Hyt8MGJS2+lB3VIIPrdASbtxN6UX/jJh+3PkiFENEYfALtNKS3KzqJ9V0R9BBF/Cb7H4JhejnAFIJQ=";

/// The wrapped key rebuilt from HKDF, AES-256-CTR and HMAC-SHA256 as docs/FORMAT.md §10
/// says, without the crate's code.
fn wrap_from_primitives(bound: &[u8]) -> String {
    use aes::cipher::{KeyIvInit, StreamCipher};
    use base64::Engine as _;
    use hmac::{KeyInit, Mac};
    let hk = hkdf::Hkdf::<sha2::Sha256>::new(Some(&WRAP_VOLUME_ID), &WRAP_USER_KEY);
    let mut okm = [0u8; 64];
    hk.expand(b"s3cryptfs v1 key wrap", &mut okm).unwrap();
    let mut ct = WRAP_MASTER;
    ctr::Ctr128BE::<aes::Aes256>::new_from_slices(&okm[..32], &WRAP_IV)
        .unwrap()
        .apply_keystream(&mut ct);
    let mut mac = <hmac::Hmac<sha2::Sha256> as KeyInit>::new_from_slice(&okm[32..]).unwrap();
    mac.update(bound);
    mac.update(&WRAP_IV);
    mac.update(&ct);
    let tag = mac.finalize().into_bytes();
    base64::engine::general_purpose::STANDARD.encode([&WRAP_IV[..], &ct, &tag].concat())
}

#[test]
fn key_wrap_known_answer_vector() {
    // format 2, S = 65536, the volume id, plain names.
    let mut bound = Vec::new();
    bound.extend_from_slice(&2u32.to_be_bytes());
    bound.extend_from_slice(&65536u32.to_be_bytes());
    bound.extend_from_slice(&WRAP_VOLUME_ID);
    bound.push(0);
    let from_primitives = wrap_from_primitives(&bound);
    assert_eq!(from_primitives, WRAP_VECTOR);
    let config = serde_json::json!({
        "config_version": 2,
        "format_version": 2,
        "segment_size": 65536,
        "volume_id": hex::encode(WRAP_VOLUME_ID),
        "encrypt_names": false,
        "key_slots": [{"name": "key-file", "source": {"type": "key_file"},
                       "wrapped_master_key": WRAP_VECTOR}],
    });
    let config = VolumeConfig::from_json(&serde_json::to_vec(&config).unwrap()).unwrap();
    let user = UserKey::from_raw(&WRAP_USER_KEY).unwrap();
    assert_eq!(config.unlock(&user).unwrap().expose(), &WRAP_MASTER);
    let master = MasterKey::from_bytes(WRAP_MASTER);
    assert_eq!(
        config.wrap_with_iv(&user, &master, WRAP_IV).unwrap(),
        WRAP_VECTOR
    );
    // FORMAT.md states the same vector.
    let format_md = include_str!("../docs/FORMAT.md");
    assert!(
        format_md.contains(WRAP_VECTOR),
        "FORMAT.md §10 lost the vector"
    );
}

/// docs/FORMAT.md §10: scrypt("correct horse battery staple", salt = 32 × 0x5a, log_n = 10,
/// r = 8, p = 1), 32 bytes.
const SCRYPT_VECTOR: &str = "c92142aaca29cc3b271aef7b6548aafd259c2c4b5d7d9a6aeff4cae30cf0cebb";

#[test]
fn scrypt_known_answer_vector() {
    let salt = [0x5au8; 32];
    let mut reference = [0u8; 32];
    scrypt::scrypt(
        b"correct horse battery staple",
        &salt,
        &scrypt::Params::new(10, 8, 1).unwrap(),
        &mut reference,
    )
    .unwrap();
    assert_eq!(hex::encode(reference), SCRYPT_VECTOR);
    let source = KeySource::Passphrase {
        log_n: 10,
        r: 8,
        p: 1,
        salt: hex::encode(salt),
    };
    let derived = UserKey::from_passphrase(b"correct horse battery staple", &source).unwrap();
    let (cfg, master) = VolumeConfig::create(&derived, source, 4096, false).unwrap();
    let expected = UserKey::from_raw(&reference).unwrap();
    assert_eq!(cfg.unlock(&expected).unwrap().expose(), master.expose());
    let format_md = include_str!("../docs/FORMAT.md");
    assert!(
        format_md.contains(SCRYPT_VECTOR),
        "FORMAT.md §10 lost the vector"
    );
}
