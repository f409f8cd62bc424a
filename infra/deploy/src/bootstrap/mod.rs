//! `cargo xtask bootstrap`: the per-account-and-region stack that deploys rely on ([`stack`]), its
//! policies for review ([`show`]), and reading it back before a deploy ([`read`]).

pub mod show;
pub mod stack;
