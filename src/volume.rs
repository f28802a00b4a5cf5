//! A volume: a bucket prefix holding a volume config and objects in our format.
//!
//! Opening a volume reads its config object and unwraps the master key before anything else
//! is touched, so a wrong key or a missing config is refused with a clear message.

use std::fmt;
use std::sync::Arc;

use bytes::Bytes;

use crate::crypto::{
    ATTRS_METADATA_NAME, AttrsBinding, BINDING_METADATA_NAME, CryptoError, Header, KeySource,
    Layout, MasterKey, ObjectKind, UserKey, VolumeConfig, attrs_metadata, encrypt_to_vec,
    open_attrs, open_unbound_attrs,
};
use crate::object_keys::NameCodec;
pub use crate::object_keys::RESERVED_NAME;
use crate::store::{Metadata, ObjectStore, StoreError, StoreErrorKind};

/// What [`Volume::bind_attributes`] did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Binding {
    BoundNow,
    AlreadyBound,
    NoneRecorded,
    /// Recorded attributes that verify under no key of this volume, or sit on an object that
    /// is not ours: left as they are (and not believed by a mount).
    Invalid(String),
}

/// The volume config object.
pub const CONFIG_KEY: &str = ".s3cryptfs/volume.json";
/// Its second copy, written after it by a separate request: losing the config loses the
/// data even with the key, so one lost or damaged object must not lose it.
pub const CONFIG_COPY_KEY: &str = ".s3cryptfs/volume.copy.json";
/// Far above any config (16 slots are about 4 KiB); a larger object is not read.
const MAX_CONFIG_SIZE: u64 = 1024 * 1024;

/// An unlocked volume.
pub struct Volume {
    pub store: Arc<dyn ObjectStore>,
    pub config: VolumeConfig,
    pub layout: Layout,
    pub master: Arc<MasterKey>,
    /// Plain or encrypted names, as the volume was created.
    pub names: NameCodec,
    /// Index in `config.key_slots` of the slot that unlocked it.
    pub unlocked_slot: usize,
}

impl fmt::Debug for Volume {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Volume")
            .field("config", &self.config)
            .field("layout", &self.layout)
            .finish_non_exhaustive()
    }
}

