//! The ad-event domain of tally.
//!
//! Everything here is pure: no AWS SDK, no Lambda runtime, no I/O. The functions under
//! `functions/` are thin shells around these modules.

pub mod ages;
pub mod archive;
pub mod calendar;
pub mod compact;
pub mod compact_repair;
pub mod emf;
pub mod enrich;
pub mod event;
pub mod exactly_once;
pub mod hll;
pub mod ingest;
pub mod partition;
pub mod redrive;
pub mod rollup;
pub mod scaling;
pub mod signing;
pub mod store_keys;
pub mod store_model;
pub mod totals;
pub mod urlencoded;
pub mod wire;
