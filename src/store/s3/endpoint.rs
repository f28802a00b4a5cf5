//! The endpoint of a request, resolved once per bucket instead of twice per request.
//!
//! The SDK evaluates S3's endpoint rules (a decision diagram of some 550 nodes, with URL
//! parsing and partition lookups) twice for every request: once to choose its auth scheme and
//! once for its URL. Its own one-entry cache compares every parameter, the object key among
//! them, so it misses whenever the key changes: on almost every request of a mount. Yet the
//! rules never read the key, a LIST's prefix or a copy's source (the SDK's own endpoint tests
//! say "Prefix and Key parameters should not be used in endpoint evaluation"). For `ls -l` of
//! 10,000 files the two evaluations were 7–8 % of the daemon's CPU (perf).

use std::sync::RwLock;

use aws_sdk_s3::config::endpoint::{DefaultResolver, EndpointFuture, Params, ResolveEndpoint};
use aws_smithy_types::endpoint::Endpoint;

/// Resolves with `rules` (the SDK's) and keeps the last answer for every request whose
/// parameters differ from its own only in those the rules do not read.
#[derive(Debug)]
pub(super) struct EndpointPerBucket<R = DefaultResolver> {
    rules: R,
    last: RwLock<Option<(Params, Endpoint)>>,
}

impl Default for EndpointPerBucket {
    fn default() -> Self {
        Self::new(DefaultResolver::new())
    }
}

impl<R> EndpointPerBucket<R> {
    pub(super) fn new(rules: R) -> Self {
        Self {
            rules,
            last: RwLock::new(None),
        }
    }

    fn remembered(&self, params: &Params) -> Option<Endpoint> {
        let last = self.last.read().unwrap();
        let (seen, endpoint) = last.as_ref()?;
        same_endpoint(seen, params).then(|| endpoint.clone())
    }
}

impl<R: ResolveEndpoint> ResolveEndpoint for EndpointPerBucket<R> {
    fn resolve_endpoint<'a>(&'a self, params: &'a Params) -> EndpointFuture<'a> {
        if let Some(endpoint) = self.remembered(params) {
            return EndpointFuture::ready(Ok(endpoint));
        }
        EndpointFuture::new(async move {
            let endpoint = self.rules.resolve_endpoint(params).await?;
            *self.last.write().unwrap() = Some((params.clone(), endpoint.clone()));
            Ok(endpoint)
        })
    }
}

