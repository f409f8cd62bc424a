//! `tally-localcloud` — runs a synthesized template on this machine until Ctrl-C. `cargo xtask dev` builds
//! the functions, synthesizes the stack and hands over to this binary; it can also be run by hand.

use std::collections::BTreeMap;
use std::path::PathBuf;

use anyhow::{bail, Context};
use tally_localcloud::cloud::{CloudOptions, LocalCloud};
use tally_localcloud::demo::{self, DemoOptions};
use tally_localcloud::esm::RuntimeOptions;

const USAGE: &str = "\
usage: tally-localcloud --template FILE --state DIR [flags]

  --template FILE         CloudFormation template (JSON) to run
  --state DIR             state directory (created; a restart continues from it)
  --stack NAME            stack name for AWS::StackName (default: the template file's stem)
  --param KEY=VALUE       template parameter (repeatable); code-key parameters hold host binary paths
  --env TARGET:KEY=VALUE  extra environment for a function, by name or code-key parameter (repeatable)
  --port PORT             AWS endpoint port (default 4566; 0 = any)
  --url-port-base PORT    first Function URL port (default 9001; 0 = any)
  --endpoints-file FILE   write the local URLs as JSON once everything is ready
  --skip-unbuilt          report functions whose binary is missing instead of failing
  --demo                  drive synthetic ad traffic into the collect URL
  --quiet                 do not echo function logs (they still go to DIR/logs)
  --schedule-speedup N    run the schedules' clock N times faster than real time (default 1; local only:
                          with 60, rate(1 minute) fires every second and retry delays shrink alike)
  --loadtest-rate N       instead of waiting for Ctrl-C: send N events/s through collect, measure freshness,
                          check exact counts, print the report and stop
  --loadtest-duration D   how long (seconds, or `30s`, `2m`; default 30s)
  --loadtest-profile FILE the traffic profile (TOML, docs/plan.md; default: the shipped
                          xtask/profiles/daily-curve-network.toml, compiled in)
  --loadtest-connections N  concurrent client connections (default 8)
  --loadtest-seed N       seed of the request generator (default 1)
  --loadtest-settle D     how long to wait for the settled counts after the sending (default 90s)
  --loadtest-resend-acked P   fraction (0-1) of acknowledged POSTs the clients send again whole, same ids
                          (a client whose acknowledgement was lost to a timeout; default 0)
  --loadtest-repeat-in-body P fraction (0-1) of POST bodies holding one event twice (default 0)
  --json                  the load test report as one JSON object on stdout";

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
    demo: bool,
    quiet: bool,
    schedule_speedup: u32,
    loadtest_rate: Option<f64>,
    loadtest_duration: std::time::Duration,
    loadtest_profile: Option<PathBuf>,
    loadtest_connections: usize,
    loadtest_seed: u64,
    loadtest_settle: std::time::Duration,
    loadtest_resend_acked: f64,
    loadtest_repeat_in_body: f64,
    json: bool,
}

