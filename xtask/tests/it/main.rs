//! Integration tests of the `cargo xtask` binary: one test binary, one module per command.

mod plan;
mod sweep;
