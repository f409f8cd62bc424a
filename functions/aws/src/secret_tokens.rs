//! A token kept in a Secrets Manager secret, read at cold start and re-read after a TTL, so a rotation takes
//! effect without a cold start. Both the `AWSCURRENT` and the `AWSPREVIOUS` versions are accepted: clients
//! holding the old token keep working until the next rotation drops it. query's API token and collect's origin
//! secret (the header CloudFront adds) are read with it; [`SecretTokens::named`] says which in the logs.

use anyhow::Context;
use aws_sdk_secretsmanager::error::ProvideErrorMetadata;
use serde_json::Value;
use tokio::sync::Mutex;

/// How long the token is cached before the secret is read again, milliseconds (5 minutes).
pub const TOKEN_TTL_MS: i64 = 5 * 60_000;
/// After a failed re-read, how long the cached tokens are used before the next attempt, milliseconds.
pub const RETRY_MS: i64 = 30_000;
/// How long cached tokens may be used while the secret cannot be read, milliseconds (1 hour): after that every
/// request is refused (`503`) rather than trusting a token that may have been rotated out.
pub const MAX_STALE_MS: i64 = 60 * 60_000;
/// Shortest token accepted from the secret.
pub const MIN_TOKEN_CHARS: usize = 16;

/// The tokens accepted now.
#[derive(Clone, PartialEq, Eq)]
pub struct Tokens {
    /// `AWSCURRENT`: sessions are signed with its key.
    pub current: String,
    /// `AWSPREVIOUS`, when the secret has one holding a valid token.
    pub previous: Option<String>,
}

impl std::fmt::Debug for Tokens {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "Tokens {{ current: <redacted>, previous: {} }}",
            if self.previous.is_some() {
                "<redacted>"
            } else {
                "none"
            }
        )
    }
}

impl Tokens {
    /// The accepted tokens, current first.
    pub fn all(&self) -> impl Iterator<Item = &str> {
        std::iter::once(self.current.as_str()).chain(self.previous.as_deref())
    }

    /// Whether `given` is one of the accepted tokens, compared in constant time with every one (the time says
    /// neither where a wrong token differs nor which version matched).
    pub fn accepts(&self, given: &[u8]) -> bool {
        self.all().fold(false, |ok, token| {
            tally_domain::signing::constant_time_eq(given, token.as_bytes()) | ok
        })
    }
}

/// What [`SecretTokens`] calls its secret in its log lines unless [`SecretTokens::named`] says otherwise.
pub const DEFAULT_NAME: &str = "the API token secret";

/// The token secret and its cached value.
#[derive(Debug)]
pub struct SecretTokens {
    client: aws_sdk_secretsmanager::Client,
    arn: String,
    name: &'static str,
    ttl_ms: i64,
    cached: Mutex<Cached>,
}

#[derive(Debug)]
struct Cached {
    tokens: Tokens,
    /// When the tokens were last read successfully (unix ms).
    read_ms: i64,
    /// When to read the secret next (unix ms).
    next_ms: i64,
}

impl SecretTokens {
    /// Reads the secret once (an error names what is wrong with it) and caches it for `ttl_ms`.
    pub async fn load(
        client: aws_sdk_secretsmanager::Client,
        arn: &str,
        ttl_ms: i64,
        now_ms: i64,
    ) -> anyhow::Result<SecretTokens> {
        let tokens = read_tokens(&client, arn).await?;
        Ok(SecretTokens {
            client,
            arn: arn.to_owned(),
            name: DEFAULT_NAME,
            ttl_ms,
            cached: Mutex::new(Cached {
                tokens,
                read_ms: now_ms,
                next_ms: now_ms + ttl_ms,
            }),
        })
    }

    /// Calls the secret `name` (e.g. "the collect origin secret") in its log lines instead of
    /// [`DEFAULT_NAME`].
    pub fn named(mut self, name: &'static str) -> SecretTokens {
        self.name = name;
        self
    }

