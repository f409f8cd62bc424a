//! The defences that bound what the stack costs and can take: the functions' reserved concurrency (checked
//! against the account's quota) and, optional because they cost money, the budget and the edge in front of
//! collect (CloudFront with a WAF rate limit per client address).

use tally_constructs::budgets::{Budget, BudgetProps};
use tally_constructs::edge::{Edge, EdgeProps, OriginSecret};
use tally_constructs::lambda::FunctionUrl;
use tally_constructs::secrets::Secret;
use tally_constructs::sns::Topic;
use tally_constructs::Scope;
use tally_domain::ingest::ORIGIN_HEADER;

use crate::context::Context;
use crate::{outputs, EdgeOptions, PipelineOptions, UNRESERVED_MINIMUM};

/// Every function's reserved concurrency, and that together they leave AWS's unreserved minimum.
pub(crate) fn check_reserved_total(scope: &Scope, o: &PipelineOptions) {
    for (name, n) in [
        (
            "collect_reserved_concurrency",
            o.collect_reserved_concurrency,
        ),
        ("query_reserved_concurrency", o.query_reserved_concurrency),
    ] {
        if n == 0 {
            scope.violation(format!(
                "{name} is 0: the function would be throttled on every request (give at least 1)"
            ));
        }
    }
    let reserved: u64 = [
        Some(o.collect_reserved_concurrency),
        Some(o.query_reserved_concurrency),
        o.realtime.reserved_concurrency,
        o.deferred.reserved_concurrency,
    ]
    .into_iter()
    .flatten()
    .map(u64::from)
    .sum();
    let allowed = u64::from(o.account_concurrency).saturating_sub(u64::from(UNRESERVED_MINIMUM));
    if reserved > allowed {
        scope.violation(format!(
            "the functions reserve {reserved} concurrent executions, above the {allowed} an account_concurrency of {} allows (AWS keeps {UNRESERVED_MINIMUM} unreserved): lower collect_reserved_concurrency or raise the quota and account_concurrency",
            o.account_concurrency
        ));
    }
}

/// The optional defences and what they protect.
pub(crate) struct BoundedCostProps<'a> {
    /// A monthly budget, whole USD.
    pub(crate) budget_monthly_usd: Option<u32>,
    /// Also mailed by the budget.
    pub(crate) budget_email: Option<&'a str>,
    /// The edge in front of collect.
    pub(crate) edge: Option<EdgeOptions>,
    /// collect's URL, the edge's origin.
    pub(crate) collect_url: &'a FunctionUrl,
    /// What the edge adds to every request it forwards (with the edge).
    pub(crate) origin_secret: Option<&'a Secret>,
    /// Where the budget notifies.
    pub(crate) alerts: &'a Topic,
}

/// Adds the budget and the edge (with its outputs) when the options ask for them.
pub(crate) fn bounded_cost(cx: &Context<'_>, props: BoundedCostProps<'_>) {
    if let Some(monthly_usd) = props.budget_monthly_usd {
        Budget::new(
            &cx.root,
            "CostBudget",
            BudgetProps {
                monthly_usd,
                actual_percent: 80,
                topic: Some(props.alerts.clone()),
                emails: props.budget_email.iter().map(|e| (*e).to_owned()).collect(),
            },
        );
    }
    if let Some(edge) = props.edge {
        let edge = Edge::new(
            &cx.root,
            "CollectEdge",
            props.collect_url,
            EdgeProps {
                requests_per_five_minutes: edge.requests_per_five_minutes,
                comment: format!("tally collect ({})", cx.stage.label())
                    .chars()
                    .take(128)
                    .collect(),
                origin_secret: props.origin_secret.map(|secret| OriginSecret {
                    header: ORIGIN_HEADER.to_owned(),
                    secret_id: secret.arn(),
                }),
            },
        );
        edge.web_acl().skip_check("CKV_AWS_192", "collect is Rust, no Log4j: the Known Bad Inputs rule group would add a rule fee and per-request inspection for nothing");
        let distribution = edge.distribution();
        distribution.skip_check("CKV_AWS_174", "the default *.cloudfront.net certificate; a custom domain with its ACM certificate (TLS 1.2 minimum) is the operator's choice");
        distribution.skip_check(
            "CKV_AWS_86",
            "no access logs: collect logs its own requests and the web ACL samples blocked ones",
        );
        distribution.skip_check(
            "CKV_AWS_310",
            "one origin by design: the collect Function URL is the only place the events go",
        );
        distribution.skip_check(
            "CKV_AWS_305",
            "no default root object: an API, not a web site",
        );
        if let Some(secret) = props.origin_secret {
            cx.stack.output(
                outputs::COLLECT_ORIGIN_SECRET_ARN,
                "secret CloudFront adds to collect's requests (collect refuses requests without it)",
                &secret.arn(),
            );
        }
        cx.stack.output(
            outputs::EDGE_URL,
            "collect behind CloudFront and a per-address WAF rate limit (send tracking here)",
            &edge.url(),
        );
    }
}

