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
  plan     [--stage S] (--profile FILE | --events-per-sec N) [--event-bytes B]
           [--json] [--html FILE] [--prices FILE] [--sweep]
                                           monthly AWS cost (tally vs naive), scaler simulation,
                                           freshness budget (docs/plan.md); --sweep: the profile's
                                           shape at 1k..1M events/s, cost and the AWS limits met
  plan     --check LOADTEST.json [--tolerance 15]
                                           the model's units per event against a load test's
                                           metered ones; exits non-zero when one is further off
  ci                                       everything CI checks: fmt, clippy, all tests
  diff     [--stage S] [--no-build]        what a deploy would change (change set), replacements flagged
  deploy   [--stage S | --pr N] [--yes | --yes-i-mean S] [--no-build]
                                           build, upload changed zips, change set, execute, progress, outputs
  destroy  [--stage S | --pr N] [--yes | --yes-i-mean S]
                                           teardown that empties buckets (not retained ones) and verifies
                                           nothing else is left
                                           --pr N: the pull request's preview, stage pr-N; a protected stage
                                           (production, tally.toml [deploy] protected_stages) needs
                                           --stage S --yes-i-mean S (or S typed on a terminal)
  bootstrap --github-repo OWNER/NAME [--release-environment production]
           [--oidc-provider-arn ARN] [--yes]
                                           once per account and region: stack tally-bootstrap (assets
                                           bucket, execution role, GitHub OIDC preview and release
                                           roles); re-run to upgrade (docs/bootstrap.md)
  bootstrap --github-repo OWNER/NAME --show [--account ID] [--region R]
                                           the roles' policies for review (no AWS calls)
  previews list                            the project's stacks: stage, branch, age, status
  previews prune [--older-than 7d] [--keep-branches] [--protect STAGE]... [--only-prs] [--yes]
                                           destroy previews that are old or whose branch is gone
                                           (--only-prs: only pr-N stages, by age)
  dev      [--stage S] [--demo] [--endpoints-file FILE] [--port P] [--release]
                                           the whole stack locally (Function URLs, AWS endpoint, mappings),
                                           state under target/tally-dev/<stage>; Ctrl-C stops, restart resumes
  loadtest [--profile FILE] [--rate N] [--duration D] [--json] [--debug] [--prices FILE]
           [--resend-acked P] [--repeat-in-body P]
                                           a fresh local cloud driven through collect with a traffic profile's
                                           requests (default: xtask/profiles/daily-curve-network.toml) at a
                                           flat N events/s (default 2000) for D (default 30s): freshness,
                                           lost/duplicated per lane, metered units and cost per billion
                                           events (release build unless --debug)
  redrive  --lane realtime|deferred [--stage S] [--local | --endpoints-file FILE] [--dry-run] [--yes]
                                           the lane's on-failure queue: each discarded range read back from
                                           the stream, decoded, its uncounted records replayed exactly once
                                           (docs/redrive.md); --local: the stage's `cargo xtask dev` cloud
  sign-pixel --key-id ID (--secret S | --secret-file FILE) [--expires-in 1h] [--url URL] KEY=VALUE...
                                           a signed pixel query (or URL/p.gif?query): the parameters plus
                                           kid, exp and sig (docs/events.md, \"Signed pixels\"); FILE holds the
                                           secret or the collect keys JSON (key id to secret)
  help                                     this text

The stage defaults to the current git branch.";

#[derive(Debug)]
pub enum Cmd {
    Help,
    Dev(Dev),
    Loadtest(Loadtest),
    Synth(Synth),
    Ci(Ci),
    Build(Build),
    Plan(Plan),
    Deploy(Deploy),
    Diff(Diff),
    Destroy(Destroy),
    Previews(Previews),
    Redrive(Redrive),
    SignPixel(SignPixel),
    Bootstrap(crate::bootstrap::Bootstrap),
}

/// `cargo xtask sign-pixel` (see `crate::sign_pixel`).
#[derive(Debug)]
pub struct SignPixel {
    pub key_id: String,
    pub secret: SecretSource,
    /// As given (`3600`, `90s`, `15m`, `1h`, `7d`).
    pub expires_in: String,
    /// Collect's URL: print `URL/p.gif?query` instead of the query.
    pub url: Option<String>,
    /// The pixel's parameters, `KEY=VALUE`, in order.
    pub params: Vec<(String, String)>,
}

/// Where the signing secret comes from.
pub enum SecretSource {
    Given(String),
    File(PathBuf),
}

impl std::fmt::Debug for SecretSource {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            SecretSource::Given(_) => f.write_str("Given(<redacted>)"),
            SecretSource::File(path) => write!(f, "File({path:?})"),
        }
    }
}

