//! `tally-localcloud` — runs a synthesized template on this machine until Ctrl-C. `cargo xtask dev` builds
//! the functions, synthesizes the stack and hands over to this binary; it can also be run by hand. The traffic
//! tools (`cargo xtask loadtest`, `cargo xtask dev --demo`, crate `tally-traffic`) are clients of it: they read
//! the endpoints file it writes and reach it over HTTP.

use std::collections::BTreeMap;
use std::path::PathBuf;

use anyhow::{bail, Context};
use tally_localcloud::cloud::{CloudOptions, LocalCloud};
use tally_localcloud::esm::RuntimeOptions;
use tally_localcloud_aws::store::Durability;

/// mimalloc instead of glibc's malloc: allocation was ~16 % of the pipeline's CPU under the load test
/// (docs/benchmarks.md, "Allocator").
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

const USAGE: &str = "\
usage: tally-localcloud --template FILE --state DIR [flags]

  --template FILE         CloudFormation template (JSON) to run
  --state DIR             state directory (created; a restart continues from it)
  --stack NAME            stack name for AWS::StackName (default: the template file's stem)
  --param KEY=VALUE       template parameter (repeatable); code-key parameters hold host binary paths
  --env TARGET:KEY=VALUE  extra environment for a function, by name or code-key parameter (repeatable)
  --port PORT             AWS endpoint port (default 4566; 0 = any)
  --url-port-base PORT    first Function URL port (default 9001; 0 = any)
  --endpoints-file FILE   write the local URLs as JSON once everything is ready, with the collect key and
                          the collect origin secret (readable by the owner only)
  --skip-unbuilt          report functions whose binary is missing instead of failing
  --quiet                 do not echo function logs (they still go to DIR/logs)
  --fsync POLICY          when acknowledged writes reach the disk: every-second (default; a machine crash or
                          power loss may lose the last second) or every-write (each write waits for its
                          fdatasync); either way a kill -9 of the local cloud loses nothing acknowledged
  --schedule-speedup N    run the schedules' clock N times faster than real time (default 1; local only:
                          with 60, rate(1 minute) fires every second and retry delays shrink alike)";

#[derive(Debug)]
struct Args {
    template: PathBuf,
    state: PathBuf,
    stack: Option<String>,
    params: BTreeMap<String, String>,
    env: BTreeMap<String, BTreeMap<String, String>>,
    port: u16,
    url_port_base: u16,
    endpoints_file: Option<PathBuf>,
    skip_unbuilt: bool,
    quiet: bool,
    schedule_speedup: u32,
    durability: Durability,
}

