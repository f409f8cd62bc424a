//! The `query` Lambda function: reads its token secret at cold start (and again every few minutes), then serves
//! [`tally_query::Query::handle`] through `lambda_http`.

use std::convert::Infallible;

use anyhow::Context;
use lambda_http::{service_fn, Request};
use tally_aws::cache_auth::StoreSource;
use tally_aws::store::CacheEnv;
use tally_query::{load_auth, Auth, Query};

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
    let config = tally_aws::config::sdk_config().await;
    let secrets = aws_sdk_secretsmanager::Client::new(&config);
    let auth = load_auth(
        std::env::var(tally_contract::env::QUERY_AUTH)
            .ok()
            .as_deref(),
        std::env::var(tally_contract::env::QUERY_TOKEN_SECRET_ARN)
            .ok()
            .as_deref(),
        &secrets,
    )
    .await
    .context("while loading the API token at cold start")?;
    if matches!(auth, Auth::Off) {
        tracing::warn!(message = "TALLY_QUERY_AUTH=off: the API and dashboard are open to anyone (local development only)");
    }
    let cache = CacheEnv::from_env().context("while reading the cache configuration")?;
    let endpoint = cache.node_url();
    let store = StoreSource::connect(
        cache,
        tally_aws::config::DEFAULT_COUNTER_TTL_SECS,
        tally_aws::config::CACHE_TIMEOUT,
        Some(config.clone()),
    )
    .await
    .with_context(|| format!("while connecting to the counter store at {endpoint}"))?;
    let query = Query::new(tally_aws::config::dynamodb(&config), table, store, auth);
    let query = &query;
    lambda_http::run(service_fn(move |request: Request| async move {
        Ok::<_, Infallible>(query.handle(request).await)
    }))
    .await
    .map_err(|error| anyhow::anyhow!("the lambda runtime stopped: {error}"))
}