/// Whether the rules give `a` and `b` the same endpoint: they agree on every parameter but
/// the key, the prefix and the copy source. (A test fails when the SDK adds a parameter, so
/// that it is added here too: an unknown parameter must never be taken to be irrelevant.)
fn same_endpoint(a: &Params, b: &Params) -> bool {
    a.bucket() == b.bucket()
        && a.region() == b.region()
        && a.use_fips() == b.use_fips()
        && a.use_dual_stack() == b.use_dual_stack()
        && a.endpoint() == b.endpoint()
        && a.force_path_style() == b.force_path_style()
        && a.accelerate() == b.accelerate()
        && a.use_global_endpoint() == b.use_global_endpoint()
        && a.use_object_lambda_endpoint() == b.use_object_lambda_endpoint()
        && a.disable_access_points() == b.disable_access_points()
        && a.disable_multi_region_access_points() == b.disable_multi_region_access_points()
        && a.use_arn_region() == b.use_arn_region()
        && a.use_s3_express_control_endpoint() == b.use_s3_express_control_endpoint()
        && a.disable_s3_express_session_auth() == b.disable_s3_express_session_auth()
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeSet;
    use std::sync::atomic::{AtomicUsize, Ordering};

    use aws_sdk_s3::config::endpoint::ParamsBuilder;

    use super::*;

    /// The parameters the rules do not read: the object's key, a LIST's prefix, a copy's source.
    const NOT_READ_BY_THE_RULES: [&str; 3] = ["key", "prefix", "copy_source"];

    /// Every parameter that can change the endpoint: those `same_endpoint` compares.
    const READ_BY_THE_RULES: [&str; 14] = [
        "bucket",
        "region",
        "use_fips",
        "use_dual_stack",
        "endpoint",
        "force_path_style",
        "accelerate",
        "use_global_endpoint",
        "use_object_lambda_endpoint",
        "disable_access_points",
        "disable_multi_region_access_points",
        "use_arn_region",
        "use_s3_express_control_endpoint",
        "disable_s3_express_session_auth",
    ];

    /// The SDK's rules, counting how often they are evaluated.
    #[derive(Debug, Default)]
    struct CountedRules {
        rules: DefaultResolver,
        evaluations: AtomicUsize,
    }

    impl ResolveEndpoint for CountedRules {
        fn resolve_endpoint<'a>(&'a self, params: &'a Params) -> EndpointFuture<'a> {
            self.evaluations.fetch_add(1, Ordering::SeqCst);
            self.rules.resolve_endpoint(params)
        }
    }

    fn on_aws(bucket: &str) -> ParamsBuilder {
        Params::builder()
            .bucket(bucket)
            .region("eu-west-1")
            .use_fips(false)
            .use_dual_stack(false)
            .accelerate(false)
            .force_path_style(false)
    }

    fn on_local_server(bucket: &str) -> ParamsBuilder {
        Params::builder()
            .bucket(bucket)
            .region("us-east-1")
            .endpoint("http://127.0.0.1:3900")
            .force_path_style(true)
    }

    async fn url(resolver: &impl ResolveEndpoint, params: ParamsBuilder) -> String {
        let params = params.build().unwrap();
        resolver
            .resolve_endpoint(&params)
            .await
            .unwrap()
            .url()
            .to_string()
    }

    #[tokio::test]
    async fn requests_for_other_keys_of_one_bucket_are_resolved_once() {
        for (builder, expected) in [
            (
                on_aws as fn(&str) -> ParamsBuilder,
                "https://vol.s3.eu-west-1.amazonaws.com",
            ),
            (on_local_server, "http://127.0.0.1:3900/vol"),
        ] {
            let resolver = EndpointPerBucket::new(CountedRules::default());
            let get = builder("vol").key("a/object");
            assert_eq!(url(&resolver, get).await, expected);
            let head = builder("vol").key("another/object");
            assert_eq!(url(&resolver, head).await, expected);
            let list = builder("vol").prefix("a/");
            assert_eq!(url(&resolver, list).await, expected);
            let copy = builder("vol").key("b").copy_source("vol/a/object");
            assert_eq!(url(&resolver, copy).await, expected);
            assert_eq!(resolver.rules.evaluations.load(Ordering::SeqCst), 1);
        }
    }

    #[tokio::test]
    async fn any_other_parameter_is_resolved_again_and_gives_the_rules_answer() {
        let resolver = EndpointPerBucket::new(CountedRules::default());
        let rules = DefaultResolver::new();
        let cases = [
            on_aws("vol").key("k"),
            on_aws("other").key("k"),
            on_aws("other").key("k").force_path_style(true),
            on_aws("other").key("k").use_dual_stack(true),
            on_aws("other").key("k").region("us-west-2"),
            on_local_server("other").key("k"),
        ];
        for (i, params) in cases.into_iter().enumerate() {
            assert_eq!(
                url(&resolver, params.clone()).await,
                url(&rules, params).await
            );
            assert_eq!(resolver.rules.evaluations.load(Ordering::SeqCst), i + 1);
        }
    }

    /// The names of the fields `Params` has in this version of the SDK, from its Debug form
    /// (`Params { bucket: Some("b"), region: None, … }`).
    fn params_fields() -> BTreeSet<String> {
        let debug = format!("{:?}", on_aws("b").build().unwrap());
        let inner = debug
            .strip_prefix("Params { ")
            .and_then(|s| s.strip_suffix(" }"))
            .expect("Params prints as a struct");
        inner
            .split(", ")
            .filter_map(|field| field.split_once(": ").map(|(name, _)| name.to_string()))
            .collect()
    }

    #[test]
    fn every_parameter_of_the_sdk_is_either_compared_or_known_to_be_unread() {
        let known: BTreeSet<String> = READ_BY_THE_RULES
            .iter()
            .chain(&NOT_READ_BY_THE_RULES)
            .map(|s| s.to_string())
            .collect();
        assert_eq!(params_fields(), known);
    }
}
