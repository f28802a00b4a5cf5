//! The volume config object (`<prefix>.s3cryptfs/volume.json`): layout
//! parameters and the master key wrapped under the user's key.

use aes::Aes256;
use aes::cipher::{KeyIvInit, StreamCipher};
use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as BASE64;
use hkdf::Hkdf;
use hmac::Mac;
use serde::{Deserialize, Serialize};
use sha2::Sha256;
use zeroize::Zeroizing;

use super::error::CryptoError;
use super::keys::{HmacSha256, MasterKey, UserKey, os_random};
use super::layout::Layout;

/// Version of the volume config format new volumes get. It is also the
/// format of every object in the volume: 1 (format 1 objects) or 2 (format 2,
/// which can be appended to in place). This build reads both.
pub const VOLUME_FORMAT_VERSION: u32 = 2;
/// HKDF info for the key-wrapping keys.
const KEY_WRAP_INFO: &[u8] = b"s3cryptfs v1 key wrap";
const WRAP_IV_LEN: usize = 16;
const WRAPPED_LEN: usize = WRAP_IV_LEN + 32 + 32;

type Aes256Ctr128 = ctr::Ctr128BE<Aes256>;

/// Where the user key (KEK) comes from.
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
}

/// The volume config, serialised as JSON.
#[derive(Serialize, Deserialize, Clone, Debug)]
pub struct VolumeConfig {
    /// Config format version, also the object format of the volume (1 or 2).
    pub format_version: u32,
    /// Plaintext segment size `S` of every object in the volume.
    pub segment_size: u32,
    /// 16 random bytes, hex; salt of the key-wrap derivation.
    pub volume_id: String,
    /// Whether object names are encrypted (recorded for a later feature).
    pub encrypt_names: bool,
    /// How the user key is obtained.
    pub key_source: KeySource,
    /// base64 of iv (16) || AES-256-CTR(kek_enc, master key) (32) ||
    /// HMAC-SHA256(kek_mac, bound fields || iv || ct) (32).
    pub wrapped_master_key: String,
}

/// The two key-wrapping keys derived from the user key.
struct Kek {
    enc: Zeroizing<[u8; 32]>,
    mac: HmacSha256,
}

impl Kek {
    fn derive(user: &UserKey, volume_id: &[u8; 16]) -> Self {
        let hk = Hkdf::<Sha256>::new(Some(volume_id), user.expose());
        let mut okm = Zeroizing::new([0u8; 64]);
        hk.expand(KEY_WRAP_INFO, &mut okm[..])
            .expect("64 bytes is a valid HKDF-SHA256 output length");
        let mut enc = Zeroizing::new([0u8; 32]);
        enc.copy_from_slice(&okm[..32]);
        let mac = <HmacSha256 as hmac::KeyInit>::new_from_slice(&okm[32..])
            .expect("HMAC accepts any key");
        Kek { enc, mac }
    }

    fn crypt(&self, iv: &[u8; WRAP_IV_LEN], buf: &mut [u8; 32]) {
        let mut c = Aes256Ctr128::new((&*self.enc).into(), iv.into());
        c.apply_keystream(buf);
    }

    fn tag(&self, bound: &[u8], iv: &[u8], ct: &[u8]) -> HmacSha256 {
        let mut m = self.mac.clone();
        m.update(bound);
        m.update(iv);
        m.update(ct);
        m
    }
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

    /// [`VolumeConfig::create`] with an older format (`init --object-format 1`, for
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
            key_source,
            wrapped_master_key: String::new(),
        };
        cfg.wrapped_master_key = cfg.wrap(user_key, &master)?;
        Ok((cfg, master))
    }

    /// Unwraps the master key. `WrongKey` if the tag does not verify (wrong
    /// key, or an authenticated field was modified); `UnsupportedVersion` /
    /// `InvalidConfig` on malformed fields.
    pub fn unlock(&self, user_key: &UserKey) -> Result<MasterKey, CryptoError> {
        let (id, bound) = self.check_fields()?;
        let wrapped =
            Zeroizing::new(BASE64.decode(&self.wrapped_master_key).map_err(|_| {
                CryptoError::InvalidConfig("wrapped_master_key is not base64".into())
            })?);
        if wrapped.len() != WRAPPED_LEN {
            return Err(CryptoError::InvalidConfig(format!(
                "wrapped_master_key has {} bytes, expected {WRAPPED_LEN}",
                wrapped.len()
            )));
        }
        let mut iv = [0u8; WRAP_IV_LEN];
        iv.copy_from_slice(&wrapped[..WRAP_IV_LEN]);
        let ct = &wrapped[WRAP_IV_LEN..WRAP_IV_LEN + 32];
        let tag = &wrapped[WRAP_IV_LEN + 32..];
        let kek = Kek::derive(user_key, &id);
        if kek.tag(&bound, &iv, ct).verify_slice(tag).is_err() {
            return Err(CryptoError::WrongKey);
        }
        let mut key = Zeroizing::new([0u8; 32]);
        key.copy_from_slice(ct);
        kek.crypt(&iv, &mut key);
        Ok(MasterKey::from_bytes(*key))
    }

    /// Re-wraps the master key under a new user key (and key source) without
    /// touching any object. The old key stops working with the new config.
    pub fn rewrap(
        &self,
        old: &UserKey,
        new: &UserKey,
        new_source: KeySource,
    ) -> Result<Self, CryptoError> {
        let master = self.unlock(old)?;
        let mut cfg = self.clone();
        cfg.key_source = new_source;
        cfg.wrapped_master_key = cfg.wrap(new, &master)?;
        Ok(cfg)
    }

    /// The segment layout of the volume.
    pub fn layout(&self) -> Result<Layout, CryptoError> {
        Layout::with_format(self.segment_size, format_byte(self.format_version))
    }

    /// Pretty-printed JSON.
    pub fn to_json(&self) -> Vec<u8> {
        let mut v = serde_json::to_vec_pretty(self).expect("VolumeConfig serialises");
        v.push(b'\n');
        v
    }

    /// Parses the JSON config (fields are validated by `unlock`).
    pub fn from_json(b: &[u8]) -> Result<Self, CryptoError> {
        serde_json::from_slice(b)
            .map_err(|e| CryptoError::InvalidConfig(format!("volume.json: {e}")))
    }

    fn wrap(&self, user_key: &UserKey, master: &MasterKey) -> Result<String, CryptoError> {
        let (id, bound) = self.check_fields()?;
        let kek = Kek::derive(user_key, &id);
        let mut iv = [0u8; WRAP_IV_LEN];
        os_random(&mut iv);
        let mut ct = Zeroizing::new(*master.expose());
        kek.crypt(&iv, &mut ct);
        let tag = kek.tag(&bound, &iv, &ct[..]).finalize().into_bytes();
        let mut out = Vec::with_capacity(WRAPPED_LEN);
        out.extend_from_slice(&iv);
        out.extend_from_slice(&ct[..]);
        out.extend_from_slice(&tag);
        Ok(BASE64.encode(out))
    }

    /// Validates the authenticated fields; returns the volume id bytes and
    /// their MAC encoding: format_version u32 BE || segment_size u32 BE ||
    /// volume_id (16) || encrypt_names u8.
    fn check_fields(&self) -> Result<([u8; 16], [u8; 25]), CryptoError> {
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
}

/// The config's version as an object format byte (out of range: 255, rejected).
fn format_byte(version: u32) -> u8 {
    u8::try_from(version).unwrap_or(u8::MAX)
}
