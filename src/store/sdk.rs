//! What the S3 and KMS clients share: the SDK settings loaded from the AWS chain and our
//! options, and how an SDK error becomes a [`StoreError`].

use std::path::PathBuf;

use aws_config::retry::RetryConfig;
use aws_config::timeout::TimeoutConfig;
use aws_config::{BehaviorVersion, Region, SdkConfig};
use aws_smithy_http_client::tls;
use aws_smithy_runtime_api::client::orchestrator::HttpResponse;
use aws_smithy_runtime_api::client::result::SdkError;
use aws_smithy_types::error::display::DisplayErrorContext;
use aws_smithy_types::error::metadata::ProvideErrorMetadata;

use super::{StoreConfig, StoreError, StoreErrorKind};

/// The SDK settings: credentials, region and profile from the AWS chain and `config`,
/// timeouts and retries from `config`, requests sent to `endpoint` when given.
pub(super) async fn load(
    config: &StoreConfig,
    endpoint: Option<&str>,
) -> Result<SdkConfig, StoreError> {
    let mut loader = aws_config::defaults(BehaviorVersion::latest())
        .timeout_config(
            TimeoutConfig::builder()
                .connect_timeout(config.connect_timeout)
                .operation_attempt_timeout(config.attempt_timeout)
                .build(),
        )
        .retry_config(RetryConfig::standard().with_max_attempts(config.max_attempts));
    if let Some(profile) = &config.profile {
        loader = loader.profile_name(profile);
    }
    if let Some(region) = &config.region {
        loader = loader.region(Region::new(region.clone()));
    }
    if let Some(c) = &config.static_credentials {
        loader = loader.credentials_provider(aws_sdk_s3::config::Credentials::new(
            &c.access_key_id,
            &c.secret_access_key,
            None,
            None,
            "s3cryptfs-static",
        ));
    }
    if let Some(endpoint) = endpoint {
        loader = loader.endpoint_url(endpoint);
    }
    // The Rust SDK does not read AWS_CA_BUNDLE itself (aws-sdk-rust#1362), so we do.
    let ca_bundle = config
        .ca_bundle
        .clone()
        .or_else(|| std::env::var_os("AWS_CA_BUNDLE").map(PathBuf::from));
    if let Some(path) = ca_bundle {
        loader = loader.http_client(https_client_with_ca(&path)?);
    }
    Ok(loader.load().await)
}

/// An HTTPS client that trusts the system roots plus the PEM certificates in `path`.
fn https_client_with_ca(
    path: &std::path::Path,
) -> Result<aws_smithy_runtime_api::client::http::SharedHttpClient, StoreError> {
    let pem = std::fs::read(path)
        .map_err(|e| StoreError::fatal(format!("cannot read CA bundle {}: {e}", path.display())))?;
    let trust = tls::TrustStore::default()
        .with_native_roots(true)
        .with_pem_certificate(pem);
    let context = tls::TlsContext::builder()
        .with_trust_store(trust)
        .build()
        .map_err(|e| StoreError::fatal(format!("CA bundle {}: {e}", path.display())))?;
    Ok(aws_smithy_http_client::Builder::new()
        .tls_provider(tls::Provider::Rustls(
            tls::rustls_provider::CryptoMode::AwsLc,
        ))
        .tls_context(context)
        .build_https())
}

/// Turns an SDK error into a [`StoreError`] with a message that names the request.
pub(super) fn classify<E>(op: &'static str, key: &str, err: SdkError<E, HttpResponse>) -> StoreError
where
    E: ProvideErrorMetadata + std::error::Error + Send + Sync + 'static,
{
    let status = err.raw_response().map(|r| r.status().as_u16());
    match &err {
        SdkError::ServiceError(service) => {
            let code = service.err().code().map(str::to_string);
            let message = format!(
                "{op} {key}: {} (HTTP {})",
                service
                    .err()
                    .message()
                    .or(code.as_deref())
                    .map(str::to_string)
                    .unwrap_or_else(|| DisplayErrorContext(&err).to_string()),
                status.map_or("?".to_string(), |s| s.to_string())
            );
            StoreError::from_s3(code.as_deref(), status, message)
        }
        SdkError::ConstructionFailure(_) => {
            StoreError::fatal(format!("{op} {key}: {}", DisplayErrorContext(&err)))
        }
        _ if format!("{}", DisplayErrorContext(&err)).contains("credentials") => StoreError::new(
            StoreErrorKind::AccessDenied,
            format!(
                "{op} {key}: no usable AWS credentials (set AWS_ACCESS_KEY_ID and \
                 AWS_SECRET_ACCESS_KEY, pass --profile, or run with an instance role): {}",
                DisplayErrorContext(&err)
                    .to_string()
                    .lines()
                    .next()
                    .unwrap_or_default()
            ),
        ),
        _ => StoreError::transient(format!("{op} {key}: {}", DisplayErrorContext(&err))),
    }
}
