//! The `collect` Lambda function: `lambda_http` around [`tally_collect::Collector::handle`].

use std::convert::Infallible;

use anyhow::Context;
use lambda_http::{service_fn, Request};
use tally_collect::Collector;

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    tally_aws::config::init_tracing();
    let stream =
        tally_aws::config::required_env("TALLY_STREAM_NAME", "the name of the events stream")
            .context("while reading the configuration")?;
    let config = tally_aws::config::sdk_config().await;
    let collector = Collector::new(tally_aws::config::kinesis(&config), stream);
    let collector = &collector;
    lambda_http::run(service_fn(move |request: Request| async move {
        Ok::<_, Infallible>(collector.handle(request).await)
    }))
    .await
    .map_err(|error| anyhow::anyhow!("the lambda runtime stopped: {error}"))
}
