//! What bounds the bill against hostile traffic, and what each defence costs a month: collect's and query's
//! reserved concurrency (free), the counter cache's usage limits and the table's auto scaling maximum (free,
//! ceilings on their bills), budgets (free for an account's first two) and the optional edge (CloudFront and
//! a WAF rate-based rule, priced per request). Also sizes collect's reserved concurrency from a profile.

use super::cost::{Bill, COLLECT_MS_PER_EVENT, HOURS_PER_MONTH};
use super::lanes::{COLLECT_MS, PUT_RECORDS_MS};
use super::prices::Prices;
use super::stack::{StackModel, TableBilling};
use tally_traffic::Profile;

/// collect's reserved concurrency is the profile's peak need times this.
pub const COLLECT_HEADROOM: f64 = 2.0;
/// ... and never below this (a small profile still gets room for a burst).
pub const COLLECT_MIN_RESERVED: u32 = 10;
/// Bytes CloudFront sends back per collect request: a 43-byte GIF or a small JSON answer with its headers.
/// Assumption.
pub const EDGE_RESPONSE_BYTES: f64 = 400.0;
/// Header bytes CloudFront sends to the origin per request, on top of the body. Assumption.
pub const EDGE_REQUEST_HEADER_BYTES: f64 = 600.0;
/// Budgets an account has free.
pub const FREE_BUDGETS: usize = 2;
/// Days in the billing month.
const DAYS_PER_MONTH: f64 = HOURS_PER_MONTH / 24.0;

/// collect's concurrent executions at the profile's peak minute: requests per second × each request's p99
/// time (the warm invocation, the PutRecords round trip, the per-event work).
pub fn collect_peak_concurrency(profile: &Profile) -> f64 {
    let epr = profile.events_per_request.max(1.0);
    let requests = profile.peak_events_per_sec() / epr;
    let ms = COLLECT_MS.1 + PUT_RECORDS_MS.1 + COLLECT_MS_PER_EVENT * epr;
    super::sweep::concurrency(requests, ms)
}

/// collect's reserved concurrency for `profile`: the peak need × [`COLLECT_HEADROOM`], rounded up, at least
/// [`COLLECT_MIN_RESERVED`].
pub fn collect_reserved_for(profile: &Profile) -> u32 {
    let sized = (collect_peak_concurrency(profile) * COLLECT_HEADROOM).ceil();
    if sized.is_finite() && sized < f64::from(u32::MAX) {
        (sized as u32).max(COLLECT_MIN_RESERVED)
    } else {
        u32::MAX
    }
}

/// One defence: what it is, what it bounds, its monthly cost and how that was computed.
#[derive(Debug, Clone, PartialEq)]
pub struct Defence {
    pub name: String,
    pub bounds: String,
    pub monthly_usd: f64,
    pub detail: String,
}

/// collect requests a month in the profile (its events over its events per request).
fn collect_requests_per_month(profile: &Profile, bill: &Bill) -> f64 {
    bill.events / profile.events_per_request.max(1.0)
}

/// The edge's monthly lines (CloudFront requests, data out and to the origin; WAF web ACLs, rules and
/// requests) added to `bill`, when the template has an edge.
pub fn add_edge_lines(bill: &mut Bill, profile: &Profile, stack: &StackModel, prices: &Prices) {
    let d = &stack.defences;
    if d.distributions == 0 && d.web_acls == 0 {
        return;
    }
    let requests = collect_requests_per_month(profile, bill);
    let (cf, waf) = (&prices.cloudfront, &prices.waf);
    if d.distributions > 0 {
        let out_gb = requests * EDGE_RESPONSE_BYTES / 1e9;
        let body = profile.events_per_request * f64::from(profile.event_bytes);
        let origin_gb = requests * (body + EDGE_REQUEST_HEADER_BYTES) / 1e9;
        bill.add(
            "CloudFront",
            "edge: HTTPS requests",
            requests,
            "requests",
            requests / 10_000.0 * cf.https_requests_per_ten_thousand,
        );
        bill.add(
            "CloudFront",
            "edge: data out to clients",
            out_gb,
            "GB",
            out_gb * cf.data_out_gb,
        );
        bill.add(
            "CloudFront",
            "edge: data to the origin",
            origin_gb,
            "GB",
            origin_gb * cf.origin_gb,
        );
    }
    if d.web_acls > 0 {
        let acls = f64::from(d.web_acls);
        let rules = f64::from(d.waf_rules);
        bill.add(
            "WAF",
            "edge: web ACLs",
            acls,
            "ACL-months",
            acls * waf.web_acl_month,
        );
        bill.add(
            "WAF",
            "edge: rules",
            rules,
            "rule-months",
            rules * waf.rule_month,
        );
        bill.add(
            "WAF",
            "edge: requests inspected",
            requests,
            "requests",
            requests / 1e6 * waf.requests_per_million,
        );
    }
}

