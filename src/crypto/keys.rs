//! Key types: the volume master key, the user key (KEK) that unlocks it, and
//! the per-object keys derived from the master key and an object header.

use std::fmt;
use std::fs;
use std::io::Write;
use std::os::unix::fs::OpenOptionsExt;
use std::path::Path;

use std::sync::Arc;

use aws_lc_rs::cipher::{AES_256, EncryptingKey, EncryptionContext, UnboundCipherKey};
use hkdf::Hkdf;
use hmac::{Hmac, KeyInit, Mac};
use rand::TryRng;
use sha2::Sha256;
use zeroize::{Zeroize, ZeroizeOnDrop, Zeroizing};

use super::config::KeySource;
use super::error::CryptoError;

pub(crate) type HmacSha256 = Hmac<Sha256>;

/// Fills `buf` from the operating system's RNG (getrandom). Panics if the OS
/// cannot provide randomness: continuing without it would be unsafe.
pub(crate) fn os_random(buf: &mut [u8]) {
    rand::rngs::SysRng
        .try_fill_bytes(buf)
        .expect("the operating system RNG failed");
}

/// The 32-byte volume master key. Every object key is derived from it.
///
/// Zeroized on drop; `Debug` is redacted and there is no `Display`.
#[derive(Clone, Zeroize, ZeroizeOnDrop)]
pub struct MasterKey([u8; 32]);

impl MasterKey {
    /// Wraps raw key bytes.
    pub fn from_bytes(b: [u8; 32]) -> Self {
        MasterKey(b)
    }

    /// A fresh key from the OS RNG.
    pub fn generate() -> Self {
        let mut k = MasterKey([0u8; 32]);
        os_random(&mut k.0);
        k
    }

    /// The raw key bytes. Keep the borrow short and never log it.
    pub fn expose(&self) -> &[u8; 32] {
        &self.0
    }
}

impl fmt::Debug for MasterKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("MasterKey(<redacted>)")
    }
}

/// Key material that unlocks a volume (the key-encryption key, KEK).
///
/// It comes from a key file (exactly 32 raw bytes, or 64 hex characters with
/// optional trailing whitespace/newline), from a systemd credential
/// (`$CREDENTIALS_DIRECTORY/<name>`, same format), or from a passphrase
/// stretched with scrypt using the parameters stored in the volume config.
///
/// Zeroized on drop; `Debug` is redacted.
#[derive(Clone, Zeroize, ZeroizeOnDrop)]
pub struct UserKey([u8; 32]);

impl fmt::Debug for UserKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("UserKey(<redacted>)")
    }
}

/// Upper bounds on scrypt parameters accepted from a (possibly hostile)
/// volume config, so that a modified config cannot make us allocate
/// unbounded memory. 128 * r * 2^log_n must also stay <= 4 GiB.
const SCRYPT_MAX_LOG_N: u8 = 24;
const SCRYPT_MAX_R: u32 = 64;
const SCRYPT_MAX_P: u32 = 64;
const SCRYPT_MAX_MEMORY: u64 = 4 << 30;
/// Memory times lanes: 8 GiB of memory passes, a few minutes at worst.
const SCRYPT_MAX_TOTAL_WORK: u64 = 8 << 30;

impl UserKey {
    pub(crate) fn expose(&self) -> &[u8; 32] {
        &self.0
    }

