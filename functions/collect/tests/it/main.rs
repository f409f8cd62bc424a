//! Integration tests of tally-collect: the handler called directly with Function URL events (real fixtures
//! and generated hostile ones), writing to a `moto_server` Kinesis stream or to a loopback endpoint that
//! throttles like Kinesis does.

mod handler;
mod origin;
mod stream;
mod support;
mod throttle;
mod trust;