/// Every defence the template has (and the ones it lacks, at $0 with what setting them would take).
pub fn defences(
    profile: &Profile,
    stack: &StackModel,
    prices: &Prices,
    bill: &Bill,
) -> Vec<Defence> {
    let mut out = concurrency(profile, stack);
    out.extend(ceilings(stack, prices, bill));
    out.push(budget(stack, prices));
    out.push(edge(profile, stack, prices, bill));
    out
}

/// The reserved concurrency of the functions behind URLs (collect, query).
fn concurrency(profile: &Profile, stack: &StackModel) -> Vec<Defence> {
    let peak = collect_peak_concurrency(profile);
    let sized = collect_reserved_for(profile);
    let mut out = Vec::new();
    for (id, f) in stack.functions.iter().filter(|(_, f)| f.has_url) {
        let collect = f.env.iter().any(|e| e == tally_contract::env::STREAM_NAME);
        let reserved = stack.defences.reserved.get(id).copied();
        let detail = match (reserved, collect) {
            (Some(n), true) => format!(
                "{n} reserved; the profile's peak needs {peak:.1} concurrent (×{COLLECT_HEADROOM} headroom = {sized}){}",
                if f64::from(n) < peak { ": BELOW the peak, collect will be throttled" } else { "" }
            ),
            (Some(n), false) => format!("{n} reserved"),
            (None, _) => "none: a flood can take the account's whole pool and throttle every function".to_owned(),
        };
        out.push(Defence {
            name: format!("{} reserved concurrency", f.name),
            bounds: if collect {
                "a flood of posts is throttled (429) at the ceiling; the lanes and query keep their share".to_owned()
            } else {
                "a flood of requests (401s included) stops at the ceiling".to_owned()
            },
            monthly_usd: 0.0,
            detail,
        });
    }
    out
}

/// The cache's usage limits and the table's auto scaling maximum: free, and each a ceiling on its bill.
fn ceilings(stack: &StackModel, prices: &Prices, bill: &Bill) -> Vec<Defence> {
    // The profile's own bill for the service, against the ceiling: above it, the limits throttle the profile.
    let against = |service: &str, ceiling: f64, raise: &str| {
        let own = bill.service(service);
        if own > ceiling {
            format!("; this profile's {service} bill (${own:.0}) is ABOVE it: its traffic would be throttled, raise {raise}")
        } else {
            String::new()
        }
    };
    let mut out = Vec::new();
    if let Some(cache) = &stack.cache {
        if let (Some(ecpu), Some(gb)) = (cache.max_ecpu_per_sec, cache.max_storage_gb) {
            let ceiling = ecpu * 3600.0 * HOURS_PER_MONTH / 1e6
                * prices.elasticache.valkey_ecpu_per_million
                + gb * HOURS_PER_MONTH * prices.elasticache.valkey_gb_hour;
            out.push(Defence {
                name: "cache usage limits".to_owned(),
                bounds:
                    "requests above the ECPU/s ceiling are throttled; storage stops at its maximum"
                        .to_owned(),
                monthly_usd: 0.0,
                detail: format!(
                    "{ecpu:.0} ECPU/s, {gb:.0} GB: the cache's bill cannot pass ${ceiling:.0}/month{}",
                    against(
                        "ElastiCache",
                        ceiling,
                        "tally.toml's cache_max_storage_gb / cache_max_ecpu_per_second"
                    )
                ),
            });
        }
    }
    if let TableBilling::Provisioned { write, read } = stack.table_billing {
        let ceiling = HOURS_PER_MONTH
            * (write.max * prices.dynamodb.provisioned_wcu_hour
                + read.max * prices.dynamodb.provisioned_rcu_hour);
        out.push(Defence {
            name: "table capacity maximum".to_owned(),
            bounds: "writes and reads above auto scaling's maximum are throttled".to_owned(),
            monthly_usd: 0.0,
            detail: format!(
                "{:.0} write / {:.0} read units: the table's throughput cannot pass ${ceiling:.0}/month{}",
                write.max,
                read.max,
                against(
                    "DynamoDB",
                    ceiling,
                    "table_max_write_capacity / table_max_read_capacity (tally.toml)"
                )
            ),
        });
    }
    out
}

