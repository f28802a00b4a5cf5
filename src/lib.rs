//! s3cryptfs: an S3 bucket mounted as a directory, with everything encrypted on the client.
//!
//! Data flows one way: `fs` (FUSE adapter and filesystem core) → `read` / `upload`
//! pipelines → `crypto` (object format, keys) → `store` (the only module that talks to S3).
//! `volume` ties a store to its config and key; `cli` is the command line.

pub mod cli;
pub mod crypto;
pub mod fs;
pub mod metrics;
pub mod read;
pub mod store;
pub mod upload;
pub mod volume;
