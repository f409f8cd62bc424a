//! The one error type of tally-deploy.

/// Everything that can go wrong while deploying, diffing or destroying.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// An AWS call failed; `message` carries the service's code and message.
    #[error("{operation} failed: {message}")]
    Aws {
        operation: &'static str,
        message: String,
    },

    #[error("template: {0}")]
    Template(String),

    #[error("parameter `{name}`: {problem}")]
    Parameter { name: String, problem: String },

    #[error("asset `{name}` ({path}): {problem}")]
    Asset {
        name: String,
        path: String,
        problem: String,
    },

    /// CloudFormation reported a failure; `resource` is the first resource that failed.
    #[error("deploy of stack `{stack}` failed at {resource}: {reason}\n{hint}")]
    DeployFailed {
        stack: String,
        resource: String,
        reason: String,
        hint: String,
    },

    /// The stack is in a state that no deploy can start from.
    #[error("stack `{stack}` is {status}: {hint}")]
    StackState {
        stack: String,
        status: String,
        hint: String,
    },

    #[error("the deploy would lose data:\n{summary}\nre-run with --yes (`--yes-i-mean STAGE` for a protected stage) to accept, or change the app to keep these resources")]
    NeedsConfirmation { summary: String },

    #[error("the deploy was declined; nothing was executed")]
    Declined,

    #[error("stack `{stack}` is gone but resources of its stage remain:\n{remaining}\ndelete them by hand (or re-run destroy once their deletion finished)")]
    Leftovers { stack: String, remaining: String },

    #[error("timed out after {seconds}s waiting for stack `{stack}` (last status {status})")]
    Timeout {
        stack: String,
        status: String,
        seconds: u64,
    },

    #[error("invalid age `{input}`: {problem}")]
    Duration { input: String, problem: String },
}
