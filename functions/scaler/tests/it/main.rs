//! Integration tests of tally-scaler: trigger fixtures, configuration, and runs against `moto_server`
//! (Kinesis with `UpdateShardCount`) and a loopback CloudWatch endpoint speaking the SDK's RPC v2 CBOR, which
//! serves the metrics the test publishes as Kinesis would.

mod cloudwatch;
mod config;
mod moto;
