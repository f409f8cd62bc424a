//! Tests of the realtime function: the handler called directly with Kinesis event fixtures, against the
//! metrics table on `moto_server` (one server per test, on 127.0.0.1).

mod fixture;
mod handler;
