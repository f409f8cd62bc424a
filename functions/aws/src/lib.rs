//! The AWS side shared by tally's functions.
//!
//! * [`batch`]: a Kinesis invocation decoded up to its first bad record, its fence and partial-batch response.
//! * [`config`]: SDK configuration from the standard AWS sources (`AWS_ENDPOINT_URL` included) and the
//!   functions' environment variables.
//! * [`metrics`]: the metrics table's campaign index (read) and the query API's resolutions.
//! * [`metrics_write`]: the compactor's writes to the metrics table (compacted items, watermark, campaign
//!   index); no other function names it.
//! * [`fence`]: record positions ([`fence::Fence`]) and a decoded batch's events with them.
//! * [`store`]: the counter store (Valkey): a batch applied exactly once by event id (claims, fence, script).
//! * [`cache_auth`]: ElastiCache IAM tokens and a store connection that keeps its token fresh.
//! * [`cache_read`]: closed minutes read out of the counter store, summed over shards (the compactor's input).
//! * [`compacted`]: compacted minute items and the compactor's watermark in the metrics table, read.
//! * [`lane_progress`]: how far each lane has got per shard (its fence mark and the stream after it), for the
//!   compactor.
//! * [`kinesis`]: `PutRecords` that resends individually failed records with bounded backoff.
//! * [`redrive`]: one record replayed through a lane's claims and atomic step under its own fence.
//! * [`stream_read`]: a discarded range read back from the stream (`cargo xtask redrive`).
//! * [`emf`]: CloudWatch embedded metric format lines.
//! * [`secret_tokens`]: a token in a Secrets Manager secret, cached with a TTL, current and previous versions
//!   accepted (query's API token, collect's origin secret).
//!
//! Everything that can fail returns [`Error`]; [`Error::is_retryable`] tells a function edge whether the
//! invocation should be retried by Lambda or the input is at fault.

pub mod batch;
pub mod cache_auth;
pub mod cache_read;
pub mod compacted;
pub mod compacted_batch;
pub mod config;
pub mod emf;
mod error;
pub mod fence;
pub mod kinesis;
pub mod lane_progress;
pub mod metrics;
pub mod metrics_write;
pub mod redrive;
pub mod secret_tokens;
pub mod store;
pub mod stream_read;

pub use error::Error;
