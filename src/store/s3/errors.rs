//! What the SDK's errors from S3 mean to us: the store's error kinds (with the IAM
//! permission an "access denied" needs), counted in the metrics, and the one error that is a
//! success (a CompleteMultipartUpload answer the SDK cannot parse).

use aws_sdk_s3::error::{ProvideErrorMetadata, SdkError};

use crate::store::{StoreError, StoreErrorKind};

/// Some servers (moto) answer a successful CompleteMultipartUpload with the root element
/// `CompleteMultipartUploadResponse`, which the SDK refuses to parse. A 200 whose body is that
/// document (and not an `<Error>`, which S3 may also send with a 200) did complete the upload.
pub(super) fn completed_despite_parse_error<E>(
    err: &SdkError<E, aws_sdk_s3::config::http::HttpResponse>,
) -> Option<String> {
    let SdkError::ServiceError(service) = err else {
        return None;
    };
    let raw = service.raw();
    if raw.status().as_u16() != 200 {
        return None;
    }
    let body = std::str::from_utf8(raw.body().bytes()?).ok()?;
    if !body.contains("<CompleteMultipartUploadResponse") || body.contains("<Error>") {
        return None;
    }
    let start = body.find("<ETag>")? + "<ETag>".len();
    let end = start + body[start..].find("</ETag>")?;
    Some(body[start..end].replace("&quot;", "\""))
}

pub(super) fn map_err<E>(
    op: &'static str,
    key: &str,
    err: SdkError<E, aws_sdk_s3::config::http::HttpResponse>,
) -> StoreError
where
    E: ProvideErrorMetadata + std::error::Error + Send + Sync + 'static,
{
    let mut mapped = crate::store::sdk::classify(op, key, err);
    crate::metrics::s3_error(op, mapped.kind.name());
    if mapped.kind == StoreErrorKind::AccessDenied
        && let Some(permission) = needed_permission(op)
    {
        mapped.message = format!("{} (this request needs {permission})", mapped.message);
    }
    mapped
}

/// The IAM permission an S3 request needs, for "access denied" messages.
fn needed_permission(op: &str) -> Option<&'static str> {
    Some(match op {
        "GetObject" | "GetObjectHeader" | "HeadObject" => "s3:GetObject on the volume's objects",
        "PutObject" | "CreateMultipartUpload" | "UploadPart" | "CompleteMultipartUpload" => {
            "s3:PutObject on the volume's objects"
        }
        "CopyObject" | "UploadPartCopy" => "s3:GetObject and s3:PutObject on the volume's objects",
        "DeleteObject" | "DeleteObjects" => "s3:DeleteObject on the volume's objects",
        "AbortMultipartUpload" => "s3:AbortMultipartUpload on the volume's objects",
        "ListObjectsV2" => "s3:ListBucket on the bucket, for the volume's prefix",
        "ListMultipartUploads" => "s3:ListBucketMultipartUploads on the bucket",
        _ => return None,
    })
}
