//! s3cryptfs: an S3 bucket mounted as a directory, with everything encrypted on the client.
//!
//! Data flows one way, and modules import only downward (a module may skip layers):
//!
//! - `cli`: the command line;
//! - `fs`: the FUSE adapter, then the filesystem core;
//! - `read`, `upload` and `fs::modify`: reading, streaming new versions, changing in place;
//! - `volume`: a store, its config and its unlocked key;
//! - `object_keys`: how file names become object keys (plain or encrypted);
//! - `crypto` (object format, keys, name encryption) and `store` (the only module that talks
//!   to S3), which import nothing of the above.

pub mod cli;
pub mod crypto;
pub mod fs;
pub mod metrics;
pub mod object_keys;
pub mod read;
pub mod store;
pub mod upload;
pub mod volume;
