//! SDK configuration and the functions' environment.

use std::time::Duration;

use tally_domain::exactly_once::DedupWindow;

use crate::store::StoreConfig;
use crate::Error;

/// The counter store's environment (the template sets them on every function that reaches the cache).
pub mod cache_env {
    /// `host:port` of the cache endpoint.
    pub const ENDPOINT: &str = "TALLY_CACHE_ENDPOINT";
    /// `true` (ElastiCache Serverless: TLS only) or `false` (the local cloud's plain TCP server).
    pub const TLS: &str = "TALLY_CACHE_TLS";
    /// `iam` (ElastiCache IAM authentication) or `none` (the local cloud).
    pub const AUTH: &str = "TALLY_CACHE_AUTH";
    /// The ElastiCache user id (IAM authentication).
    pub const USER: &str = "TALLY_CACHE_USER";
    /// The cache's name (the IAM token is signed for it).
    pub const NAME: &str = "TALLY_CACHE_NAME";
    /// Seconds a claim on an event id lives (the stack option `dedup_window_secs`).
    pub const DEDUP_WINDOW_SECS: &str = "TALLY_DEDUP_WINDOW_SECS";
}

/// Expiry of counter and index keys: a day, so a compactor that is down for hours loses nothing.
pub const DEFAULT_COUNTER_TTL_SECS: u64 = 24 * 3_600;
/// Limit on connecting to the cache and on each reply.
pub const CACHE_TIMEOUT: Duration = Duration::from_secs(5);

/// The counter store's configuration from the environment ([`cache_env`]).
pub fn store_config() -> Result<StoreConfig, Error> {
    store_config_from(|name| std::env::var(name).ok())
}