    /// Parses key-file contents: exactly 32 raw bytes, or 64 hex characters
    /// optionally followed by ASCII whitespace (e.g. a newline). 32 bytes that are all
    /// printable text are refused: that is a password typed into a file, not 256 random
    /// bits (random bytes are all printable with odds of about 1 in 10^13). The hex digits
    /// may be grouped with `-` or spaces, as a recovery key is written down.
    pub fn from_key_bytes(b: &[u8]) -> Result<Self, CryptoError> {
        if b.len() == 32 && b.iter().all(|c| (b' '..=b'~').contains(c)) {
            return Err(CryptoError::InvalidKeyMaterial(
                "the key file holds 32 characters of text, which looks like a password: \
                 a key file holds 32 random bytes or 64 hex characters (`s3cryptfs init --generate-key` writes one), \
                 and a passphrase volume is unlocked with --passphrase-file"
                    .into(),
            ));
        }
        if b.len() == 32 {
            let mut k = UserKey([0u8; 32]);
            k.0.copy_from_slice(b);
            return Ok(k);
        }
        let mut end = b.len();
        while end > 0 && b[end - 1].is_ascii_whitespace() {
            end -= 1;
        }
        // A recovery key as written down: groups of hex digits joined by '-' (or spaces).
        let ungrouped: Zeroizing<Vec<u8>>;
        let mut text = &b[..end];
        let grouped = text.contains(&b'-') || text.contains(&b' ');
        let hex_at_both_ends = text.first().is_some_and(u8::is_ascii_hexdigit)
            && text.last().is_some_and(u8::is_ascii_hexdigit);
        if grouped && hex_at_both_ends {
            ungrouped = Zeroizing::new(
                text.iter()
                    .copied()
                    .filter(|c| *c != b'-' && *c != b' ')
                    .collect(),
            );
            text = &ungrouped;
        }
        if text.len() != 64 {
            return Err(CryptoError::InvalidKeyMaterial(format!(
                "expected 32 raw bytes or 64 hex characters, got {} bytes",
                b.len()
            )));
        }
        let mut k = UserKey([0u8; 32]);
        hex::decode_to_slice(text, &mut k.0).map_err(|_| {
            CryptoError::InvalidKeyMaterial("key is 64 characters but not valid hex".into())
        })?;
        Ok(k)
    }

    /// Reads and parses a key file (see [`UserKey::from_key_bytes`]).
    pub fn from_key_file(path: &Path) -> Result<Self, CryptoError> {
        let contents = Zeroizing::new(fs::read(path).map_err(|e| {
            CryptoError::InvalidKeyMaterial(format!("cannot read key file {}: {e}", path.display()))
        })?);
        Self::from_key_bytes(&contents)
    }

    /// Reads the systemd credential `name` from `$CREDENTIALS_DIRECTORY`
    /// (as set up by `LoadCredential=` / `LoadCredentialEncrypted=`).
    pub fn from_systemd_credential(name: &str) -> Result<Self, CryptoError> {
        let dir = std::env::var_os("CREDENTIALS_DIRECTORY").ok_or_else(|| {
            CryptoError::InvalidKeyMaterial(
                "CREDENTIALS_DIRECTORY is not set (not started by systemd with LoadCredential=?)"
                    .into(),
            )
        })?;
        Self::from_credentials_dir(Path::new(&dir), name)
    }

    /// [`UserKey::from_systemd_credential`] with an explicit directory;
    /// exists so it can be tested without touching the environment.
    #[doc(hidden)]
    pub fn from_credentials_dir(dir: &Path, name: &str) -> Result<Self, CryptoError> {
        if name.is_empty() || name == "." || name == ".." || name.contains('/') {
            return Err(CryptoError::InvalidKeyMaterial(format!(
                "invalid credential name {name:?}"
            )));
        }
        Self::from_key_file(&dir.join(name))
    }

    /// Writes a fresh random key as 64 hex characters and a newline to a new
    /// file with mode 0600. Refuses to overwrite an existing file.
    pub fn generate_key_file(path: &Path) -> Result<(), CryptoError> {
        let key = UserKey::generate();
        let mut text = Zeroizing::new(hex::encode(key.expose()).into_bytes());
        text.push(b'\n');
        let err = |e: std::io::Error| {
            CryptoError::InvalidKeyMaterial(format!(
                "cannot create key file {}: {e}",
                path.display()
            ))
        };
        let mut f = fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(path)
            .map_err(err)?;
        f.write_all(&text).map_err(err)?;
        f.sync_all().map_err(err)?;
        Ok(())
    }

