//! `cargo xtask synth` — prints or writes the pipeline's CloudFormation template.

use anyhow::Context;

use crate::flags::Synth;
use crate::stage;

impl Synth {
    pub fn run(self) -> anyhow::Result<()> {
        let stage = stage::resolve(self.stage.as_deref())?;
        let template = tally_pipeline::synth_json(&stage, &crate::stack_options(&stage)?)
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

#[cfg(test)]
mod tests {
    use tally_pipeline::{synth_json, PipelineOptions, Stage};

    use crate::flags::Synth;

    #[test]
    fn writes_the_template_to_out() {
        let path =
            std::env::temp_dir().join(format!("tally-synth-test-{}.json", std::process::id()));
        let stage = "feature/ÜBER_new--thing";
        Synth {
            stage: Some(stage.into()),
            out: Some(path.clone()),
        }
        .run()
        .expect("synth runs");
        let written = std::fs::read_to_string(&path).expect("template written");
        std::fs::remove_file(&path).expect("remove the template");
        let expect =
            synth_json(&Stage::new(stage), &PipelineOptions::default()).expect("synthesizes");
        assert_eq!(written, expect);
    }

    #[test]
    fn unwritable_out_names_the_file() {
        let out = std::path::PathBuf::from("/nonexistent-dir/t.json");
        let error = Synth {
            stage: Some("main".into()),
            out: Some(out),
        }
        .run()
        .expect_err("cannot write");
        assert!(
            format!("{error:#}").contains("while writing /nonexistent-dir/t.json"),
            "{error:#}"
        );
    }
}