/// `cargo xtask redrive` (see `crate::redrive`).
#[derive(Debug)]
pub struct Redrive {
    pub lane: RedriveLane,
    pub stage: Option<String>,
    pub target: RedriveTarget,
    pub dry_run: bool,
    pub yes: bool,
}

/// Which lane's on-failure queue to redrive.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RedriveLane {
    Realtime,
    Deferred,
}

/// Where the stage runs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RedriveTarget {
    /// The stage's stack on AWS (the standard AWS configuration).
    Aws,
    /// The local cloud of `cargo xtask dev --stage S` (its endpoints file in the stage's state directory).
    Dev,
    /// A local cloud's endpoints file (`tally-localcloud --endpoints-file`, `cargo xtask dev --endpoints-file`).
    EndpointsFile(PathBuf),
}

/// `cargo xtask dev`.
#[derive(Debug)]
pub struct Dev {
    pub stage: Option<String>,
    pub demo: bool,
    pub endpoints_file: Option<PathBuf>,
    /// AWS endpoint port; the Function URLs take the ports after it.
    pub port: Option<u16>,
    pub release: bool,
}

/// `cargo xtask loadtest`.
#[derive(Debug)]
pub struct Loadtest {
    /// The traffic profile; `None`: the shipped default.
    pub profile: Option<PathBuf>,
    /// The price table for `cost_per_billion` (as `plan --prices`).
    pub prices: Option<PathBuf>,
    pub rate: u32,
    /// As given (`30s`, `2m`); checked by the local cloud binary.
    pub duration: String,
    pub json: bool,
    pub debug: bool,
    /// Fraction of acknowledged POSTs the clients send again whole (same ids).
    pub resend_acked: f64,
    /// Fraction of POST bodies holding one event twice.
    pub repeat_in_body: f64,
}

#[derive(Debug)]
pub struct Ci;

#[derive(Debug)]
pub struct Synth {
    pub stage: Option<String>,
    pub out: Option<PathBuf>,
}

