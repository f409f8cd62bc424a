//! An optional edge in front of a Function URL: a CloudFront distribution (`AWS::CloudFront::Distribution`)
//! whose only origin is the URL, protected by a WAF web ACL (`AWS::WAFv2::WebACL`, scope `CLOUDFRONT`) with a
//! rate-based rule that blocks a client address sending more than a set number of requests in five minutes.
//!
//! Nothing is cached (`CachingDisabled`): every request reaches the function, as it would without the edge.
//! Every viewer header except `Host` is forwarded (`AllViewerExceptHostHeader`): a Function URL answers only
//! for its own host name. A web ACL of scope `CLOUDFRONT` exists only in `us-east-1`, so a stack holding an
//! edge must be deployed there.

use serde_json::{json, Map};

use crate::core::{Node, Scope};
use crate::expr::Expr;
use crate::lambda::FunctionUrl;

/// CloudFront's managed cache policy `CachingDisabled`.
pub const CACHING_DISABLED_POLICY: &str = "4135ea2d-6df8-44a3-9df3-4b5a84be39ad";
/// CloudFront's managed origin request policy `AllViewerExceptHostHeader`.
pub const ALL_VIEWER_EXCEPT_HOST_POLICY: &str = "b689b0a8-53d0-40ab-baf2-68738e2966ac";
/// WAF's bounds of a rate-based rule's limit (requests per evaluation window per key).
pub const RATE_LIMIT_RANGE: std::ops::RangeInclusive<u32> = 10..=2_000_000_000;
/// The evaluation window of the rate-based rule, seconds (WAF's default).
pub const RATE_WINDOW_SECS: u32 = 300;

/// Properties of an [`Edge`].
#[derive(Debug, Clone)]
pub struct EdgeProps {
    /// Requests one client address may send in five minutes before WAF blocks it (10..=2,000,000,000).
    pub requests_per_five_minutes: u32,
    /// What the distribution is for (its `Comment`, ≤ 128 characters).
    pub comment: String,
    /// The header CloudFront adds to every origin request with a secret's value (`None`: no header, and the
    /// origin must not rely on one).
    pub origin_secret: Option<OriginSecret>,
}

/// A header CloudFront adds to origin requests, holding the whole `SecretString` of a Secrets Manager secret.
#[derive(Debug, Clone)]
pub struct OriginSecret {
    /// The header's name (lower case letters, digits and `-`; not one CloudFront reserves).
    pub header: String,
    /// The secret's ARN (or name).
    pub secret_id: Expr,
}

/// Header name prefixes CloudFront does not let a distribution add (`x-amz-`, `x-edge-`, `x-amzn-` and its
/// own `cloudfront-`).
const RESERVED_HEADER_PREFIXES: [&str; 4] = ["x-amz-", "x-amzn-", "x-edge-", "cloudfront-"];

/// A CloudFront distribution with a rate-limiting web ACL in front of a Function URL.
#[derive(Debug, Clone)]
pub struct Edge {
    distribution: Node,
    web_acl: Node,
}

