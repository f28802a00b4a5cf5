//! The end of a multipart save: the upload completed under the file's key (guarded, see
//! `conflict`), or completed where it ran (a hidden key, or the key before a rename) and then
//! copied into place.

use tracing::warn;

use super::conflict::{self, Conflict};
use super::{ObjectWriter, WriteError};
use crate::store::{CompletedPart, PutResult};

impl ObjectWriter {
    /// Completes the upload `upload_id` of `parts` and puts the object under the file's key.
    /// On an error the upload is still in `self.multipart`, for `abort`.
    pub(super) async fn finish_multipart(
        &mut self,
        upload_id: &str,
        parts: &[CompletedPart],
    ) -> Result<(PutResult, Option<Conflict>), WriteError> {
        let ctx = self.ctx.clone();
        let store = ctx.store.as_ref();
        // After a rename the guard's expectation was the old name's.
        let guard = self.guard.clone().filter(|_| !self.renamed);
        let Some(final_key) = self.final_key.clone() else {
            let done = conflict::complete(
                store,
                &ctx.conditions,
                &self.key,
                upload_id,
                parts,
                guard.as_ref(),
            )
            .await?;
            self.multipart = None;
            return Ok(done);
        };
        store
            .complete_multipart(&self.key, upload_id, parts)
            .await?;
        self.multipart = None;
        let placed = conflict::place(
            store,
            &self.key,
            &final_key,
            &self.metadata(&self.binding),
            guard.as_ref(),
        )
        .await;
        // If the copy failed, the object stays where it is (fsck lists it), unless it was
        // refused: then nothing of it is kept.
        if matches!(placed, Ok(_) | Err(WriteError::Conflict(_)))
            && let Err(e) = store.delete(&self.key).await
        {
            warn!(key = %self.key, "could not remove the key it was uploaded under: {e}");
        }
        let placed = placed?;
        self.key = final_key;
        self.final_key = None;
        Ok(placed)
    }
}