#[derive(Debug, Default)]
pub struct Plan {
    pub stage: Option<String>,
    pub profile: Option<PathBuf>,
    pub events_per_sec: Option<f64>,
    pub event_bytes: Option<u32>,
    pub json: bool,
    pub html: Option<PathBuf>,
    pub prices: Option<PathBuf>,
    /// `--sweep`: the profile's shape scaled from 1,000 to 1,000,000 events/s, and the limits met.
    pub sweep: bool,
    /// `--check LOADTEST.json`: compare the model with a load test's metered units.
    pub check: Option<PathBuf>,
    /// `--tolerance PCT` of `--check` (default 15).
    pub tolerance: Option<f64>,
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

/// `cargo xtask deploy`.
#[derive(Debug)]
pub struct Deploy {
    pub stage: Option<String>,
    pub yes: bool,
    /// Deploy the zips already in `target/lambda/` (CI builds them in an earlier step).
    pub no_build: bool,
    /// `--yes-i-mean S`, `--pr N`: see [`StageFlags`].
    pub guard: StageFlags,
}

/// The flags `deploy` and `destroy` add for protected stages and previews (checked by `crate::protect`).
#[derive(Debug, Default)]
pub struct StageFlags {
    /// `--yes-i-mean S`: the confirmation that names the stage (required for a protected one).
    pub yes_i_mean: Option<String>,
    /// `--pr N`: the pull request's preview, stage `pr-N`.
    pub pr: Option<String>,
}

/// `cargo xtask diff`.
#[derive(Debug)]
pub struct Diff {
    pub stage: Option<String>,
    pub no_build: bool,
}

/// `cargo xtask destroy`.
#[derive(Debug)]
pub struct Destroy {
    pub stage: Option<String>,
    pub yes: bool,
    pub guard: StageFlags,
}

/// `cargo xtask previews`.
#[derive(Debug)]
pub struct Previews {
    pub action: PreviewsAction,
}

#[derive(Debug)]
pub enum PreviewsAction {
    List,
    Prune {
        older_than: String,
        keep_branches: bool,
        yes: bool,
        protect: Vec<String>,
        /// `--only-prs`: only pull request previews (`pr-N`), judged by age (their branches are not stages).
        only_prs: bool,
    },
}

fn parse_stack_flags(
    parser: &mut lexopt::Parser,
    command: &str,
    allow_build: bool,
) -> anyhow::Result<(Option<String>, bool, bool, StageFlags)> {
    let (mut stage, mut yes, mut no_build) = (None, false, false);
    let mut guard = StageFlags::default();
    let guarded = command != "diff";
    while let Some(arg) = parser.next()? {
        match arg {
            Long("stage") => stage = Some(parser.value()?.string()?),
            Long("yes") | Short('y') if guarded => yes = true,
            Long("yes-i-mean") if guarded => guard.yes_i_mean = Some(parser.value()?.string()?),
            Long("pr") if guarded => guard.pr = Some(parser.value()?.string()?),
            Long("no-build") if allow_build => no_build = true,
            other => {
                return Err(other.unexpected())
                    .with_context(|| format!("while reading `{command}` flags"))
            }
        }
    }
    if yes && guard.yes_i_mean.is_some() {
        bail!("`{command}`: give --yes or --yes-i-mean STAGE, not both");
    }
    Ok((stage, yes, no_build, guard))
}

fn parse_previews(parser: &mut lexopt::Parser) -> anyhow::Result<Previews> {
    let action = match parser.next()? {
        None => PreviewsAction::List,
        Some(Value(v)) if v == "list" => PreviewsAction::List,
        Some(Value(v)) if v == "prune" => PreviewsAction::Prune {
            older_than: "7d".to_owned(),
            keep_branches: false,
            yes: false,
            protect: Vec::new(),
            only_prs: false,
        },
        Some(other) => {
            return Err(other.unexpected())
                .context("while reading `previews`: expected `list` or `prune`")
        }
    };
    let mut action = action;
    while let Some(arg) = parser.next()? {
        match (&mut action, arg) {
            (PreviewsAction::Prune { older_than, .. }, Long("older-than")) => {
                *older_than = parser.value()?.string()?
            }
            (PreviewsAction::Prune { keep_branches, .. }, Long("keep-branches")) => {
                *keep_branches = true
            }
            (PreviewsAction::Prune { yes, .. }, Long("yes") | Short('y')) => *yes = true,
            (PreviewsAction::Prune { protect, .. }, Long("protect")) => {
                protect.push(parser.value()?.string()?)
            }
            (PreviewsAction::Prune { only_prs, .. }, Long("only-prs")) => *only_prs = true,
            (_, other) => return Err(other.unexpected()).context("while reading `previews` flags"),
        }
    }
    Ok(Previews { action })
}

fn parse_redrive(parser: &mut lexopt::Parser) -> anyhow::Result<Redrive> {
    let (mut lane, mut stage, mut dry_run, mut yes) = (None, None, false, false);
    let mut target = RedriveTarget::Aws;
    while let Some(arg) = parser.next()? {
        match arg {
            Long("lane") => {
                let value = parser.value()?.string()?;
                lane = Some(match value.as_str() {
                    "realtime" => RedriveLane::Realtime,
                    "deferred" => RedriveLane::Deferred,
                    _ => bail!("--lane `{value}`: expected realtime or deferred"),
                });
            }
            Long("stage") => stage = Some(parser.value()?.string()?),
            Long("local") | Long("endpoints-file") if target != RedriveTarget::Aws => {
                bail!("redrive: give --local or --endpoints-file FILE, not both")
            }
            Long("local") => target = RedriveTarget::Dev,
            Long("endpoints-file") => target = RedriveTarget::EndpointsFile(parser.value()?.into()),
            Long("dry-run") => dry_run = true,
            Long("yes") | Short('y') => yes = true,
            other => return Err(other.unexpected()).context("while reading `redrive` flags"),
        }
    }
    let lane = lane.context("redrive: --lane realtime or --lane deferred is required")?;
    if dry_run && yes {
        bail!(
            "redrive: --dry-run changes nothing, so --yes has nothing to confirm; give one of them"
        );
    }
    Ok(Redrive {
        lane,
        stage,
        target,
        dry_run,
        yes,
    })
}

fn parse_sign_pixel(parser: &mut lexopt::Parser) -> anyhow::Result<SignPixel> {
    let (mut key_id, mut secret, mut url) = (None, None, None);
    let mut expires_in = "1h".to_owned();
    let mut params = Vec::new();
    while let Some(arg) = parser.next()? {
        match arg {
            Long("key-id") => key_id = Some(parser.value()?.string()?),
            Long("secret") | Long("secret-file") if secret.is_some() => {
                bail!("sign-pixel: give --secret or --secret-file, not both")
            }
            Long("secret") => secret = Some(SecretSource::Given(parser.value()?.string()?)),
            Long("secret-file") => secret = Some(SecretSource::File(parser.value()?.into())),
            Long("expires-in") => expires_in = parser.value()?.string()?,
            Long("url") => url = Some(parser.value()?.string()?),
            Value(value) => {
                let value = value.string()?;
                let Some((name, v)) = value.split_once('=') else {
                    bail!("sign-pixel: parameter `{value}` is not KEY=VALUE (for example c=cmp-1)");
                };
                params.push((name.to_owned(), v.to_owned()));
            }
            other => return Err(other.unexpected()).context("while reading `sign-pixel` flags"),
        }
    }
    let key_id =
        key_id.context("sign-pixel: --key-id is required (a key id of the collect keys secret)")?;
    let secret = secret.context("sign-pixel: --secret S or --secret-file FILE is required")?;
    if params.is_empty() {
        bail!("sign-pixel: give the pixel's parameters as KEY=VALUE (for example c=cmp-1 a=ad-9 e=impression)");
    }
    Ok(SignPixel {
        key_id,
        secret,
        expires_in,
        url,
        params,
    })
}

pub fn parse(args: impl IntoIterator<Item = OsString>) -> anyhow::Result<Cmd> {
    let mut parser = lexopt::Parser::from_args(args);
    let Some(arg) = parser.next()? else {
        return Ok(Cmd::Help);
    };
    let name = match arg {
        Value(name) => name.string()?,
        Short('h') | Long("help") => return Ok(Cmd::Help),
        other => bail!("expected a command, found {}", other.unexpected()),
    };
    let cmd = match name.as_str() {
        "help" => Cmd::Help,
        "synth" => {
            let mut cmd = Synth {
                stage: None,
                out: None,
            };
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
            let mut cmd = Build {
                arch: Arch::Arm64,
                cold_start: false,
            };
            while let Some(arg) = parser.next()? {
                match arg {
                    Long("arch") => {
                        let value = parser.value()?.string()?;
                        cmd.arch = Arch::parse(&value).with_context(|| {
                            format!("unknown --arch `{value}`: use arm64 or x86_64")
                        })?;
                    }
                    Long("cold-start") => cmd.cold_start = true,
                    other => return Err(other.unexpected()).context("while reading `build` flags"),
                }
            }
            Cmd::Build(cmd)
        }
        "plan" => {
            let mut cmd = Plan::default();
            while let Some(arg) = parser.next()? {
                match arg {
                    Long("stage") => cmd.stage = Some(parser.value()?.string()?),
                    Long("profile") => cmd.profile = Some(parser.value()?.into()),
                    Long("events-per-sec") => {
                        let value = parser.value()?.string()?;
                        let rate: f64 = value.parse().ok().filter(|r: &f64| r.is_finite() && *r >= 0.0).with_context(|| {
                            format!("--events-per-sec `{value}`: expected a number of events per second, e.g. 5000")
                        })?;
                        cmd.events_per_sec = Some(rate);
                    }
                    Long("event-bytes") => {
                        let value = parser.value()?.string()?;
                        let bytes = value.parse().with_context(|| {
                            format!("--event-bytes `{value}`: expected a whole number of bytes, e.g. 300")
                        })?;
                        cmd.event_bytes = Some(bytes);
                    }
                    Long("json") => cmd.json = true,
                    Long("html") => cmd.html = Some(parser.value()?.into()),
                    Long("prices") => cmd.prices = Some(parser.value()?.into()),
                    Long("sweep") => cmd.sweep = true,
                    Long("check") => cmd.check = Some(parser.value()?.into()),
                    Long("tolerance") => {
                        let value = parser.value()?.string()?;
                        let pct: f64 = value
                            .parse()
                            .ok()
                            .filter(|p: &f64| p.is_finite() && *p > 0.0)
                            .with_context(|| {
                                format!(
                                    "--tolerance `{value}`: expected a percentage above 0, e.g. 15"
                                )
                            })?;
                        cmd.tolerance = Some(pct);
                    }
                    other => return Err(other.unexpected()).context("while reading `plan` flags"),
                }
            }
            if cmd.check.is_some() {
                if cmd.profile.is_some() || cmd.events_per_sec.is_some() {
                    bail!("plan --check takes the profile and rate from the load test's JSON: drop --profile / --events-per-sec");
                }
            } else if cmd.tolerance.is_some() {
                bail!("plan: --tolerance goes with --check LOADTEST.json");
            } else if cmd.profile.is_some() == cmd.events_per_sec.is_some() {
                bail!("plan: give exactly one of --profile FILE and --events-per-sec N");
            }
            if cmd.sweep && cmd.events_per_sec == Some(0.0) {
                bail!("plan --sweep scales the profile's shape to each rate; --events-per-sec 0 has none: give a positive rate (it only picks the flat shape) or --profile FILE");
            }
            Cmd::Plan(cmd)
        }
        "ci" => {
            if let Some(arg) = parser.next()? {
                return Err(arg.unexpected()).context("`ci` takes no flags");
            }
            Cmd::Ci(Ci)
        }
        "diff" => {
            let (stage, _, no_build, _) = parse_stack_flags(&mut parser, "diff", true)?;
            Cmd::Diff(Diff { stage, no_build })
        }
        "deploy" => {
            let (stage, yes, no_build, guard) = parse_stack_flags(&mut parser, "deploy", true)?;
            Cmd::Deploy(Deploy {
                stage,
                yes,
                no_build,
                guard,
            })
        }
        "destroy" => {
            let (stage, yes, _, guard) = parse_stack_flags(&mut parser, "destroy", false)?;
            Cmd::Destroy(Destroy { stage, yes, guard })
        }
        "previews" => Cmd::Previews(parse_previews(&mut parser)?),
        "redrive" => Cmd::Redrive(parse_redrive(&mut parser)?),
        "sign-pixel" => Cmd::SignPixel(parse_sign_pixel(&mut parser)?),
        "dev" => {
            let mut cmd = Dev {
                stage: None,
                demo: false,
                endpoints_file: None,
                port: None,
                release: false,
            };
            while let Some(arg) = parser.next()? {
                match arg {
                    Long("stage") => cmd.stage = Some(parser.value()?.string()?),
                    Long("demo") => cmd.demo = true,
                    Long("endpoints-file") => cmd.endpoints_file = Some(parser.value()?.into()),
                    Long("port") => {
                        cmd.port = Some(
                            parser
                                .value()?
                                .parse()
                                .context("--port takes a port number below 65535")?,
                        )
                    }
                    Long("release") => cmd.release = true,
                    other => return Err(other.unexpected()).context("while reading `dev` flags"),
                }
            }
            Cmd::Dev(cmd)
        }
        "loadtest" => {
            let mut cmd = Loadtest {
                profile: None,
                prices: None,
                rate: 2000,
                duration: "30s".to_owned(),
                json: false,
                debug: false,
                resend_acked: 0.0,
                repeat_in_body: 0.0,
            };
            while let Some(arg) = parser.next()? {
                match arg {
                    Long("profile") => cmd.profile = Some(parser.value()?.into()),
                    Long("prices") => cmd.prices = Some(parser.value()?.into()),
                    Long("rate") => {
                        let value = parser.value()?.string()?;
                        cmd.rate = value
                            .parse()
                            .ok()
                            .filter(|r| (1..=100_000).contains(r))
                            .with_context(|| {
                                format!("--rate `{value}`: expected events per second, 1 to 100000")
                            })?
                    }
                    Long("duration") => cmd.duration = parser.value()?.string()?,
                    Long("json") => cmd.json = true,
                    Long("debug") => cmd.debug = true,
                    Long(flag @ ("resend-acked" | "repeat-in-body")) => {
                        let flag = flag.to_owned();
                        let value = parser.value()?.string()?;
                        let p = value
                            .parse::<f64>()
                            .ok()
                            .filter(|p| (0.0..=1.0).contains(p))
                            .with_context(|| {
                                format!("--{flag} `{value}`: expected a fraction from 0 to 1")
                            })?;
                        if flag == "resend-acked" {
                            cmd.resend_acked = p;
                        } else {
                            cmd.repeat_in_body = p;
                        }
                    }
                    other => {
                        return Err(other.unexpected()).context("while reading `loadtest` flags")
                    }
                }
            }
            Cmd::Loadtest(cmd)
        }
        "bootstrap" => Cmd::Bootstrap(crate::bootstrap::parse(&mut parser)?),
        other => bail!("unknown command `{other}`"),
    };
    Ok(cmd)
}

#[cfg(test)]
mod stack_command_tests {
    use super::*;