fn parse() -> anyhow::Result<Args> {
    use lexopt::prelude::*;
    let mut parser = lexopt::Parser::from_env();
    let (mut template, mut state) = (None, None);
    let mut args = Args {
        template: PathBuf::new(),
        state: PathBuf::new(),
        stack: None,
        params: BTreeMap::new(),
        env: BTreeMap::new(),
        port: 4566,
        url_port_base: 9001,
        endpoints_file: None,
        skip_unbuilt: false,
        quiet: false,
        schedule_speedup: 1,
        durability: Durability::default(),
    };
    let pair = |text: String, flag: &str| -> anyhow::Result<(String, String)> {
        match text.split_once('=') {
            Some((k, v)) if !k.is_empty() => Ok((k.to_owned(), v.to_owned())),
            _ => bail!("{flag} takes KEY=VALUE, found {text:?}"),
        }
    };
    while let Some(arg) = parser.next()? {
        match arg {
            Long("template") => template = Some(PathBuf::from(parser.value()?)),
            Long("state") => state = Some(PathBuf::from(parser.value()?)),
            Long("stack") => args.stack = Some(parser.value()?.string()?),
            Long("param") => {
                let (k, v) = pair(parser.value()?.string()?, "--param")?;
                args.params.insert(k, v);
            }
            Long("env") => {
                let text = parser.value()?.string()?;
                let Some((target, rest)) = text.split_once(':') else {
                    bail!("--env takes FUNCTION:KEY=VALUE, found {text:?}");
                };
                let (k, v) = pair(rest.to_owned(), "--env")?;
                args.env.entry(target.to_owned()).or_default().insert(k, v);
            }
            Long("port") => {
                args.port = parser
                    .value()?
                    .parse()
                    .context("--port takes a port number (0-65535)")?
            }
            Long("url-port-base") => {
                args.url_port_base = parser
                    .value()?
                    .parse()
                    .context("--url-port-base takes a port number (0-65535)")?
            }
            Long("endpoints-file") => args.endpoints_file = Some(PathBuf::from(parser.value()?)),
            Long("skip-unbuilt") => args.skip_unbuilt = true,
            Long("quiet") => args.quiet = true,
            Long("fsync") => {
                args.durability =
                    Durability::parse(&parser.value()?.string()?).map_err(anyhow::Error::msg)?
            }
            Long("schedule-speedup") => {
                let max = tally_localcloud::schedule::MAX_SPEEDUP;
                let n: u32 = parser.value()?.parse().with_context(|| {
                    format!("--schedule-speedup takes a whole number from 1 to {max}")
                })?;
                if !(1..=max).contains(&n) {
                    bail!("--schedule-speedup {n} is out of range: use 1 (real time) to {max}");
                }
                args.schedule_speedup = n;
            }
            Short('h') | Long("help") => {
                println!("{USAGE}");
                std::process::exit(0);
            }
            other => return Err(other.unexpected().into()),
        }
    }
    args.template = template.context("--template FILE is required")?;
    args.state = state.context("--state DIR is required")?;
    Ok(args)
}

#[tokio::main]
async fn main() -> std::process::ExitCode {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_env("TALLY_LOCALCLOUD_LOG")
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info")),
        )
        .with_writer(std::io::stderr)
        .init();
    let args = match parse() {
        Ok(args) => args,
        Err(error) => {
            eprintln!("error: {error:#}\n\n{USAGE}");
            return std::process::ExitCode::from(2);
        }
    };
    match run(args).await {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("error: {error:#}");
            std::process::ExitCode::FAILURE
        }
    }
}

async fn run(args: Args) -> anyhow::Result<()> {
    let text = std::fs::read_to_string(&args.template)
        .with_context(|| format!("while reading the template {}", args.template.display()))?;
    let template: serde_json::Value = serde_json::from_str(&text)
        .with_context(|| format!("{} is not a JSON template", args.template.display()))?;
    let stack_name = args.stack.clone().unwrap_or_else(|| {
        args.template
            .file_stem()
            .map(|s| s.to_string_lossy().into_owned())
            .unwrap_or_else(|| "local".into())
    });
    let started = std::time::Instant::now();
    let cloud = LocalCloud::start(CloudOptions {
        template,
        stack_name: stack_name.clone(),
        state_dir: args.state.clone(),
        durability: args.durability,
        parameters: args.params,
        endpoint_port: args.port,
        url_port_base: args.url_port_base,
        function_env: args.env,
        terminal_logs: !args.quiet,
        skip_unbuilt: args.skip_unbuilt,
        mappings: RuntimeOptions::default(),
        schedule_speedup: args.schedule_speedup,
    })
    .await
    .with_context(|| format!("while starting the local cloud for stack {stack_name}"))?;

    let endpoints = cloud.endpoints();
    eprintln!(
        "\ntally local cloud: stack {stack_name}, state in {}",
        args.state.display()
    );
    if !cloud.resources.skipped.is_empty() {
        eprintln!(
            "not run locally:\n{}",
            cloud.resources.skipped_report().trim_end()
        );
    }
    eprintln!("\n  AWS endpoint   {}", cloud.endpoint);
    if let Some(meter) = endpoints["meter"].as_str() {
        eprintln!(
            "  meter          {meter} (also {})",
            cloud.meter_file.display()
        );
    }
    for (label, key) in [
        ("collect", "collect_url"),
        ("query", "query_url"),
        ("dashboard", "dashboard_url"),
    ] {
        if let Some(url) = endpoints[key].as_str() {
            eprintln!("  {label:<14} {url}");
        }
    }
    for (id, url) in &cloud.urls {
        eprintln!("  url {id:<10} {url}");
    }
    print_collect_keys(&cloud.aws, &args.state)?;
    for (id, cache) in &cloud.caches {
        eprintln!(
            "  cache {id:<8} {} (valkey-server, data in {}/cache/{id})",
            cache.addr(),
            args.state.display()
        );
    }
    for rule in cloud
        .resources
        .rules
        .iter()
        .filter(|r| cloud.schedules.contains_key(&r.id))
    {
        let targets: Vec<&str> = rule.targets.iter().map(|t| t.function.as_str()).collect();
        eprintln!(
            "  schedule {:<10} {} → {}{}",
            rule.id,
            rule.expression,
            targets.join(", "),
            match args.schedule_speedup {
                1 => String::new(),
                n => format!(" (clock ×{n})"),
            }
        );
    }
    eprintln!(
        "\nready in {} ms; Ctrl-C stops (state is kept)\n",
        started.elapsed().as_millis()
    );
    if let Some(path) = &args.endpoints_file {
        write_endpoints(path, endpoints, &cloud.aws)?;
    }

    let mut terminate = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
        .context("while installing the SIGTERM handler")?;
    tokio::select! {
        signal = tokio::signal::ctrl_c() => signal.context("while waiting for Ctrl-C")?,
        _ = terminate.recv() => {}
    }
    eprintln!("\nstopping…");
    cloud.shutdown();
    tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    eprintln!(
        "stopped; the next start continues from {}",
        args.state.display()
    );
    Ok(())
}

