//! Integration tests of tally-aws against `moto_server` on 127.0.0.1, one server per test.

mod cache_auth;
mod compacted;
mod kinesis;
mod metrics;
mod redrive;
mod store;

use aws_config::SdkConfig;
use tally_testkit::Moto;

/// SDK configuration pointing at `moto` and nowhere else.
pub async fn sdk(moto: &Moto) -> SdkConfig {
    tally_aws_testing::sdk_config(&moto.endpoint()).await
}

/// SDK configuration pointing at `endpoint` (moto or a proxy in front of it), retrying quickly.
pub async fn sdk_at(endpoint: &str) -> SdkConfig {
    tally_aws_testing::sdk_config(endpoint).await
}
