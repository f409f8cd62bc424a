//! Bounded cost: reserved concurrency of the public functions, the budget and the optional edge.

use serde_json::{json, Value};
use tally_pipeline::{EdgeOptions, PipelineOptions, DEFAULT_COLLECT_RESERVED_CONCURRENCY};

use super::template::check_grants;
use super::{find, of_type, template, template_with};

fn reserved(t: &Value, prefix: &str) -> Value {
    find(t, "AWS::Lambda::Function", prefix).1["Properties"]["ReservedConcurrentExecutions"].clone()
}

#[test]
fn collect_and_query_have_reserved_concurrency() {
    let t = template("main");
    assert_eq!(
        reserved(&t, "Collect"),
        json!(DEFAULT_COLLECT_RESERVED_CONCURRENCY)
    );
    assert_eq!(reserved(&t, "Query"), json!(10));
    let t = template_with(
        "main",
        &PipelineOptions {
            collect_reserved_concurrency: 250,
            query_reserved_concurrency: 3,
            ..PipelineOptions::default()
        },
    );
    assert_eq!(reserved(&t, "Collect"), json!(250));
    assert_eq!(reserved(&t, "Query"), json!(3));
}

#[test]
fn no_budget_and_no_edge_by_default() {
    let t = template("main");
    for ty in [
        "AWS::Budgets::Budget",
        "AWS::CloudFront::Distribution",
        "AWS::WAFv2::WebACL",
        "AWS::SNS::TopicPolicy",
    ] {
        assert!(of_type(&t, ty).is_empty(), "{ty} without the option");
    }
    assert!(t["Outputs"].get("EdgeUrl").is_none());
    // Without the edge there is no origin secret, and collect requires no header.
    assert!(t["Outputs"].get("CollectOriginSecretArn").is_none());
    let (_, collect) = find(&t, "AWS::Lambda::Function", "Collect");
    assert!(collect["Properties"]["Environment"]["Variables"]
        .get("TALLY_COLLECT_ORIGIN_SECRET_ARN")
        .is_none());
    let secrets: Vec<_> = of_type(&t, "AWS::SecretsManager::Secret")
        .into_iter()
        .map(|(id, _)| id)
        .collect();
    assert!(
        !secrets.iter().any(|id| id.starts_with("CollectOrigin")),
        "{secrets:?}"
    );
}

#[test]
fn budget_notifies_the_alerts_topic_and_the_budget_email() {
    let t = template_with(
        "main",
        &PipelineOptions {
            budget_monthly_usd: Some(750),
            budget_email: Some("finance@example.com".into()),
            ..PipelineOptions::default()
        },
    );
    let (_, budget) = find(&t, "AWS::Budgets::Budget", "CostBudget");
    let p = &budget["Properties"];
    assert_eq!(
        p["Budget"],
        json!({"BudgetType": "COST", "TimeUnit": "MONTHLY", "BudgetLimit": {"Amount": 750, "Unit": "USD"}})
    );
    let notes = p["NotificationsWithSubscribers"]
        .as_array()
        .expect("notifications");
    let kinds: Vec<_> = notes
        .iter()
        .map(|n| {
            (
                n["Notification"]["NotificationType"].clone(),
                n["Notification"]["Threshold"].clone(),
            )
        })
        .collect();
    assert_eq!(
        kinds,
        [
            (json!("ACTUAL"), json!(80)),
            (json!("FORECASTED"), json!(100))
        ]
    );
    let (alerts, _) = find(&t, "AWS::SNS::Topic", "Alerts");
    for n in notes {
        assert_eq!(
            n["Subscribers"],
            json!([
                {"SubscriptionType": "SNS", "Address": {"Ref": alerts}},
                {"SubscriptionType": "EMAIL", "Address": "finance@example.com"}
            ])
        );
    }
    // Budgets may publish to the alerts topic, for this account only.
    let (_, policy) = find(&t, "AWS::SNS::TopicPolicy", "CostBudget");
    let statement = &policy["Properties"]["PolicyDocument"]["Statement"][0];
    assert_eq!(
        statement["Principal"],
        json!({"Service": "budgets.amazonaws.com"})
    );
    assert_eq!(statement["Action"], json!("sns:Publish"));
    assert_eq!(
        statement["Condition"]["StringEquals"]["aws:SourceAccount"],
        json!({"Ref": "AWS::AccountId"})
    );
}