/// Writes the endpoints file: the local URLs and, for the traffic tools (crate `tally-traffic`), the credentials
/// a client of the stack holds: `collect_key` (`{"key_id", "secret"}`, the one `LocalAws::secretsmanager`'s
/// `collect_key` picks) and `collect_origin_secret` (with the edge), each `null` when the stack has none. Readable
/// by the owner only, as it holds secrets.
fn write_endpoints(
    path: &std::path::Path,
    mut endpoints: serde_json::Value,
    aws: &tally_localcloud_aws::aws::LocalAws,
) -> anyhow::Result<()> {
    use std::io::Write;
    use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
    endpoints["collect_key"] = match aws.secretsmanager.collect_key() {
        Some((key_id, secret)) => serde_json::json!({"key_id": key_id, "secret": secret}),
        None => serde_json::Value::Null,
    };
    endpoints["collect_origin_secret"] = aws.secretsmanager.collect_origin_secret().into();
    let text = serde_json::to_string_pretty(&endpoints).context("while encoding the endpoints")?;
    std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(path)
        .and_then(|mut f| {
            // A file that existed keeps its mode through `open`: narrow it too.
            f.set_permissions(std::fs::Permissions::from_mode(0o600))?;
            f.write_all((text + "\n").as_bytes())
        })
        .with_context(|| format!("while writing {}", path.display()))
}

/// Writes the collect keys (the current version of the stack's keys secret, key id → secret) to
/// `<state>/collect-keys.json`, readable by the owner only, and says how to use them.
fn print_collect_keys(
    aws: &tally_localcloud_aws::aws::LocalAws,
    state: &std::path::Path,
) -> anyhow::Result<()> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    use tally_localcloud_aws::aws::secretsmanager::COLLECT_KEYS_SUFFIX;
    let (Some(keys), Some((key_id, _))) = (
        aws.secretsmanager.current_by_suffix(COLLECT_KEYS_SUFFIX),
        aws.secretsmanager.collect_key(),
    ) else {
        return Ok(());
    };
    let path = state.join("collect-keys.json");
    std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(&path)
        .and_then(|mut f| f.write_all(keys.as_bytes()))
        .with_context(|| format!("while writing {}", path.display()))?;
    eprintln!(
        "  collect keys   {} (key id {key_id}: posts send Authorization: Bearer {key_id}:<secret>; \
         signed pixels: cargo xtask sign-pixel --key-id {key_id} --secret-file {} c=… a=… e=…)",
        path.display(),
        path.display()
    );
    Ok(())
}
