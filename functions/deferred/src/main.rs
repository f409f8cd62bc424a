//! The `deferred` Lambda function: `lambda_runtime` around [`tally_deferred::handler`].

use anyhow::Context;
use lambda_runtime::{service_fn, LambdaEvent};
use tally_aws::metrics::MetricsTable;
use tally_deferred::Deferred;

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    tally_aws::config::init_tracing();
    let table =
        tally_aws::config::required_env("TALLY_METRICS_TABLE", "the name of the metrics table")
            .context("while reading the configuration")?;
    let bucket =
        tally_aws::config::required_env("TALLY_ARCHIVE_BUCKET", "the name of the archive bucket")
            .context("while reading the configuration")?;
    let config = tally_aws::config::sdk_config().await;
    let state = Deferred::new(
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
