//! SDK configuration and the functions' environment.

use std::time::Duration;

use crate::Error;

/// Expiry of counter and index keys (`tally_domain::compact::COUNTER_TTL_SECS`, three hours).
pub const DEFAULT_COUNTER_TTL_SECS: u64 = tally_domain::compact::COUNTER_TTL_SECS;
/// Limit on connecting to the cache and on each reply.
pub const CACHE_TIMEOUT: Duration = Duration::from_secs(5);

/// Loads the SDK configuration the standard way: environment, profiles, container or instance credentials,
/// `AWS_REGION`, and `AWS_ENDPOINT_URL` (which points every client at an AWS-compatible endpoint, such as the
/// local cloud or a test's `moto_server`).
pub async fn sdk_config() -> aws_config::SdkConfig {
    aws_config::load_defaults(aws_config::BehaviorVersion::latest()).await
}

/// Structured JSON logs on stdout (CloudWatch Logs keeps them per invocation), filtered by `RUST_LOG`
/// (default `info`). Call once, first thing in `main`.
pub fn init_tracing() {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    tracing_subscriber::fmt()
        .json()
        .with_env_filter(filter)
        .with_ansi(false)
        .without_time()
        .init();
}

/// A DynamoDB client from [`sdk_config`].
pub fn dynamodb(config: &aws_config::SdkConfig) -> aws_sdk_dynamodb::Client {
    aws_sdk_dynamodb::Client::new(config)
}

/// A Kinesis client from [`sdk_config`].
pub fn kinesis(config: &aws_config::SdkConfig) -> aws_sdk_kinesis::Client {
    aws_sdk_kinesis::Client::new(config)
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
