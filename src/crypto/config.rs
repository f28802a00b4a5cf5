//! The volume config object (`<prefix>.s3cryptfs/volume.json`): layout parameters and the
//! master key wrapped once per key slot, each slot a way to unlock the volume (a key file, a
//! passphrase, a recovery key, a key held in AWS KMS).
//!
//! Config version 1 (volumes made before key slots) had one unnamed slot in the top-level
//! `key_source` and `wrapped_master_key` fields; it is read as a volume with one slot named
//! `default` and written back, on the next change, as version 2.

use serde::{Deserialize, Serialize};

use super::error::CryptoError;
use super::key_wrap::{self, BoundFields};
use super::keys::{MasterKey, UserKey, os_random};
use super::layout::Layout;

/// Version of the volume config format new volumes get. It is also the
/// format of every object in the volume: 1 (format 1 objects), 2 (format 2,
/// which can be appended to in place) or 3 (format 2's objects with AES-256-GCM
/// segments, about a fifth of the CPU time). This build reads and writes all three.
pub const VOLUME_FORMAT_VERSION: u32 = 3;
/// Layout of the config object itself: 2 has key slots. This build reads 1 and 2 and
/// writes 2.
pub const CONFIG_VERSION: u32 = 2;
/// More slots than anyone needs; a config with more is refused before any key is tried (a
/// hostile config must not make us run scrypt a thousand times).
pub const MAX_KEY_SLOTS: usize = 16;
/// Name of the one slot of a version 1 config.
pub const LEGACY_SLOT_NAME: &str = "default";

/// Where one slot's user key (KEK) comes from.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum KeySource {
    /// A 32-byte key from a key file or a systemd credential.
    KeyFile,
    /// A passphrase stretched with scrypt(N = 2^log_n, r, p, salt).
    Passphrase {
        /// log2 of the scrypt cost parameter N.
        log_n: u8,
        /// scrypt block size.
        r: u32,
        /// scrypt parallelism.
        p: u32,
        /// Random salt, hex.
        salt: String,
    },
    /// A random key shown once, when the slot was made, for a person to write down.
    Recovery,
    /// A random key encrypted by an AWS KMS key: KMS must decrypt it first.
    Kms {
        /// The KMS key (id, ARN or alias) that encrypted it.
        key_id: String,
        /// base64 of the KMS ciphertext blob of the 32-byte user key (encryption context
        /// `s3cryptfs-volume` = the volume id).
        encrypted_key: String,
    },
}

impl KeySource {
    /// scrypt with log_n = 17, r = 8, p = 1 and a fresh 32-byte salt.
    pub fn passphrase_default() -> Self {
        let mut salt = [0u8; 32];
        os_random(&mut salt);
        KeySource::Passphrase {
            log_n: 17,
            r: 8,
            p: 1,
            salt: hex::encode(salt),
        }
    }

    /// The slot name a new slot of this kind gets unless one is chosen.
    pub fn kind_name(&self) -> &'static str {
        match self {
            KeySource::KeyFile => "key-file",
            KeySource::Passphrase { .. } => "passphrase",
            KeySource::Recovery => "recovery",
            KeySource::Kms { .. } => "kms",
        }
    }

    /// Whether a raw 32-byte key (a key file, a credential, a written-down recovery key)
    /// unlocks slots of this kind.
    pub fn takes_raw_key(&self) -> bool {
        matches!(self, KeySource::KeyFile | KeySource::Recovery)
    }
}

/// One way to unlock the volume: the master key wrapped under one user key.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq)]
pub struct KeySlot {
    /// Unique within the volume: letters, digits, `.`, `_`, `-`, at most 64.
    pub name: String,
    /// How the slot's user key is obtained.
    pub source: KeySource,
    /// base64 of iv (16) || AES-256-CTR(kek_enc, master key) (32) ||
    /// HMAC-SHA256(kek_mac, bound fields || iv || ct) (32).
    pub wrapped_master_key: String,
}

