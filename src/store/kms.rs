//! AWS KMS for key slots: a slot's random 32-byte user key is kept encrypted by a KMS key,
//! bound to its volume by the encryption context, and decrypted by KMS when the volume is
//! unlocked. KMS never sees the volume's master key.

use aws_sdk_kms::Client;
use aws_sdk_kms::primitives::Blob;
use zeroize::Zeroizing;

use super::{StoreConfig, StoreError};

/// Encryption context key: a slot's ciphertext decrypts only for the volume it was made for.
const CONTEXT_KEY: &str = "s3cryptfs-volume";
/// What KMS decrypts for us: a 32-byte user key, nothing else.
const KEY_LEN: usize = 32;

/// A KMS client with the same credentials, region, timeouts and retries as the store's.
#[derive(Clone, Debug)]
pub struct KmsKeys {
    client: Client,
}

impl KmsKeys {
    /// Builds the client; `endpoint` overrides where requests go (a local KMS, moto), else
    /// the region's KMS endpoint (or `AWS_ENDPOINT_URL_KMS`). Makes no request.
    pub async fn connect(config: &StoreConfig, endpoint: Option<&str>) -> Result<Self, StoreError> {
        let sdk = super::sdk::load(config, None).await?;
        let mut kms = aws_sdk_kms::config::Builder::from(&sdk);
        if let Some(endpoint) = endpoint {
            kms = kms.endpoint_url(endpoint);
        }
        if sdk.region().is_none() {
            kms = kms.region(aws_sdk_kms::config::Region::new("us-east-1"));
        }
        Ok(Self {
            client: Client::from_conf(kms.build()),
        })
    }

    /// Encrypts a slot's user key under the KMS key `key_id` for volume `volume_id`.
    pub async fn encrypt(
        &self,
        key_id: &str,
        user_key: &[u8; 32],
        volume_id: &str,
    ) -> Result<Vec<u8>, StoreError> {
        let out = self
            .client
            .encrypt()
            .key_id(key_id)
            .plaintext(Blob::new(user_key.to_vec()))
            .encryption_context(CONTEXT_KEY, volume_id)
            .send()
            .await
            .map_err(|e| super::sdk::classify("KMS Encrypt", key_id, e))?;
        out.ciphertext_blob
            .map(Blob::into_inner)
            .ok_or_else(|| StoreError::fatal(format!("KMS Encrypt {key_id}: no ciphertext")))
    }

    /// Decrypts a slot's user key; KMS checks that `key_id` made it for volume `volume_id`.
    pub async fn decrypt(
        &self,
        key_id: &str,
        ciphertext: &[u8],
        volume_id: &str,
    ) -> Result<Zeroizing<Vec<u8>>, StoreError> {
        let out = self
            .client
            .decrypt()
            .key_id(key_id)
            .ciphertext_blob(Blob::new(ciphertext.to_vec()))
            .encryption_context(CONTEXT_KEY, volume_id)
            .send()
            .await
            .map_err(|e| super::sdk::classify("KMS Decrypt", key_id, e))?;
        let plaintext = Zeroizing::new(out.plaintext.map(Blob::into_inner).unwrap_or_default());
        if plaintext.len() != KEY_LEN {
            return Err(StoreError::fatal(format!(
                "KMS Decrypt {key_id}: {} bytes where a 32-byte key was expected",
                plaintext.len()
            )));
        }
        Ok(plaintext)
    }

    /// Creates a symmetric KMS key (for tests and demos against a local KMS): its id.
    pub async fn create_key(&self, description: &str) -> Result<String, StoreError> {
        let out = self
            .client
            .create_key()
            .description(description)
            .send()
            .await
            .map_err(|e| super::sdk::classify("KMS CreateKey", description, e))?;
        out.key_metadata
            .map(|m| m.key_id)
            .ok_or_else(|| StoreError::fatal("KMS CreateKey: no key id".to_string()))
    }
}
