//! `cargo xtask bootstrap`: the per-account-and-region stack that deploys rely on ([`stack`]), its
//! policies for review ([`show`]), and reading it back before a deploy ([`read`]).
//!
//! [`deploy`] creates the stack or updates it in place (re-running upgrades it; an unchanged one is a no-op),
//! through the same change-set path as a stage's deploy, as the caller (an administrator): there is no
//! execution role before the bootstrap stack exists.

pub mod read;
pub mod show;
pub mod stack;

use std::time::{Duration, Instant};

use crate::deploy::{apply, prepare, Target};
use crate::{Clients, Confirm, DeployOutcome, DeployRequest, Error, Output, StackTags};
use stack::{BootstrapOptions, BOOTSTRAP_STACK, BOOTSTRAP_VERSION};

/// The `tally:project` tag of the bootstrap stack: not `tally`, so `previews` never lists or prunes it.
pub const BOOTSTRAP_PROJECT: &str = "tally-bootstrap";

/// How a bootstrap is run.
#[derive(Debug, Clone)]
pub struct BootstrapRequest {
    pub options: BootstrapOptions,
    /// The commit of the tally checkout that bootstraps (a tag on the stack).
    pub commit: String,
    pub confirm: Confirm,
    pub output: Output,
    pub timeout: Duration,
}

/// Creates or upgrades the bootstrap stack. Refuses to downgrade one made by a newer tally.
pub async fn deploy(clients: &Clients, req: &BootstrapRequest) -> Result<DeployOutcome, Error> {
    let started = Instant::now();
    let template = stack::synth(&req.options)?;
    if let Some(existing) = crate::stack::describe(clients, BOOTSTRAP_STACK).await? {
        refuse_downgrade(&existing.outputs)?;
    }
    let deploy = DeployRequest {
        stack_name: BOOTSTRAP_STACK.to_owned(),
        template: serde_json::to_string_pretty(&template)
            .map_err(|e| Error::Template(e.to_string()))?,
        parameters: Default::default(),
        assets: Vec::new(),
        tags: StackTags {
            project: BOOTSTRAP_PROJECT.to_owned(),
            stage: "bootstrap".to_owned(),
            branch: req.options.github_repo.slug(),
            commit: req.commit.clone(),
            created_at: crate::tags::now_rfc3339(),
        },
        confirm: req.confirm,
        // Account-wide: a failure is repaired, never answered with `destroy`.
        protected: true,
        output: req.output,
        timeout: req.timeout,
    };
    let prepared = prepare(&deploy, None, &[])?;
    let target = Target {
        bucket: None,
        execution_role: None,
    };
    apply(clients, &deploy, prepared, target, started, 0).await
}

/// A bootstrap stack of a newer version is left alone: this tally would remove what the newer one added.
fn refuse_downgrade(outputs: &[(String, String)]) -> Result<(), Error> {
    let deployed = outputs
        .iter()
        .find(|(k, _)| k == "BootstrapVersion")
        .and_then(|(_, v)| v.parse::<u32>().ok());
    match deployed {
        Some(v) if v > BOOTSTRAP_VERSION => Err(Error::Bootstrap {
            stack: BOOTSTRAP_STACK.to_owned(),
            problem: format!(
                "is version {v}, newer than the version {BOOTSTRAP_VERSION} this checkout would deploy; bootstrap from the newer tally instead of downgrading"
            ),
        }),
        _ => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn newer_bootstraps_are_not_downgraded() {
        let outputs = |v: &str| vec![("BootstrapVersion".to_owned(), v.to_owned())];
        assert!(refuse_downgrade(&outputs(&BOOTSTRAP_VERSION.to_string())).is_ok());
        assert!(refuse_downgrade(&[]).is_ok());
        let newer = refuse_downgrade(&outputs(&(BOOTSTRAP_VERSION + 1).to_string()))
            .expect_err("refused")
            .to_string();
        assert!(newer.contains("newer than the version"), "{newer}");
    }
}