#[test]
fn edge_fronts_the_collect_url_with_a_rate_based_rule() {
    let t = template_with(
        "main",
        &PipelineOptions {
            edge: Some(EdgeOptions {
                requests_per_five_minutes: 2000,
            }),
            ..PipelineOptions::default()
        },
    );
    let (acl_id, acl) = find(&t, "AWS::WAFv2::WebACL", "CollectEdge");
    let acl = &acl["Properties"];
    assert_eq!(acl["Scope"], json!("CLOUDFRONT"));
    assert_eq!(acl["DefaultAction"], json!({"Allow": {}}));
    let rule = &acl["Rules"][0];
    assert_eq!(rule["Action"], json!({"Block": {}}));
    assert_eq!(
        rule["Statement"]["RateBasedStatement"],
        json!({"Limit": 2000, "EvaluationWindowSec": 300, "AggregateKeyType": "IP"})
    );
    let (dist_id, dist) = find(&t, "AWS::CloudFront::Distribution", "CollectEdge");
    let config = &dist["Properties"]["DistributionConfig"];
    assert_eq!(config["WebACLId"], json!({"Fn::GetAtt": [acl_id, "Arn"]}));
    let (url_id, _) = find(&t, "AWS::Lambda::Url", "CollectFunctionUrl");
    assert_eq!(
        config["Origins"][0]["DomainName"],
        json!({"Fn::Select": [2, {"Fn::Split": ["/", {"Fn::GetAtt": [url_id, "FunctionUrl"]}]}]})
    );
    let behaviour = &config["DefaultCacheBehavior"];
    assert_eq!(
        behaviour["CachePolicyId"],
        json!("4135ea2d-6df8-44a3-9df3-4b5a84be39ad"),
        "CachingDisabled: every event reaches collect"
    );
    assert_eq!(
        behaviour["OriginRequestPolicyId"],
        json!("b689b0a8-53d0-40ab-baf2-68738e2966ac"),
        "AllViewerExceptHostHeader: a Function URL answers only for its own host"
    );
    assert!(behaviour["AllowedMethods"]
        .as_array()
        .expect("methods")
        .contains(&json!("POST")));
    assert_eq!(
        t["Outputs"]["EdgeUrl"]["Value"],
        json!({"Fn::Sub": format!("https://${{{dist_id}.DomainName}}/")})
    );
}

/// The edge cannot be bypassed: CloudFront adds the origin secret (a dynamic reference, never the value) in
/// the header collect checks; collect gets the secret's ARN and may read that secret only.
#[test]
fn edge_sends_the_origin_secret_collect_checks() {
    let t = template_with(
        "main",
        &PipelineOptions {
            edge: Some(EdgeOptions::default()),
            ..PipelineOptions::default()
        },
    );
    let (secret_id, secret) = find(&t, "AWS::SecretsManager::Secret", "CollectOrigin");
    assert_eq!(
        secret["Properties"]["GenerateSecretString"],
        json!({"PasswordLength": 48, "ExcludePunctuation": true, "IncludeSpace": false})
    );
    let (_, dist) = find(&t, "AWS::CloudFront::Distribution", "CollectEdge");
    assert_eq!(
        dist["Properties"]["DistributionConfig"]["Origins"][0]["OriginCustomHeaders"],
        json!([{
            "HeaderName": tally_domain::ingest::ORIGIN_HEADER,
            "HeaderValue": {"Fn::Sub": format!("{{{{resolve:secretsmanager:${{{secret_id}}}:SecretString}}}}")},
        }])
    );
    let (_, collect) = find(&t, "AWS::Lambda::Function", "Collect");
    assert_eq!(
        collect["Properties"]["Environment"]["Variables"]["TALLY_COLLECT_ORIGIN_SECRET_ARN"],
        json!({"Ref": secret_id})
    );
    let mut grants = vec![
        ("kinesis:PutRecords", "Events"),
        ("secretsmanager:GetSecretValue", "CollectKeys"),
        ("secretsmanager:GetSecretValue", "CollectOrigin"),
    ];
    grants.extend([
        ("logs:CreateLogStream", "CollectLogGroup"),
        ("logs:PutLogEvents", "CollectLogGroup"),
    ]);
    check_grants(&t, "Collect", &grants);
    // No other function may read it.
    for (id, f) in of_type(&t, "AWS::Lambda::Function") {
        if !id.starts_with("Collect") {
            let role = f["Properties"]["Role"]["Fn::GetAtt"][0]
                .as_str()
                .expect("role");
            let policy = &t["Resources"][role];
            assert!(
                !policy.to_string().contains(secret_id.as_str()),
                "{id} may read the origin secret"
            );
        }
    }
    assert_eq!(
        t["Outputs"]["CollectOriginSecretArn"]["Value"],
        json!({"Ref": secret_id})
    );
}
