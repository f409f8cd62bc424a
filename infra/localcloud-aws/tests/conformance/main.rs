//! Conformance: the same client-level tests, through the Rust SDK clients the functions use, against the local
//! endpoint and against `moto_server`. Each behaviour is one async body run against both targets
//! ([`harness::agree`]); the two observations must be equal. Where moto is known to differ from AWS
//! (listed in `docs/local-cloud.md`, "Conformance"), the body says so and checks AWS's documented behaviour on the local endpoint only.

mod capacity;
mod dynamodb;
mod harness;
mod hostile;
mod kinesis;
mod persistence;
mod s3;
mod secretsmanager;
mod sqs;
