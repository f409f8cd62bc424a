//! Integration tests of tally-domain: one binary, one module per area.

mod compact;
mod event;
mod exactly_once;
mod exactly_once_sim;
mod fixtures;
mod golden;
mod hll;
mod ingest;
mod laws;
mod partition;
mod requests;
mod rollup;
mod signing;
mod wire;
