//! The stack's options, from `tally.toml` at the workspace root (optional).
//!
//! One file, read by every command that synthesizes (synth, diff, deploy, destroy, dev, plan), so they always
//! build the same stack for a stage — as `cdk.json`'s context does for CDK. Without the file every stage gets
//! [`PipelineOptions::default`]. `[stack]` applies to every stage; `[stage.<name>]` overrides it for the stage
//! whose name (the branch, or `--stage`) is `<name>`:
//!
//! ```toml
//! [stack]
//! stream = "provisioned"            # or "on-demand"
//! critical_lane = "enhanced-fan-out" # or "shared-iterator" (cheaper for small users, p50 ≈ 0.6 s)
//! initial_shards = 2
//! min_shards = 1
//! max_shards = 16
//! alert_email = "oncall@example.com"
//! retain_data = false
//! table_billing = "provisioned"     # metrics table: or "on-demand" (per request unit)
//! table_min_write_capacity = 5      # provisioned: auto scaling's floor and ceiling, units per second
//! table_max_write_capacity = 4000
//! table_min_read_capacity = 5
//! table_max_read_capacity = 4000
//! table_target_utilization = 70     # percent, 20..=90
//! exclude_unsigned = false          # true: settled counts leave out events without a key or signature
//! campaign_index_days = 35          # days a campaign stays listed after its last event (1..=3650)
//! profile = "xtask/profiles/daily-curve-network.toml" # sizes collect's reserved concurrency (peak × 2)
//! collect_reserved_concurrency = 100 # or give it outright (default without a profile: 100)
//! query_reserved_concurrency = 10
//! account_concurrency = 1000        # the account's Lambda quota: reservations must leave 100 unreserved
//! cache_max_storage_gb = 16          # the cache's usage limits (default 1 GB and 100,000 ECPU/s): `plan` says what
//! cache_max_ecpu_per_second = 200000 # the profile needs ("defences"); a cache at its limit refuses writes
//! budget_monthly_usd = 500          # a monthly cost budget mailing the alerts topic (none by default)
//! budget_email = "finance@example.com"
//! edge = false                      # true: CloudFront + a WAF rate-based rule in front of collect (us-east-1)
//! edge_requests_per_five_minutes = 30000 # WAF's per-address limit
//!
//! [stage.production]
//! retain_data = true                 # keep stream, table, bucket and secret when the stack goes
//! min_shards = 4
//! ```
//!
//! `[deploy] protected_stages = ["staging"]` lists the stages that, with `production`, are deployed and
//! destroyed only when named twice (xtask-aws's `protect`).
//!
//! Unknown keys and wrong types are errors that name the key and the file: a typo must not silently deploy
//! the defaults.

use std::path::Path;

use anyhow::{bail, Context};
use tally_pipeline::{
    AutoScaling, CriticalLane, EdgeOptions, PipelineOptions, Stage, StreamCapacity, TableBilling,
    DEFAULT_TABLE_SCALING,
};

/// The file's name, at the workspace root.
pub const FILE: &str = "tally.toml";

/// The options for `stage` from `<root>/tally.toml`, or the defaults when there is no such file.
pub fn load(root: &Path, stage: &Stage) -> anyhow::Result<PipelineOptions> {
    let path = root.join(FILE);
    match std::fs::read_to_string(&path) {
        Ok(text) => parse_at(&text, stage.raw(), root)
            .with_context(|| format!("while reading {} (stack options)", path.display())),
        Err(error) if error.kind() == std::io::ErrorKind::NotFound => {
            Ok(PipelineOptions::default())
        }
        Err(error) => Err(error).with_context(|| format!("while reading {}", path.display())),
    }
}

/// `[deploy]`: the stages deployed and destroyed only when named twice (`protected_stages`), read by
/// xtask-aws's `protect`.
pub const DEPLOY_SECTION: &str = "deploy";
pub const DEPLOY_KEY: &str = "protected_stages";

