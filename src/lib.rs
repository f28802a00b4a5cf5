//! s3cryptfs: an S3 bucket mounted as a directory, with everything encrypted on the client.
//!
//! Data flows one way: `fs` (FUSE adapter and filesystem core) → `read` / `upload`
//! pipelines → `crypto` (object format, keys) → `store` (the only module that talks to S3).

pub mod cli;
pub mod crypto;
pub mod store;
