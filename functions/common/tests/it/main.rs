//! Integration tests of tally-aws against `moto_server` on 127.0.0.1, one server per test.

mod kinesis;
mod metrics;

use std::time::Duration;

use aws_config::retry::RetryConfig;
use aws_config::{BehaviorVersion, SdkConfig};
use aws_sdk_dynamodb::config::Credentials;
use tally_testkit::Moto;

/// SDK configuration pointing at `moto` and nowhere else.
pub async fn sdk(moto: &Moto) -> SdkConfig {
    sdk_at(&moto.endpoint()).await
}

/// SDK configuration pointing at `endpoint` (moto or a proxy in front of it), retrying quickly.
pub async fn sdk_at(endpoint: &str) -> SdkConfig {
    aws_config::defaults(BehaviorVersion::latest())
        .endpoint_url(endpoint)
        .retry_config(
            RetryConfig::standard()
                .with_max_attempts(2)
                .with_initial_backoff(Duration::from_millis(5)),
        )
        .region(aws_config::Region::new("us-east-1"))
        .credentials_provider(Credentials::new("test", "test", None, None, "test"))
        .load()
        .await
}
