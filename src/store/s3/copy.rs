//! Server-side copies (rename and `mv` are copies): CopyObject up to the multipart-copy
//! threshold, beyond it a multipart upload of copied ranges, each copy pinned to the version
//! just looked at.

use super::*;

/// Characters left as they are in the `x-amz-copy-source` header: unreserved ones and `/`.
const COPY_SOURCE_KEEP: &AsciiSet = &NON_ALPHANUMERIC
    .remove(b'-')
    .remove(b'.')
    .remove(b'_')
    .remove(b'~')
    .remove(b'/');

/// Parts of a multipart copy in flight at once.
const COPY_CONCURRENCY: usize = 4;

impl S3Store {
    pub(super) fn copy_source(&self, key: &str) -> String {
        let full = self.full_key(key);
        format!(
            "{}/{}",
            self.config.bucket,
            utf8_percent_encode(&full, COPY_SOURCE_KEEP)
        )
    }

    /// A copy past the single-request limit: a multipart upload of ranges copied
    /// server-side, aborted if any part fails.
    async fn multipart_copy(
        &self,
        src: &str,
        dst: &str,
        size: u64,
        metadata: &Metadata,
    ) -> Result<PutResult, StoreError> {
        let upload_id = self.create_multipart(dst, metadata).await?;
        let part_size = self.config.copy_part_size.max(5 * 1024 * 1024);
        let ranges: Vec<(u32, u64, u64)> = (0..size.div_ceil(part_size))
            .map(|i| {
                let start = i * part_size;
                (i as u32 + 1, start, (start + part_size).min(size) - 1)
            })
            .collect();
        let upload = upload_id.as_str();
        let parts: Result<Vec<CompletedPart>, StoreError> = futures::stream::iter(ranges)
            .map(|(number, first, last)| {
                self.upload_part_copy(dst, upload, number, src, first..last + 1, None)
            })
            .buffered(COPY_CONCURRENCY)
            .try_collect()
            .await;
        match parts {
            Ok(parts) => self.complete_multipart(dst, &upload_id, &parts).await,
            Err(e) => {
                // Leave no upload behind; the copy's own error is what the caller needs.
                let _ = self.abort_multipart(dst, &upload_id).await;
                Err(e)
            }
        }
    }
}

/// [`ObjectStore::copy`]: one CopyObject, or a multipart copy past the threshold.
pub(super) async fn copy(
    store: &S3Store,
    src: &str,
    dst: &str,
    metadata: Option<&Metadata>,
) -> Result<PutResult, StoreError> {
    trace_request("CopyObject", src);
    let threshold = store.config.multipart_copy_threshold.min(MAX_SINGLE_OBJECT);
    let head = store.head(src).await?;
    if head.size > threshold {
        let metadata = metadata.unwrap_or(&head.metadata);
        return store.multipart_copy(src, dst, head.size, metadata).await;
    }
    let directive = if metadata.is_some() {
        MetadataDirective::Replace
    } else {
        MetadataDirective::Copy
    };
    let out = store
        .client
        .copy_object()
        .bucket(&store.config.bucket)
        .key(store.full_key(dst))
        .copy_source(store.copy_source(src))
        // Only copy the version we just looked at, so a concurrent overwrite fails loudly.
        .set_copy_source_if_match(head.etag)
        .metadata_directive(directive)
        .set_metadata(metadata.and_then(non_empty))
        .send()
        .await
        .map_err(|e| map_err("CopyObject", src, e))?;
    Ok(PutResult {
        etag: out
            .copy_object_result()
            .and_then(|r| r.e_tag())
            .map(str::to_string),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn copy_source_is_percent_encoded() {
        let s = "a b/ü+%#?.txt";
        let enc = utf8_percent_encode(s, COPY_SOURCE_KEEP).to_string();
        assert_eq!(enc, "a%20b/%C3%BC%2B%25%23%3F.txt");
    }
}
