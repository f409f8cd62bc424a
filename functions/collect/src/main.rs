//! The `collect` Lambda function: `lambda_http` around [`tally_collect::Collector::handle`].

use std::convert::Infallible;

use anyhow::Context;
use lambda_http::{service_fn, Request};
use tally_collect::keys::Keys;
use tally_collect::origin::{Origin, ORIGIN_SECRET_ENV};
use tally_collect::Collector;

/// mimalloc instead of glibc's malloc: allocation was ~16 % of the pipeline's CPU under the load test
/// (docs/benchmarks.md, "Allocator").
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// One thread: an instance handles one invocation at a time, so a second worker only adds cross-thread wake-ups
/// (docs/benchmarks.md, "One thread per function").
#[tokio::main(flavor = "current_thread")]
async fn main() -> anyhow::Result<()> {
    tally_aws::config::init_tracing();
    let stream = tally_aws::config::required_env(
        tally_contract::env::STREAM_NAME,
        "the name of the events stream",
    )
    .context("while reading the configuration")?;
    let config = tally_aws::config::sdk_config().await;
    let keys = match std::env::var(tally_collect::KEYS_SECRET_ENV) {
        Ok(arn) if !arn.is_empty() => {
            Keys::from_secret(aws_sdk_secretsmanager::Client::new(&config), arn)
        }
        _ => {
            tracing::warn!(
                message = "no collect keys secret configured: posts with a key are refused, pixels are unsigned",
                variable = tally_collect::KEYS_SECRET_ENV
            );
            Keys::none()
        }
    };
    let origin = Origin::load(
        std::env::var(ORIGIN_SECRET_ENV).ok().as_deref(),
        &aws_sdk_secretsmanager::Client::new(&config),
        tally_edge::now_ms(),
    )
    .await
    .context("while reading the collect origin secret at cold start")?;
    let collector = Collector::new(tally_aws::config::kinesis(&config), stream)
        .with_keys(keys)
        .with_origin(origin);
    let collector = &collector;
    lambda_http::run(service_fn(move |request: Request| async move {
        Ok::<_, Infallible>(collector.handle(request).await)
    }))
    .await
    .map_err(|error| anyhow::anyhow!("the lambda runtime stopped: {error}"))
}
