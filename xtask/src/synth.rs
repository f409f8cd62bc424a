//! `cargo xtask synth` — prints or writes the pipeline's CloudFormation template.

use anyhow::Context;
use tally_pipeline::PipelineOptions;

use crate::flags::Synth;
use crate::stage;

impl Synth {
    pub fn run(self) -> anyhow::Result<()> {
        let stage = stage::resolve(self.stage.as_deref())?;
        let template = tally_pipeline::synth_json(&stage, &PipelineOptions::default())
            .with_context(|| format!("while synthesizing stack {}", stage.stack_name()))?;
        match &self.out {
            Some(path) => {
                std::fs::write(path, &template)
                    .with_context(|| format!("while writing {}", path.display()))?;
                eprintln!(
                    "wrote {} ({} bytes, stack {})",
                    path.display(),
                    template.len(),
                    stage.stack_name()
                );
            }
            None => {
                use std::io::Write;
                let mut stdout = std::io::stdout().lock();
                stdout
                    .write_all(template.as_bytes())
                    .context("while writing the template to stdout")?;
            }
        }
        Ok(())
    }
}