    /// Parses `args` and compares the command's `Debug` form (or the error) with `expect`.
    fn check(args: &str, expect: &str) {
        let got = match parse(args.split_whitespace().map(OsString::from)) {
            Ok(cmd) => format!("{cmd:?}"),
            Err(error) => format!("error: {error:#}"),
        };
        assert!(got.contains(expect), "`{args}`: {got}");
    }

    #[test]
    fn deploy_diff_destroy_previews() {
        check(
            "deploy",
            r#"Deploy(Deploy { stage: None, yes: false, no_build: false, guard: StageFlags { yes_i_mean: None, pr: None } })"#,
        );
        check(
            "deploy --stage pr-7 --yes --no-build",
            r#"Deploy(Deploy { stage: Some("pr-7"), yes: true, no_build: true, guard: StageFlags { yes_i_mean: None, pr: None } })"#,
        );
        check(
            "deploy --pr 7 --yes --no-build",
            r#"Deploy(Deploy { stage: None, yes: true, no_build: true, guard: StageFlags { yes_i_mean: None, pr: Some("7") } })"#,
        );
        check(
            "destroy --stage production --yes-i-mean production",
            r#"Destroy(Destroy { stage: Some("production"), yes: false, guard: StageFlags { yes_i_mean: Some("production"), pr: None } })"#,
        );
        check(
            "deploy --stage production --yes --yes-i-mean production",
            "give --yes or --yes-i-mean STAGE, not both",
        );
        check(
            "diff --pr 7",
            "while reading `diff` flags: invalid option '--pr'",
        );
        check(
            "deploy --yes-i-mean",
            "missing argument for option '--yes-i-mean'",
        );
        check("deploy -y", "yes: true");
        check(
            "diff --stage x --no-build",
            r#"Diff(Diff { stage: Some("x"), no_build: true })"#,
        );
        check(
            "destroy --stage x --yes",
            r#"Destroy(Destroy { stage: Some("x"), yes: true, guard: StageFlags { yes_i_mean: None, pr: None } })"#,
        );
        check("previews", "Previews(Previews { action: List })");
        check("previews list", "Previews(Previews { action: List })");
        check(
            "previews prune --older-than 36h --keep-branches --protect staging --protect demo --yes",
            r#"Prune { older_than: "36h", keep_branches: true, yes: true, protect: ["staging", "demo"], only_prs: false }"#,
        );
        check(
            "previews prune",
            r#"Prune { older_than: "7d", keep_branches: false, yes: false, protect: [], only_prs: false }"#,
        );
        check(
            "previews prune --only-prs --yes",
            r#"Prune { older_than: "7d", keep_branches: false, yes: true, protect: [], only_prs: true }"#,
        );
    }

