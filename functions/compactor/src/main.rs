//! The `compactor` Lambda function: `lambda_runtime` around [`tally_compactor::handler`], run by an
//! EventBridge schedule.

use anyhow::Context;
use lambda_runtime::{service_fn, LambdaEvent};
use tally_aws::cache_auth::StoreSource;
use tally_aws::compacted::CompactedTable;
use tally_aws::lane_progress::ProgressReader;
use tally_aws::store::CacheEnv;
use tally_compactor::{Compactor, Repair};

/// mimalloc instead of glibc's malloc: allocation was ~16 % of the pipeline's CPU under the load test
/// (docs/benchmarks.md, "Allocator").
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// One thread: an instance handles one invocation at a time, so a second worker only adds cross-thread wake-ups
/// (docs/benchmarks.md, "One thread per function").
#[tokio::main(flavor = "current_thread")]
async fn main() -> anyhow::Result<()> {
    tally_aws::config::init_tracing();
    let table = tally_aws::config::required_env(
        tally_contract::env::METRICS_TABLE,
        "the name of the metrics table",
    )
    .context("while reading the configuration")?;
    let bucket = tally_aws::config::required_env(
        tally_contract::env::ARCHIVE_BUCKET,
        "the name of the archive bucket",
    )
    .context("while reading the configuration")?;
    let policy = tally_compactor::policy_from(|name| std::env::var(name).ok())
        .map_err(|e| anyhow::anyhow!("while reading the compaction policy: {e}"))?;
    let index_days = tally_compactor::campaign_index_days_from(|name| std::env::var(name).ok())
        .map_err(|e| anyhow::anyhow!("while reading the campaign index window: {e}"))?;
    let stream = tally_aws::config::required_env(
        tally_contract::env::STREAM_NAME,
        "the name of the events stream (the lanes' progress is read after their marks)",
    )
    .context("while reading the configuration")?;
    let cache = CacheEnv::from_env().context("while reading the cache configuration")?;
    let window_secs = cache.window.secs();
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
    let dynamodb = tally_aws::config::dynamodb(&config);
    let repair = Repair::new(
        dynamodb.clone(),
        table.clone(),
        tally_aws::config::s3(&config),
        bucket,
        window_secs,
    );
    let table = CompactedTable::new(dynamodb, table);
    let state = Compactor::new(store, table, policy)?
        .with_campaign_index_days(index_days)
        .with_repair(repair)
        .with_progress(ProgressReader::new(
            tally_aws::config::kinesis(&config),
            stream,
        ));
    let state = &state;
    lambda_runtime::run(service_fn(move |event: LambdaEvent<_>| {
        tally_compactor::handler(state, event)
    }))
    .await
    .map_err(|error| anyhow::anyhow!("the lambda runtime stopped: {error}"))
}