/// The names of a `[deploy]` table (checked by [`parse`], so a typo there is an error for every command; the
/// deploy commands read the protected stages from it). Each must be a clean stage label: anything else could never name a stack exactly.
pub fn deploy_section(table: &toml::Table) -> anyhow::Result<Vec<String>> {
    let mut names = Vec::new();
    for (key, value) in table {
        if key != DEPLOY_KEY {
            bail!("[{DEPLOY_SECTION}]: unknown option `{key}` (known: {DEPLOY_KEY})");
        }
        let list = value.as_array().with_context(|| {
            format!("[{DEPLOY_SECTION}] {DEPLOY_KEY}: expected a list of stage names, e.g. [\"staging\"]")
        })?;
        for item in list {
            let name = item.as_str().with_context(|| {
                format!("[{DEPLOY_SECTION}] {DEPLOY_KEY}: `{item}` is not a string")
            })?;
            if Stage::new(name).label() != name {
                bail!(
                    "[{DEPLOY_SECTION}] {DEPLOY_KEY}: `{name}` is not a stage name a stack can have exactly: use lowercase \
                     letters, digits and single hyphens (e.g. `staging`)"
                );
            }
            names.push(name.to_owned());
        }
    }
    Ok(names)
}

/// The options `text` gives stage `stage` (a `profile` path is relative to the workspace root).
pub fn parse(text: &str, stage: &str) -> anyhow::Result<PipelineOptions> {
    parse_at(text, stage, &crate::workspace_root())
}

/// What sizes collect's reserved concurrency: the stage's traffic profile, unless it is given outright.
#[derive(Debug, Default)]
struct Sizing {
    profile: Option<String>,
    collect_given: bool,
}

/// The options `text` gives stage `stage`; a `profile` path is relative to `root`.
pub fn parse_at(text: &str, stage: &str, root: &Path) -> anyhow::Result<PipelineOptions> {
    let doc: toml::Table = text.parse().context("not valid TOML")?;
    let mut options = PipelineOptions::default();
    let mut sizing = Sizing::default();
    for (key, value) in &doc {
        match (key.as_str(), value) {
            ("stack", toml::Value::Table(table)) => {
                apply(&mut options, &mut sizing, table, "[stack]")?
            }
            ("stage", toml::Value::Table(stages)) => {
                for (name, value) in stages {
                    let toml::Value::Table(table) = value else {
                        bail!("[stage.{name}] must be a table of options");
                    };
                    // Every stage's section is checked: a typo must not wait for that stage's deploy.
                    apply(
                        &mut PipelineOptions::default(),
                        &mut Sizing::default(),
                        table,
                        &format!("[stage.{name}]"),
                    )?;
                }
                if let Some(toml::Value::Table(table)) = stages.get(stage) {
                    apply(
                        &mut options,
                        &mut sizing,
                        table,
                        &format!("[stage.{stage}]"),
                    )?;
                }
            }
            // Read by `protect`; checked here too, so a typo there fails every command.
            (DEPLOY_SECTION, toml::Value::Table(table)) => {
                deploy_section(table)?;
            }
            ("stack" | "stage" | DEPLOY_SECTION, _) => bail!("`{key}` must be a table"),
            _ => bail!(
                "unknown section `{key}`: expected [stack], [stage.<name>] or [{}]",
                DEPLOY_SECTION
            ),
        }
    }
    if let (Some(profile), false) = (&sizing.profile, sizing.collect_given) {
        options.collect_reserved_concurrency = collect_sized_from(&root.join(profile))
            .with_context(|| {
                format!("profile = {profile:?} (sizes collect_reserved_concurrency)")
            })?;
    }
    Ok(options)
}

/// collect's reserved concurrency for the profile at `path` (`plan`'s peak need × 2, at least 10).
fn collect_sized_from(path: &Path) -> anyhow::Result<u32> {
    let text = std::fs::read_to_string(path)
        .with_context(|| format!("cannot read the traffic profile {}", path.display()))?;
    let profile = tally_traffic::Profile::parse(&text)
        .with_context(|| format!("in traffic profile {}", path.display()))?;
    Ok(crate::plan::defences::collect_reserved_for(&profile))
}

