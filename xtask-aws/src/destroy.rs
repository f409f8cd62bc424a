//! `cargo xtask destroy` — tear a stage down and verify nothing of it is left. Builds nothing.

use std::time::Duration;

use anyhow::Context;
use tally_deploy::{Clients, DestroyOutcome, DestroyRequest, Output};
use tally_pipeline::Stage;

use crate::deploy::{block_on, PROJECT};
use crate::flags::Destroy;
use crate::protect;

impl crate::Run for Destroy {
    fn run(self) -> anyhow::Result<()> {
        // Before any AWS call: a protected stage must be named twice.
        let target = protect::target(
            "destroy",
            self.stage.as_deref(),
            self.guard.pr.as_deref(),
            protect::consent(self.yes, self.guard.yes_i_mean),
        )?;
        let req = request(&target.stage, target.confirm)?;
        block_on(async {
            let clients = Clients::from_env().await?;
            tally_deploy::destroy(&clients, &req).await
        })
        .map(|outcome| report(&req.stack_name, &outcome))
        .with_context(|| format!("while destroying stack {}", req.stack_name))
    }
}

/// The destroy request of a stage: its synthesized template names what must be gone afterwards.
pub fn request(stage: &Stage, confirm: tally_deploy::Confirm) -> anyhow::Result<DestroyRequest> {
    let template =
        tally_pipeline::synth_value(stage, &crate::stack_options(stage)?).with_context(|| {
            format!(
                "while synthesizing stack {} to learn its names",
                stage.stack_name()
            )
        })?;
    Ok(DestroyRequest {
        stack_name: stage.stack_name(),
        project: PROJECT.to_owned(),
        template,
        confirm,
        output: Output::detect(),
        timeout: Duration::from_secs(60 * 60),
    })
}

pub fn report(stack: &str, outcome: &DestroyOutcome) {
    match outcome {
        DestroyOutcome::NothingToDelete => println!(
            "nothing to delete: there is no stack {stack} and nothing of its stage is left"
        ),
        DestroyOutcome::Destroyed {
            objects_deleted,
            verified,
            retained,
            elapsed,
        } => {
            println!(
                "destroyed stack {stack} in {:.1}s: {objects_deleted} objects deleted from its buckets, {verified} named resources verified gone",
                elapsed.as_secs_f32()
            );
            if !retained.is_empty() {
                println!("left in place with their data (the template retains them; delete them by hand if you mean to):");
                for line in retained {
                    println!("  {line}");
                }
            }
        }
    }
}
