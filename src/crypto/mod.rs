//! The encrypted object format and the crypto core.
//!
//! Every object is a streaming AEAD ciphertext in the style of Tink's
//! AES-CTR-HMAC streaming AEAD: a header (48 bytes in format 1, 368 in format 2), then segments encrypted
//! with AES-256-CTR and authenticated with HMAC-SHA256 under per-object keys
//! derived from the volume master key. See `docs/FORMAT.md` for the exact
//! bytes.
//!
//! - [`layout`]: size and offset arithmetic.
//! - [`header`]: the object header.
//! - [`keys`]: master key, user key (KEK), per-object key derivation.
//! - [`names`]: deterministic encryption of path components ([`NameCipher`]).
//! - [`seal`]: encryption ([`StreamEncryptor`]).
//! - [`open`]: decryption ([`ObjectDecryptor`]).
//! - [`config`]: the volume config with the wrapped master key.
//! - [`attrs`]: POSIX attributes sealed into S3 user metadata.
//! - [`staging`]: the cipher of local staging files (files changed in place).

pub mod attrs;
pub mod config;
pub mod error;
pub mod header;
mod key_wrap;
pub mod keys;
pub mod layout;
pub mod names;
pub mod open;
pub mod seal;
pub mod staging;

pub use attrs::{
    ATTRS_METADATA_NAME, AttrsBinding, PosixAttrs, open_attrs, open_unbound_attrs, seal_attrs,
};
#[cfg(any(test, feature = "test-support"))]
pub use attrs::{seal_attrs_with_salt, seal_unbound_attrs};
pub use config::{
    CONFIG_VERSION, KeySlot, KeySource, LEGACY_SLOT_NAME, MAX_KEY_SLOTS, VOLUME_FORMAT_VERSION,
    VolumeConfig,
};
pub use error::CryptoError;
pub use header::{FORMAT_VERSION, Header, MAGIC, ObjectKind};
pub use keys::{MasterKey, UserKey};
pub use layout::{
    AppendPlan, HEADER_LEN, HEADER_LEN_V2, Layout, MAX_EPOCHS, MAX_SEGMENT_SIZE, MIN_SEGMENT_SIZE,
    TAG_LEN,
};
pub use names::{
    MAX_ENCRYPTED_COMPONENT, NameCipher, NameError, is_long_name_stand_in, long_name_stand_in,
};
pub use open::{ObjectDecryptor, SegmentIdentity, decrypt_to_vec};
pub use seal::{SegmentSealer, StreamEncryptor, encrypt_to_vec};
