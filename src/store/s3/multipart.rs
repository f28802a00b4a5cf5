//! Multipart uploads over the SDK: create, parts (sent or copied), complete, abort, and the
//! listing of uploads left open (for `fsck`).

use super::*;

pub(super) async fn create_multipart(
    store: &S3Store,
    key: &str,
    metadata: &Metadata,
) -> Result<String, StoreError> {
    trace_request("CreateMultipartUpload", key);
    let out = store
        .client
        .create_multipart_upload()
        .bucket(&store.config.bucket)
        .key(store.full_key(key))
        .set_metadata(non_empty(metadata))
        .send()
        .await
        .map_err(|e| map_err("CreateMultipartUpload", key, e))?;
    out.upload_id()
        .map(str::to_string)
        .ok_or_else(|| StoreError::fatal("CreateMultipartUpload returned no upload id"))
}

pub(super) async fn upload_part(
    store: &S3Store,
    key: &str,
    upload_id: &str,
    part_number: u32,
    body: Bytes,
) -> Result<CompletedPart, StoreError> {
    trace_request("UploadPart", key);
    crate::metrics::bytes_uploaded(body.len() as u64);
    let out = store
        .client
        .upload_part()
        .bucket(&store.config.bucket)
        .key(store.full_key(key))
        .upload_id(upload_id)
        .part_number(part_number as i32)
        .content_length(body.len() as i64)
        .body(ByteStream::from(body))
        .customize()
        .disable_payload_signing()
        .send()
        .await
        .map_err(|e| map_err("UploadPart", key, e))?;
    let etag = out
        .e_tag()
        .ok_or_else(|| StoreError::fatal("UploadPart returned no ETag"))?;
    Ok(CompletedPart {
        part_number,
        etag: etag.to_string(),
    })
}

pub(super) async fn upload_part_copy(
    store: &S3Store,
    key: &str,
    upload_id: &str,
    part_number: u32,
    src: &str,
    range: std::ops::Range<u64>,
    src_etag: Option<&str>,
) -> Result<CompletedPart, StoreError> {
    trace_request("UploadPartCopy", key);
    let out = store
        .client
        .upload_part_copy()
        .bucket(&store.config.bucket)
        .key(store.full_key(key))
        .upload_id(upload_id)
        .part_number(part_number as i32)
        .copy_source(store.copy_source(src))
        .copy_source_range(format!("bytes={}-{}", range.start, range.end - 1))
        .set_copy_source_if_match(src_etag.map(str::to_string))
        .send()
        .await
        .map_err(|e| map_err("UploadPartCopy", src, e))?;
    let etag = out
        .copy_part_result()
        .and_then(|r| r.e_tag())
        .ok_or_else(|| StoreError::fatal("UploadPartCopy returned no ETag"))?;
    Ok(CompletedPart {
        part_number,
        etag: etag.to_string(),
    })
}

pub(super) async fn complete_multipart(
    store: &S3Store,
    key: &str,
    upload_id: &str,
    parts: &[CompletedPart],
    condition: Option<&WriteCondition>,
) -> Result<PutResult, StoreError> {
    trace_request("CompleteMultipartUpload", key);
    let (if_none_match, if_match) = super::condition_headers(condition);
    let parts = parts
        .iter()
        .map(|p| {
            aws_sdk_s3::types::CompletedPart::builder()
                .part_number(p.part_number as i32)
                .e_tag(&p.etag)
                .build()
        })
        .collect();
    let result = store
        .client
        .complete_multipart_upload()
        .bucket(&store.config.bucket)
        .key(store.full_key(key))
        .upload_id(upload_id)
        .multipart_upload(
            CompletedMultipartUpload::builder()
                .set_parts(Some(parts))
                .build(),
        )
        .set_if_none_match(if_none_match)
        .set_if_match(if_match)
        .send()
        .await;
    match result {
        Ok(out) => Ok(PutResult {
            etag: out.e_tag().map(str::to_string),
        }),
        Err(e) => match completed_despite_parse_error(&e) {
            Some(etag) => Ok(PutResult { etag: Some(etag) }),
            None => Err(map_err("CompleteMultipartUpload", key, e)),
        },
    }
}

pub(super) async fn abort_multipart(
    store: &S3Store,
    key: &str,
    upload_id: &str,
) -> Result<(), StoreError> {
    trace_request("AbortMultipartUpload", key);
    store
        .client
        .abort_multipart_upload()
        .bucket(&store.config.bucket)
        .key(store.full_key(key))
        .upload_id(upload_id)
        .customize()
        // An abort usually follows a failure, often an outage: try for longer than other
        // requests so that no orphaned parts stay behind (and keep costing storage).
        .config_override(
            aws_sdk_s3::config::Builder::default().retry_config(
                RetryConfig::standard()
                    .with_max_attempts(store.config.max_attempts.max(10))
                    .with_max_backoff(std::time::Duration::from_secs(10)),
            ),
        )
        .send()
        .await
        .map_err(|e| map_err("AbortMultipartUpload", key, e))?;
    Ok(())
}

pub(super) async fn list_uploads(
    store: &S3Store,
    prefix: &str,
) -> Result<Vec<UploadInfo>, StoreError> {
    let mut uploads = Vec::new();
    let (mut key_marker, mut id_marker) = (None::<String>, None::<String>);
    let mut previous = (None, None);
    loop {
        let out = store
            .client
            .list_multipart_uploads()
            .bucket(&store.config.bucket)
            .prefix(store.full_key(prefix))
            .set_key_marker(key_marker.take())
            .set_upload_id_marker(id_marker.take())
            .encoding_type(EncodingType::Url)
            .send()
            .await
            .map_err(|e| map_err("ListMultipartUploads", prefix, e))?;
        let encoded = out.encoding_type() == Some(&EncodingType::Url);
        for u in out.uploads() {
            let key = u.key().and_then(|k| listed_key(k, encoded));
            if let (Some(key), Some(id)) =
                (key.as_deref().and_then(|k| store.strip(k)), u.upload_id())
            {
                uploads.push(UploadInfo {
                    key: key.to_string(),
                    upload_id: id.to_string(),
                    initiated: u.initiated().and_then(to_system_time),
                });
            }
        }
        if out.is_truncated() != Some(true) {
            return Ok(uploads);
        }
        if uploads.len() > crate::store::MAX_LISTING_ENTRIES {
            return Err(StoreError::fatal(format!(
                "ListMultipartUploads {prefix}: more than {} uploads",
                crate::store::MAX_LISTING_ENTRIES
            )));
        }
        let next = (
            out.next_key_marker().and_then(|k| listed_key(k, encoded)),
            out.next_upload_id_marker().map(str::to_string),
        );
        if next == (None, None) || next == previous {
            // No way on, or the same page again: what we have is all we will get.
            return Ok(uploads);
        }
        previous = next.clone();
        (key_marker, id_marker) = next;
    }
}
