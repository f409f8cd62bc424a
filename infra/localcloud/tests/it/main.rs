//! Integration tests of the local cloud's runtime, Function URLs, event source mappings and template loader, and
//! the end-to-end tests of the real pipeline (`e2e`, `repair`), and the dashboard in headless Chromium over demo
//! traffic (`dashboard`).

// A failed unwrap is a failed test, with the value in the message: what a test wants.
#![allow(clippy::unwrap_used)]

mod cache;
mod cloud;
mod dashboard;
mod e2e;
mod edge;
mod hostile;
mod lambda;
mod loadtest;
mod mappings;
mod meter;
mod repair;
mod schedule;
mod support;
mod template;
mod trust;
