//! `cargo xtask diff` — what a deploy would change, from the template diff and a change set; executes nothing.

use anyhow::Context;
use tally_deploy::{Clients, Confirm};

use crate::deploy::{block_on, request};
use crate::flags::{Arch, Build, Diff};
use crate::stage;

impl crate::Run for Diff {
    fn run(self) -> anyhow::Result<()> {
        let stage = stage::resolve(self.stage.as_deref())?;
        if !self.no_build {
            Build {
                arch: Arch::Arm64,
                cold_start: false,
            }
            .run()
            .context("while building the function zips")?;
        }
        let req = request(&stage, Confirm::Refuse)?;
        let plan = block_on(async {
            let clients = Clients::from_env().await?;
            tally_deploy::diff(&clients, &req).await
        })
        .with_context(|| format!("while computing the diff of stack {}", req.stack_name))?;
        println!("stack {}:", req.stack_name);
        print!("{plan}");
        Ok(())
    }
}
