//! Which conditional writes a server honours, found out by trying them.
//!
//! AWS S3 honours `If-None-Match: *` and `If-Match` on PutObject and CompleteMultipartUpload;
//! other servers honour some, or none, and an ignored condition looks exactly like a
//! successful write. So a mount tries each on a scratch key under the volume's hidden
//! prefix, once, and logs the result: a save only relies on a condition the server was
//! seen to enforce (docs/STORE.md, "Conditional writes").

use bytes::Bytes;
use std::fmt;

use super::{CompletedPart, Metadata, ObjectStore, StoreError, StoreErrorKind, WriteCondition};

/// What the probe found.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ConditionSupport {
    /// PutObject refuses to replace an existing key under `If-None-Match: *`.
    pub put_absent: bool,
    /// PutObject refuses to replace another version under `If-Match`.
    pub put_matches: bool,
    /// CompleteMultipartUpload, likewise for `If-None-Match: *`.
    pub complete_absent: bool,
    /// CompleteMultipartUpload, likewise for `If-Match`.
    pub complete_matches: bool,
    /// A multipart upload goes on when its key is written meanwhile (Garage ends it: a save
    /// by another mount would make this one's upload fail).
    pub uploads_survive_overwrite: bool,
}

impl ConditionSupport {
    /// What AWS S3 does.
    pub const ALL: Self = Self {
        put_absent: true,
        put_matches: true,
        complete_absent: true,
        complete_matches: true,
        uploads_survive_overwrite: true,
    };

    /// Every condition a save uses is enforced.
    pub fn complete(&self) -> bool {
        self.put_absent && self.put_matches && self.complete_absent && self.complete_matches
    }
}

impl fmt::Display for ConditionSupport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let yes = |b: bool| if b { "enforced" } else { "ignored" };
        write!(
            f,
            "PutObject If-None-Match {}, If-Match {}; CompleteMultipartUpload If-None-Match {}, \
             If-Match {}; multipart uploads {} a write of their key",
            yes(self.put_absent),
            yes(self.put_matches),
            yes(self.complete_absent),
            yes(self.complete_matches),
            if self.uploads_survive_overwrite {
                "survive"
            } else {
                "end at"
            }
        )
    }
}

/// An ETag no object has.
const NO_SUCH_VERSION: &str = "\"00000000000000000000000000000000\"";

/// Tries each condition on `scratch_key` (created, overwritten and deleted again; about ten
/// requests). An error other than the refusal of a condition ends the probe.
pub async fn probe(
    store: &dyn ObjectStore,
    scratch_key: &str,
) -> Result<ConditionSupport, StoreError> {
    let result = try_each(store, scratch_key).await;
    // Whatever happened, leave nothing behind.
    let _ = store.delete(scratch_key).await;
    if let Ok(uploads) = store.list_uploads(scratch_key).await {
        for u in uploads.into_iter().filter(|u| u.key == scratch_key) {
            let _ = store.abort_multipart(&u.key, &u.upload_id).await;
        }
    }
    result
}

async fn try_each(store: &dyn ObjectStore, key: &str) -> Result<ConditionSupport, StoreError> {
    let none = Metadata::new();
    let body = || Bytes::from_static(b"probe");
    let absent = Some(&WriteCondition::Absent);
    let stale = WriteCondition::Matches(NO_SUCH_VERSION.to_string());
    store.put(key, body(), &none).await?;
    let put_absent = refused(store.put_if(key, body(), &none, absent).await)?;
    let put_matches = refused(store.put_if(key, body(), &none, Some(&stale)).await)?;
    let complete_absent = refused(complete_one_part(store, key, absent).await)?;
    let complete_matches = refused(complete_one_part(store, key, Some(&stale)).await)?;
    let uploads_survive_overwrite = upload_survives_overwrite(store, key).await?;
    Ok(ConditionSupport {
        put_absent,
        put_matches,
        complete_absent,
        complete_matches,
        uploads_survive_overwrite,
    })
}

/// Whether a part can still be added to an upload of `key` after `key` was written.
async fn upload_survives_overwrite(store: &dyn ObjectStore, key: &str) -> Result<bool, StoreError> {
    let upload_id = store.create_multipart(key, &Metadata::new()).await?;
    store
        .put(key, Bytes::from_static(b"probe"), &Metadata::new())
        .await?;
    let part = store
        .upload_part(key, &upload_id, 1, Bytes::from_static(b"probe"))
        .await;
    let _ = store.abort_multipart(key, &upload_id).await;
    match part {
        Ok(_) => Ok(true),
        Err(e) if e.is_not_found() => Ok(false),
        Err(e) => Err(e),
    }
}

/// A one-part multipart upload of `key`, completed under `condition`; aborted if refused.
async fn complete_one_part(
    store: &dyn ObjectStore,
    key: &str,
    condition: Option<&WriteCondition>,
) -> Result<(), StoreError> {
    let upload_id = store.create_multipart(key, &Metadata::new()).await?;
    let part: CompletedPart = store
        .upload_part(key, &upload_id, 1, Bytes::from_static(b"probe"))
        .await?;
    let done = store
        .complete_multipart_if(key, &upload_id, &[part], condition)
        .await;
    if done.is_err() {
        let _ = store.abort_multipart(key, &upload_id).await;
    }
    done.map(|_| ())
}

/// Whether a write that should have been refused was: `Ok(true)` refused, `Ok(false)`
/// written anyway, `Err` for any other failure.
fn refused<T>(result: Result<T, StoreError>) -> Result<bool, StoreError> {
    match result {
        Ok(_) => Ok(false),
        Err(e) if e.kind == StoreErrorKind::PreconditionFailed => Ok(true),
        Err(e) => Err(e),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::memory::MemoryStore;

    #[tokio::test]
    async fn a_strict_store_enforces_everything_and_keeps_nothing() {
        let store = MemoryStore::new();
        let found = probe(&store, ".s3cryptfs/probe/x").await.unwrap();
        assert_eq!(found, ConditionSupport::ALL, "{found}");
        assert!(store.keys().is_empty());
        assert!(store.list_uploads("").await.unwrap().is_empty());
    }

    #[tokio::test]
    async fn a_store_that_ignores_conditions_is_seen_to() {
        let store = MemoryStore::new();
        store.ignore_conditions();
        store.drop_uploads_on_overwrite();
        let found = probe(&store, ".s3cryptfs/probe/x").await.unwrap();
        assert_eq!(found, ConditionSupport::default());
        assert!(store.keys().is_empty());
        assert!(store.list_uploads("").await.unwrap().is_empty());
    }
}