    /// Derives the KEK from a passphrase with scrypt, using the parameters
    /// and salt of a [`KeySource::Passphrase`].
    pub fn from_passphrase(pass: &[u8], source: &KeySource) -> Result<Self, CryptoError> {
        let KeySource::Passphrase { log_n, r, p, salt } = source else {
            return Err(CryptoError::InvalidKeyMaterial(
                "the volume is not set up for a passphrase".into(),
            ));
        };
        let (log_n, r, p) = (*log_n, *r, *p);
        let memory = 128u64
            .saturating_mul(u64::from(r))
            .saturating_mul(1u64.checked_shl(u32::from(log_n)).unwrap_or(u64::MAX));
        // Each of the p lanes fills and reads that memory once: an edited config must not be
        // able to demand 64 runs over 4 GiB each before the key is even tried.
        let total_work = memory.saturating_mul(u64::from(p));
        if log_n == 0
            || log_n > SCRYPT_MAX_LOG_N
            || r == 0
            || r > SCRYPT_MAX_R
            || p == 0
            || p > SCRYPT_MAX_P
            || memory > SCRYPT_MAX_MEMORY
            || total_work > SCRYPT_MAX_TOTAL_WORK
        {
            return Err(CryptoError::InvalidConfig(format!(
                "scrypt parameters out of range: log_n={log_n} r={r} p={p}"
            )));
        }
        let salt = hex::decode(salt)
            .map_err(|_| CryptoError::InvalidConfig("scrypt salt is not hex".into()))?;
        if salt.len() < 16 {
            return Err(CryptoError::InvalidConfig(
                "scrypt salt is shorter than 16 bytes".into(),
            ));
        }
        let params = scrypt::Params::new(log_n, r, p)
            .map_err(|e| CryptoError::InvalidConfig(format!("scrypt parameters: {e}")))?;
        let mut k = UserKey([0u8; 32]);
        scrypt::scrypt(pass, &salt, &params, &mut k.0)
            .map_err(|e| CryptoError::InvalidConfig(format!("scrypt: {e}")))?;
        Ok(k)
    }

    /// A fresh random key (for a key file, a recovery key or a KMS slot).
    pub fn generate() -> Self {
        let mut k = UserKey([0u8; 32]);
        os_random(&mut k.0);
        k
    }

    /// The key as a person writes it down: 64 hex digits in 16 groups of 4 joined by `-`.
    /// [`UserKey::from_key_bytes`] reads it back (so a file holding it is a key file).
    pub fn recovery_text(&self) -> Zeroizing<String> {
        let digits = Zeroizing::new(hex::encode(self.0));
        let mut text = Zeroizing::new(String::with_capacity(79));
        for (i, group) in digits.as_bytes().chunks(4).enumerate() {
            if i > 0 {
                text.push('-');
            }
            text.push_str(std::str::from_utf8(group).expect("hex is ASCII"));
        }
        text
    }

    /// A key from KMS or another source that hands over exactly 32 bytes.
    pub fn from_raw(bytes: &[u8]) -> Result<Self, CryptoError> {
        let raw: [u8; 32] = bytes.try_into().map_err(|_| {
            CryptoError::InvalidKeyMaterial(format!("expected 32 key bytes, got {}", bytes.len()))
        })?;
        Ok(UserKey(raw))
    }
}

/// HKDF info prefix for per-object keys; `header[0..8]` follows it.
pub(crate) const OBJECT_KEYS_INFO: &[u8] = b"s3cryptfs v1 object keys";
pub(crate) const EPOCH_KEYS_INFO: &[u8] = b"s3cryptfs v2 epoch keys";

/// The key material of one epoch of a format-2 or format-3 object: HKDF-SHA256(ikm = master,
/// salt = header salt, info = `label` || header[0..7] || 0 || first segment u32 BE || epoch
/// nonce), as long as `okm`. Byte 7 of the header (the epoch count) is zero in `header_prefix`.
pub(crate) fn epoch_key_material(label: &[u8], inputs: EpochInputs<'_>, okm: &mut [u8]) {
    let (master, salt, header_prefix, first_segment, nonce) = inputs;
    Hkdf::<Sha256>::new(Some(salt), master.expose())
        .expand_multi_info(
            &[label, header_prefix, &first_segment.to_be_bytes(), nonce],
            okm,
        )
        .expect("at most 64 bytes, a valid HKDF-SHA256 output length");
}

/// What an epoch's keys are derived from: master key, header salt, header[0..8] with byte 7
/// zero, the epoch's first segment and its nonce.
pub(crate) type EpochInputs<'a> = (&'a MasterKey, &'a [u8; 32], &'a [u8; 8], u32, &'a [u8; 16]);

/// Per-object keys: an expanded AES-256 key for CTR and a keyed HMAC-SHA256 state; no key
/// schedule is recomputed per segment. The keystream is AWS-LC's (already linked for TLS):
/// its AES-CTR takes about a quarter of the CPU time of the portable one (docs/FORMAT.md
/// §13), with the same bytes. (AWS-LC zeroizes the AES key schedule when the key is dropped
/// (aws-lc-rs `SymmetricCipherKey`'s Drop); the HMAC states, inner and outer, are zeroized
/// on drop by the `zeroize` features of `hmac` and `sha2`, which a test checks; the raw
/// derived bytes are zeroized right after use.)
#[derive(Clone)]
pub(crate) struct ObjectKeys {
    aes: Arc<EncryptingKey>,
    mac: HmacSha256,
}

