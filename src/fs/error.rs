//! The one error type of the filesystem core: the errno the application sees, and what the
//! log says about it.
//!
//! An error is logged once, where its reply is sent (the FUSE adapter), or where it ends
//! without a reply (a release, a shutdown, a delayed attribute save): never where it happens.
//! Expected answers (ENOENT for a lookup, EEXIST, ENOTEMPTY, ...) carry no reason and are
//! logged only at debug level; refusals an operator may want to understand are `info`;
//! failures that lose a save, or data that fails verification, are `warn`.

use std::fmt;

use tracing::Level;

use crate::read::ReadError;
use crate::store::{StoreError, StoreErrorKind};
use crate::upload::WriteError;

#[derive(Debug, Clone)]
pub struct FsError {
    errno: i32,
    level: Level,
    /// Why, with the object key or file it concerns; `None` for an expected answer.
    reason: Option<String>,
}

pub type FsResult<T> = Result<T, FsError>;

impl FsError {
    /// An expected answer that needs no explanation (ENOENT, EEXIST, ENOTDIR, ...).
    pub const fn answer(errno: i32) -> Self {
        Self {
            errno,
            level: Level::DEBUG,
            reason: None,
        }
    }

    /// A refusal worth a line in the log (`info`).
    pub fn refused(errno: i32, reason: impl Into<String>) -> Self {
        Self {
            errno,
            level: Level::INFO,
            reason: Some(reason.into()),
        }
    }

    /// A failure: a save that did not happen, data that does not verify (`warn`).
    pub fn failed(errno: i32, reason: impl Into<String>) -> Self {
        Self {
            errno,
            level: Level::WARN,
            reason: Some(reason.into()),
        }
    }

    /// A store request `op` on `key` that failed: a missing object is an answer (ENOENT),
    /// anything else a failure with the store's own errno (EACCES, EAGAIN, EIO).
    pub fn store(op: &str, key: &str, e: StoreError) -> Self {
        if e.kind == StoreErrorKind::NotFound {
            return Self::answer(e.errno());
        }
        Self::failed(e.errno(), format!("{op} {key} failed: {e}"))
    }

    /// The errno the application sees.
    pub fn errno(&self) -> i32 {
        self.errno
    }

    /// Whether the application sees `errno`.
    pub fn is(&self, errno: i32) -> bool {
        self.errno == errno
    }

    /// The same error, with `context` (what was being done) before its reason.
    pub fn context(mut self, context: impl fmt::Display) -> Self {
        self.reason = Some(match self.reason.take() {
            Some(reason) => format!("{context}: {reason}"),
            None => context.to_string(),
        });
        self
    }

    /// Logs the error at its level, as the reply to `request` (the one place it is logged).
    pub fn log(&self, request: &str) {
        let errno = self.errno;
        match (&self.reason, self.level) {
            (None, _) => tracing::debug!(errno, "{request}"),
            (Some(reason), Level::WARN | Level::ERROR) => {
                tracing::warn!(errno, "{request}: {reason}")
            }
            (Some(reason), Level::INFO) => tracing::info!(errno, "{request}: {reason}"),
            (Some(reason), _) => tracing::debug!(errno, "{request}: {reason}"),
        }
    }
}

impl fmt::Display for FsError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.reason {
            Some(reason) => write!(f, "{reason} (errno {})", self.errno),
            None => write!(f, "errno {}", self.errno),
        }
    }
}

impl From<ReadError> for FsError {
    fn from(e: ReadError) -> Self {
        Self::failed(e.errno(), e.to_string())
    }
}

impl From<WriteError> for FsError {
    fn from(e: WriteError) -> Self {
        Self::failed(e.errno(), e.to_string())
    }
}

impl From<std::io::Error> for FsError {
    fn from(e: std::io::Error) -> Self {
        Self::failed(e.raw_os_error().unwrap_or(libc::EIO), e.to_string())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_missing_object_is_an_answer_and_other_store_errors_are_failures() {
        let missing = FsError::store("HEAD", "k", StoreError::new(StoreErrorKind::NotFound, "x"));
        assert!(missing.is(libc::ENOENT));
        assert!(missing.reason.is_none());
        let denied = FsError::store(
            "PUT",
            "k",
            StoreError::new(StoreErrorKind::AccessDenied, "x"),
        );
        assert_eq!(denied.errno(), libc::EACCES);
        assert_eq!(denied.level, Level::WARN);
        assert!(denied.to_string().contains("PUT k failed"));
    }

    #[test]
    fn context_keeps_the_errno() {
        let e = FsError::answer(libc::ENOSPC).context("staging f");
        assert!(e.is(libc::ENOSPC));
        assert_eq!(e.to_string(), "staging f (errno 28)");
    }
}