/// `30`, `30s`, `2m` as a duration.
fn duration(text: &str) -> anyhow::Result<std::time::Duration> {
    let (number, unit) = match text.strip_suffix('m') {
        Some(n) => (n, 60.0),
        None => (text.strip_suffix('s').unwrap_or(text), 1.0),
    };
    let value: f64 = number
        .trim()
        .parse()
        .with_context(|| format!("{text:?} is not a duration such as 30s or 2m"))?;
    if !(value > 0.0 && value * unit <= 86_400.0) {
        bail!("duration {text:?} must be above 0 and at most a day");
    }
    Ok(std::time::Duration::from_secs_f64(value * unit))
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
        demo: false,
        quiet: false,
        schedule_speedup: 1,
        loadtest_rate: None,
        loadtest_duration: std::time::Duration::from_secs(30),
        loadtest_profile: None,
        loadtest_connections: 8,
        loadtest_seed: 1,
        loadtest_settle: std::time::Duration::from_secs(90),
        loadtest_resend_acked: 0.0,
        loadtest_repeat_in_body: 0.0,
        json: false,
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
            Long("demo") => args.demo = true,
            Long("quiet") => args.quiet = true,
            Long("json") => args.json = true,
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
            Long("loadtest-rate") => {
                let rate: f64 = parser
                    .value()?
                    .parse()
                    .context("--loadtest-rate takes events per second")?;
                if !(rate > 0.0 && rate <= 100_000.0) {
                    bail!(
                        "--loadtest-rate {rate} is out of range: use 1 to 100000 events per second"
                    );
                }
                args.loadtest_rate = Some(rate);
            }
            Long("loadtest-duration") => {
                args.loadtest_duration = duration(&parser.value()?.string()?)?
            }
            Long("loadtest-settle") => args.loadtest_settle = duration(&parser.value()?.string()?)?,
            Long("loadtest-profile") => {
                args.loadtest_profile = Some(PathBuf::from(parser.value()?))
            }
            Long("loadtest-connections") => {
                let n: usize = parser
                    .value()?
                    .parse()
                    .context("--loadtest-connections takes a number of connections")?;
                if !(1..=256).contains(&n) {
                    bail!("--loadtest-connections {n} is out of range: use 1 to 256");
                }
                args.loadtest_connections = n;
            }
            Long(flag @ ("loadtest-resend-acked" | "loadtest-repeat-in-body")) => {
                let flag = flag.to_owned();
                let value = parser.value()?.string()?;
                let p: f64 = value
                    .parse()
                    .ok()
                    .filter(|p: &f64| (0.0..=1.0).contains(p))
                    .with_context(|| {
                        format!("--{flag} `{value}`: expected a fraction from 0 to 1")
                    })?;
                if flag == "loadtest-resend-acked" {
                    args.loadtest_resend_acked = p;
                } else {
                    args.loadtest_repeat_in_body = p;
                }
            }
            Long("loadtest-seed") => {
                args.loadtest_seed = parser
                    .value()?
                    .parse()
                    .context("--loadtest-seed takes a whole number")?
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

/// The profile of `--loadtest-profile FILE` (and the file as given), or the shipped default.
fn load_profile(
    file: Option<&std::path::Path>,
) -> anyhow::Result<(tally_traffic::Profile, Option<String>)> {
    let Some(file) = file else {
        let profile = tally_traffic::Profile::parse(tally_traffic::DEFAULT_PROFILE)
            .context("the shipped default profile")?;
        return Ok((profile, None));
    };
    let text = std::fs::read_to_string(file).with_context(|| {
        format!(
            "--loadtest-profile {}: cannot read the file; give a profile such as xtask/profiles/daily-curve-network.toml",
            file.display()
        )
    })?;
    let profile = tally_traffic::Profile::parse(&text)
        .with_context(|| format!("--loadtest-profile {}", file.display()))?;
    Ok((profile, Some(file.display().to_string())))
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
        let text =
            serde_json::to_string_pretty(&endpoints).context("while encoding the endpoints")?;
        std::fs::write(path, text + "\n")
            .with_context(|| format!("while writing {}", path.display()))?;
    }

    if let Some(rate) = args.loadtest_rate {
        let (Some(collect), Some(query)) = (
            endpoints["collect_url"].as_str(),
            endpoints["query_url"].as_str(),
        ) else {
            bail!("the load test needs the template's CollectUrl and QueryUrl outputs");
        };
        let (profile, profile_file) = load_profile(args.loadtest_profile.as_deref())?;
        let report = tally_localcloud::loadtest::run(tally_localcloud::loadtest::LoadOptions {
            collect_url: collect.to_owned(),
            query_url: query.to_owned(),
            rate,
            duration: args.loadtest_duration,
            profile,
            profile_file,
            seed: args.loadtest_seed,
            connections: args.loadtest_connections,
            aws: Some(cloud.aws.clone()),
            settle_timeout: args.loadtest_settle,
            resend: tally_localcloud::loadtest::Resend::new(
                args.loadtest_resend_acked,
                args.loadtest_repeat_in_body,
            )
            .map_err(anyhow::Error::msg)?,
        })
        .await;
        cloud.shutdown();
        let report = match report {
            Ok(report) => report,
            Err(error) => bail!(
                "the load test could not run: {error}; see {}/logs",
                args.state.display()
            ),
        };
        if args.json {
            println!("{report}");
        } else {
            println!(
                "{}",
                serde_json::to_string_pretty(&report).context("while printing the report")?
            );
        }
        if report["events_acknowledged"] == 0 {
            bail!(
                "collect acknowledged no event; see {}/logs and the list of resources not run above",
                args.state.display()
            );
        }
        if report["lost"] != 0 || report["duplicated"] != 0 {
            bail!(
                "counts are not exact: lost {}, duplicated {}",
                report["lost"],
                report["duplicated"]
            );
        }
        return Ok(());
    }
    let (stop_demo, stop_rx) = tokio::sync::watch::channel(false);
    let demo = match (args.demo, endpoints["collect_url"].as_str()) {
        (true, Some(url)) => {
            let url = url.to_owned();
            eprintln!(
                "demo traffic: posting synthetic ad events to {url}, signed with the collect key"
            );
            let options = DemoOptions {
                key: cloud.aws.secretsmanager.collect_key(),
                ..DemoOptions::default()
            };
            Some(tokio::spawn(async move {
                demo::drive(&url, options, stop_rx).await
            }))
        }
        (true, None) => bail!("--demo needs the template's CollectUrl output"),
        _ => None,
    };
    let mut terminate = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
        .context("while installing the SIGTERM handler")?;
    tokio::select! {
        signal = tokio::signal::ctrl_c() => signal.context("while waiting for Ctrl-C")?,
        _ = terminate.recv() => {}
    }
    eprintln!("\nstopping…");
    stop_demo.send_replace(true);
    if let Some(demo) = demo {
        if let Ok((sent, refused)) = demo.await {
            eprintln!("demo: {sent} events sent, {refused} batches refused");
        }
    }
    cloud.shutdown();
    tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    eprintln!(
        "stopped; the next start continues from {}",
        args.state.display()
    );
    Ok(())
}

/// Writes the collect keys (the current version of the stack's keys secret, key id → secret) to
/// `<state>/collect-keys.json`, readable by the owner only, and says how to use them.
fn print_collect_keys(
    aws: &tally_localcloud::aws::LocalAws,
    state: &std::path::Path,
) -> anyhow::Result<()> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    use tally_localcloud::aws::secretsmanager::COLLECT_KEYS_SUFFIX;
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
