//! The `scaler` Lambda function: `lambda_runtime` around [`tally_scaler::Scaler::handle`].

use anyhow::Context;
use lambda_runtime::{service_fn, LambdaEvent};
use serde_json::Value;
use tally_scaler::{Config, Scaler};

/// mimalloc instead of glibc's malloc: allocation was ~16 % of the pipeline's CPU under the load test
/// (docs/benchmarks.md, "Allocator").
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// One thread: an instance handles one invocation at a time, so a second worker only adds cross-thread wake-ups
/// (docs/benchmarks.md, "One thread per function").
#[tokio::main(flavor = "current_thread")]
async fn main() -> anyhow::Result<()> {
    tally_aws::config::init_tracing();
    let config = Config::from_lookup(|name| std::env::var(name).ok())
        .context("while reading the configuration")?;
    let sdk = tally_aws::config::sdk_config().await;
    let scaler = Scaler::new(
        aws_sdk_kinesis::Client::new(&sdk),
        aws_sdk_cloudwatch::Client::new(&sdk),
        config,
    );
    let scaler = &scaler;
    lambda_runtime::run(service_fn(move |event: LambdaEvent<Value>| async move {
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_secs() as i64)
            .unwrap_or_default();
        scaler
            .handle(&event.payload, now)
            .await
            .map_err(|error| format!("{error:#}"))
    }))
    .await
    .map_err(|error| anyhow::anyhow!("the lambda runtime stopped: {error}"))
}