    #[test]
    fn loadtest_flags() {
        check(
            "loadtest",
            "Loadtest { profile: None, prices: None, rate: 2000, duration: \"30s\", json: false, debug: false, resend_acked: 0.0, repeat_in_body: 0.0 }",
        );
        check(
            "loadtest --profile p.toml --rate 300 --duration 5s --json --debug --prices x.toml",
            "Loadtest { profile: Some(\"p.toml\"), prices: Some(\"x.toml\"), rate: 300, duration: \"5s\", json: true, debug: true, resend_acked: 0.0, repeat_in_body: 0.0 }",
        );
        check(
            "loadtest --rate fast",
            "--rate `fast`: expected events per second",
        );
        check("loadtest --rate 0", "--rate `0`");
        check(
            "loadtest --resend-acked 0.05 --repeat-in-body 1",
            "Loadtest { profile: None, prices: None, rate: 2000, duration: \"30s\", json: false, debug: false, resend_acked: 0.05, repeat_in_body: 1.0 }",
        );
        check(
            "loadtest --resend-acked 1.5",
            "--resend-acked `1.5`: expected a fraction from 0 to 1",
        );
        check("loadtest --repeat-in-body -0.1", "--repeat-in-body `-0.1`");
        check("loadtest --repeat-in-body NaN", "--repeat-in-body `NaN`");
        check(
            "loadtest --profile",
            "missing argument for option '--profile'",
        );
        check("loadtest --bogus", "while reading `loadtest` flags");
    }

