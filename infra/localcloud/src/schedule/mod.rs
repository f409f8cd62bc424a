//! EventBridge schedules.

pub mod expr;

pub use expr::{Cron, Schedule};
