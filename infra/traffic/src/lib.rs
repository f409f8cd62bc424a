//! Traffic: the profiles `cargo xtask plan` prices and `cargo xtask loadtest` drives (TOML files under
//! `xtask/profiles/`, format in `docs/plan.md`), shared so that the model and the measurement run the same traffic.

pub mod profile;

pub use profile::{Profile, DAY, KIND_NAMES};
