//! The mounted filesystem: the core (`filesystem`), its inode table, the name layer, and the
//! FUSE adapter that serves it.

mod filesystem;
mod fuse;
mod inodes;
mod modify;
pub mod names;

pub use filesystem::{Attr, DirEntry, Filesystem, FsOptions, FsResult};
pub use fuse::{FuseAdapter, MAX_READAHEAD, MAX_WRITE, raise_read_ahead};
pub use inodes::{NodeKind, ROOT_INO};
