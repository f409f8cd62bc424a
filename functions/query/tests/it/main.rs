//! Integration tests of tally-query: the handler called directly with Function URL events over what the
//! pipeline writes — realtime batches applied to a real `valkey-server` by `CounterStore::process`, closed
//! minutes folded into the metrics table (in `moto_server`) by the real compactor, settled rows written by
//! `tally_aws::metrics`' writer — the token read from moto's Secrets Manager, and the dashboard rendered by
//! headless Chromium against the handler served on 127.0.0.1.

mod api;
mod auth;
mod browser;
mod overview;
mod pages;
mod support;
