//! SDK configuration and the functions' environment.

use std::time::Duration;

use crate::Error;

/// Expiry of counter and index keys (`tally_domain::compact::COUNTER_TTL_SECS`, three hours).
pub const DEFAULT_COUNTER_TTL_SECS: u64 = tally_domain::compact::COUNTER_TTL_SECS;
/// Limit on connecting to the cache and on each reply.
pub const CACHE_TIMEOUT: Duration = Duration::from_secs(5);

/// Loads the SDK configuration the standard way: environment, profiles, container or instance credentials,
/// `AWS_REGION`, and `AWS_ENDPOINT_URL` (which points every client at an AWS-compatible endpoint, such as the
/// local cloud or a test's `moto_server`), with the [`http_client`].
pub async fn sdk_config() -> aws_config::SdkConfig {
    aws_config::defaults(aws_config::BehaviorVersion::latest())
        .http_client(http_client())
        .load()
        .await
}

/// The HTTP client of the functions' SDK clients: the SDK's default HTTPS client (hyper, rustls with the
/// platform's root certificates, the connector settings and sleep of each client, proxies from the environment)
/// with rustls on `ring` instead of `aws-lc-rs`, whose C build (`aws-lc-sys`, through cmake) was the slowest
/// single crate of a first `cargo xtask dev`. The workspace builds the SDK without its default client.
pub fn http_client() -> aws_sdk_dynamodb::config::SharedHttpClient {
    use aws_smithy_http_client::tls::{rustls_provider::CryptoMode, Provider};
    use aws_smithy_http_client::{proxy::ProxyConfig, Builder, ConnectorBuilder};
    Builder::new().build_with_connector_fn(|settings, components| {
        let mut connector =
            ConnectorBuilder::default().tls_provider(Provider::Rustls(CryptoMode::Ring));
        connector.set_connector_settings(settings.cloned());
        if let Some(components) = components {
            connector.set_sleep_impl(components.sleep_impl());
        }
        connector.set_proxy_config(Some(ProxyConfig::from_env()));
        connector.build()
    })
}

/// Structured JSON logs on stdout (each line has a `level`, so Lambda's log-level filtering applies), filtered
/// by [`log_filter`]. Call once, first thing in `main`.
pub fn init_tracing() {
    let directives = log_filter(
        std::env::var("AWS_LAMBDA_LOG_LEVEL").ok(),
        std::env::var("RUST_LOG").ok(),
    );
    let filter = tracing_subscriber::EnvFilter::try_new(&directives)
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    tracing_subscriber::fmt()
        .json()
        .with_env_filter(filter)
        .with_ansi(false)
        .without_time()
        .init();
}

/// The tracing filter: Lambda's `AWS_LAMBDA_LOG_LEVEL` (set from the function's `ApplicationLogLevel` with
/// JSON logs; Lambda drops more detailed lines anyway, so they are not even formatted), else `RUST_LOG`,
/// else `info`.
pub fn log_filter(lambda_level: Option<String>, rust_log: Option<String>) -> String {
    let lambda = lambda_level.and_then(|level| match level.trim().to_ascii_uppercase().as_str() {
        "TRACE" => Some("trace"),
        "DEBUG" => Some("debug"),
        "INFO" => Some("info"),
        "WARN" => Some("warn"),
        "ERROR" | "FATAL" => Some("error"),
        _ => None,
    });
    match (lambda, rust_log) {
        (Some(level), _) => level.to_owned(),
        (None, Some(directives)) if !directives.trim().is_empty() => directives,
        _ => "info".to_owned(),
    }
}

/// A DynamoDB client from [`sdk_config`].
pub fn dynamodb(config: &aws_config::SdkConfig) -> aws_sdk_dynamodb::Client {
    aws_sdk_dynamodb::Client::new(config)
}

/// A Kinesis client from [`sdk_config`].
pub fn kinesis(config: &aws_config::SdkConfig) -> aws_sdk_kinesis::Client {
    aws_sdk_kinesis::Client::new(config)
}

/// An S3 client from [`sdk_config`]; path-style addressing when a custom endpoint is set (the local cloud and
/// test servers do not resolve `bucket.host` names).
pub fn s3(config: &aws_config::SdkConfig) -> aws_sdk_s3::Client {
    let path_style = config.endpoint_url().is_some();
    aws_sdk_s3::Client::from_conf(
        aws_sdk_s3::config::Builder::from(config)
            .force_path_style(path_style)
            .build(),
    )
}

/// The value of a required environment variable; `hint` says what it should hold, for the error.
pub fn required_env(name: &'static str, hint: &'static str) -> Result<String, Error> {
    required_value(name, hint, std::env::var(name).ok())
}

fn required_value(
    name: &'static str,
    hint: &'static str,
    value: Option<String>,
) -> Result<String, Error> {
    match value {
        Some(value) if !value.trim().is_empty() => Ok(value.trim().to_owned()),
        _ => Err(Error::MissingEnv { name, hint }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn check(value: Option<&str>, expect: Result<&str, &str>) {
        let got =
            required_value("TALLY_X", "the x", value.map(str::to_owned)).map_err(|e| e.to_string());
        assert_eq!(got.as_deref().map_err(String::as_str), expect);
    }

    #[test]
    fn log_filters() {
        let f = |lambda: Option<&str>, rust: Option<&str>| {
            log_filter(lambda.map(str::to_owned), rust.map(str::to_owned))
        };
        assert_eq!(f(Some("WARN"), Some("debug")), "warn");
        assert_eq!(f(Some("fatal"), None), "error");
        assert_eq!(f(Some("loud"), Some("tally=debug")), "tally=debug");
        assert_eq!(f(None, Some("  ")), "info");
        assert_eq!(f(None, None), "info");
    }

    #[test]
    fn required_values() {
        check(Some("metrics"), Ok("metrics"));
        check(Some("  metrics\n"), Ok("metrics"));
        check(
            Some(""),
            Err("environment variable TALLY_X is not set: the x"),
        );
        check(
            Some("   "),
            Err("environment variable TALLY_X is not set: the x"),
        );
        check(None, Err("environment variable TALLY_X is not set: the x"));
    }
}