/// The volume config.
#[derive(Serialize, Deserialize, Clone, Debug)]
#[serde(try_from = "ConfigFile", into = "ConfigFile")]
pub struct VolumeConfig {
    /// Object format of every object in the volume (1 or 2).
    pub format_version: u32,
    /// Plaintext segment size `S` of every object in the volume.
    pub segment_size: u32,
    /// 16 random bytes, hex; salt of the key-wrap derivation.
    pub volume_id: String,
    /// Whether object names are encrypted.
    pub encrypt_names: bool,
    /// The ways to unlock the volume, at least one.
    pub key_slots: Vec<KeySlot>,
}

/// The config as JSON, every version this build reads.
#[derive(Serialize, Deserialize)]
struct ConfigFile {
    #[serde(default = "legacy_config_version")]
    config_version: u32,
    format_version: u32,
    segment_size: u32,
    volume_id: String,
    encrypt_names: bool,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    key_source: Option<KeySource>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    wrapped_master_key: Option<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    key_slots: Vec<KeySlot>,
}

fn legacy_config_version() -> u32 {
    1
}

impl TryFrom<ConfigFile> for VolumeConfig {
    type Error = String;

    fn try_from(f: ConfigFile) -> Result<Self, String> {
        let key_slots = match (f.config_version, f.key_source, f.wrapped_master_key) {
            (1, Some(source), Some(wrapped)) if f.key_slots.is_empty() => vec![KeySlot {
                name: LEGACY_SLOT_NAME.to_string(),
                source,
                wrapped_master_key: wrapped,
            }],
            (1, ..) => {
                return Err("a version 1 config has key_source and wrapped_master_key".into());
            }
            (2, None, None) => f.key_slots,
            (2, ..) => return Err("a version 2 config keeps its keys in key_slots".into()),
            (v, ..) => {
                return Err(format!(
                    "config version {v} is newer than this build reads (1 and 2): upgrade s3cryptfs"
                ));
            }
        };
        if key_slots.is_empty() {
            return Err("the config has no key slot".into());
        }
        if key_slots.len() > MAX_KEY_SLOTS {
            return Err(format!(
                "the config has {} key slots, more than the {MAX_KEY_SLOTS} allowed",
                key_slots.len()
            ));
        }
        for (i, slot) in key_slots.iter().enumerate() {
            check_slot_name(&slot.name)?;
            if key_slots[..i].iter().any(|other| other.name == slot.name) {
                return Err(format!("two key slots are named '{}'", slot.name));
            }
        }
        Ok(VolumeConfig {
            format_version: f.format_version,
            segment_size: f.segment_size,
            volume_id: f.volume_id,
            encrypt_names: f.encrypt_names,
            key_slots,
        })
    }
}

impl From<VolumeConfig> for ConfigFile {
    fn from(c: VolumeConfig) -> Self {
        ConfigFile {
            config_version: CONFIG_VERSION,
            format_version: c.format_version,
            segment_size: c.segment_size,
            volume_id: c.volume_id,
            encrypt_names: c.encrypt_names,
            key_source: None,
            wrapped_master_key: None,
            key_slots: c.key_slots,
        }
    }
}

fn check_slot_name(name: &str) -> Result<(), String> {
    let allowed = |c: char| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-');
    if name.is_empty() || name.len() > 64 || !name.chars().all(allowed) {
        return Err(format!(
            "key slot name {name:?}: use 1 to 64 letters, digits, '.', '_' or '-'"
        ));
    }
    Ok(())
}

impl VolumeConfig {
    /// A new volume with a fresh random master key wrapped under `user_key`.
    pub fn create(
        user_key: &UserKey,
        key_source: KeySource,
        segment_size: u32,
        encrypt_names: bool,
    ) -> Result<(Self, MasterKey), CryptoError> {
        Self::create_with_format(
            user_key,
            key_source,
            segment_size,
            encrypt_names,
            VOLUME_FORMAT_VERSION,
        )
    }

