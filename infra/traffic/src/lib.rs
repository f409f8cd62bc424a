//! Traffic: the profiles `cargo xtask plan` prices and `cargo xtask loadtest` drives (TOML files under
//! `xtask/profiles/`, format in `docs/plan.md`), shared so that the model and the measurement run the same traffic,
//! and the generator that turns a profile into the requests real clients send ([`generate`]).
//!
//! The traffic tools are here too, as clients of a running local cloud (they reach it over HTTP only: its
//! Function URLs, and its AWS endpoint for the meter and the stream's shards): the load test behind `cargo xtask
//! loadtest` ([`loadtest`]), the demo traffic of `cargo xtask dev --demo` ([`demo`]), their one HTTP client
//! ([`http_client`]), what they read of a local cloud's endpoints file ([`endpoints`]) and of the machine's CPU
//! ([`machine`]). A library rather than
//! part of xtask, so that the local cloud's own tests drive them too.

pub mod demo;
pub mod endpoints;
pub mod generate;
pub mod http_client;
pub mod loadtest;
pub mod machine;
pub mod profile;

pub use generate::{Generator, Request, RequestKind};
pub use profile::{Profile, DAY, DEFAULT_PROFILE, DEFAULT_PROFILE_PATH, DEFAULT_USERS, KIND_NAMES};