    #[test]
    fn bad_stack_flags_are_named() {
        check(
            "deploy --bogus",
            "error: while reading `deploy` flags: invalid option '--bogus'",
        );
        check(
            "diff --yes",
            "error: while reading `diff` flags: invalid option '--yes'",
        );
        check(
            "destroy --no-build",
            "error: while reading `destroy` flags: invalid option '--no-build'",
        );
        check("deploy --stage", "missing argument for option '--stage'");
        check(
            "previews list --yes",
            "error: while reading `previews` flags",
        );
        check("previews nuke", "expected `list` or `prune`");
        check("previews prune --older-than", "missing argument");
    }

    #[test]
    fn sign_pixel_flags() {
        check(
            "sign-pixel --key-id pub-1 --secret s3cret-s3cret-s3cret c=cmp-1 e=impression",
            r#"SignPixel { key_id: "pub-1", secret: Given(<redacted>), expires_in: "1h", url: None, params: [("c", "cmp-1"), ("e", "impression")] }"#,
        );
        check(
            "sign-pixel --key-id k --secret-file keys.json --expires-in 15m --url http://x c=1",
            r#"secret: File("keys.json"), expires_in: "15m", url: Some("http://x")"#,
        );
        check("sign-pixel --secret s c=1", "--key-id is required");
        check(
            "sign-pixel --key-id k c=1",
            "--secret S or --secret-file FILE is required",
        );
        check(
            "sign-pixel --key-id k --secret s",
            "give the pixel's parameters as KEY=VALUE",
        );
        check(
            "sign-pixel --key-id k --secret s cmp-1",
            "parameter `cmp-1` is not KEY=VALUE",
        );
        check(
            "sign-pixel --key-id k --secret s --secret-file f c=1",
            "give --secret or --secret-file, not both",
        );
    }