#[derive(Debug, thiserror::Error)]
pub enum VolumeError {
    #[error("no s3cryptfs volume at {location}: create one with `s3cryptfs init {location}`")]
    NoVolume { location: String },
    #[error("{location} already holds an s3cryptfs volume; refusing to overwrite its config")]
    AlreadyInitialised { location: String },
    #[error(
        "{location} already holds {count} object(s) (for example '{example}'); pass --force to create a volume there anyway"
    )]
    NotEmpty {
        location: String,
        count: usize,
        example: String,
    },
    #[error("the key does not match the volume at {location}")]
    WrongKey { location: String },
    #[error("the volume config at {location} is unreadable: {source}")]
    BadConfig {
        location: String,
        source: CryptoError,
    },
    #[error("{0}")]
    Store(#[from] StoreError),
    #[error("{0}")]
    Crypto(#[from] CryptoError),
}

impl VolumeError {
    /// The error of a config that did not unlock.
    pub fn from_unlock(location: &str, e: CryptoError) -> Self {
        match e {
            CryptoError::WrongKey => VolumeError::WrongKey {
                location: location.to_string(),
            },
            other => VolumeError::BadConfig {
                location: location.to_string(),
                source: other,
            },
        }
    }

    /// Process exit status for scripts: 2 for bad input, 3 for a wrong key, 4 for S3 problems.
    pub fn exit_code(&self) -> i32 {
        match self {
            VolumeError::WrongKey { .. } => 3,
            VolumeError::Store(_) => 4,
            _ => 2,
        }
    }
}

impl Volume {
    /// Reads the config at the store's prefix and unlocks it with `user_key`.
    pub async fn open(
        store: Arc<dyn ObjectStore>,
        location: &str,
        user_key: &UserKey,
    ) -> Result<Self, VolumeError> {
        let config = read_config(store.as_ref(), location).await?;
        Self::unlock(store, location, config, user_key)
    }

    /// Unlocks an already read config with the first slot `user_key` opens.
    pub fn unlock(
        store: Arc<dyn ObjectStore>,
        location: &str,
        config: VolumeConfig,
        user_key: &UserKey,
    ) -> Result<Self, VolumeError> {
        let (slot, master) = config
            .unlock_any(user_key, |_| true)
            .map_err(|e| VolumeError::from_unlock(location, e))?;
        Self::with_master(store, location, config, slot, master)
    }

    /// A volume whose master key the caller unwrapped from slot `slot` (passphrase and KMS
    /// slots need more than one user key to be tried).
    pub fn with_master(
        store: Arc<dyn ObjectStore>,
        location: &str,
        config: VolumeConfig,
        slot: usize,
        master: MasterKey,
    ) -> Result<Self, VolumeError> {
        let layout = config.layout().map_err(|source| VolumeError::BadConfig {
            location: location.to_string(),
            source,
        })?;
        let names = NameCodec::new(config.encrypt_names, &master);
        Ok(Volume {
            store,
            config,
            layout,
            master: Arc::new(master),
            names,
            unlocked_slot: slot,
        })
    }

    /// The body of a long encrypted name's side object (a few hundred bytes), or `None` when
    /// it is missing or unreadable (logged unless missing): its entry is then hidden.
    pub async fn read_side_object(&self, key: &str) -> Option<Vec<u8>> {
        // Far above the largest side object (a 255-byte name encrypts to 362 characters).
        const MAX_SIDE_OBJECT: u64 = 4096;
        match self.store.get_range(key, 0..MAX_SIDE_OBJECT, None).await {
            Ok(r) => r.body.collect().await.ok(),
            Err(e) => {
                if e.kind != StoreErrorKind::NotFound {
                    tracing::warn!(key = %key, "cannot read a long name's side object: {e}");
                }
                None
            }
        }
    }

    /// Binds the attributes an older build recorded on `key` (bound to no object) to that
    /// object, as if set through a mount now: for volumes whose objects the user trusts as
    /// they are (`fsck --bind-attributes`). An older build's empty directory marker is
    /// replaced by a marker of ours, so that its attributes have a header to be bound to.
    pub async fn bind_attributes(&self, key: &str) -> Result<Binding, StoreError> {
        let (info, prefix) = self
            .store
            .head_with_prefix(key, self.layout.header_len() as u64)
            .await?;
        let Some(sealed) = info.metadata.get(ATTRS_METADATA_NAME) else {
            return Ok(Binding::NoneRecorded);
        };
        let header = Header::parse(&prefix, self.layout).ok();
        if let Some(header) = &header {
            let named = info.metadata.get(BINDING_METADATA_NAME).map(String::as_str);
            match open_attrs(
                &self.master,
                sealed,
                &AttrsBinding::of_object(header, named),
            ) {
                Ok(_) => return Ok(Binding::AlreadyBound),
                Err(CryptoError::UnboundAttributes) => {}
                Err(e) => return Ok(Binding::Invalid(e.to_string())),
            }
        }
        let attrs = match open_unbound_attrs(&self.master, sealed) {
            Ok(attrs) => attrs,
            Err(e) => return Ok(Binding::Invalid(e.to_string())),
        };
        let metadata = |binding: &AttrsBinding| {
            Metadata::from_iter(attrs_metadata(&self.master, &attrs, binding))
        };
        match header {
            // The same body (same header) with the attributes bound to it.
            Some(header) => {
                let metadata = metadata(&AttrsBinding::of(&header));
                self.store.copy(key, key, Some(&metadata)).await?;
            }
            None if key.ends_with('/') && info.size == 0 => {
                let marker = encrypt_to_vec(&self.master, self.layout, ObjectKind::Directory, b"");
                let header = Header::parse(&marker, self.layout).expect("a header just written");
                let md5 = crate::store::content_md5(&marker);
                let metadata = metadata(&AttrsBinding::of(&header).with_body_md5(md5));
                self.store.put(key, Bytes::from(marker), &metadata).await?;
            }
            None => return Ok(Binding::Invalid("not an object of ours".into())),
        }
        Ok(Binding::BoundNow)
    }

    /// Replaces the volume config with `config` (after a key change): the data is untouched,
    /// only the wrapped master keys change. The main object first, then its copy, by two
    /// requests: a crash between them leaves the copy one change behind, which
    /// `fsck --repair-config` sees and levels.
    pub async fn write_config(
        store: &dyn ObjectStore,
        config: &VolumeConfig,
    ) -> Result<(), VolumeError> {
        let json = Bytes::from(config.to_json());
        store
            .put(CONFIG_KEY, json.clone(), &Metadata::new())
            .await?;
        store.put(CONFIG_COPY_KEY, json, &Metadata::new()).await?;
        Ok(())
    }

    /// Creates a volume config at the store's prefix with one slot for `user_key`. Refuses
    /// if a volume exists there, and, unless `force`, if the prefix holds any other object.
    pub async fn init(
        store: &dyn ObjectStore,
        location: &str,
        user_key: &UserKey,
        key_source: KeySource,
        shape: VolumeShape,
        force: bool,
    ) -> Result<(VolumeConfig, MasterKey), VolumeError> {
        let (config, master) = VolumeConfig::create_with_format(
            user_key,
            key_source,
            shape.segment_size,
            shape.encrypt_names,
            shape.object_format,
        )?;
        Self::create(store, location, &config, force).await?;
        Ok((config, master))
    }

    /// Writes a new volume's config (both copies). Refuses if a volume exists there, and,
    /// unless `force`, if the prefix holds any other object.
    pub async fn create(
        store: &dyn ObjectStore,
        location: &str,
        config: &VolumeConfig,
        force: bool,
    ) -> Result<(), VolumeError> {
        for key in [CONFIG_KEY, CONFIG_COPY_KEY] {
            match store.head(key).await {
                Ok(_) => {
                    return Err(VolumeError::AlreadyInitialised {
                        location: location.to_string(),
                    });
                }
                Err(e) if e.kind == StoreErrorKind::NotFound => {}
                Err(e) => return Err(e.into()),
            }
        }
        if !force {
            let page = store.list_page("", None, None).await?;
            if let Some(first) = page.objects.first() {
                return Err(VolumeError::NotEmpty {
                    location: location.to_string(),
                    count: page.objects.len(),
                    example: first.key.clone(),
                });
            }
        }
        Self::write_config(store, config).await
    }
}

/// What one copy of the volume config holds.
#[derive(Debug)]
pub enum ConfigCopy {
    Missing,
    /// Present but not a config this build reads (the reason).
    Unreadable(String),
    /// The parsed config.
    Read(Box<VolumeConfig>),
}

impl ConfigCopy {
    fn describe(&self) -> String {
        match self {
            ConfigCopy::Missing => "missing".into(),
            ConfigCopy::Unreadable(why) => format!("unreadable ({why})"),
            ConfigCopy::Read(..) => "readable".into(),
        }
    }
}

/// Reads one copy of the config; only store failures other than "not found" are errors.
pub async fn read_config_copy(
    store: &dyn ObjectStore,
    key: &str,
) -> Result<ConfigCopy, StoreError> {
    let info = match store.head(key).await {
        Ok(info) => info,
        Err(e) if e.kind == StoreErrorKind::NotFound => return Ok(ConfigCopy::Missing),
        Err(e) => return Err(e),
    };
    if info.size == 0 || info.size > MAX_CONFIG_SIZE {
        return Ok(ConfigCopy::Unreadable(format!(
            "the object has {} bytes",
            info.size
        )));
    }
    let body = match store.get_range(key, 0..info.size, None).await {
        Ok(r) => r.body.collect().await?,
        Err(e) if e.kind == StoreErrorKind::NotFound => return Ok(ConfigCopy::Missing),
        Err(e) => return Err(e),
    };
    Ok(match VolumeConfig::from_json(&body) {
        Ok(config) => ConfigCopy::Read(Box::new(config)),
        Err(e) => ConfigCopy::Unreadable(e.to_string()),
    })
}

/// Reads and parses the volume config at the store's prefix: its main object, or when that
/// is missing or unreadable its copy (with a warning that says how to repair the other).
pub async fn read_config(
    store: &dyn ObjectStore,
    location: &str,
) -> Result<VolumeConfig, VolumeError> {
    let primary = read_config_copy(store, CONFIG_KEY).await?;
    if let ConfigCopy::Read(config) = primary {
        return Ok(*config);
    }
    let copy = read_config_copy(store, CONFIG_COPY_KEY).await?;
    match (primary, copy) {
        (primary, ConfigCopy::Read(config)) => {
            tracing::warn!(
                "the volume config {CONFIG_KEY} at {location} is {}: using its copy \
                 {CONFIG_COPY_KEY}; `s3cryptfs fsck --repair-config` writes it again",
                primary.describe()
            );
            Ok(*config)
        }
        (ConfigCopy::Missing, ConfigCopy::Missing) => Err(VolumeError::NoVolume {
            location: location.to_string(),
        }),
        (ConfigCopy::Unreadable(why), _) | (_, ConfigCopy::Unreadable(why)) => {
            Err(VolumeError::BadConfig {
                location: location.to_string(),
                source: CryptoError::InvalidConfig(why),
            })
        }
        (ConfigCopy::Read(..), _) => unreachable!("returned above"),
    }
}

/// What `init` fixes for the life of a volume.
#[derive(Debug, Clone, Copy)]
pub struct VolumeShape {
    /// Plaintext segment size.
    pub segment_size: u32,
    /// Whether names are encrypted.
    pub encrypt_names: bool,
    /// Object format (1 or 2).
    pub object_format: u32,
}
