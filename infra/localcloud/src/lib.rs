//! The tally local cloud: the synthesized template run on one machine, with no AWS account and no Docker.

pub mod aws;
pub mod cache;
pub mod cloud;
pub mod esm;
pub mod guard;
pub mod lambda;
pub mod meter;
pub mod schedule;
pub mod store;
pub mod template;
pub mod url;

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
    pub(crate) fn template(at: &str, message: impl Into<String>) -> Error {
        Error::Template {
            at: at.to_owned(),
            message: message.into(),
        }
    }

    pub(crate) fn start(what: impl Into<String>, message: impl Into<String>) -> Error {
        Error::Start {
            what: what.into(),
            message: message.into(),
        }
    }
}
