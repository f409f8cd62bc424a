//! The `compactor` Lambda function: `lambda_runtime` around [`tally_compactor::handler`], run by an
//! EventBridge schedule.

use anyhow::Context;
use lambda_runtime::{service_fn, LambdaEvent};
use tally_aws::cache_auth::StoreSource;
use tally_aws::compacted::CompactedTable;
use tally_aws::store::CacheEnv;
use tally_compactor::Compactor;
use tally_domain::compact::CompactPolicy;

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    tally_aws::config::init_tracing();
    let table =
        tally_aws::config::required_env("TALLY_METRICS_TABLE", "the name of the metrics table")
            .context("while reading the configuration")?;
    let cache = CacheEnv::from_env().context("while reading the cache configuration")?;
    let endpoint = cache.node_url();
    let config = tally_aws::config::sdk_config().await;
    let store = StoreSource::connect(
        cache,
        tally_aws::config::DEFAULT_COUNTER_TTL_SECS,
        tally_aws::config::CACHE_TIMEOUT,
        Some(config.clone()),
    )
    .await
    .with_context(|| format!("while connecting to the counter store at {endpoint}"))?;
    let table = CompactedTable::new(tally_aws::config::dynamodb(&config), table);
    let state = Compactor::new(store, table, CompactPolicy::default())?;
    let state = &state;
    lambda_runtime::run(service_fn(move |event: LambdaEvent<_>| {
        tally_compactor::handler(state, event)
    }))
    .await
    .map_err(|error| anyhow::anyhow!("the lambda runtime stopped: {error}"))
}
