//! The collect keys: the Secrets Manager secret of key id → secret, read with a TTL.
//!
//! Both the `AWSCURRENT` and the `AWSPREVIOUS` version are read, so a rotation (a new version put as
//! current) takes effect within one TTL and the previous secret keeps working until the next rotation.
//! Parsing and checking are [`tally_domain::signing`]'s; this module only fetches and caches.

use std::sync::Arc;
use std::time::{Duration, Instant};

use aws_sdk_secretsmanager::error::SdkError;
use aws_sdk_secretsmanager::operation::get_secret_value::GetSecretValueError;
use tally_domain::signing::KeyRing;
use tokio::sync::Mutex;

/// How long a read of the secret is used before it is read again (a rotation takes effect within it).
pub const DEFAULT_TTL: Duration = Duration::from_secs(60);
/// After a failed read, how long the last good ring is used before trying again.
const RETRY_AFTER_FAILURE: Duration = Duration::from_secs(5);

/// Where the keys come from.
#[derive(Debug)]
enum Source {
    /// No keys configured: every post with a key is refused, every pixel is unsigned.
    None,
    Secret {
        client: aws_sdk_secretsmanager::Client,
        secret_id: String,
    },
}

#[derive(Debug)]
struct Cached {
    ring: Arc<KeyRing>,
    until: Instant,
}

/// The keys could not be read and there is no earlier read to fall back on.
#[derive(Debug, Clone, thiserror::Error)]
#[error("the collect keys could not be read")]
pub struct KeysUnavailable;

/// The key ring, read from Secrets Manager and cached for a TTL.
#[derive(Debug)]
pub struct Keys {
    source: Source,
    ttl: Duration,
    cached: Mutex<Option<Cached>>,
}

impl Keys {
    /// No keys: posts with a key get 401, pixels are unsigned.
    pub fn none() -> Keys {
        Keys {
            source: Source::None,
            ttl: DEFAULT_TTL,
            cached: Mutex::new(None),
        }
    }

    /// Keys read from the secret `secret_id` (name or ARN), cached for [`DEFAULT_TTL`].
    pub fn from_secret(
        client: aws_sdk_secretsmanager::Client,
        secret_id: impl Into<String>,
    ) -> Keys {
        Keys {
            source: Source::Secret {
                client,
                secret_id: secret_id.into(),
            },
            ttl: DEFAULT_TTL,
            cached: Mutex::new(None),
        }
    }

    /// Replaces the TTL (tests use a short one to see a rotation take effect).
    pub fn with_ttl(mut self, ttl: Duration) -> Keys {
        self.ttl = ttl;
        self
    }

    /// The current ring: cached while fresh; else read again. When a read fails, the last good ring is used
    /// (and the read tried again a few seconds later); with none, [`KeysUnavailable`].
    pub async fn ring(&self) -> Result<Arc<KeyRing>, KeysUnavailable> {
        let (client, secret_id) = match &self.source {
            Source::None => return Ok(Arc::default()),
            Source::Secret { client, secret_id } => (client, secret_id),
        };
        let mut cached = self.cached.lock().await;
        let now = Instant::now();
        if let Some(c) = cached.as_ref().filter(|c| now < c.until) {
            return Ok(c.ring.clone());
        }
        match read_ring(client, secret_id).await {
            Ok(ring) => {
                let ring = Arc::new(ring);
                *cached = Some(Cached {
                    ring: ring.clone(),
                    until: now + self.ttl,
                });
                Ok(ring)
            }
            Err(error) => {
                tracing::error!(message = "collect keys not read", secret = %secret_id, %error);
                let c = cached.as_mut().ok_or(KeysUnavailable)?;
                c.until = now + RETRY_AFTER_FAILURE.min(self.ttl);
                Ok(c.ring.clone())
            }
        }
    }
}

/// Reads the current version (required) and the previous one (if any) into a ring. A version that does not
/// parse is logged and left out; a current version that does not parse leaves the previous one alone.
async fn read_ring(
    client: &aws_sdk_secretsmanager::Client,
    secret_id: &str,
) -> Result<KeyRing, String> {
    let current = read_stage(client, secret_id, "AWSCURRENT")
        .await?
        .ok_or_else(|| "the secret has no AWSCURRENT version".to_owned())?;
    let previous = read_stage(client, secret_id, "AWSPREVIOUS").await?;
    let mut ring = KeyRing::default();
    for (stage, text) in [("AWSCURRENT", Some(current)), ("AWSPREVIOUS", previous)] {
        let Some(text) = text else { continue };
        if let Err(error) = ring.add_version(&text) {
            tracing::error!(message = "collect keys version refused", stage, %error);
        }
    }
    Ok(ring)
}

/// One version stage's secret string; `None` when the secret has no version in that stage.
async fn read_stage(
    client: &aws_sdk_secretsmanager::Client,
    secret_id: &str,
    stage: &str,
) -> Result<Option<String>, String> {
    match client
        .get_secret_value()
        .secret_id(secret_id)
        .version_stage(stage)
        .send()
        .await
    {
        Ok(out) => Ok(out.secret_string().map(str::to_owned)),
        Err(SdkError::ServiceError(e))
            if matches!(e.err(), GetSecretValueError::ResourceNotFoundException(_))
                && stage != "AWSCURRENT" =>
        {
            Ok(None)
        }
        Err(error) => Err(format!(
            "GetSecretValue {stage}: {}",
            aws_sdk_secretsmanager::Error::from(error)
        )),
    }
}
