//! Traffic: the profiles `cargo xtask plan` prices and `cargo xtask loadtest` drives (TOML files under
//! `xtask/profiles/`, format in `docs/plan.md`), shared so that the model and the measurement run the same traffic,
//! and the generator that turns a profile into the requests real clients send ([`generate`]).

pub mod generate;
pub mod profile;

pub use generate::{Generator, Request, RequestKind};
pub use profile::{Profile, DAY, DEFAULT_PROFILE, DEFAULT_PROFILE_PATH, DEFAULT_USERS, KIND_NAMES};
