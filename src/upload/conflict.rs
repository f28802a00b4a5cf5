//! Saves that never overwrite, unseen, what another mount saved (docs/SEMANTICS.md, "Several
//! mounts on one volume").
//!
//! A save expects a state of its key: nothing there (a file this mount created) or the
//! version the save was based on. It sends that expectation as a condition
//! (`If-None-Match: *`, `If-Match`); where the mount's probe found the server ignores it,
//! a HEAD checks it just before the save, and another just after reports a save that may
//! have been lost in the moment between. When the key holds something else, both versions
//! are kept: a single-PUT save goes to the conflict name beside the file; a multipart upload
//! cannot be completed under another key, so the version found is copied to the conflict
//! name first and the upload completed over it. On a server that ends a key's uploads when
//! the key is written (Garage), uploads run under a hidden key instead, and [`place`] copies
//! the completed object in, guarded like a PUT.

use bytes::Bytes;
use tracing::warn;

use super::WriteError;
use crate::store::{
    CompletedPart, ConditionSupport, Metadata, ObjectStore, PutResult, StoreError, StoreErrorKind,
    WriteCondition,
};

/// What a save does when its key no longer holds what it expects.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum OnConflict {
    /// Keep both versions: one under the name, one under the conflict name.
    #[default]
    KeepBoth,
    /// Fail the save (close/fsync get EIO); the name keeps the other mount's version.
    Error,
}

/// Where the version that loses the name goes: `name.conflict-<host>-<time>` in the same
/// directory, as the volume encodes names.
#[derive(Debug, Clone)]
pub struct ConflictName {
    pub key: String,
    /// A long encrypted name's side object, written first.
    pub side: Option<(String, Bytes)>,
}

/// What a save expects to find under its key, and what it does otherwise.
#[derive(Debug, Clone)]
pub struct SaveGuard {
    pub expect: WriteCondition,
    /// Conflict names to try in turn, each free one taken only if nothing is there (two
    /// mounts on one host can conflict on one file in the same second).
    pub conflict: Vec<ConflictName>,
    pub policy: OnConflict,
    /// Where a record goes if the save may have been replaced unseen (hidden; fsck lists it).
    pub lost_update_record: String,
}

/// A conflict that a save resolved by keeping both versions.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Conflict {
    /// The key of the conflict copy.
    pub kept_at: String,
    /// Whether the copy holds this save (a single PUT) or the version found under the name.
    pub holds_this_save: bool,
}

/// The key is not as the save expected, and the policy says to fail.
fn refused(key: &str, expect: &WriteCondition) -> WriteError {
    let expected = match expect {
        WriteCondition::Absent => "no file".to_string(),
        WriteCondition::Matches(etag) => format!("version {etag}"),
    };
    WriteError::Conflict(format!(
        "{key}: another mount saved or removed it first (this save expected {expected}); \
         not overwritten (--on-conflict=error)"
    ))
}

/// Whether `error` says the key does not hold what the condition expected.
fn is_condition_refused(error: &StoreError, expect: &WriteCondition) -> bool {
    match error.kind {
        StoreErrorKind::PreconditionFailed => true,
        // AWS answers If-Match on a missing key with 404.
        StoreErrorKind::NotFound => matches!(expect, WriteCondition::Matches(_)),
        _ => false,
    }
}

/// Whether the key holds what `expect` says (the check where the server ignores conditions).
async fn holds(
    store: &dyn ObjectStore,
    key: &str,
    expect: &WriteCondition,
) -> Result<bool, StoreError> {
    match (store.head(key).await, expect) {
        (Err(e), WriteCondition::Absent) if e.is_not_found() => Ok(true),
        (Err(e), WriteCondition::Matches(_)) if e.is_not_found() => Ok(false),
        (Err(e), _) => Err(e),
        (Ok(_), WriteCondition::Absent) => Ok(false),
        (Ok(info), WriteCondition::Matches(etag)) => Ok(info.etag.as_deref() == Some(etag)),
    }
}