fn apply(
    options: &mut PipelineOptions,
    sizing: &mut Sizing,
    table: &toml::Table,
    section: &str,
) -> anyhow::Result<()> {
    // Shard settings may come before or after `stream`; collect them, then build the capacity once.
    let (mut initial, mut min, mut max) = match options.stream {
        StreamCapacity::Provisioned {
            initial_shards,
            min_shards,
            max_shards,
        } => (initial_shards, min_shards, max_shards),
        StreamCapacity::OnDemand => {
            let StreamCapacity::Provisioned {
                initial_shards,
                min_shards,
                max_shards,
            } = PipelineOptions::default().stream
            else {
                bail!("the default stream is not provisioned");
            };
            (initial_shards, min_shards, max_shards)
        }
    };
    let mut on_demand = matches!(options.stream, StreamCapacity::OnDemand);
    // Likewise the table's capacity bounds and `table_billing`.
    let mut scaling = match options.table_billing {
        TableBilling::Provisioned(scaling) => scaling,
        TableBilling::OnDemand => DEFAULT_TABLE_SCALING,
    };
    let mut table_on_demand = matches!(options.table_billing, TableBilling::OnDemand);
    // And the edge: `edge` turns it on or off, its limit may come in either order.
    let mut edge_on = options.edge.is_some();
    let mut edge_limit = options.edge.map(|e| e.requests_per_five_minutes);
    let mut limit_given = false;
    for (key, value) in table {
        let at = || format!("{section} {key}");
        match key.as_str() {
            "stream" => {
                on_demand = match text(value).with_context(at)? {
                    "provisioned" => false,
                    "on-demand" => true,
                    other => bail!("{}: `{other}` is not `provisioned` or `on-demand`", at()),
                }
            }
            "critical_lane" => {
                options.critical_lane = match text(value).with_context(at)? {
                    "enhanced-fan-out" => CriticalLane::EnhancedFanOut,
                    "shared-iterator" => CriticalLane::SharedIterator,
                    other => bail!(
                        "{}: `{other}` is not `enhanced-fan-out` or `shared-iterator`",
                        at()
                    ),
                }
            }
            "initial_shards" => initial = count(value).with_context(at)?,
            "min_shards" => min = count(value).with_context(at)?,
            "max_shards" => max = count(value).with_context(at)?,
            "alert_email" => options.alert_email = Some(text(value).with_context(at)?.to_owned()),
            "table_billing" => {
                table_on_demand = match text(value).with_context(at)? {
                    "provisioned" => false,
                    "on-demand" => true,
                    other => bail!("{}: `{other}` is not `provisioned` or `on-demand`", at()),
                }
            }
            "table_min_write_capacity"
            | "table_max_write_capacity"
            | "table_min_read_capacity"
            | "table_max_read_capacity"
            | "table_target_utilization" => {
                set_scaling(&mut scaling, key, number(value).with_context(at)?)
            }
            "retain_data" => {
                options.retain_data = value
                    .as_bool()
                    .with_context(|| format!("{}: expected true or false", at()))?
            }
            "campaign_index_days" => {
                options.campaign_index_days = number(value).with_context(at)?;
            }
            "exclude_unsigned" => {
                options.exclude_unsigned = value
                    .as_bool()
                    .with_context(|| format!("{}: expected true or false", at()))?
            }
            "profile" => sizing.profile = Some(text(value).with_context(at)?.to_owned()),
            "collect_reserved_concurrency" => {
                options.collect_reserved_concurrency = number(value).with_context(at)?;
                sizing.collect_given = true;
            }
            "query_reserved_concurrency" => {
                options.query_reserved_concurrency = number(value).with_context(at)?
            }
            "account_concurrency" => options.account_concurrency = number(value).with_context(at)?,
            "cache_max_storage_gb" => {
                options.cache_max_storage_gb = number(value).with_context(at)?
            }
            "cache_max_ecpu_per_second" => {
                options.cache_max_ecpu_per_second = number(value).with_context(at)?
            }
            "budget_monthly_usd" => {
                options.budget_monthly_usd = Some(number(value).with_context(at)?)
            }
            "budget_email" => {
                options.budget_email = Some(text(value).with_context(at)?.to_owned())
            }
            "edge" => {
                edge_on = value
                    .as_bool()
                    .with_context(|| format!("{}: expected true or false", at()))?
            }
            "edge_requests_per_five_minutes" => {
                edge_limit = Some(number(value).with_context(at)?);
                limit_given = true;
            }
            other => bail!(
                "{section}: unknown option `{other}` (known: stream, critical_lane, initial_shards, min_shards, max_shards, alert_email, retain_data, table_billing, table_min_write_capacity, table_max_write_capacity, table_min_read_capacity, table_max_read_capacity, table_target_utilization, exclude_unsigned, campaign_index_days, profile, collect_reserved_concurrency, query_reserved_concurrency, account_concurrency, cache_max_storage_gb, cache_max_ecpu_per_second, budget_monthly_usd, budget_email, edge, edge_requests_per_five_minutes)"
            ),
        }
    }
    options.stream = if on_demand {
        StreamCapacity::OnDemand
    } else {
        StreamCapacity::Provisioned {
            initial_shards: initial,
            min_shards: min,
            max_shards: max,
        }
    };
    options.table_billing = if table_on_demand {
        TableBilling::OnDemand
    } else {
        TableBilling::Provisioned(scaling)
    };
    if limit_given && !edge_on {
        bail!("{section} edge_requests_per_five_minutes: the edge is off; add edge = true");
    }
    options.edge = edge_on.then(|| EdgeOptions {
        requests_per_five_minutes: edge_limit
            .unwrap_or(EdgeOptions::default().requests_per_five_minutes),
    });
    Ok(())
}