    #[test]
    fn redrive_flags() {
        check(
            "redrive --lane realtime",
            "Redrive { lane: Realtime, stage: None, target: Aws, dry_run: false, yes: false }",
        );
        check(
            "redrive --lane deferred --stage pr-7 --local --dry-run",
            r#"Redrive { lane: Deferred, stage: Some("pr-7"), target: Dev, dry_run: true, yes: false }"#,
        );
        check(
            "redrive --lane realtime --endpoints-file e.json -y",
            r#"target: EndpointsFile("e.json"), dry_run: false, yes: true"#,
        );
        check("redrive", "--lane realtime or --lane deferred is required");
        check(
            "redrive --lane fast",
            "--lane `fast`: expected realtime or deferred",
        );
        check(
            "redrive --lane realtime --local --endpoints-file e.json",
            "give --local or --endpoints-file FILE, not both",
        );
        check(
            "redrive --lane realtime --dry-run --yes",
            "--yes has nothing to confirm",
        );
        check(
            "redrive --lane realtime --bogus",
            "while reading `redrive` flags",
        );
    }
}

#[cfg(test)]
mod sweep_flag_tests {
    use super::*;

    fn plan(args: &str) -> anyhow::Result<Plan> {
        match parse(args.split_whitespace().map(OsString::from))? {
            Cmd::Plan(p) => Ok(p),
            other => panic!("`{args}` parsed as {other:?}"),
        }
    }

    #[track_caller]
    fn fails(args: &str, expect: &str) {
        let err = format!("{:#}", plan(args).expect_err(args));
        assert!(err.contains(expect), "`{args}`: {err}");
    }

    #[test]
    fn sweep_combinations() {
        let p = plan("plan --profile p.toml --sweep").expect("sweep");
        assert!(p.sweep && !p.json && p.html.is_none());
        // --json and --html together: the JSON array on stdout and the page in the file.
        let p = plan("plan --sweep --events-per-sec 5000 --json --html s.html").expect("both");
        assert!(p.sweep && p.json);
        assert_eq!(p.html.as_deref(), Some(std::path::Path::new("s.html")));
        assert!(!plan("plan --profile p.toml").expect("plain").sweep);
        fails(
            "plan --sweep",
            "exactly one of --profile FILE and --events-per-sec N",
        );
        fails(
            "plan --sweep --events-per-sec 0",
            "--events-per-sec 0 has none",
        );
        // The sweep prices its own rates; a load test's JSON to check against makes no sense with it.
        fails("plan --sweep --profile p.toml --check lt.json", "--check");
        fails("plan --sweep=yes --profile p.toml", "--sweep");
    }
}