/// After a save the server did not check: anything but this save under the key means another
/// mount saved in the same moment (after this one's check before), and one of the two saves
/// may be lost. Reported (log line, metric, and a record under the hidden prefix that fsck
/// lists); whether the save is still under the key.
async fn check_after(store: &dyn ObjectStore, key: &str, saved: &PutResult, record: &str) -> bool {
    let now = match store.head(key).await {
        Ok(info) => info.etag,
        Err(e) if e.is_not_found() => None,
        Err(e) => {
            warn!(key = %key, "could not check a save the server does not guard: {e}");
            return true;
        }
    };
    if now == saved.etag {
        return true;
    }
    crate::metrics::save_conflict("unguarded");
    warn!(
        key = %key,
        saved = ?saved.etag,
        found = ?now,
        "another mount replaced this file as it was saved, on a server that ignores \
         conditional writes: one of the two saves may be lost"
    );
    let mut facts = Metadata::new();
    facts.insert("key".to_string(), key.to_string());
    facts.insert("saved".to_string(), saved.etag.clone().unwrap_or_default());
    facts.insert("found".to_string(), now.unwrap_or_default());
    if let Err(e) = store.put(record, Bytes::new(), &facts).await {
        warn!(key = %key, "could not record the possible lost update for fsck: {e}");
    }
    false
}

/// A single-PUT save of `body` under `key`.
pub(super) async fn put(
    store: &dyn ObjectStore,
    support: &ConditionSupport,
    key: &str,
    body: Bytes,
    metadata: &Metadata,
    guard: Option<&SaveGuard>,
) -> Result<(PutResult, Option<Conflict>), WriteError> {
    let Some(guard) = guard else {
        return Ok((store.put(key, body, metadata).await?, None));
    };
    let expect = &guard.expect;
    let enforced = match expect {
        WriteCondition::Absent => support.put_absent,
        WriteCondition::Matches(_) => support.put_matches,
    };
    if enforced || holds(store, key, expect).await? {
        match store
            .put_if(key, body.clone(), metadata, Some(expect))
            .await
        {
            // Replaced at once by another mount: this save is kept as if it had lost.
            Ok(put)
                if !enforced && !check_after(store, key, &put, &guard.lost_update_record).await => {
            }
            Ok(put) => return Ok((put, None)),
            Err(e) if is_condition_refused(&e, expect) => {}
            Err(e) => return Err(e.into()),
        }
    }
    if guard.policy == OnConflict::Error {
        crate::metrics::save_conflict("refused");
        return Err(refused(key, expect));
    }
    for name in &guard.conflict {
        if !support.put_absent && !holds(store, &name.key, &WriteCondition::Absent).await? {
            continue;
        }
        write_side(store, name).await?;
        let put = match store
            .put_if(
                &name.key,
                body.clone(),
                metadata,
                Some(&WriteCondition::Absent),
            )
            .await
        {
            Ok(put) => put,
            Err(e) if e.kind == StoreErrorKind::PreconditionFailed => continue,
            Err(e) => return Err(e.into()),
        };
        return Ok(kept_aside(key, name, put));
    }
    Err(no_free_name(key))
}

/// This save, meant for `key`, was kept under the conflict name `name`.
fn kept_aside(key: &str, name: &ConflictName, saved: PutResult) -> (PutResult, Option<Conflict>) {
    crate::metrics::save_conflict("kept_both");
    warn!(
        key = %key,
        conflict = %name.key,
        "another mount saved or removed this file first: this save was kept under the \
         conflict name beside it"
    );
    let conflict = Conflict {
        kept_at: name.key.clone(),
        holds_this_save: true,
    };
    (saved, Some(conflict))
}

fn no_free_name(key: &str) -> WriteError {
    WriteError::Conflict(format!(
        "{key}: another mount saved it first, and every conflict name beside it is taken"
    ))
}

