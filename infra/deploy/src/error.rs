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

    /// No bootstrap stack in the account and region.
    #[error("this account has no `{stack}` stack in {region}: run `cargo xtask bootstrap --github-repo OWNER/NAME` once per account and region (with administrator credentials), then deploy again")]
    NotBootstrapped { stack: String, region: String },

    /// The bootstrap stack is older than this deploy needs, or unusable.
    #[error("the `{stack}` stack {problem}: run `cargo xtask bootstrap --github-repo OWNER/NAME` to upgrade it, then deploy again")]
    Bootstrap { stack: String, problem: String },

    /// An object in the assets bucket does not hold the bytes its key (their SHA-256) promises.
    #[error("{0}")]
    TamperedAsset(Box<Tampered>),

    #[error("invalid age `{input}`: {problem}")]
    Duration { input: String, problem: String },
}

/// What [`Error::TamperedAsset`] found: which object, and the two SHA-256s (hex).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Tampered {
    pub name: String,
    pub path: String,
    pub bucket: String,
    pub key: String,
    pub version: String,
    pub expected: String,
    pub found: String,
}

impl std::fmt::Display for Tampered {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let Tampered {
            name,
            path,
            bucket,
            key,
            version,
            expected,
            found,
        } = self;
        write!(
            f,
            "tampered asset `{name}`: s3://{bucket}/{key} (version {version}) has SHA-256 {found}, but the local \
             zip {path} has {expected}; the object was not written by a deploy. Nothing was deployed. Investigate \
             who can write to the bucket, then delete that object version (`aws s3api delete-object --bucket \
             {bucket} --key {key} --version-id {version}`) and deploy again"
        )
    }
}
