//! The one error type of the crypto core.

/// Everything that can go wrong while parsing, authenticating or decrypting
/// an object, or while loading keys and the volume config.
///
/// Messages never contain key material.
#[derive(Debug, thiserror::Error)]
pub enum CryptoError {
    /// The user key does not unwrap the volume master key (or the volume
    /// config's authenticated fields were modified).
    #[error("the key does not match this volume")]
    WrongKey,
    /// The object does not start with the `S3CF` magic.
    #[error("not an s3cryptfs object")]
    NotOurFormat,
    /// The object or config uses a format version this build cannot read.
    #[error("unsupported s3cryptfs format version {0}")]
    UnsupportedVersion(u8),
    /// The header is structurally invalid (reserved bytes, unknown kind,
    /// segment size that differs from the volume's, ...).
    #[error("corrupt object header: {0}")]
    CorruptHeader(String),
    /// A segment's authentication tag did not verify. No plaintext of that
    /// segment is released.
    #[error("authentication failed at segment {segment} (tampered or corrupt)")]
    TagMismatch {
        /// 0-based index of the failing segment.
        segment: u64,
    },
    /// Fewer (or more) bytes were supplied than the header or segment needs.
    #[error("object data is truncated or has the wrong length")]
    Truncated,
    /// No plaintext encrypts to a ciphertext of this size.
    #[error("impossible ciphertext size {0}")]
    ImpossibleSize(u64),
    /// Attributes recorded by an older build, bound to no object: they could have been
    /// moved from another object, so they are not taken as this one's.
    #[error("attributes recorded by an older build are not bound to their object")]
    UnboundAttributes,
    /// A key file, credential or passphrase setting could not be used.
    #[error("invalid key material: {0}")]
    InvalidKeyMaterial(String),
    /// The volume config (or a layout parameter) is invalid.
    #[error("invalid volume configuration: {0}")]
    InvalidConfig(String),
}
