//! Tests of the deferred function: the handler called directly with a Kinesis event fixture, against the
//! metrics table and the archive bucket on `moto_server` (one server per test, on 127.0.0.1).

mod fixture;
mod handler;
