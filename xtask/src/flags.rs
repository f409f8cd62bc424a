//! Command-line flags of `cargo xtask`. Parsing only: no command logic here.

use std::ffi::OsString;
use std::path::PathBuf;

use anyhow::{bail, Context};
use lexopt::prelude::*;

pub const USAGE: &str = "\
usage: cargo xtask <command> [flags]

commands:
  synth    [--stage S] [--out FILE]        CloudFormation JSON (stdout or FILE), deterministic
  help                                     this text

The stage defaults to the current git branch.";

#[derive(Debug)]
pub enum Cmd {
    Help,
    Synth(Synth),
    NotYet(&'static str),
}

#[derive(Debug)]
pub struct Synth {
    pub stage: Option<String>,
    pub out: Option<PathBuf>,
}

pub fn parse(args: impl IntoIterator<Item = OsString>) -> anyhow::Result<Cmd> {
    let mut parser = lexopt::Parser::from_args(args);
    let Some(arg) = parser.next()? else { return Ok(Cmd::Help) };
    let name = match arg {
        Value(name) => name.string()?,
        Short('h') | Long("help") => return Ok(Cmd::Help),
        other => bail!("expected a command, found {}", other.unexpected()),
    };
    let cmd = match name.as_str() {
        "help" => Cmd::Help,
        "synth" => {
            let mut cmd = Synth { stage: None, out: None };
            while let Some(arg) = parser.next()? {
                match arg {
                    Long("stage") => cmd.stage = Some(parser.value()?.string()?),
                    Long("out") => cmd.out = Some(parser.value()?.into()),
                    other => return Err(other.unexpected()).context("while reading `synth` flags"),
                }
            }
            Cmd::Synth(cmd)
        }
        "diff" => Cmd::NotYet("diff"),
        "deploy" => Cmd::NotYet("deploy"),
        "destroy" => Cmd::NotYet("destroy"),
        "previews" => Cmd::NotYet("previews"),
        "dev" => Cmd::NotYet("dev"),
        "loadtest" => Cmd::NotYet("loadtest"),
        other => bail!("unknown command `{other}`"),
    };
    Ok(cmd)
}
