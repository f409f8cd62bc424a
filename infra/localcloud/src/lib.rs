//! The tally local cloud: the synthesized template run on one machine, with no AWS account and no Docker.

pub mod cloud;
pub mod esm;
pub mod lambda;
pub mod schedule;
pub mod template;
pub mod url;

// The setup error is the emulator's (its cache starts fail with it too), re-exported: what `LocalCloud::start` and
// `template::load` return stays `tally_localcloud::Error`.
pub use tally_localcloud_aws::Error;
