//! Wrapping the volume master key under one user key (docs/FORMAT.md §10): AES-256-CTR
//! encryption and an HMAC-SHA256 tag over the config's bound fields, with both keys derived
//! from the user key and the volume id by HKDF. One wrapped blob is one key slot.

use aes::Aes256;
use aes::cipher::{KeyIvInit, StreamCipher};
use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as BASE64;
use hkdf::Hkdf;
use hmac::Mac;
use sha2::Sha256;
use zeroize::Zeroizing;

use super::error::CryptoError;
use super::keys::{HmacSha256, MasterKey, UserKey, os_random};

/// HKDF info for the key-wrapping keys.
const KEY_WRAP_INFO: &[u8] = b"s3cryptfs v1 key wrap";
pub(crate) const WRAP_IV_LEN: usize = 16;
const WRAPPED_LEN: usize = WRAP_IV_LEN + 32 + 32;

type Aes256Ctr128 = ctr::Ctr128BE<Aes256>;

/// The config fields every wrapped key is bound to: format_version u32 BE || segment_size
/// u32 BE || volume_id (16) || encrypt_names u8. Changing any of them fails every slot.
pub(crate) type BoundFields = [u8; 25];

/// The two key-wrapping keys derived from one user key.
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

    fn tag(&self, bound: &BoundFields, iv: &[u8], ct: &[u8]) -> HmacSha256 {
        let mut m = self.mac.clone();
        m.update(bound);
        m.update(iv);
        m.update(ct);
        m
    }
}

/// `base64(iv || AES-256-CTR(kek_enc, iv, master) || HMAC(kek_mac, bound || iv || ct))` with a
/// fresh random IV.
pub(crate) fn wrap(
    user_key: &UserKey,
    volume_id: &[u8; 16],
    bound: &BoundFields,
    master: &MasterKey,
) -> String {
    let mut iv = [0u8; WRAP_IV_LEN];
    os_random(&mut iv);
    wrap_with_iv(user_key, volume_id, bound, master, iv)
}

/// [`wrap`] with a given IV: for the known-answer vectors of docs/FORMAT.md §10.
pub(crate) fn wrap_with_iv(
    user_key: &UserKey,
    volume_id: &[u8; 16],
    bound: &BoundFields,
    master: &MasterKey,
    iv: [u8; WRAP_IV_LEN],
) -> String {
    let kek = Kek::derive(user_key, volume_id);
    let mut ct = Zeroizing::new(*master.expose());
    kek.crypt(&iv, &mut ct);
    let tag = kek.tag(bound, &iv, &ct[..]).finalize().into_bytes();
    let mut out = Vec::with_capacity(WRAPPED_LEN);
    out.extend_from_slice(&iv);
    out.extend_from_slice(&ct[..]);
    out.extend_from_slice(&tag);
    BASE64.encode(out)
}

/// The master key in `wrapped`, if `user_key` made it: `WrongKey` when the tag does not
/// verify (checked in constant time before anything is decrypted), `InvalidConfig` when the
/// blob is malformed.
pub(crate) fn unwrap(
    wrapped: &str,
    user_key: &UserKey,
    volume_id: &[u8; 16],
    bound: &BoundFields,
) -> Result<MasterKey, CryptoError> {
    let blob = Zeroizing::new(
        BASE64
            .decode(wrapped)
            .map_err(|_| CryptoError::InvalidConfig("wrapped_master_key is not base64".into()))?,
    );
    if blob.len() != WRAPPED_LEN {
        return Err(CryptoError::InvalidConfig(format!(
            "wrapped_master_key has {} bytes, expected {WRAPPED_LEN}",
            blob.len()
        )));
    }
    let mut iv = [0u8; WRAP_IV_LEN];
    iv.copy_from_slice(&blob[..WRAP_IV_LEN]);
    let ct = &blob[WRAP_IV_LEN..WRAP_IV_LEN + 32];
    let tag = &blob[WRAP_IV_LEN + 32..];
    let kek = Kek::derive(user_key, volume_id);
    if kek.tag(bound, &iv, ct).verify_slice(tag).is_err() {
        return Err(CryptoError::WrongKey);
    }
    let mut key = Zeroizing::new([0u8; 32]);
    key.copy_from_slice(ct);
    kek.crypt(&iv, &mut key);
    Ok(MasterKey::from_bytes(*key))
}
