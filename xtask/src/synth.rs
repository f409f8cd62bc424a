//! `cargo xtask synth` — prints or writes the pipeline's CloudFormation template.

use crate::flags::Synth;

impl Synth {
    pub fn run(self) -> anyhow::Result<()> {
        anyhow::bail!("synth: the pipeline stack is not written yet")
    }
}