/// One of the table's `table_*_capacity` / `table_target_utilization` keys (ranges are checked at synth).
fn set_scaling(scaling: &mut AutoScaling, key: &str, n: u32) {
    match key {
        "table_min_write_capacity" => scaling.write.min = n,
        "table_max_write_capacity" => scaling.write.max = n,
        "table_min_read_capacity" => scaling.read.min = n,
        "table_max_read_capacity" => scaling.read.max = n,
        _ => scaling.target_utilization_percent = n,
    }
}

fn text(value: &toml::Value) -> anyhow::Result<&str> {
    value.as_str().context("expected a string")
}

/// A shard count: the pipeline validates the range at synth (with the construct path in its message).
fn count(value: &toml::Value) -> anyhow::Result<u32> {
    let n = value.as_integer().context("expected a whole number")?;
    u32::try_from(n).map_err(|_| anyhow::anyhow!("{n} is not a shard count"))
}

/// A capacity or percentage: the table construct validates the range at synth.
fn number(value: &toml::Value) -> anyhow::Result<u32> {
    let n = value.as_integer().context("expected a whole number")?;
    u32::try_from(n).map_err(|_| anyhow::anyhow!("{n} is not a non-negative whole number"))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn check(text: &str, stage: &str, expect: Result<&str, &str>) {
        let got = parse(text, stage)
            .map(|o| {
                format!(
                    "{:?} {:?} retain={} alert={:?}",
                    o.stream, o.critical_lane, o.retain_data, o.alert_email
                )
            })
            .map_err(|e| format!("{e:#}"));
        match expect {
            Ok(want) => assert_eq!(got.as_deref(), Ok(want), "{text}"),
            Err(want) => {
                let err = got.expect_err(text);
                assert!(err.contains(want), "{text}: {err}");
            }
        }
    }

    #[test]
    fn stage_sections_override_the_stack_section() {
        let defaults = "Provisioned { initial_shards: 2, min_shards: 1, max_shards: 16 } EnhancedFanOut retain=false alert=None";
        check("", "main", Ok(defaults));
        let file = r#"
            [stack]
            critical_lane = "shared-iterator"
            max_shards = 8
            [stage.production]
            retain_data = true
            critical_lane = "enhanced-fan-out"
            min_shards = 4
            alert_email = "oncall@example.com"
            [stage.tiny]
            stream = "on-demand"
        "#;
        check(file, "feature/x", Ok("Provisioned { initial_shards: 2, min_shards: 1, max_shards: 8 } SharedIterator retain=false alert=None"));
        check(file, "production", Ok("Provisioned { initial_shards: 2, min_shards: 4, max_shards: 8 } EnhancedFanOut retain=true alert=Some(\"oncall@example.com\")"));
        check(
            file,
            "tiny",
            Ok("OnDemand SharedIterator retain=false alert=None"),
        );
        check(
            "[stack]\nstream = \"on-demand\"\n[stage.p]\nstream = \"provisioned\"",
            "p",
            Ok(defaults),
        );
    }

    #[test]
    fn exclude_unsigned_is_a_stage_option() {
        let file = "[stage.production]\nexclude_unsigned = true";
        let of = |stage: &str| {
            parse(file, stage)
                .map(|o| o.exclude_unsigned)
                .map_err(|e| format!("{e:#}"))
        };
        assert_eq!(of("production"), Ok(true));
        assert_eq!(of("main"), Ok(false));
        check(
            "[stack]\nexclude_unsigned = 1",
            "m",
            Err("[stack] exclude_unsigned: expected true or false"),
        );
    }

    #[test]
    fn campaign_index_days_is_a_stage_option() {
        let file = "[stack]\ncampaign_index_days = 90";
        let days = parse(file, "main").map(|o| o.campaign_index_days);
        assert_eq!(days.map_err(|e| format!("{e:#}")), Ok(90));
        assert_eq!(
            parse("", "main").map(|o| o.campaign_index_days).ok(),
            Some(35)
        );
        check(
            "[stack]\ncampaign_index_days = -1",
            "m",
            Err("[stack] campaign_index_days: -1 is not a non-negative whole number"),
        );
    }

    #[test]
    fn mistakes_name_the_key() {
        check(
            "[stack]\ncritical_lane = \"efo\"",
            "m",
            Err("[stack] critical_lane: `efo` is not `enhanced-fan-out` or `shared-iterator`"),
        );
        check(
            "[stack]\nstream = 3",
            "m",
            Err("[stack] stream: expected a string"),
        );
        check(
            "[stack]\nmax_shard = 3",
            "m",
            Err("[stack]: unknown option `max_shard`"),
        );
        check(
            "[stack]\nmin_shards = -1",
            "m",
            Err("[stack] min_shards: -1 is not a shard count"),
        );
        check(
            "[stack]\nmin_shards = 1.5",
            "m",
            Err("[stack] min_shards: expected a whole number"),
        );
        check(
            "[stage.production]\nretain_data = \"yes\"",
            "production",
            Err("[stage.production] retain_data: expected true or false"),
        );
        check(
            "[stage]\nproduction = 1",
            "m",
            Err("[stage.production] must be a table"),
        );
        check("stack = 1", "m", Err("`stack` must be a table"));
        check("[stacks]", "m", Err("unknown section `stacks`"));
        // The protected stages' section is read by `protect`, and checked by every command.
        check(
            "[deploy]\nprotected_stages = [\"staging\"]",
            "m",
            Ok("Provisioned { initial_shards: 2, min_shards: 1, max_shards: 16 } EnhancedFanOut retain=false alert=None"),
        );
        check(
            "[deploy]\nprotected_stage = [\"staging\"]",
            "m",
            Err("[deploy]: unknown option `protected_stage`"),
        );
        check("[stack", "m", Err("not valid TOML"));
        // Another stage's section is checked too.
        check(
            "[stage.production]\nretian_data = true",
            "main",
            Err("[stage.production]: unknown option `retian_data`"),
        );
    }

    #[test]
    fn table_billing_and_its_bounds() {
        let billing = |text: &str, stage: &str| {
            parse(text, stage)
                .map(|o| o.table_billing)
                .map_err(|e| format!("{e:#}"))
        };
        assert_eq!(
            billing("", "main"),
            Ok(TableBilling::Provisioned(DEFAULT_TABLE_SCALING))
        );
        let file = r#"
            [stack]
            table_min_write_capacity = 10
            table_max_read_capacity = 200
            table_target_utilization = 50
            [stage.preview]
            table_billing = "on-demand"
            [stage.big]
            table_max_write_capacity = 9000
        "#;
        let mut want = DEFAULT_TABLE_SCALING;
        want.write.min = 10;
        want.read.max = 200;
        want.target_utilization_percent = 50;
        assert_eq!(billing(file, "main"), Ok(TableBilling::Provisioned(want)));
        assert_eq!(billing(file, "preview"), Ok(TableBilling::OnDemand));
        want.write.max = 9000;
        assert_eq!(billing(file, "big"), Ok(TableBilling::Provisioned(want)));
        // Back to provisioned in a stage after an on-demand [stack]: the default bounds, as for shards.
        assert_eq!(
            billing(
                "[stack]\ntable_billing = \"on-demand\"\ntable_min_read_capacity = 7\n[stage.p]\ntable_billing = \"provisioned\"",
                "p"
            ),
            Ok(TableBilling::Provisioned(DEFAULT_TABLE_SCALING))
        );
        check(
            "[stack]\ntable_billing = \"pay-per-request\"",
            "m",
            Err("[stack] table_billing: `pay-per-request` is not `provisioned` or `on-demand`"),
        );
        check(
            "[stack]\ntable_min_read_capacity = -5",
            "m",
            Err("[stack] table_min_read_capacity: -5 is not a non-negative whole number"),
        );
        check(
            "[stack]\ntable_target_utilization = 0.7",
            "m",
            Err("[stack] table_target_utilization: expected a whole number"),
        );
    }

    #[test]
    fn cache_limits_are_options() {
        let of = |text: &str| parse(text, "main").map_err(|e| format!("{e:#}"));
        let d = of("").expect("defaults");
        assert_eq!(
            (d.cache_max_storage_gb, d.cache_max_ecpu_per_second),
            (1, 100_000)
        );
        let o = of("[stack]\ncache_max_storage_gb = 16\ncache_max_ecpu_per_second = 200000")
            .expect("set");
        assert_eq!(
            (o.cache_max_storage_gb, o.cache_max_ecpu_per_second),
            (16, 200_000)
        );
        assert_eq!(
            of("[stack]\ncache_max_storage_gb = -1"),
            Err("[stack] cache_max_storage_gb: -1 is not a non-negative whole number".to_owned())
        );
        // Out of ElastiCache's range: refused by synth, naming the limit.
        let big = of("[stack]\ncache_max_storage_gb = 999999").expect("parsed");
        let err = tally_pipeline::synth_value(&Stage::new("main"), &big)
            .map(|_| ())
            .map_err(|e| e.to_string());
        assert!(
            err.as_ref()
                .is_err_and(|e| e.contains("max_storage_gb 999999 is outside")),
            "{err:?}"
        );
    }

    #[test]
    fn bounded_cost_options() {
        let of = |text: &str, stage: &str| parse(text, stage).map_err(|e| format!("{e:#}"));
        let d = of("", "main").expect("defaults");
        assert_eq!(
            (d.collect_reserved_concurrency, d.query_reserved_concurrency),
            (100, 10)
        );
        assert_eq!((d.budget_monthly_usd, d.edge), (None, None));
        let file = r#"
            [stack]
            query_reserved_concurrency = 4
            budget_monthly_usd = 300
            [stage.production]
            edge = true
            budget_email = "finance@example.com"
            account_concurrency = 3000
            collect_reserved_concurrency = 2500
            [stage.limited]
            edge = true
            edge_requests_per_five_minutes = 500
        "#;
        let main = of(file, "main").expect("main");
        assert_eq!(main.query_reserved_concurrency, 4);
        assert_eq!(main.budget_monthly_usd, Some(300));
        assert_eq!(main.edge, None);
        let prod = of(file, "production").expect("production");
        assert_eq!(prod.edge, Some(EdgeOptions::default()));
        assert_eq!(prod.budget_email.as_deref(), Some("finance@example.com"));
        assert_eq!(
            (prod.collect_reserved_concurrency, prod.account_concurrency),
            (2500, 3000)
        );
        assert_eq!(
            of(file, "limited").expect("limited").edge,
            Some(EdgeOptions {
                requests_per_five_minutes: 500
            })
        );
        // Off again in a stage after [stack] turned it on.
        assert_eq!(
            of("[stack]\nedge = true\n[stage.p]\nedge = false", "p")
                .expect("p")
                .edge,
            None
        );
        check(
            "[stack]\nedge_requests_per_five_minutes = 100",
            "m",
            Err("[stack] edge_requests_per_five_minutes: the edge is off; add edge = true"),
        );
        check(
            "[stack]\nedge = \"yes\"",
            "m",
            Err("[stack] edge: expected true or false"),
        );
        check(
            "[stack]\nbudget_monthly_usd = -5",
            "m",
            Err("[stack] budget_monthly_usd: -5 is not a non-negative whole number"),
        );
    }

    #[test]
    fn a_profile_sizes_collect_unless_it_is_given() {
        let of = |text: &str| {
            parse(text, "main")
                .map(|o| o.collect_reserved_concurrency)
                .map_err(|e| format!("{e:#}"))
        };
        // launch-spike: 40,000 events/s in requests of 5 = 8,000 requests/s × 50.025 ms = 400.2 concurrent,
        // ×2 → 801.
        assert_eq!(
            of("[stack]\nprofile = \"xtask/profiles/launch-spike.toml\""),
            Ok(801)
        );
        assert_eq!(
            of("[stack]\nprofile = \"xtask/profiles/launch-spike.toml\"\n[stage.main]\ncollect_reserved_concurrency = 50"),
            Ok(50)
        );
        let err = of("[stack]\nprofile = \"xtask/profiles/nope.toml\"").expect_err("missing");
        assert!(
            err.contains(
                "profile = \"xtask/profiles/nope.toml\" (sizes collect_reserved_concurrency)"
            ) && err.contains("cannot read the traffic profile"),
            "{err}"
        );
    }

    #[test]
    fn no_file_means_defaults_and_a_bad_file_names_itself() {
        let dir = std::env::temp_dir().join(format!("tally-options-{}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("temp dir");
        let stage = Stage::new("main");
        assert!(load(&dir, &stage).is_ok());
        std::fs::write(dir.join(FILE), "[stack]\nstream = \"kinesis\"").expect("write");
        let err = format!("{:#}", load(&dir, &stage).expect_err("bad file"));
        assert!(err.contains("tally.toml (stack options)"), "{err}");
        let _ = std::fs::remove_dir_all(&dir);
    }
}
