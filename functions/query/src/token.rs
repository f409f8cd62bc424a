//! The API token: a [`tally_aws::secret_tokens::SecretTokens`] (read from its Secrets Manager secret, re-read
//! after a TTL, `AWSCURRENT` and `AWSPREVIOUS` accepted). The reading and caching live in `tally-aws` because
//! collect reads its origin secret the same way.

pub use tally_aws::secret_tokens::*;
