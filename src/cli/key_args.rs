//! Where a volume key comes from: the key arguments every command shares (key file, systemd
//! credential, passphrase, KMS) and the secret they yield, read without ever being on argv.

use std::path::PathBuf;

use clap::Args;

use crate::crypto::{CryptoError, UserKey};

/// Where the volume key comes from.
#[derive(Debug, Args, Clone, Default)]
pub struct KeyArgs {
    /// Key file: 32 raw bytes or 64 hex characters. Keep it mode 0600.
    #[arg(long, value_name = "FILE")]
    pub key_file: Option<PathBuf>,
    /// Name of a systemd credential holding the key (LoadCredential=NAME:/path), read from
    /// $CREDENTIALS_DIRECTORY
    #[arg(long, value_name = "NAME")]
    pub key_credential: Option<String>,
    /// File whose first line is the passphrase (for passphrase volumes; also
    /// $S3CRYPTFS_PASSPHRASE, or typed at a prompt on a terminal)
    #[arg(long, value_name = "FILE")]
    pub passphrase_file: Option<PathBuf>,
    /// Unlock with the volume's AWS KMS key slot: KMS decrypts the slot's key (the AWS
    /// credentials need kms:Decrypt on the KMS key; region from the AWS chain or --region)
    #[arg(long, conflicts_with_all = ["key_file", "key_credential", "passphrase_file"])]
    pub kms: bool,
    /// Where KMS requests go (a local KMS for testing); by default the region's KMS
    /// endpoint, or $AWS_ENDPOINT_URL_KMS
    #[arg(long, value_name = "URL")]
    pub kms_endpoint_url: Option<String>,
}

/// Environment variable that may hold the passphrase.
pub const PASSPHRASE_ENV: &str = "S3CRYPTFS_PASSPHRASE";

/// Longer passphrases are refused (they would only hide a wrong file given as one).
const MAX_PASSPHRASE: usize = 4096;

fn passphrase(bytes: Vec<u8>) -> Result<Secret, String> {
    let bytes = zeroize::Zeroizing::new(bytes);
    if bytes.is_empty() {
        return Err("the passphrase is empty".into());
    }
    if bytes.len() > MAX_PASSPHRASE {
        return Err(format!(
            "the passphrase is over {MAX_PASSPHRASE} bytes: is the right file given?"
        ));
    }
    Ok(Secret::Passphrase(bytes))
}

/// What unlocks a volume, as the user gave it.
pub enum Secret {
    Key(UserKey),
    Passphrase(zeroize::Zeroizing<Vec<u8>>),
    /// KMS decrypts a KMS slot's key (through this endpoint, if given).
    Kms {
        endpoint: Option<String>,
    },
}

impl Secret {
    /// The secret as the background daemon receives it from its parent through a pipe
    /// ([`Secret::from_handoff`]): `K` and the key in hex, or `P` and the passphrase.
    pub fn to_handoff(&self) -> zeroize::Zeroizing<Vec<u8>> {
        let mut out = zeroize::Zeroizing::new(Vec::with_capacity(MAX_PASSPHRASE + 1));
        match self {
            Secret::Key(k) => {
                out.push(b'K');
                let hex = zeroize::Zeroizing::new(hex::encode(k.expose()));
                out.extend_from_slice(hex.as_bytes());
            }
            Secret::Passphrase(p) => {
                out.push(b'P');
                out.extend_from_slice(p);
            }
            Secret::Kms { endpoint } => {
                out.push(b'M');
                out.extend_from_slice(endpoint.as_deref().unwrap_or_default().as_bytes());
            }
        }
        out
    }

    pub fn from_handoff(bytes: &[u8]) -> Result<Secret, String> {
        match bytes.split_first() {
            Some((b'K', hex)) => UserKey::from_key_bytes(hex)
                .map(Secret::Key)
                .map_err(|e| format!("the key handed over by the parent is unusable: {e}")),
            Some((b'P', p)) => passphrase(p.to_vec()),
            Some((b'M', endpoint)) => Ok(Secret::Kms {
                endpoint: (!endpoint.is_empty())
                    .then(|| String::from_utf8_lossy(endpoint).into_owned()),
            }),
            _ => Err("no key was handed over by the parent process".into()),
        }
    }
}

impl KeyArgs {
    /// The key or passphrase: --key-file, --key-credential, --passphrase-file,
    /// $S3CRYPTFS_PASSPHRASE, the default systemd credential, or a prompt on a terminal
    /// (`confirm`: ask twice, for a new passphrase).
    pub fn secret(&self, confirm: bool) -> Result<Secret, String> {
        if self.kms {
            return Ok(Secret::Kms {
                endpoint: self.kms_endpoint_url.clone(),
            });
        }
        if self.key_file.is_some() || self.key_credential.is_some() {
            return self.load().map(Secret::Key);
        }
        if let Some(path) = &self.passphrase_file {
            let text = zeroize::Zeroizing::new(
                std::fs::read(path).map_err(|e| format!("{}: {e}", path.display()))?,
            );
            let line = text.split(|b| *b == b'\n').next().unwrap_or_default();
            return passphrase(line.to_vec());
        }
        if let Some(p) = std::env::var_os(PASSPHRASE_ENV) {
            use std::os::unix::ffi::OsStringExt;
            return passphrase(p.into_vec());
        }
        if std::env::var_os("CREDENTIALS_DIRECTORY").is_some() {
            return self.load().map(Secret::Key);
        }
        if std::io::IsTerminal::is_terminal(&std::io::stdin()) {
            return self.prompt_passphrase(confirm);
        }
        self.load().map(Secret::Key)
    }

    /// A passphrase typed at the terminal (`confirm`: twice, for a new one).
    pub fn prompt_passphrase(&self, confirm: bool) -> Result<Secret, String> {
        let first = zeroize::Zeroizing::new(
            rpassword::prompt_password("passphrase: ").map_err(|e| e.to_string())?,
        );
        if confirm {
            let again = zeroize::Zeroizing::new(
                rpassword::prompt_password("again: ").map_err(|e| e.to_string())?,
            );
            if *again != *first {
                return Err("the passphrases differ".into());
            }
        }
        passphrase(first.as_bytes().to_vec())
    }

    pub fn load(&self) -> Result<UserKey, String> {
        match (&self.key_file, &self.key_credential) {
            (Some(path), _) => UserKey::from_key_file(path)
                .map_err(|e| describe_key_error(&path.display().to_string(), e)),
            (None, Some(name)) => UserKey::from_systemd_credential(name)
                .map_err(|e| describe_key_error(&format!("credential '{name}'"), e)),
            (None, None) => {
                if std::env::var_os("CREDENTIALS_DIRECTORY").is_some() {
                    UserKey::from_systemd_credential(DEFAULT_CREDENTIAL).map_err(|e| {
                        describe_key_error(&format!("credential '{DEFAULT_CREDENTIAL}'"), e)
                    })
                } else {
                    Err("no key given: pass --key-file FILE, --passphrase-file FILE or set S3CRYPTFS_PASSPHRASE (or --key-credential NAME under systemd)".to_string())
                }
            }
        }
    }
}

/// The credential name the systemd units use.
pub const DEFAULT_CREDENTIAL: &str = "s3cryptfs.key";

fn describe_key_error(source: &str, e: CryptoError) -> String {
    format!("cannot use the key from {source}: {e}")
}
