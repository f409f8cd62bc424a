//! Integration tests of the `cargo xtask` binary: one test binary, one module per command.

mod check;
mod plan;
mod protect;
mod redrive;
mod sweep;
