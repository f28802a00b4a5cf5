//! The encrypted object format and the crypto core.
//!
//! Every object is a streaming AEAD ciphertext in the style of Tink's
//! AES-CTR-HMAC and AES-GCM-HKDF streaming AEADs: a header (48 bytes in format 1, 368 in
//! formats 2 and 3), then segments sealed under per-object (per-epoch) keys derived from the
//! volume master key: AES-256-CTR with HMAC-SHA256 in formats 1 and 2, AES-256-GCM in
//! format 3. See `docs/FORMAT.md` for the exact
//! bytes.
//!
//! - [`layout`]: size and offset arithmetic.
//! - [`header`]: the object header.
//! - [`keys`]: master key, user key (KEK), per-object key derivation.
//! - [`names`]: deterministic encryption of path components ([`NameCipher`]).
//! - [`seal`]: encryption ([`StreamEncryptor`]).
//! - `segment_keys`: one segment's seal and open, in either cipher.
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
mod segment_keys;
pub mod staging;

pub use attrs::{
    ATTRS_METADATA_NAME, AttrsBinding, BINDING_METADATA_NAME, PosixAttrs, attrs_metadata,
    open_attrs, open_unbound_attrs, seal_attrs,
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
    AppendPlan, GCM_TAG_LEN, HEADER_LEN, HEADER_LEN_V2, Layout, MAX_EPOCHS, MAX_SEGMENT_SIZE,
    MIN_SEGMENT_SIZE, TAG_LEN,
};
pub use names::{
    MAX_ENCRYPTED_COMPONENT, NameCipher, NameError, is_long_name_stand_in, long_name_stand_in,
};
pub use open::{ObjectDecryptor, SegmentIdentity, decrypt_to_vec};
pub use seal::{SegmentSealer, StreamEncryptor, encrypt_to_vec};
