//! tally-deploy: ships a synthesized tally stack to AWS (or anything that speaks its APIs) and takes it down again.
//!
//! * [`deploy()`] — bootstrap the assets bucket, upload function zips under their content hash, deploy through a
//!   change set with live progress; a no-op when template and parameters are unchanged.
//! * [`diff()`] — the plan of a deploy ([`DeployPlan`]): the template diff plus the change set, executing nothing.
//! * [`destroy()`] — empty the stack's buckets, delete the stack, verify that nothing of the stage is left.
//! * [`previews`] — list and prune the per-branch preview stacks of one project.
//!
//! Everything talks to AWS through the official SDK clients built from the standard configuration
//! ([`Clients::from_env`]), so `AWS_ENDPOINT_URL` points it at any AWS-compatible endpoint. Nothing here knows
//! about a particular endpoint: tests run it against `moto_server` unchanged.

pub mod assets;
mod aws;
pub mod bootstrap;
mod deploy;
mod destroy;
mod error;
pub mod plan;
pub mod policy_eval;
pub mod previews;
mod progress;
mod stack;
pub mod tags;
pub mod template;

pub use assets::{upload, Asset, AssetsBucket, Uploaded, PENDING_VERSION};
pub use aws::Clients;
pub use deploy::{deploy, diff, Confirm, DeployOutcome, DeployRequest, ASSETS_BUCKET_PARAMETER};
pub use destroy::{destroy, DestroyOutcome, DestroyRequest, Named};
pub use error::{Error, Tampered};
pub use plan::DeployPlan;
pub use progress::Output;
pub use stack::{describe, StackInfo};
pub use tags::StackTags;