/// An AES-256-CTR key from 32 derived bytes.
fn ctr_key(bytes: &[u8]) -> Arc<EncryptingKey> {
    let key = UnboundCipherKey::new(&AES_256, bytes).expect("a 32-byte AES key");
    Arc::new(EncryptingKey::ctr(key).expect("AES-256-CTR is available"))
}

impl ObjectKeys {
    /// HKDF-SHA256(ikm = master, salt = header salt,
    /// info = "s3cryptfs v1 object keys" || header[0..8]) -> aes key || mac key.
    pub(crate) fn derive(master: &MasterKey, salt: &[u8; 32], header_prefix: &[u8; 8]) -> Self {
        let hk = Hkdf::<Sha256>::new(Some(salt), master.expose());
        let mut okm = Zeroizing::new([0u8; 64]);
        hk.expand_multi_info(&[OBJECT_KEYS_INFO, header_prefix], &mut okm[..])
            .expect("64 bytes is a valid HKDF-SHA256 output length");
        let aes = ctr_key(&okm[..32]);
        let mac =
            <HmacSha256 as KeyInit>::new_from_slice(&okm[32..]).expect("HMAC accepts any key");
        ObjectKeys { aes, mac }
    }

    /// Keys of one epoch of a format-2 object:
    /// HKDF-SHA256(ikm = master, salt = header salt,
    /// info = "s3cryptfs v2 epoch keys" || header[0..7] || 0 || first segment u32 BE
    /// || epoch nonce) -> aes key || mac key. Each append draws a new epoch nonce, so
    /// its segments get keys of their own while the earlier epochs' keys (and
    /// their ciphertext, copied server-side) stay as they were.
    pub(crate) fn derive_epoch(
        master: &MasterKey,
        salt: &[u8; 32],
        header_prefix: &[u8; 8],
        first_segment: u32,
        nonce: &[u8; 16],
    ) -> Self {
        let mut okm = Zeroizing::new([0u8; 64]);
        let inputs = (master, salt, header_prefix, first_segment, nonce);
        epoch_key_material(EPOCH_KEYS_INFO, inputs, &mut okm[..]);
        let aes = ctr_key(&okm[..32]);
        let mac =
            <HmacSha256 as KeyInit>::new_from_slice(&okm[32..]).expect("HMAC accepts any key");
        ObjectKeys { aes, mac }
    }

    /// Keys for a small sealed record other than an object body (attributes):
    /// HKDF-SHA256(ikm = master, salt, info) -> aes key || mac key. Distinct `info` labels
    /// keep these keys apart from object keys.
    pub(crate) fn derive_labeled(master: &MasterKey, salt: &[u8], info: &[u8]) -> Self {
        let hk = Hkdf::<Sha256>::new(Some(salt), master.expose());
        let mut okm = Zeroizing::new([0u8; 64]);
        hk.expand(info, &mut okm[..])
            .expect("64 bytes is a valid HKDF-SHA256 output length");
        let aes = ctr_key(&okm[..32]);
        let mac =
            <HmacSha256 as KeyInit>::new_from_slice(&okm[32..]).expect("HMAC accepts any key");
        ObjectKeys { aes, mac }
    }

    /// The 16-byte CTR IV of a segment:
    /// nonce prefix (7) | index u32 BE (4) | last flag (1) | 0u32 (4).
    pub(crate) fn segment_iv(nonce_prefix: &[u8; 7], index: u32, last: bool) -> [u8; 16] {
        let mut iv = [0u8; 16];
        iv[..7].copy_from_slice(nonce_prefix);
        iv[7..11].copy_from_slice(&index.to_be_bytes());
        iv[11] = u8::from(last);
        iv
    }

    /// XORs the segment keystream for `iv` into `buf` (encrypt == decrypt). The counter is
    /// the IV's last 32 bits, from 0; a segment (at most 2^32 blocks) never carries into the
    /// bits before, so AWS-LC's 128-bit counter gives the format's 32-bit one.
    #[inline]
    pub(crate) fn apply_keystream(&self, iv: &[u8; 16], buf: &mut [u8]) {
        debug_assert!((buf.len() as u64).div_ceil(16) <= 1 << 32);
        self.aes
            .less_safe_encrypt(buf, EncryptionContext::Iv128((*iv).into()))
            .expect("CTR takes any length and this IV");
    }