impl Edge {
    /// Creates the web ACL and the distribution at `scope/id` in front of `url`.
    pub fn new(scope: &Scope, id: &str, url: &FunctionUrl, props: EdgeProps) -> Edge {
        let scope = scope.child(id);
        if !RATE_LIMIT_RANGE.contains(&props.requests_per_five_minutes) {
            scope.violation(format!(
                "requests_per_five_minutes {} is outside WAF's rate-based limit of {}..={}",
                props.requests_per_five_minutes,
                RATE_LIMIT_RANGE.start(),
                RATE_LIMIT_RANGE.end()
            ));
        }
        if props.comment.chars().count() > 128 {
            scope.violation("comment is longer than 128 characters (CloudFront Comment)");
        }
        if let Some(secret) = &props.origin_secret {
            check_origin_header(&scope, &secret.header);
        }
        let web_acl = scope.add_resource("WebAcl", "AWS::WAFv2::WebACL", web_acl(&props));
        let mut config = Map::new();
        config.insert("Enabled".into(), json!(true));
        config.insert("Comment".into(), json!(props.comment));
        config.insert("HttpVersion".into(), json!("http2and3"));
        config.insert("IPV6Enabled".into(), json!(true));
        // North America and Europe edge locations only: the cheapest class.
        config.insert("PriceClass".into(), json!("PriceClass_100"));
        config.insert("WebACLId".into(), scope.resolve(&web_acl.attribute("Arn")));
        let mut origin = json!({
            "Id": "function-url",
            "DomainName": scope.resolve(&url.url().url_host()),
            "CustomOriginConfig": {
                "OriginProtocolPolicy": "https-only",
                "OriginSSLProtocols": ["TLSv1.2"],
            },
        });
        if let Some(secret) = &props.origin_secret {
            origin["OriginCustomHeaders"] = json!([{
                "HeaderName": secret.header,
                "HeaderValue": scope.resolve(&secret.value()),
            }]);
        }
        config.insert("Origins".into(), json!([origin]));
        config.insert(
            "DefaultCacheBehavior".into(),
            json!({
                "TargetOriginId": "function-url",
                "ViewerProtocolPolicy": "https-only",
                // POST needs the full list (CloudFront allows only three sets).
                "AllowedMethods": ["GET", "HEAD", "OPTIONS", "PUT", "PATCH", "POST", "DELETE"],
                "CachedMethods": ["GET", "HEAD"],
                "CachePolicyId": CACHING_DISABLED_POLICY,
                "OriginRequestPolicyId": ALL_VIEWER_EXCEPT_HOST_POLICY,
                "Compress": false,
            }),
        );
        let mut properties = Map::new();
        properties.insert("DistributionConfig".into(), json!(config));
        let distribution =
            scope.add_resource("Distribution", "AWS::CloudFront::Distribution", properties);
        Edge {
            distribution,
            web_acl,
        }
    }

    /// The distribution's handle.
    pub fn distribution(&self) -> &Node {
        &self.distribution
    }

    /// The web ACL's handle.
    pub fn web_acl(&self) -> &Node {
        &self.web_acl
    }

    /// `https://<distribution domain>/`: the URL clients use instead of the Function URL.
    pub fn url(&self) -> Expr {
        Expr::concat([
            Expr::text("https://"),
            self.distribution.attribute("DomainName"),
            Expr::text("/"),
        ])
    }
}

impl OriginSecret {
    /// `{{resolve:secretsmanager:<secret id>:SecretString}}`: CloudFormation puts the current value in the
    /// distribution when it creates or updates it (a rotation reaches CloudFront at the next update that
    /// changes the distribution).
    pub fn value(&self) -> Expr {
        Expr::concat([
            Expr::text("{{resolve:secretsmanager:"),
            self.secret_id.clone(),
            Expr::text(":SecretString}}"),
        ])
    }
}

/// A violation when `header` is not a lower-case token CloudFront lets a distribution add.
fn check_origin_header(scope: &Scope, header: &str) {
    let token = !header.is_empty()
        && header
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-');
    if !token {
        scope.violation(format!(
            "origin header {header:?} must be lower-case letters, digits and '-'"
        ));
    }
    if let Some(prefix) = RESERVED_HEADER_PREFIXES
        .iter()
        .find(|p| header.starts_with(*p))
    {
        scope.violation(format!(
            "origin header {header:?} starts with {prefix:?}, which CloudFront reserves; choose another name"
        ));
    }
}

fn visibility(metric: &str) -> serde_json::Value {
    json!({
        "SampledRequestsEnabled": true,
        "CloudWatchMetricsEnabled": true,
        "MetricName": metric,
    })
}

/// The web ACL: allow by default, block an address above the rate.
fn web_acl(props: &EdgeProps) -> Map<String, serde_json::Value> {
    let mut properties = Map::new();
    properties.insert("Scope".into(), json!("CLOUDFRONT"));
    properties.insert("DefaultAction".into(), json!({ "Allow": {} }));
    properties.insert("VisibilityConfig".into(), visibility("edge"));
    properties.insert(
        "Rules".into(),
        json!([{
            "Name": "per-address-rate",
            "Priority": 0,
            "Action": { "Block": {} },
            "Statement": {
                "RateBasedStatement": {
                    "Limit": props.requests_per_five_minutes,
                    "EvaluationWindowSec": RATE_WINDOW_SECS,
                    "AggregateKeyType": "IP",
                }
            },
            "VisibilityConfig": visibility("per-address-rate"),
        }]),
    );
    properties
}
