//! The local AWS emulator: the AWS endpoint and its services, the durable log they persist through, the meter
//! (what AWS would bill) and the local ElastiCache (a real `valkey-server`). The runner, `tally-localcloud`,
//! runs a template on it; nothing here depends on the runner.

pub mod aws;
pub mod cache;
pub mod guard;
pub mod meter;
pub mod store;

use std::path::PathBuf;

/// Errors of the local cloud's setup: loading a template, starting its resources.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The template cannot run locally; `at` is the logical id (and property) concerned.
    #[error("template {at}: {message}")]
    Template { at: String, message: String },
    /// A resource could not be created or started.
    #[error("cannot start {what}: {message}")]
    Start { what: String, message: String },
    #[error("{what} at {path}: {source}")]
    Io {
        what: String,
        path: PathBuf,
        source: std::io::Error,
    },
}

impl Error {
    pub fn template(at: &str, message: impl Into<String>) -> Error {
        Error::Template {
            at: at.to_owned(),
            message: message.into(),
        }
    }

    pub fn start(what: impl Into<String>, message: impl Into<String>) -> Error {
        Error::Start {
            what: what.into(),
            message: message.into(),
        }
    }
}