/// [`store_config`] over any lookup (tests pass a map).
pub fn store_config_from(get: impl Fn(&str) -> Option<String>) -> Result<StoreConfig, Error> {
    let var = |name: &'static str, hint: &'static str| required_value(name, hint, get(name));
    let endpoint = var(cache_env::ENDPOINT, "the cache endpoint as host:port")?;
    let invalid = |name: &'static str, value: &str, rule: &str| Error::InvalidEnv {
        name,
        value: value.chars().take(64).collect(),
        rule: rule.to_owned(),
    };
    let port_ok = endpoint
        .rsplit_once(':')
        .is_some_and(|(host, port)| !host.is_empty() && port.parse::<u16>().is_ok_and(|p| p > 0));
    if !port_ok || endpoint.contains('/') || endpoint.contains('@') {
        return Err(invalid(
            cache_env::ENDPOINT,
            &endpoint,
            "give host:port, e.g. 127.0.0.1:6379",
        ));
    }
    let tls = var(cache_env::TLS, "true (ElastiCache) or false (local)")?;
    let scheme = match tls.as_str() {
        "true" => "rediss",
        "false" => "redis",
        other => return Err(invalid(cache_env::TLS, other, "give true or false")),
    };
    let auth = var(cache_env::AUTH, "iam (ElastiCache) or none (local)")?;
    let credentials = match auth.as_str() {
        "none" => None,
        "iam" => {
            let user = var(cache_env::USER, "the ElastiCache user id")?;
            let name = var(cache_env::NAME, "the cache's name")?;
            return Err(invalid(
                cache_env::AUTH,
                "iam",
                &format!(
                    "IAM authentication (user {user}, cache {name}) is not implemented yet: the signed token \
                     is still to be built; use none with a cache that needs no authentication"
                ),
            ));
        }
        other => return Err(invalid(cache_env::AUTH, other, "give iam or none")),
    };
    let window = match get(cache_env::DEDUP_WINDOW_SECS).filter(|v| !v.trim().is_empty()) {
        None => DedupWindow::default(),
        Some(v) => {
            let secs = v.trim().parse::<u64>().map_err(|_| {
                invalid(
                    cache_env::DEDUP_WINDOW_SECS,
                    &v,
                    "give a whole number of seconds",
                )
            })?;
            DedupWindow::from_secs(secs)
                .map_err(|e| invalid(cache_env::DEDUP_WINDOW_SECS, &v, &e.to_string()))?
        }
    };
    Ok(StoreConfig {
        nodes: vec![format!("{scheme}://{endpoint}")],
        credentials,
        window,
        counter_ttl_secs: DEFAULT_COUNTER_TTL_SECS,
        timeout: CACHE_TIMEOUT,
    })
}

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

    fn check_store(vars: &[(&str, &str)], expect: Result<(&str, u64), &str>) {
        let map: std::collections::HashMap<&str, &str> = vars.iter().copied().collect();
        let got = store_config_from(|name| map.get(name).map(|v| (*v).to_owned()))
            .map(|c| (c.nodes.join(","), c.window.secs()))
            .map_err(|e| e.to_string());
        assert_eq!(
            got.as_ref()
                .map(|(n, w)| (n.as_str(), *w))
                .map_err(String::as_str),
            expect,
            "{vars:?}"
        );
    }

    #[test]
    fn store_configs() {
        use cache_env::*;
        let local = [(ENDPOINT, "127.0.0.1:6379"), (TLS, "false"), (AUTH, "none")];
        check_store(&local, Ok(("redis://127.0.0.1:6379", 3_600)));
        let mut aws = local.to_vec();
        aws[0].1 = "tally-cache-abc.serverless.use1.cache.amazonaws.com:6379";
        aws[1].1 = "true";
        check_store(
            &aws,
            Ok((
                "rediss://tally-cache-abc.serverless.use1.cache.amazonaws.com:6379",
                3_600,
            )),
        );
        let mut windowed = local.to_vec();
        windowed.push((DEDUP_WINDOW_SECS, "7200"));
        check_store(&windowed, Ok(("redis://127.0.0.1:6379", 7_200)));
        let with = |name: &'static str, value: &'static str| {
            let mut v: Vec<(&str, &str)> =
                local.iter().copied().filter(|(n, _)| *n != name).collect();
            v.push((name, value));
            v
        };
        check_store(&with(ENDPOINT, ""), Err("environment variable TALLY_CACHE_ENDPOINT is not set: the cache endpoint as host:port"));
        for bad in [
            "localhost",
            "host:0",
            "host:99999",
            ":6379",
            "redis://h:1",
            "u@h:1",
            "h:port",
        ] {
            let want = format!("environment variable TALLY_CACHE_ENDPOINT = {bad:?} is invalid: give host:port, e.g. 127.0.0.1:6379");
            check_store(&with(ENDPOINT, bad), Err(&want));
        }
        check_store(
            &with(TLS, "yes"),
            Err("environment variable TALLY_CACHE_TLS = \"yes\" is invalid: give true or false"),
        );
        check_store(
            &with(AUTH, "password"),
            Err(
                "environment variable TALLY_CACHE_AUTH = \"password\" is invalid: give iam or none",
            ),
        );
        check_store(
            &with(AUTH, "iam"),
            Err("environment variable TALLY_CACHE_USER is not set: the ElastiCache user id"),
        );
        let mut iam = with(AUTH, "iam");
        iam.extend([(USER, "tally-compactor"), (NAME, "tally-cache")]);
        let err = store_config_from(|n| {
            iam.iter()
                .find(|(k, _)| *k == n)
                .map(|(_, v)| (*v).to_owned())
        })
        .expect_err("not yet");
        assert!(err.to_string().contains("not implemented yet"), "{err}");
        check_store(&with(DEDUP_WINDOW_SECS, "60"), Err("environment variable TALLY_DEDUP_WINDOW_SECS = \"60\" is invalid: dedup window of 60 s is out of range: give 900..=604800 seconds (shorter than Lambda's 15-minute maximum timeout, a claim could expire under its own invocation)"));
        check_store(&with(DEDUP_WINDOW_SECS, "1h"), Err("environment variable TALLY_DEDUP_WINDOW_SECS = \"1h\" is invalid: give a whole number of seconds"));
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