    /// The tokens accepted at `now_ms`: the cached ones until their TTL ends, then the secret read again. A
    /// failed read keeps the cached tokens (retried after [`RETRY_MS`]) for at most [`MAX_STALE_MS`]; past that,
    /// an error (the caller answers 503).
    pub async fn get(&self, now_ms: i64) -> Result<Tokens, String> {
        let mut cached = self.cached.lock().await;
        // A clock that went back (another instance's view of time in tests) also re-reads.
        if now_ms < cached.next_ms && now_ms >= cached.read_ms {
            return Ok(cached.tokens.clone());
        }
        match read_tokens(&self.client, &self.arn).await {
            Ok(tokens) => {
                if tokens != cached.tokens {
                    tracing::info!(
                        message = %format!("{} changed", self.name),
                        previous_accepted = tokens.previous.is_some()
                    );
                }
                *cached = Cached {
                    tokens,
                    read_ms: now_ms,
                    next_ms: now_ms + self.ttl_ms,
                };
                Ok(cached.tokens.clone())
            }
            Err(error) if now_ms - cached.read_ms < MAX_STALE_MS => {
                tracing::warn!(message = %format!("could not re-read {}; using the cached token", self.name), stale_ms = now_ms - cached.read_ms, error = %format!("{error:#}"));
                cached.next_ms = now_ms + RETRY_MS;
                Ok(cached.tokens.clone())
            }
            Err(error) => Err(format!("{error:#}")),
        }
    }
}

/// The `AWSCURRENT` token (required, checked) and the `AWSPREVIOUS` one (when there is one that is valid).
async fn read_tokens(client: &aws_sdk_secretsmanager::Client, arn: &str) -> anyhow::Result<Tokens> {
    let (current, previous) = tokio::join!(
        read_stage(client, arn, "AWSCURRENT"),
        read_stage(client, arn, "AWSPREVIOUS")
    );
    let current =
        current?.with_context(|| format!("the token secret {arn} has no AWSCURRENT version"))?;
    let current = token_of(&current).with_context(|| format!("the token in {arn} (AWSCURRENT)"))?;
    let previous = match previous {
        Ok(Some(secret)) => match token_of(&secret) {
            Ok(token) => Some(token),
            Err(error) => {
                tracing::warn!(message = "the previous version of the secret is not a valid token; only the current one is accepted", secret = %arn, error = %format!("{error:#}"));
                None
            }
        },
        Ok(None) => None,
        Err(error) => {
            tracing::warn!(message = "could not read the previous version of the secret; only the current one is accepted", secret = %arn, error = %format!("{error:#}"));
            None
        }
    };
    Ok(Tokens { current, previous })
}

/// The secret string of version `stage`, `None` when the secret has no version with that label.
async fn read_stage(
    client: &aws_sdk_secretsmanager::Client,
    arn: &str,
    stage: &str,
) -> anyhow::Result<Option<String>> {
    match client
        .get_secret_value()
        .secret_id(arn)
        .version_stage(stage)
        .send()
        .await
    {
        Ok(output) => Ok(Some(
            output
                .secret_string()
                .with_context(|| format!("the token secret's {stage} version has no SecretString"))?
                .to_owned(),
        )),
        Err(error)
            if stage != "AWSCURRENT" && error.code() == Some("ResourceNotFoundException") =>
        {
            Ok(None)
        }
        Err(error) => Err(aws_sdk_secretsmanager::Error::from(error))
            .with_context(|| format!("while reading the token secret {arn} ({stage})")),
    }
}

/// The token in a secret string: the whole string, or the `token` member of a JSON object; at least
/// [`MIN_TOKEN_CHARS`] characters, no whitespace, control characters or `;`.
pub fn token_of(secret: &str) -> anyhow::Result<String> {
    let token = match serde_json::from_str::<Value>(secret) {
        Ok(Value::Object(map)) => map
            .get("token")
            .and_then(Value::as_str)
            .context("the token secret is a JSON object without a string member `token`")?
            .to_owned(),
        _ => secret.to_owned(),
    };
    let token = token.trim().to_owned();
    if token.chars().count() < MIN_TOKEN_CHARS
        || token
            .chars()
            .any(|c| c.is_whitespace() || c.is_control() || c == ';')
    {
        anyhow::bail!(
            "the token must be at least {MIN_TOKEN_CHARS} characters without whitespace, control characters or ';'"
        );
    }
    Ok(token)
}