/// Completes a multipart upload of `key`.
pub(super) async fn complete(
    store: &dyn ObjectStore,
    support: &ConditionSupport,
    key: &str,
    upload_id: &str,
    parts: &[CompletedPart],
    guard: Option<&SaveGuard>,
) -> Result<(PutResult, Option<Conflict>), WriteError> {
    let Some(guard) = guard else {
        return Ok((store.complete_multipart(key, upload_id, parts).await?, None));
    };
    let mut expect = guard.expect.clone();
    let mut conflict = None;
    for _round in 0..3 {
        let enforced = match expect {
            WriteCondition::Absent => support.complete_absent,
            WriteCondition::Matches(_) => support.complete_matches,
        };
        if enforced || holds(store, key, &expect).await? {
            match store
                .complete_multipart_if(key, upload_id, parts, Some(&expect))
                .await
            {
                Ok(done) => {
                    // Replaced at once: the parts are gone with the upload, so this can only
                    // be reported.
                    if !enforced {
                        check_after(store, key, &done, &guard.lost_update_record).await;
                    }
                    return Ok((done, conflict));
                }
                Err(e) if is_condition_refused(&e, &expect) => {}
                Err(e) => return Err(e.into()),
            }
        }
        if guard.policy == OnConflict::Error {
            crate::metrics::save_conflict("refused");
            return Err(refused(key, &expect));
        }
        if conflict.is_some() {
            // Changed again since it was kept aside: the conflict name holds one version
            // already, and another round would overwrite it.
            return Err(WriteError::Conflict(format!(
                "{key}: other mounts kept saving it while this save tried to complete"
            )));
        }
        // Keep what is under the name now, then complete over exactly that.
        match store.head(key).await {
            Ok(found) => {
                let Some(etag) = found.etag else {
                    return Err(WriteError::Conflict(format!(
                        "{key}: the server gave no ETag for the version found"
                    )));
                };
                let mut free = None;
                for name in &guard.conflict {
                    if holds(store, &name.key, &WriteCondition::Absent).await? {
                        free = Some(name);
                        break;
                    }
                }
                let name = free.ok_or_else(|| no_free_name(key))?;
                write_side(store, name).await?;
                store.copy(key, &name.key, None).await?;
                crate::metrics::save_conflict("kept_both");
                warn!(
                    key = %key,
                    conflict = %name.key,
                    "another mount saved this file first: its version was kept under the \
                     conflict name, and this save took the name"
                );
                conflict = Some(Conflict {
                    kept_at: name.key.clone(),
                    holds_this_save: false,
                });
                expect = WriteCondition::Matches(etag);
            }
            // Removed by another mount: nothing to keep; this save takes the name again.
            Err(e) if e.is_not_found() => expect = WriteCondition::Absent,
            Err(e) => return Err(e.into()),
        }
    }
    Err(WriteError::Conflict(format!(
        "{key}: other mounts kept saving or removing it while this save tried to complete"
    )))
}

/// Puts a version completed under another key (`uploaded`) in its place under `key`, by a
/// server-side copy, guarded like a single PUT: CopyObject takes no condition on its
/// destination, so HEADs check before and after, and the version that loses is this one,
/// copied to the conflict name instead.
pub(super) async fn place(
    store: &dyn ObjectStore,
    uploaded: &str,
    key: &str,
    metadata: &Metadata,
    guard: Option<&SaveGuard>,
) -> Result<(PutResult, Option<Conflict>), WriteError> {
    let Some(guard) = guard else {
        return Ok((store.copy(uploaded, key, Some(metadata)).await?, None));
    };
    if holds(store, key, &guard.expect).await? {
        let copied = store.copy(uploaded, key, Some(metadata)).await?;
        if check_after(store, key, &copied, &guard.lost_update_record).await {
            return Ok((copied, None));
        }
    }
    if guard.policy == OnConflict::Error {
        crate::metrics::save_conflict("refused");
        return Err(refused(key, &guard.expect));
    }
    for name in &guard.conflict {
        if !holds(store, &name.key, &WriteCondition::Absent).await? {
            continue;
        }
        write_side(store, name).await?;
        let copied = store.copy(uploaded, &name.key, Some(metadata)).await?;
        return Ok(kept_aside(key, name, copied));
    }
    Err(no_free_name(key))
}

