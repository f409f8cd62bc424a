//! ElastiCache IAM authentication: the token a function gives as its password.
//!
//! ElastiCache checks an IAM-authenticated user's password as a SigV4 presigned request: `GET
//! http://<cache name>/?Action=connect&User=<user id>&ResourceType=ServerlessCache`, signed for the service
//! `elasticache` in the cache's region with the function's role credentials, valid for at most 15 minutes
//! (`X-Amz-Expires=900`); the token is that URL without its `http://`. The token is checked when a connection
//! authenticates; a connection stays authenticated for up to 12 hours, but any new connection (a cluster
//! client reconnecting, a failover) needs a token that has not expired, so [`StoreSource`] reconnects with a
//! fresh one before the old one is [`TOKEN_REFRESH`] old.

use std::time::{Duration, Instant, SystemTime};

use aws_sigv4::http_request::{
    sign, SignableBody, SignableRequest, SignatureLocation, SigningSettings,
};
use aws_sigv4::sign::v4;
use tokio::sync::Mutex;

use crate::store::{CacheAuth, CacheEnv, CounterStore, StoreConfig};
use crate::Error;

/// How long a token is valid (ElastiCache's maximum).
pub const TOKEN_LIFETIME: Duration = Duration::from_secs(900);
/// A store connected with a token this old is replaced by a fresh connection before the next batch.
pub const TOKEN_REFRESH: Duration = Duration::from_secs(600);

/// The IAM authentication token of `user` for the serverless cache `cache_name`, signed with `credentials` in
/// `region` at `now`.
pub fn iam_token(
    cache_name: &str,
    user: &str,
    region: &str,
    credentials: &aws_sdk_dynamodb::config::Credentials,
    now: SystemTime,
) -> Result<String, Error> {
    let failed = |what: String| Error::Store {
        op: "iam token",
        message: what,
        retryable: false,
    };
    let check = |name: &str, value: &str| {
        if value.is_empty()
            || !value
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_' || b == b'.')
        {
            Err(failed(format!(
                "the {name} {value:?} must be letters, digits, '-', '_' or '.'"
            )))
        } else {
            Ok(())
        }
    };
    check("cache name", cache_name)?;
    check("user id", user)?;
    check("region", region)?;
    let url =
        format!("http://{cache_name}/?Action=connect&User={user}&ResourceType=ServerlessCache");
    let mut settings = SigningSettings::default();
    settings.signature_location = SignatureLocation::QueryParams;
    settings.expires_in = Some(TOKEN_LIFETIME);
    let identity = credentials.clone().into();
    let params = v4::SigningParams::builder()
        .identity(&identity)
        .region(region)
        .name("elasticache")
        .time(now)
        .settings(settings)
        .build()
        .map_err(|e| failed(e.to_string()))?
        .into();
    let signable = SignableRequest::new("GET", &url, std::iter::empty(), SignableBody::Bytes(&[]))
        .map_err(|e| failed(e.to_string()))?;
    let (instructions, _signature) = sign(signable, &params)
        .map_err(|e| failed(e.to_string()))?
        .into_parts();
    let mut request = http::Request::builder()
        .method("GET")
        .uri(&url)
        .body(())
        .map_err(|e| failed(e.to_string()))?;
    instructions.apply_to_request_http1x(&mut request);
    let signed = request.uri().to_string();
    Ok(signed
        .strip_prefix("http://")
        .unwrap_or(signed.as_str())
        .to_owned())
}

/// A counter store connection that keeps its IAM token fresh and is replaced when it broke:
/// [`StoreSource::get`] reconnects (with a new token) once the current connection's token is [`TOKEN_REFRESH`]
/// old (never for `TALLY_CACHE_AUTH=none`), and whenever a command failed on the connection itself
/// ([`CounterStore::is_broken`]: the cache restarted, failed over or did not answer in time).
pub struct StoreSource {
    cache: CacheEnv,
    counter_ttl_secs: u64,
    timeout: Duration,
    sdk: Option<aws_config::SdkConfig>,
    current: Mutex<(CounterStore, Instant)>,
}

impl std::fmt::Debug for StoreSource {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("StoreSource")
            .field("endpoint", &self.cache.node_url())
            .field("auth", &self.cache.auth)
            .finish_non_exhaustive()
    }
}

impl StoreSource {
    /// Connects as `cache` says; `sdk` gives the credentials and region for IAM tokens.
    pub async fn connect(
        cache: CacheEnv,
        counter_ttl_secs: u64,
        timeout: Duration,
        sdk: Option<aws_config::SdkConfig>,
    ) -> Result<StoreSource, Error> {
        let store = connect(&cache, counter_ttl_secs, timeout, sdk.as_ref()).await?;
        Ok(StoreSource {
            cache,
            counter_ttl_secs,
            timeout,
            sdk,
            current: Mutex::new((store, Instant::now())),
        })
    }