    /// [`VolumeConfig::create`] with an older format (`init --object-format 1` or `2`, for
    /// volumes that older builds must still mount).
    pub fn create_with_format(
        user_key: &UserKey,
        key_source: KeySource,
        segment_size: u32,
        encrypt_names: bool,
        format_version: u32,
    ) -> Result<(Self, MasterKey), CryptoError> {
        Layout::with_format(segment_size, format_byte(format_version))?;
        let mut id = [0u8; 16];
        os_random(&mut id);
        let master = MasterKey::generate();
        let mut cfg = VolumeConfig {
            format_version,
            segment_size,
            volume_id: hex::encode(id),
            encrypt_names,
            key_slots: Vec::new(),
        };
        cfg.add_slot(&master, None, user_key, key_source)?;
        Ok((cfg, master))
    }

    /// Unwraps the master key with the first slot `user_key` opens. `WrongKey` if none
    /// does (wrong key, or an authenticated field was modified); `UnsupportedVersion` /
    /// `InvalidConfig` on malformed fields.
    pub fn unlock(&self, user_key: &UserKey) -> Result<MasterKey, CryptoError> {
        self.unlock_any(user_key, |_| true)
            .map(|(_, master)| master)
    }

    /// [`VolumeConfig::unlock`] over the slots `eligible` picks: the index of the slot that
    /// opened and the master key.
    pub fn unlock_any(
        &self,
        user_key: &UserKey,
        eligible: impl Fn(&KeySlot) -> bool,
    ) -> Result<(usize, MasterKey), CryptoError> {
        self.check_fields()?;
        let mut malformed = None;
        for (index, slot) in self.key_slots.iter().enumerate() {
            if !eligible(slot) {
                continue;
            }
            match self.unlock_slot(index, user_key) {
                Ok(master) => return Ok((index, master)),
                Err(CryptoError::WrongKey) => {}
                Err(e) => malformed = Some(e),
            }
        }
        Err(malformed.unwrap_or(CryptoError::WrongKey))
    }

    /// The master key from slot `index` with its user key.
    pub fn unlock_slot(&self, index: usize, user_key: &UserKey) -> Result<MasterKey, CryptoError> {
        let (id, bound) = self.check_fields()?;
        let slot = self
            .key_slots
            .get(index)
            .ok_or_else(|| CryptoError::InvalidConfig(format!("no key slot {index}")))?;
        key_wrap::unwrap(&slot.wrapped_master_key, user_key, &id, &bound)
    }

    /// Adds a slot that unwraps `master` (the key this config already wraps: the caller
    /// unlocked it) with `user_key`. Named `name`, or after its kind when `None` (`key-file`,
    /// `key-file-2`, ...). Returns the slot's name.
    pub fn add_slot(
        &mut self,
        master: &MasterKey,
        name: Option<&str>,
        user_key: &UserKey,
        source: KeySource,
    ) -> Result<String, CryptoError> {
        if self.key_slots.len() >= MAX_KEY_SLOTS {
            return Err(CryptoError::InvalidConfig(format!(
                "the volume already has {MAX_KEY_SLOTS} key slots: remove one first"
            )));
        }
        let name = match name {
            Some(name) => {
                check_slot_name(name).map_err(CryptoError::InvalidConfig)?;
                if self.slot(name).is_some() {
                    return Err(CryptoError::InvalidConfig(format!(
                        "a key slot named '{name}' exists already"
                    )));
                }
                name.to_string()
            }
            None => self.free_name(source.kind_name()),
        };
        let (id, bound) = self.check_fields()?;
        let wrapped_master_key = key_wrap::wrap(user_key, &id, &bound, master);
        self.key_slots.push(KeySlot {
            name: name.clone(),
            source,
            wrapped_master_key,
        });
        Ok(name)
    }

    /// Removes the slot `name`; the last slot is never removed (the volume would be lost).
    pub fn remove_slot(&mut self, name: &str) -> Result<KeySlot, CryptoError> {
        let Some(index) = self.key_slots.iter().position(|s| s.name == name) else {
            return Err(CryptoError::InvalidConfig(format!(
                "no key slot is named '{name}' (`s3cryptfs key list` shows them)"
            )));
        };
        if self.key_slots.len() == 1 {
            return Err(CryptoError::InvalidConfig(format!(
                "'{name}' is the volume's only key slot: add another before removing it"
            )));
        }
        Ok(self.key_slots.remove(index))
    }

