//! The `deferred` Lambda function: `lambda_runtime` around [`tally_deferred::handler`].

use std::time::Duration;

use anyhow::Context;
use lambda_runtime::{service_fn, LambdaEvent};
use tally_aws::cache_auth::StoreSource;
use tally_aws::metrics::MetricsTable;
use tally_aws::store::CacheEnv;
use tally_deferred::Deferred;

/// As the realtime lane's (the compactor folds closed minutes long before).
const COUNTER_TTL_SECS: u64 = 2 * 24 * 3600;
/// Connecting to the cache, and each reply.
const TIMEOUT: Duration = Duration::from_secs(5);

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    tally_aws::config::init_tracing();
    let table =
        tally_aws::config::required_env("TALLY_METRICS_TABLE", "the name of the metrics table")
            .context("while reading the configuration")?;
    let bucket =
        tally_aws::config::required_env("TALLY_ARCHIVE_BUCKET", "the name of the archive bucket")
            .context("while reading the configuration")?;
    let cache = CacheEnv::from_env().context("while reading the configuration")?;
    let config = tally_aws::config::sdk_config().await;
    let endpoint = cache.node_url();
    let store = StoreSource::connect(cache, COUNTER_TTL_SECS, TIMEOUT, Some(config.clone()))
        .await
        .with_context(|| format!("while connecting to the counter store at {endpoint}"))?;
    let state = Deferred::new(
        store,
        MetricsTable::new(tally_aws::config::dynamodb(&config), table),
        tally_deferred::s3_client(&config),
        bucket,
    );
    let state = &state;
    lambda_runtime::run(service_fn(move |event: LambdaEvent<_>| {
        tally_deferred::handler(state, event)
    }))
    .await
    .map_err(|error| anyhow::anyhow!("the lambda runtime stopped: {error}"))
}
