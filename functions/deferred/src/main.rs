//! The `deferred` Lambda function: `lambda_runtime` around [`tally_deferred::handler`].

use anyhow::Context;
use lambda_runtime::{service_fn, LambdaEvent};
use tally_aws::cache_auth::StoreSource;
use tally_aws::store::CacheEnv;
use tally_deferred::Deferred;

/// mimalloc instead of glibc's malloc: allocation was ~16 % of the pipeline's CPU under the load test
/// (docs/benchmarks.md, "Allocator").
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// One thread: an instance handles one invocation at a time, so a second worker only adds cross-thread wake-ups
/// (docs/benchmarks.md, "One thread per function").
#[tokio::main(flavor = "current_thread")]
async fn main() -> anyhow::Result<()> {
    tally_aws::config::init_tracing();
    let bucket = tally_aws::config::required_env(
        tally_contract::env::ARCHIVE_BUCKET,
        "the name of the archive bucket",
    )
    .context("while reading the configuration")?;
    let cache = CacheEnv::from_env().context("while reading the configuration")?;
    let config = tally_aws::config::sdk_config().await;
    let endpoint = cache.node_url();
    let store = StoreSource::connect(
        cache,
        tally_aws::config::DEFAULT_COUNTER_TTL_SECS,
        tally_aws::config::CACHE_TIMEOUT,
        Some(config.clone()),
    )
    .await
    .with_context(|| format!("while connecting to the counter store at {endpoint}"))?;
    let exclude_unsigned = tally_deferred::settled_unsigned_from_env(
        std::env::var(tally_deferred::SETTLED_UNSIGNED_ENV)
            .ok()
            .as_deref(),
    )
    .map_err(anyhow::Error::msg)
    .context("while reading the configuration")?;
    let state = Deferred::new(store, tally_aws::config::s3(&config), bucket)
        .excluding_unsigned(exclude_unsigned);
    let state = &state;
    lambda_runtime::run(service_fn(move |event: LambdaEvent<_>| {
        tally_deferred::handler(state, event)
    }))
    .await
    .map_err(|error| anyhow::anyhow!("the lambda runtime stopped: {error}"))
}
