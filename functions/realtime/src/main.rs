//! The `realtime` Lambda function: `lambda_runtime` around [`tally_realtime::handler`].

use anyhow::Context;
use lambda_runtime::{service_fn, LambdaEvent};
use tally_aws::cache_auth::StoreSource;
use tally_aws::store::{CacheAuth, CacheEnv};
use tally_realtime::Realtime;

/// mimalloc instead of glibc's malloc: allocation was ~16 % of the pipeline's CPU under the load test
/// (docs/benchmarks.md, "Allocator").
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// One thread: an instance handles one invocation at a time, so a second worker only adds cross-thread wake-ups
/// (docs/benchmarks.md, "One thread per function").
#[tokio::main(flavor = "current_thread")]
async fn main() -> anyhow::Result<()> {
    tally_aws::config::init_tracing();
    let cache = CacheEnv::from_env().context("while reading the configuration")?;
    let endpoint = cache.node_url();
    // The AWS configuration only signs IAM tokens; nothing else here calls AWS.
    let sdk = match cache.auth {
        CacheAuth::Iam { .. } => Some(tally_aws::config::sdk_config().await),
        CacheAuth::None => None,
    };
    let store = StoreSource::connect(
        cache,
        tally_aws::config::DEFAULT_COUNTER_TTL_SECS,
        tally_aws::config::CACHE_TIMEOUT,
        sdk,
    )
    .await
    .with_context(|| format!("while connecting to the counter store at {endpoint}"))?;
    let state = Realtime::new(store);
    let state = &state;
    lambda_runtime::run(service_fn(move |event: LambdaEvent<_>| {
        tally_realtime::handler(state, event)
    }))
    .await
    .map_err(|error| anyhow::anyhow!("the lambda runtime stopped: {error}"))
}