fn budget(stack: &StackModel, prices: &Prices) -> Defence {
    let budgets = &stack.defences.budgets;
    let per_month = prices.budgets.budget_day * DAYS_PER_MONTH;
    let (monthly_usd, detail) = match budgets.as_slice() {
        [] => (
            0.0,
            "none: set budget_monthly_usd in tally.toml".to_owned(),
        ),
        limits => (
            0.0,
            format!(
                "${} a month, mails at 80 % actual and 100 % forecast; free as one of the account's first {FREE_BUDGETS} budgets, else ${per_month:.2}/month each",
                limits
                    .iter()
                    .map(|l| format!("{l:.0}"))
                    .collect::<Vec<_>>()
                    .join(", $")
            ),
        ),
    };
    Defence {
        name: "budget".to_owned(),
        bounds:
            "nothing by itself: tells the alerts topic before the month's bill passes the limit"
                .to_owned(),
        monthly_usd,
        detail,
    }
}

fn edge(profile: &Profile, stack: &StackModel, prices: &Prices, bill: &Bill) -> Defence {
    let d = &stack.defences;
    let mut lines = Bill {
        events: bill.events,
        ..Bill::default()
    };
    let mut with_edge = stack.clone();
    if d.distributions == 0 {
        // What it would cost: one distribution, one ACL with one rule.
        with_edge.defences.distributions = 1;
        with_edge.defences.web_acls = 1;
        with_edge.defences.waf_rules = 1;
    }
    add_edge_lines(&mut lines, profile, &with_edge, prices);
    // The origin secret CloudFront sends and collect checks (the template's third secret with the edge; its
    // reads, two per collect instance every 5 minutes, are not modelled).
    lines.add(
        "Secrets Manager",
        "edge: origin secret",
        1.0,
        "secrets",
        prices.secrets_manager.secret_month,
    );
    let per_million =
        prices.cloudfront.https_requests_per_ten_thousand * 100.0 + prices.waf.requests_per_million;
    let rate = match d.rate_limit {
        Some((limit, window)) => format!("{limit} requests per address per {window} s"),
        None => "a per-address rate".to_owned(),
    };
    if d.distributions == 0 {
        Defence {
            name: "edge (CloudFront + WAF)".to_owned(),
            bounds: "off (edge = true in tally.toml)".to_owned(),
            monthly_usd: 0.0,
            detail: format!(
                "would cost ${:.2}/month for this profile; a flood through it ${per_million:.2} per million requests, blocked ones included",
                lines.total()
            ),
        }
    } else {
        Defence {
            name: "edge (CloudFront + WAF)".to_owned(),
            bounds: format!("WAF blocks an address above {rate}"),
            monthly_usd: lines.total(),
            detail: format!(
                "CloudFront ${:.2} + WAF ${:.2} + origin secret ${:.2}; a flood through it costs ${per_million:.2} per million requests, blocked ones included (collect refuses requests that bypass it: no origin header, 403)",
                lines.service("CloudFront"),
                lines.service("WAF"),
                lines.service("Secrets Manager")
            ),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn profile(events_per_sec: f64, per_request: f64) -> Profile {
        let mut p = Profile::flat(events_per_sec, 300).expect("flat profile");
        p.events_per_request = per_request;
        p
    }

    #[test]
    fn collect_is_sized_from_the_peak_with_headroom() {
        // 2,000 events/s in batches of 20: 100 requests/s × (20 + 30 + 0.1) ms = 5.01 concurrent; ×2 → 11.
        let p = profile(2_000.0, 20.0);
        assert!((collect_peak_concurrency(&p) - 5.01).abs() < 1e-9);
        assert_eq!(collect_reserved_for(&p), 11);
        // 40,000 pixels/s: 40,000 × 50.005 ms = 2,000.2 concurrent; ×2 → 4,001.
        assert_eq!(collect_reserved_for(&profile(40_000.0, 1.0)), 4_001);
        // A trickle still gets the floor.
        assert_eq!(
            collect_reserved_for(&profile(1.0, 1.0)),
            COLLECT_MIN_RESERVED
        );
    }

    #[test]
    fn shipped_profiles_fit_the_default() {
        // The pipeline's default reservation covers the daily curve; the launch spike needs its own.
        let read = |name: &str| {
            let path = crate::workspace_root().join("xtask/profiles").join(name);
            Profile::parse(&std::fs::read_to_string(&path).expect("profile")).expect("parses")
        };
        let daily = collect_reserved_for(&read("daily-curve-network.toml"));
        assert!(
            daily <= tally_pipeline::DEFAULT_COLLECT_RESERVED_CONCURRENCY,
            "{daily}"
        );
        let spike = collect_reserved_for(&read("launch-spike.toml"));
        assert!(
            spike > tally_pipeline::DEFAULT_COLLECT_RESERVED_CONCURRENCY,
            "{spike}"
        );
    }
}