    /// HMAC-SHA256(mac key, iv || ciphertext), from a clone of the keyed state.
    #[inline]
    pub(crate) fn tag(&self, iv: &[u8; 16], ciphertext: &[u8]) -> [u8; 32] {
        let mut mac = self.mac.clone();
        mac.update(iv);
        mac.update(ciphertext);
        mac.finalize().into_bytes().into()
    }

    /// Constant-time check of `tag` against HMAC(iv || ciphertext).
    #[inline]
    pub(crate) fn verify(&self, iv: &[u8; 16], ciphertext: &[u8], tag: &[u8]) -> bool {
        let mut mac = self.mac.clone();
        mac.update(iv);
        mac.update(ciphertext);
        mac.verify_slice(tag).is_ok()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// AWS-LC's keystream is the format's: AES-256 with a 32-bit big-endian block counter in
    /// the IV's last four bytes (as the `ctr` crate computes it), over a whole segment and
    /// the largest one a layout allows.
    #[test]
    fn the_keystream_is_aes_256_ctr32() {
        use aes::cipher::{KeyIvInit, StreamCipher};
        let okm: Vec<u8> = (0u8..64).map(|i| i.wrapping_mul(37)).collect();
        let keys = ObjectKeys {
            aes: ctr_key(&okm[..32]),
            mac: <HmacSha256 as KeyInit>::new_from_slice(&okm[32..]).unwrap(),
        };
        for (len, index, last) in [
            (65_536, 0, false),
            (100, 7, true),
            (4 << 20, u32::MAX, true),
        ] {
            let iv = ObjectKeys::segment_iv(&[0xff; 7], index, last);
            let mut ours = vec![0x5au8; len];
            keys.apply_keystream(&iv, &mut ours);
            let mut theirs = vec![0x5au8; len];
            let key: [u8; 32] = okm[..32].try_into().unwrap();
            ctr::Ctr32BE::<aes::Aes256>::new(&key.into(), &iv.into()).apply_keystream(&mut theirs);
            assert!(ours == theirs, "{len} bytes, segment {index}");
        }
    }

    #[test]
    fn key_bearing_states_are_zeroized_on_drop() {
        fn zeroized_on_drop<T: zeroize::ZeroizeOnDrop>() {}
        // An HMAC's key-bearing states are the SHA-256 cores after its inner and outer pads
        // (hmac's wrapper carries no marker trait of its own): they zeroize themselves.
        zeroized_on_drop::<<Sha256 as hmac::digest::block_api::CoreProxy>::Core>();
        zeroized_on_drop::<Sha256>();
        zeroized_on_drop::<MasterKey>();
        zeroized_on_drop::<UserKey>();
    }

    #[test]
    fn key_bytes_formats() {
        let raw = [7u8; 32];
        assert_eq!(UserKey::from_key_bytes(&raw).unwrap().expose(), &raw);
        let hex = format!("{}\n", hex::encode(raw));
        assert_eq!(
            UserKey::from_key_bytes(hex.as_bytes()).unwrap().expose(),
            &raw
        );
        let upper = hex::encode_upper(raw);
        assert_eq!(
            UserKey::from_key_bytes(upper.as_bytes()).unwrap().expose(),
            &raw
        );
        assert!(UserKey::from_key_bytes(&[1u8; 31]).is_err());
        assert!(UserKey::from_key_bytes(&[1u8; 33]).is_err());
        assert!(UserKey::from_key_bytes(&hex.as_bytes()[..63]).is_err());
        let mut bad = hex.clone().into_bytes();
        bad[0] = b'g';
        assert!(UserKey::from_key_bytes(&bad).is_err());
        // leading whitespace is not accepted
        let lead = format!(" {}", hex::encode(raw));
        assert!(UserKey::from_key_bytes(lead.as_bytes()).is_err());
    }

    #[test]
    fn iv_layout() {
        let iv = ObjectKeys::segment_iv(&[1, 2, 3, 4, 5, 6, 7], 0x0a0b0c0d, true);
        assert_eq!(
            iv,
            [1, 2, 3, 4, 5, 6, 7, 0x0a, 0x0b, 0x0c, 0x0d, 1, 0, 0, 0, 0]
        );
    }
}