async fn write_side(store: &dyn ObjectStore, name: &ConflictName) -> Result<(), StoreError> {
    if let Some((key, body)) = &name.side {
        store.put(key, body.clone(), &Metadata::new()).await?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::fault::{Action, FaultStore, Op};
    use crate::store::memory::MemoryStore;
    use std::sync::Arc;

    fn guard(expect: WriteCondition) -> SaveGuard {
        SaveGuard {
            expect,
            conflict: vec![ConflictName {
                key: "f.conflict".to_string(),
                side: None,
            }],
            policy: OnConflict::KeepBoth,
            lost_update_record: ".s3cryptfs/lost-updates/1".to_string(),
        }
    }

    fn body(text: &'static str) -> Bytes {
        Bytes::from_static(text.as_bytes())
    }

    /// Where the server enforces the conditions, a guarded save costs no request more than
    /// an unguarded one.
    #[tokio::test]
    async fn enforced_conditions_cost_no_request() {
        let store = FaultStore::new(Arc::new(MemoryStore::new()));
        let none = Metadata::new();
        let all = ConditionSupport::ALL;
        put(
            &store,
            &all,
            "f",
            body("1"),
            &none,
            Some(&guard(WriteCondition::Absent)),
        )
        .await
        .unwrap();
        let etag = store.head("f").await.unwrap().etag.unwrap();
        let (saved, conflict) = put(
            &store,
            &all,
            "f",
            body("2"),
            &none,
            Some(&guard(WriteCondition::Matches(etag))),
        )
        .await
        .unwrap();
        assert_eq!(conflict, None);
        assert!(saved.etag.is_some());
        assert_eq!(store.calls(Op::Put), 2);
        assert_eq!(store.calls(Op::Head), 1, "only the test's own HEAD");
    }

    /// On a server that ignores conditions, another mount's save that lands between this
    /// save and its check after is found: this save is kept under the conflict name, and a
    /// record says what happened.
    #[tokio::test]
    async fn a_save_replaced_at_once_is_kept_and_recorded() {
        let memory = Arc::new(MemoryStore::new());
        memory.ignore_conditions();
        let store = FaultStore::new(memory.clone());
        // HEAD 1 is the check before (nothing there); HEAD 2, the check after, comes just
        // after another mount's PUT.
        store.on(
            Op::Head,
            2,
            Action::WriteFirst("f".to_string(), body("theirs")),
        );
        let none = Metadata::new();
        let (_, conflict) = put(
            &store,
            &ConditionSupport::default(),
            "f",
            body("ours"),
            &none,
            Some(&guard(WriteCondition::Absent)),
        )
        .await
        .unwrap();
        assert_eq!(
            conflict,
            Some(Conflict {
                kept_at: "f.conflict".to_string(),
                holds_this_save: true
            })
        );
        assert_eq!(memory.object("f").unwrap(), body("theirs"));
        assert_eq!(memory.object("f.conflict").unwrap(), body("ours"));
        let record = memory.head(".s3cryptfs/lost-updates/1").await.unwrap();
        assert_eq!(record.metadata["key"], "f");
        assert_ne!(record.metadata["saved"], record.metadata["found"]);
    }

    /// Without the other mount's save, the same server costs two HEADs and nothing else.
    #[tokio::test]
    async fn ignored_conditions_cost_two_heads() {
        let memory = Arc::new(MemoryStore::new());
        memory.ignore_conditions();
        let store = FaultStore::new(memory.clone());
        let (_, conflict) = put(
            &store,
            &ConditionSupport::default(),
            "f",
            body("ours"),
            &Metadata::new(),
            Some(&guard(WriteCondition::Absent)),
        )
        .await
        .unwrap();
        assert_eq!(conflict, None);
        assert_eq!((store.calls(Op::Head), store.calls(Op::Put)), (2, 1));
        assert_eq!(memory.keys(), ["f"]);
    }
}
