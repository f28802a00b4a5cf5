//! Parts in flight: a new file's part buffers (each holding its share of the memory
//! budget), the tasks that upload full parts, and the wait for whichever finishes first when
//! `--parts-in-flight` buffers are out. A part's buffer goes back to the pool when its
//! upload is done.

use std::sync::atomic::Ordering;

use bytes::Bytes;
use tokio::task::JoinHandle;
use tracing::warn;

use super::budget::Reservation;
use super::parts::part_size;
use super::sent_copy::CopyTarget;
use super::{Multipart, ObjectWriter, WriteError};
use crate::store::{CompletedPart, StoreError};

impl ObjectWriter {
    /// Ciphertext bytes of the part being filled (the part size grows with the part number).
    pub(super) fn part_limit(&self) -> usize {
        part_size(self.part_number, self.ctx.layout, self.ctx.config.part_size)
    }

    /// Makes sure a part buffer (and its share of the memory budget) is held.
    pub(super) async fn ensure_buffer(&mut self) -> Result<(), WriteError> {
        if self.reservation.is_some() {
            return Ok(());
        }
        let limit = self.part_limit();
        // Room for one more segment than the part: finish() may seal a last full segment.
        let capacity = limit + self.ctx.layout.ciphertext_segment_size() as usize;
        // The first buffer of a file may fail (ENOMEM) when the budget stays exhausted; later
        // ones wait, because this writer's own parts in flight will release budget.
        let first = self.part_number == 1 && self.multipart.is_none();
        let reservation = self.ctx.budget.reserve(capacity, first).await?;
        self.buffer = reservation.take_buffer(capacity);
        self.reservation = Some(reservation);
        if self.part_number == 1
            && self
                .encryptor
                .as_ref()
                .is_some_and(|e| e.plaintext_len() == 0)
        {
            self.encryptor
                .as_mut()
                .expect("not committed")
                .start(&mut self.buffer);
        }
        Ok(())
    }

    /// Hands the full part buffer to the uploader.
    pub(super) async fn send_part(&mut self) -> Result<(), WriteError> {
        if self.multipart.is_none() {
            if let Some(hidden) = self.hidden_upload_key.take()
                && self.final_key.is_none()
            {
                self.final_key = Some(std::mem::replace(&mut self.key, hidden));
            }
            let upload_id = self
                .ctx
                .store
                .create_multipart(&self.key, &self.metadata(&self.binding))
                .await?;
            self.multipart = Some(Multipart {
                upload_id,
                done: Vec::new(),
                in_flight: Vec::new(),
            });
        }
        let body = Bytes::from(std::mem::take(&mut self.buffer));
        let copy = self.copy_target(body.len() as u64);
        self.ciphertext_bytes += body.len() as u64;
        let reservation = self.reservation.take().expect("buffer held");
        let upload_id = self.multipart.as_ref().expect("created").upload_id.clone();
        let handle = self.spawn_part_with(&upload_id, body, Some(reservation), copy);
        let max = self.ctx.config.parts_in_flight.max(1);
        let mp = self.multipart.as_mut().expect("created");
        mp.in_flight.push(handle);
        while mp.in_flight.len() >= max {
            // Whichever part is done first frees its buffer for the next: waiting for the
            // oldest would hold the writer while a later part's buffer sits in the pool.
            let (joined, _, rest) =
                futures::future::select_all(std::mem::take(&mut mp.in_flight)).await;
            mp.in_flight = rest;
            mp.done.push(part_outcome(joined)?);
        }
        Ok(())
    }

    pub(super) fn spawn_part(
        &mut self,
        upload_id: &str,
        body: Bytes,
    ) -> JoinHandle<Result<CompletedPart, StoreError>> {
        let reservation = self.reservation.take();
        self.spawn_part_with(upload_id, body, reservation, None)
    }

    pub(super) fn spawn_part_with(
        &mut self,
        upload_id: &str,
        body: Bytes,
        reservation: Option<Reservation>,
        copy: Option<CopyTarget>,
    ) -> JoinHandle<Result<CompletedPart, StoreError>> {
        let ctx = self.ctx.clone();
        let key = self.key.clone();
        let upload_id = upload_id.to_string();
        let number = self.part_number;
        self.part_number += 1;
        ctx.stats.parts.fetch_add(1, Ordering::Relaxed);
        crate::metrics::parts_in_flight(1.0);
        tokio::spawn(async move {
            let kept = copy.map(|target| {
                let body = body.clone();
                tokio::task::spawn_blocking(move || target.write(&body))
            });
            let result = ctx
                .store
                .upload_part(&key, &upload_id, number, body.clone())
                .await;
            if let Some(kept) = kept {
                // Waited for also when the upload failed: the copy may still be needed.
                let _ = kept.await;
            }
            crate::metrics::parts_in_flight(-1.0);
            if let Err(e) = &result {
                warn!(key = %key, part = number, "part upload failed: {e}");
            }
            // The SDK has dropped its references: recycle the buffer if we hold the last one.
            if let (Some(reservation), Ok(buffer)) = (reservation, body.try_into_mut()) {
                reservation.return_buffer(buffer.into());
            }
            result
        })
    }
}

pub(super) async fn join_part(
    handle: JoinHandle<Result<CompletedPart, StoreError>>,
) -> Result<CompletedPart, WriteError> {
    part_outcome(handle.await)
}

/// What a part's upload task ended with.
fn part_outcome(
    joined: Result<Result<CompletedPart, StoreError>, tokio::task::JoinError>,
) -> Result<CompletedPart, WriteError> {
    match joined {
        Ok(result) => Ok(result?),
        Err(e) => Err(WriteError::Upload(StoreError::fatal(format!(
            "part upload task failed: {e}"
        )))),
    }
}
