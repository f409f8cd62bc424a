//! The `realtime` Lambda function: `lambda_runtime` around [`tally_realtime::handler`].

use std::time::Duration;

use anyhow::Context;
use lambda_runtime::{service_fn, LambdaEvent};
use tally_aws::store::{CacheEnv, CounterStore, StoreConfig};
use tally_realtime::Realtime;

/// Counter and index keys outlive the compactor's reach by a wide margin (it folds closed minutes within
/// minutes); they expire so that an abandoned stage's cache empties itself.
const COUNTER_TTL_SECS: u64 = 2 * 24 * 3600;
/// Connecting, and each reply.
const TIMEOUT: Duration = Duration::from_secs(5);

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    tally_aws::config::init_tracing();
    let cache = CacheEnv::from_env().context("while reading the configuration")?;
    let config = StoreConfig::from_cache_env(&cache, COUNTER_TTL_SECS, TIMEOUT)
        .context("while reading the configuration")?;
    let store = CounterStore::connect(&config).await.with_context(|| {
        format!(
            "while connecting to the counter store at {}",
            cache.node_url()
        )
    })?;
    let state = Realtime::new(store);
    let state = &state;
    lambda_runtime::run(service_fn(move |event: LambdaEvent<_>| {
        tally_realtime::handler(state, event)
    }))
    .await
    .map_err(|error| anyhow::anyhow!("the lambda runtime stopped: {error}"))
}
