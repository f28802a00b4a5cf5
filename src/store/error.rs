//! Store errors: a small set of kinds that the filesystem maps to errno in one place.

use std::fmt;

/// What went wrong, as far as the callers of the store need to know.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StoreErrorKind {
    /// NoSuchKey, NoSuchUpload, 404.
    NotFound,
    /// The bucket does not exist.
    NoSuchBucket,
    /// AccessDenied, 403, bad credentials.
    AccessDenied,
    /// If-Match / If-None-Match failed (412), or a conflicting write (409).
    PreconditionFailed,
    /// The requested range starts past the end of the object (416).
    InvalidRange,
    /// SlowDown / 503 after the SDK's retries ran out.
    Throttled,
    /// Timeouts, dropped connections, 5xx after retries: may work later.
    Transient,
    /// Anything else: the request itself is wrong or unsupported.
    Fatal,
}

impl StoreErrorKind {
    /// A short stable name (for metrics labels).
    pub fn name(self) -> &'static str {
        match self {
            StoreErrorKind::NotFound => "not_found",
            StoreErrorKind::NoSuchBucket => "no_such_bucket",
            StoreErrorKind::AccessDenied => "access_denied",
            StoreErrorKind::PreconditionFailed => "precondition_failed",
            StoreErrorKind::InvalidRange => "invalid_range",
            StoreErrorKind::Throttled => "throttled",
            StoreErrorKind::Transient => "transient",
            StoreErrorKind::Fatal => "fatal",
        }
    }
}

#[derive(Debug, Clone)]
pub struct StoreError {
    pub kind: StoreErrorKind,
    pub message: String,
}

impl StoreError {
    pub fn new(kind: StoreErrorKind, message: impl Into<String>) -> Self {
        Self {
            kind,
            message: message.into(),
        }
    }

    pub fn transient(message: impl Into<String>) -> Self {
        Self::new(StoreErrorKind::Transient, message)
    }

    pub fn fatal(message: impl Into<String>) -> Self {
        Self::new(StoreErrorKind::Fatal, message)
    }

    pub fn is_not_found(&self) -> bool {
        self.kind == StoreErrorKind::NotFound
    }

    /// Classifies an S3 error code and HTTP status.
    pub fn from_s3(code: Option<&str>, status: Option<u16>, message: String) -> Self {
        use StoreErrorKind::*;
        let kind = match (code, status) {
            (Some("NoSuchBucket"), _) => NoSuchBucket,
            (Some("NoSuchKey" | "NoSuchUpload" | "NotFound"), _) | (_, Some(404)) => NotFound,
            (
                Some(
                    "AccessDenied"
                    | "InvalidAccessKeyId"
                    | "SignatureDoesNotMatch"
                    | "AllAccessDisabled"
                    | "ExpiredToken"
                    | "InvalidToken",
                ),
                _,
            )
            | (_, Some(401 | 403)) => AccessDenied,
            (Some("PreconditionFailed" | "ConditionalRequestConflict"), _)
            | (_, Some(409 | 412)) => PreconditionFailed,
            (Some("InvalidRange"), _) | (_, Some(416)) => InvalidRange,
            (
                Some("SlowDown" | "Throttling" | "ThrottlingException" | "RequestLimitExceeded"),
                _,
            )
            | (_, Some(429 | 503)) => Throttled,
            (Some("InternalError" | "RequestTimeout"), _) => Transient,
            (_, Some(s)) if s >= 500 => Transient,
            _ => Fatal,
        };
        Self::new(kind, message)
    }

    /// The errno a filesystem call should fail with.
    pub fn errno(&self) -> i32 {
        match self.kind {
            StoreErrorKind::NotFound => libc::ENOENT,
            StoreErrorKind::AccessDenied => libc::EACCES,
            StoreErrorKind::PreconditionFailed => libc::EAGAIN,
            _ => libc::EIO,
        }
    }
}

impl fmt::Display for StoreError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let what = match self.kind {
            StoreErrorKind::NotFound => "not found",
            StoreErrorKind::NoSuchBucket => "bucket does not exist",
            StoreErrorKind::AccessDenied => "access denied",
            StoreErrorKind::PreconditionFailed => "precondition failed",
            StoreErrorKind::InvalidRange => "invalid range",
            StoreErrorKind::Throttled => "throttled by the server",
            StoreErrorKind::Transient => "temporary failure",
            StoreErrorKind::Fatal => "request failed",
        };
        write!(f, "{what}: {}", self.message)
    }
}

impl std::error::Error for StoreError {}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn classifies_codes_and_statuses() {
        let k = |c: Option<&str>, s: Option<u16>| StoreError::from_s3(c, s, String::new()).kind;
        assert_eq!(k(Some("NoSuchKey"), Some(404)), StoreErrorKind::NotFound);
        assert_eq!(k(None, Some(404)), StoreErrorKind::NotFound);
        assert_eq!(
            k(Some("NoSuchBucket"), Some(404)),
            StoreErrorKind::NoSuchBucket
        );
        assert_eq!(
            k(Some("AccessDenied"), Some(403)),
            StoreErrorKind::AccessDenied
        );
        assert_eq!(k(None, Some(403)), StoreErrorKind::AccessDenied);
        assert_eq!(k(Some("SlowDown"), Some(503)), StoreErrorKind::Throttled);
        assert_eq!(
            k(Some("InternalError"), Some(500)),
            StoreErrorKind::Transient
        );
        assert_eq!(k(None, Some(502)), StoreErrorKind::Transient);
        assert_eq!(
            k(Some("PreconditionFailed"), Some(412)),
            StoreErrorKind::PreconditionFailed
        );
        assert_eq!(
            k(Some("InvalidRange"), Some(416)),
            StoreErrorKind::InvalidRange
        );
        assert_eq!(k(Some("EntityTooSmall"), Some(400)), StoreErrorKind::Fatal);
    }

    #[test]
    fn maps_to_errno() {
        let e = |k| StoreError::new(k, "").errno();
        assert_eq!(e(StoreErrorKind::NotFound), libc::ENOENT);
        assert_eq!(e(StoreErrorKind::AccessDenied), libc::EACCES);
        assert_eq!(e(StoreErrorKind::Throttled), libc::EIO);
        assert_eq!(e(StoreErrorKind::Transient), libc::EIO);
    }
}