    /// The slot named `name`.
    pub fn slot(&self, name: &str) -> Option<&KeySlot> {
        self.key_slots.iter().find(|s| s.name == name)
    }

    /// Replaces the slot `old` opens by one for `new` (same name, fresh IV) without touching
    /// any object or the other slots. Copies of the config made before (backups, bucket
    /// versioning) still open with `old`.
    pub fn rewrap(
        &self,
        old: &UserKey,
        new: &UserKey,
        new_source: KeySource,
    ) -> Result<Self, CryptoError> {
        let (index, master) = self.unlock_any(old, |_| true)?;
        self.rewrap_slot(index, &master, new, new_source)
    }

    /// Slot `index` made over for `new`: the same name, wrapping `master` (the key this
    /// config wraps: the caller unlocked it).
    pub fn rewrap_slot(
        &self,
        index: usize,
        master: &MasterKey,
        new: &UserKey,
        new_source: KeySource,
    ) -> Result<Self, CryptoError> {
        let (id, bound) = self.check_fields()?;
        let mut cfg = self.clone();
        let slot = cfg
            .key_slots
            .get_mut(index)
            .ok_or_else(|| CryptoError::InvalidConfig(format!("no key slot {index}")))?;
        slot.source = new_source;
        slot.wrapped_master_key = key_wrap::wrap(new, &id, &bound, master);
        Ok(cfg)
    }

    /// The segment layout of the volume.
    pub fn layout(&self) -> Result<Layout, CryptoError> {
        Layout::with_format(self.segment_size, format_byte(self.format_version))
    }

    /// Pretty-printed JSON (config version 2).
    pub fn to_json(&self) -> Vec<u8> {
        let mut v = serde_json::to_vec_pretty(self).expect("VolumeConfig serialises");
        v.push(b'\n');
        v
    }

    /// Parses the JSON config, any version this build reads (key material is checked by
    /// `unlock`).
    pub fn from_json(b: &[u8]) -> Result<Self, CryptoError> {
        serde_json::from_slice(b)
            .map_err(|e| CryptoError::InvalidConfig(format!("volume.json: {e}")))
    }

    /// A slot name not yet taken: `base`, `base-2`, `base-3`, ...
    fn free_name(&self, base: &str) -> String {
        (1..)
            .map(|n| {
                if n == 1 {
                    base.to_string()
                } else {
                    format!("{base}-{n}")
                }
            })
            .find(|candidate| self.slot(candidate).is_none())
            .expect("an unbounded sequence has a free name")
    }

    /// Validates the authenticated fields; returns the volume id bytes and their MAC
    /// encoding.
    fn check_fields(&self) -> Result<([u8; 16], BoundFields), CryptoError> {
        self.layout()?;
        let mut id = [0u8; 16];
        hex::decode_to_slice(&self.volume_id, &mut id).map_err(|_| {
            CryptoError::InvalidConfig("volume_id must be 32 hex characters".into())
        })?;
        let mut bound = [0u8; 25];
        bound[0..4].copy_from_slice(&self.format_version.to_be_bytes());
        bound[4..8].copy_from_slice(&self.segment_size.to_be_bytes());
        bound[8..24].copy_from_slice(&id);
        bound[24] = u8::from(self.encrypt_names);
        Ok((id, bound))
    }

    /// The wrapped key of `master` under `user_key` with a chosen IV, for the known-answer
    /// vectors of docs/FORMAT.md §10.
    #[cfg(any(test, feature = "test-support"))]
    pub fn wrap_with_iv(
        &self,
        user_key: &UserKey,
        master: &MasterKey,
        iv: [u8; 16],
    ) -> Result<String, CryptoError> {
        let (id, bound) = self.check_fields()?;
        Ok(key_wrap::wrap_with_iv(user_key, &id, &bound, master, iv))
    }
}

/// The config's version as an object format byte (out of range: 255, rejected).
fn format_byte(version: u32) -> u8 {
    u8::try_from(version).unwrap_or(u8::MAX)
}