#[cfg(test)]
mod tests {
    use super::{bounded_cost, check_reserved_total, BoundedCostProps};
    use crate::ingest::{collect, events_stream, CollectProps, EventsProps};
    use crate::monitoring::alerts_topic;
    use crate::storage::{Storage, StorageProps};
    use crate::testing::{template_of, types_of, violations_of};
    use crate::{outputs, EdgeOptions, PipelineOptions, StreamCapacity};

    fn with(o: &PipelineOptions) -> serde_json::Value {
        template_of(o, |cx| {
            let events = events_stream(
                cx,
                EventsProps {
                    capacity: StreamCapacity::OnDemand,
                    retention_hours: 24,
                },
            );
            let storage = Storage::new(
                cx,
                StorageProps {
                    table_billing: o.table_billing,
                    archive_expiration_days: None,
                    origin_secret: o.edge.is_some(),
                },
            );
            let collect = collect(
                cx,
                CollectProps {
                    events: &events,
                    keys: &storage.collect_keys,
                    origin_secret: storage.origin_secret.as_ref(),
                },
            );
            let alerts = alerts_topic(cx, None);
            bounded_cost(
                cx,
                BoundedCostProps {
                    budget_monthly_usd: o.budget_monthly_usd,
                    budget_email: o.budget_email.as_deref(),
                    edge: o.edge,
                    collect_url: &collect.url,
                    origin_secret: storage.origin_secret.as_ref(),
                    alerts: &alerts,
                },
            );
        })
    }

    #[test]
    fn nothing_that_costs_unless_asked() {
        let t = with(&PipelineOptions::default());
        assert!(types_of(&t, &["CostBudget", "CollectEdge"]).is_empty());
        assert!(t["Outputs"].is_null());
    }

    #[test]
    fn budget_and_edge_on_request() {
        let t = with(&PipelineOptions {
            budget_monthly_usd: Some(100),
            edge: Some(EdgeOptions::default()),
            ..PipelineOptions::default()
        });
        assert_eq!(types_of(&t, &["CostBudget"])[0], "AWS::Budgets::Budget");
        let edge = types_of(&t, &["CollectEdge"]);
        assert!(
            edge.iter().any(|ty| ty == "AWS::CloudFront::Distribution"),
            "{edge:?}"
        );
        assert!(edge.iter().any(|ty| ty == "AWS::WAFv2::WebACL"), "{edge:?}");
        let names: Vec<&String> = t["Outputs"].as_object().expect("outputs").keys().collect();
        assert_eq!(
            names,
            [outputs::COLLECT_ORIGIN_SECRET_ARN, outputs::EDGE_URL]
        );
    }

    #[test]
    fn reserved_concurrency_leaves_the_unreserved_minimum() {
        let o = PipelineOptions {
            collect_reserved_concurrency: 0,
            account_concurrency: 100,
            ..PipelineOptions::default()
        };
        let e = violations_of(&o, |cx| {
            check_reserved_total(&cx.root.child("Concurrency"), &o)
        });
        assert!(e.contains("collect_reserved_concurrency is 0"), "{e}");
        assert!(
            e.contains("above the 0 an account_concurrency of 100 allows"),
            "{e}"
        );
        let fine = PipelineOptions::default();
        template_of(&fine, |cx| {
            check_reserved_total(&cx.root.child("Concurrency"), &fine)
        });
    }
}
