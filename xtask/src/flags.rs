//! Command-line flags of `cargo xtask`. Parsing only: no command logic here.

use std::ffi::OsString;
use std::path::PathBuf;

use anyhow::{bail, Context};
use lexopt::prelude::*;

pub const USAGE: &str = "\
usage: cargo xtask <command> [flags]

commands:
  synth    [--stage S] [--out FILE]        CloudFormation JSON (stdout or FILE), deterministic
  build    [--arch arm64|x86_64] [--cold-start]
                                           function zips via cargo-lambda, content-hashed
                                           (--cold-start: also measure start-up, host arch only)
  ci                                       everything CI checks: fmt, clippy, all tests
  help                                     this text

The stage defaults to the current git branch.";

#[derive(Debug)]
pub enum Cmd {
    Help,
    Synth(Synth),
    Ci(Ci),
    Build(Build),
    NotYet(&'static str),
}

#[derive(Debug)]
pub struct Ci;

#[derive(Debug)]
pub struct Synth {
    pub stage: Option<String>,
    pub out: Option<PathBuf>,
}

#[derive(Debug)]
pub struct Build {
    pub arch: Arch,
    pub cold_start: bool,
}

/// The Lambda architecture to build for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Arch {
    Arm64,
    X86_64,
}

impl Arch {
    pub fn parse(s: &str) -> Option<Arch> {
        match s {
            "arm64" | "aarch64" => Some(Arch::Arm64),
            "x86_64" | "x86-64" | "amd64" => Some(Arch::X86_64),
            _ => None,
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Arch::Arm64 => "arm64",
            Arch::X86_64 => "x86_64",
        }
    }

    pub fn host() -> Arch {
        if cfg!(target_arch = "aarch64") {
            Arch::Arm64
        } else {
            Arch::X86_64
        }
    }

    pub fn is_host(self) -> bool {
        self == Arch::host()
    }
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
        "build" => {
            let mut cmd = Build { arch: Arch::Arm64, cold_start: false };
            while let Some(arg) = parser.next()? {
                match arg {
                    Long("arch") => {
                        let value = parser.value()?.string()?;
                        cmd.arch = Arch::parse(&value)
                            .with_context(|| format!("unknown --arch `{value}`: use arm64 or x86_64"))?;
                    }
                    Long("cold-start") => cmd.cold_start = true,
                    other => return Err(other.unexpected()).context("while reading `build` flags"),
                }
            }
            Cmd::Build(cmd)
        }
        "ci" => {
            if let Some(arg) = parser.next()? {
                return Err(arg.unexpected()).context("`ci` takes no flags");
            }
            Cmd::Ci(Ci)
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
