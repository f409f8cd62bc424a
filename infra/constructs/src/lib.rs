//! CDK-style constructs in Rust: scope, id and props; typed references; grants that derive
//! least-privilege IAM; synthesis to a CloudFormation template.
//!
//! ```
//! use tally_constructs::{kinesis, lambda, Stack};
//!
//! let stack = Stack::new("tally-docs");
//! let app = stack.root();
//! let bucket = stack.string_parameter("AssetsBucket", "bucket that holds the function zips");
//! let key = stack.string_parameter("CollectCodeKey", "S3 key of the collect zip");
//! let events = kinesis::Stream::new(&app, "Events", kinesis::StreamProps::default());
//! let collect = lambda::Function::new(&app, "Collect", lambda::FunctionProps {
//!     code: Some(lambda::Code::s3(bucket.value(), key.value())),
//!     ..lambda::FunctionProps::default()
//! });
//! events.grant_write(&collect);
//! let template = stack.synth().unwrap();
//! assert!(template["Resources"].as_object().unwrap().len() > 3);
//! ```
//!
//! Synthesis is pure (no AWS call) and deterministic: the same app gives a byte-identical template.
//! Mistakes in the app (a batch size AWS would reject, a function without code, a reference to a
//! construct of another stack) are collected while the app is built and reported by [`Stack::synth`]
//! as one [`Error`] that names each construct path and the rule it breaks.

mod core;
mod expr;
mod iam_policy;
pub mod naming;

pub mod budgets;
pub mod cloudwatch;
pub mod dynamodb;
pub mod dynamodb_items;
pub mod ec2;
pub mod edge;
pub mod elasticache;
pub mod event_source;
pub mod events;
pub mod iam;
pub mod kinesis;
pub mod lambda;
pub mod s3;
pub mod secrets;
pub mod sns;
pub mod sqs;

pub use crate::core::{Node, Parameter, Scope, Stack, Violation};
pub use crate::expr::Expr;
pub use crate::naming::{Name, NameKind, Stage};

/// Everything that can go wrong in this crate.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The app breaks one or more rules; each violation names the construct path and the rule.
    #[error("the app does not synthesize ({} problem{}):\n{}", .0.len(), if .0.len() == 1 { "" } else { "s" }, render(.0))]
    Invalid(Vec<Violation>),
    /// The template could not be rendered as JSON.
    #[error("cannot render the template as json: {0}")]
    Render(#[from] serde_json::Error),
}

fn render(violations: &[Violation]) -> String {
    violations
        .iter()
        .map(|v| format!("  {v}"))
        .collect::<Vec<_>>()
        .join("\n")
}