    /// The store to use for the next batch: a new connection when the current one broke or its token is
    /// old. A failed reconnect is the batch's error; the next `get` tries again.
    pub async fn get(&self) -> Result<CounterStore, Error> {
        let mut current = self.current.lock().await;
        let broken = current.0.is_broken();
        let stale = matches!(self.cache.auth, CacheAuth::Iam { .. })
            && current.1.elapsed() >= TOKEN_REFRESH;
        if broken || stale {
            if broken {
                tracing::warn!(
                    message = "a command failed on the cache connection: connecting anew",
                    endpoint = self.cache.node_url()
                );
            }
            let store = connect(
                &self.cache,
                self.counter_ttl_secs,
                self.timeout,
                self.sdk.as_ref(),
            )
            .await?;
            *current = (store, Instant::now());
        }
        Ok(current.0.clone())
    }
}

async fn connect(
    cache: &CacheEnv,
    counter_ttl_secs: u64,
    timeout: Duration,
    sdk: Option<&aws_config::SdkConfig>,
) -> Result<CounterStore, Error> {
    let credentials = match &cache.auth {
        CacheAuth::None => None,
        CacheAuth::Iam { user, cache_name } => {
            use aws_sdk_dynamodb::config::ProvideCredentials;
            let missing = |what: &str| {
                Error::Store {
                op: "iam token",
                message: format!("no {what} to sign the cache's IAM token with (the function's role and AWS_REGION provide them on Lambda)"),
                retryable: false,
            }
            };
            let sdk = sdk.ok_or_else(|| missing("AWS configuration"))?;
            let region = sdk.region().ok_or_else(|| missing("region"))?;
            let provider = sdk
                .credentials_provider()
                .ok_or_else(|| missing("credentials provider"))?;
            let creds = provider
                .provide_credentials()
                .await
                .map_err(|e| Error::Store {
                    op: "iam token",
                    message: format!("could not load credentials: {e}"),
                    retryable: true,
                })?;
            let token = iam_token(cache_name, user, region.as_ref(), &creds, SystemTime::now())?;
            Some((user.clone(), token))
        }
    };
    let config = StoreConfig {
        nodes: vec![cache.node_url()],
        credentials,
        window: cache.window,
        counter_ttl_secs,
        timeout,
    };
    CounterStore::connect(&config).await
}

#[cfg(test)]
mod tests {
    use super::*;

    fn creds(token: Option<&str>) -> aws_sdk_dynamodb::config::Credentials {
        aws_sdk_dynamodb::config::Credentials::new(
            "AKIDEXAMPLE",
            "wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY",
            token.map(str::to_owned),
            None,
            "test",
        )
    }

    /// 2026-12-06T05:30:00Z
    fn at() -> SystemTime {
        SystemTime::UNIX_EPOCH + Duration::from_secs(1_796_535_000)
    }

    #[test]
    fn token_shape() {
        let t = iam_token(
            "tally-main-cache",
            "tally-main-fn",
            "us-east-1",
            &creds(None),
            at(),
        )
        .expect("token");
        assert!(
            t.starts_with(
                "tally-main-cache/?Action=connect&User=tally-main-fn&ResourceType=ServerlessCache&"
            ),
            "{t}"
        );
        for part in [
            "X-Amz-Algorithm=AWS4-HMAC-SHA256",
            "X-Amz-Credential=AKIDEXAMPLE%2F20261206%2Fus-east-1%2Felasticache%2Faws4_request",
            "X-Amz-Date=20261206T053000Z",
            "X-Amz-Expires=900",
            "X-Amz-SignedHeaders=host",
            "X-Amz-Signature=",
        ] {
            assert!(t.contains(part), "{part} missing in {t}");
        }
        assert!(!t.contains("X-Amz-Security-Token"), "{t}");
        let with_session =
            iam_token("c", "u", "eu-west-1", &creds(Some("FwoG/zz+x==")), at()).expect("token");
        assert!(
            with_session.contains("X-Amz-Security-Token=FwoG%2Fzz%2Bx%3D%3D"),
            "{with_session}"
        );
        // Deterministic for the same inputs, different a second later.
        assert_eq!(
            t,
            iam_token(
                "tally-main-cache",
                "tally-main-fn",
                "us-east-1",
                &creds(None),
                at()
            )
            .expect("again")
        );
        assert_ne!(
            t,
            iam_token(
                "tally-main-cache",
                "tally-main-fn",
                "us-east-1",
                &creds(None),
                at() + Duration::from_secs(1)
            )
            .expect("later")
        );
    }

    #[test]
    fn hostile_names_are_refused() {
        for (cache, user, region) in [
            ("evil.example/x?", "u", "us-east-1"),
            ("c", "u&Action=other", "us-east-1"),
            ("c", "", "us-east-1"),
            ("c", "u", "us east 1"),
        ] {
            let err = iam_token(cache, user, region, &creds(None), at())
                .expect_err("hostile")
                .to_string();
            assert!(err.contains("must be letters, digits"), "{err}");
        }
    }
}
