//! The mounted filesystem: the core (`filesystem::FsCore`), its inode table, the in-place changes of
//! existing files (`modify`), and the FUSE adapter that serves it.

mod error;
mod filesystem;
mod fuse;
mod inodes;
mod modify;

pub use error::{FsError, FsResult};
pub use filesystem::{Attr, AttrChange, Caller, DirEntry, FsCore, FsOptions};
pub use fuse::{FuseAdapter, MAX_READAHEAD, MAX_WRITE, NameTotals, raise_read_ahead};
pub use inodes::{NodeKind, ROOT_INO};
