//! The tally local cloud: the synthesized template run on one machine, with no AWS account and no Docker.

pub mod aws;
pub mod esm;
pub mod lambda;
pub mod store;
