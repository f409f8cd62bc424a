//! Tests of the realtime function: the handler called directly with Kinesis event fixtures, against the
//! counter store, a real `valkey-server` (one per test, on 127.0.0.1).

mod fixture;
mod handler;
