//! The origin check: with the edge (`edge = true`), CloudFront adds the header [`ORIGIN_HEADER`] holding the
//! stack's origin secret to every request it forwards, and collect refuses (`403`) a request without it or with a
//! wrong value, so nobody can post straight to the Function URL past the WAF rate rule. Without the edge there
//! is no secret and nothing is checked.
//!
//! The secret is read like query's API token ([`tally_aws::secret_tokens::SecretTokens`]): at cold start, again
//! after [`ORIGIN_SECRET_TTL_MS`], `AWSCURRENT` and `AWSPREVIOUS` both accepted (CloudFront keeps sending the old
//! value until the stack is updated after a rotation), compared in constant time with every accepted version.
//! Neither the value sent nor the secret is ever logged or answered.

use tally_aws::secret_tokens::SecretTokens;
pub use tally_domain::ingest::ORIGIN_HEADER;

/// The environment variable naming the origin secret (its ARN); unset or empty, collect has no edge.
pub const ORIGIN_SECRET_ENV: &str = tally_contract::env::COLLECT_ORIGIN_SECRET_ARN;
/// How long the origin secret is cached before it is read again, milliseconds (5 minutes, as the API token).
pub const ORIGIN_SECRET_TTL_MS: i64 = tally_aws::secret_tokens::TOKEN_TTL_MS;
/// What the logs call the secret.
const NAME: &str = "the collect origin secret";

/// Whether requests must carry the origin header.
#[derive(Debug, Default)]
pub enum Origin {
    /// No edge: every request is taken.
    #[default]
    Open,
    /// Behind the edge: only requests carrying an accepted version of the secret.
    Edge(SecretTokens),
}

/// Why a request was refused: what the client is told (never the value it sent, never the secret).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refusal {
    /// No origin header: the request did not come through CloudFront.
    Missing,
    /// An origin header that is none of the accepted versions.
    Wrong,
    /// The secret cannot be read (and the cached one is too old to trust): `503`.
    Unavailable,
}

impl Refusal {
    /// The HTTP status: `403`, or `503` when the secret cannot be read.
    pub fn status(self) -> u16 {
        match self {
            Refusal::Missing | Refusal::Wrong => 403,
            Refusal::Unavailable => 503,
        }
    }

    /// The problem type's last segment.
    pub fn kind(self) -> &'static str {
        match self {
            Refusal::Missing | Refusal::Wrong => "not-through-edge",
            Refusal::Unavailable => "origin-check-unavailable",
        }
    }

    /// The problem's title.
    pub fn title(self) -> &'static str {
        match self {
            Refusal::Missing | Refusal::Wrong => "requests must come through the edge",
            Refusal::Unavailable => "the request's origin cannot be checked now",
        }
    }

    /// The problem's detail: what was wrong and what to do.
    pub fn detail(self) -> String {
        match self {
            Refusal::Missing => format!(
                "this collect sits behind CloudFront and the request has no {ORIGIN_HEADER} header: send tracking to \
                 the stack's EdgeUrl output, not to the Function URL; nothing was accepted"
            ),
            Refusal::Wrong => format!(
                "the {ORIGIN_HEADER} header does not match the stack's origin secret: send tracking to the stack's \
                 EdgeUrl output, which adds it; nothing was accepted"
            ),
            Refusal::Unavailable => "nothing was accepted; resend in a few seconds".to_owned(),
        }
    }
}

impl Origin {
    /// Behind the edge when `secret_arn` names a secret (read now: an unreadable or invalid secret fails the cold
    /// start with its reason), open when it is unset or empty.
    pub async fn load(
        secret_arn: Option<&str>,
        client: &aws_sdk_secretsmanager::Client,
        now_ms: i64,
    ) -> anyhow::Result<Origin> {
        let Some(arn) = secret_arn.map(str::trim).filter(|a| !a.is_empty()) else {
            return Ok(Origin::Open);
        };
        let secret = SecretTokens::load(client.clone(), arn, ORIGIN_SECRET_TTL_MS, now_ms)
            .await?
            .named(NAME);
        Ok(Origin::Edge(secret))
    }

    /// Whether a request carrying `header` (the raw value of [`ORIGIN_HEADER`], if any) is taken at `now_ms`.
    pub async fn check(&self, header: Option<&[u8]>, now_ms: i64) -> Result<(), Refusal> {
        let Origin::Edge(secret) = self else {
            return Ok(());
        };
        let Some(given) = header else {
            return Err(Refusal::Missing);
        };
        let tokens = secret.get(now_ms).await.map_err(|error| {
            tracing::error!(message = "the collect origin secret could not be read", %error);
            Refusal::Unavailable
        })?;
        if tokens.accepts(given) {
            Ok(())
        } else {
            Err(Refusal::Wrong)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn without_the_edge_every_request_is_taken() {
        assert_eq!(Origin::Open.check(None, 0).await, Ok(()));
        assert_eq!(Origin::Open.check(Some(b"anything"), 0).await, Ok(()));
    }

    #[test]
    fn refusals_say_what_to_do_and_name_no_secret() {
        for refusal in [Refusal::Missing, Refusal::Wrong] {
            assert_eq!(refusal.status(), 403);
            assert!(refusal.detail().contains("EdgeUrl"), "{}", refusal.detail());
            assert!(refusal.detail().contains(ORIGIN_HEADER));
        }
        assert_eq!(Refusal::Unavailable.status(), 503);
    }
}
