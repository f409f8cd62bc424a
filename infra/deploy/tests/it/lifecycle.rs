//! One stage's life: deploy new, deploy unchanged, diff and deploy a changed function, a second stage beside
//! it, destroy (buckets emptied, everything verified gone, the other stage intact), destroy again.

use std::collections::BTreeMap;

use aws_sdk_s3::types::{BucketVersioningStatus, VersioningConfiguration};
use tally_deploy::plan::Action;
use tally_deploy::{DeployOutcome, DestroyOutcome};
use tally_pipeline::Stage;

use crate::support::{self, Env};

/// Physical ids of the stack's resources by logical id.
async fn resources(env: &Env, stack: &str) -> BTreeMap<String, (String, String)> {
    let out = env
        .clients
        .cfn
        .list_stack_resources()
        .stack_name(stack)
        .send()
        .await
        .expect("ListStackResources");
    out.stack_resource_summaries()
        .iter()
        .filter_map(|r| {
            let id = r.logical_resource_id().filter(|id| !id.is_empty())?;
            Some((
                id.to_owned(),
                (
                    r.resource_type()?.to_owned(),
                    r.physical_resource_id()?.to_owned(),
                ),
            ))
        })
        .collect()
}

/// The physical id of the one resource whose logical id starts with `prefix` and has type `ty`.
fn physical(resources: &BTreeMap<String, (String, String)>, prefix: &str, ty: &str) -> String {
    let found: Vec<&String> = resources
        .iter()
        .filter(|(id, (t, _))| id.starts_with(prefix) && t == ty)
        .map(|(_, (_, physical))| physical)
        .collect();
    assert_eq!(found.len(), 1, "one {ty} named {prefix}*: {found:?}");
    found[0].clone()
}

async fn code_sha(env: &Env, function: &str) -> String {
    let out = env
        .lambda()
        .get_function()
        .function_name(function)
        .send()
        .await
        .expect("GetFunction");
    out.configuration()
        .and_then(|c| c.code_sha256())
        .expect("code sha")
        .to_owned()
}

/// A mapping's settings as one comparable line.
async fn mapping(env: &Env, function: &str) -> String {
    let out = env
        .lambda()
        .list_event_source_mappings()
        .function_name(function)
        .send()
        .await
        .expect("ListEventSourceMappings");
    let [m] = out.event_source_mappings() else {
        panic!("one mapping for {function}: {out:?}")
    };
    let on_failure = m
        .destination_config()
        .and_then(|d| d.on_failure())
        .and_then(|f| f.destination())
        .map(|arn| arn.rsplit(':').next().unwrap_or(arn).to_owned());
    format!(
        "batch={:?} window={:?} retries={:?} bisect={:?} age={:?} parallel={:?} start={:?} types={:?} on_failure={}",
        m.batch_size(),
        m.maximum_batching_window_in_seconds(),
        m.maximum_retry_attempts(),
        m.bisect_batch_on_function_error(),
        m.maximum_record_age_in_seconds(),
        m.parallelization_factor(),
        m.starting_position().map(|p| p.as_str().to_owned()),
        m.function_response_types().iter().map(|t| t.as_str().to_owned()).collect::<Vec<_>>(),
        on_failure.unwrap_or_default(),
    )
}

/// Every action and resource of a role's inline policies: `(actions, resources)` per statement.
async fn role_statements(env: &Env, function: &str) -> Vec<(Vec<String>, String)> {
    let config = env
        .lambda()
        .get_function()
        .function_name(function)
        .send()
        .await
        .expect("GetFunction");
    let role_arn = config
        .configuration()
        .and_then(|c| c.role())
        .expect("role")
        .to_owned();
    let role = role_arn.rsplit('/').next().expect("role name").to_owned();
    let iam = env.iam();
    let names = iam
        .list_role_policies()
        .role_name(&role)
        .send()
        .await
        .expect("ListRolePolicies");
    let mut out = Vec::new();
    for name in names.policy_names() {
        let p = iam
            .get_role_policy()
            .role_name(&role)
            .policy_name(name)
            .send()
            .await
            .expect("GetRolePolicy");
        let doc = p.policy_document();
        // IAM returns policy documents URL-encoded.
        let decoded = tally_domain::urlencoded::decode_lossy(doc);
        // AWS sends the JSON URL-encoded; moto sends a policy created through CloudFormation as a Python dict
        // literal. The documents hold no quotes of their own, so the dict literal reads as JSON once its quotes
        // are swapped.
        let doc: serde_json::Value = serde_json::from_str(&decoded)
            .or_else(|_| serde_json::from_str(&decoded.replace('\'', "\"")))
            .unwrap_or_else(|e| panic!("policy json ({e}): {decoded}"));
        for s in doc["Statement"].as_array().into_iter().flatten() {
            let actions = match &s["Action"] {
                serde_json::Value::String(a) => vec![a.clone()],
                serde_json::Value::Array(a) => a
                    .iter()
                    .filter_map(|v| v.as_str().map(str::to_owned))
                    .collect(),
                _ => Vec::new(),
            };
            out.push((actions, s["Resource"].to_string()));
        }
    }
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stage_from_first_deploy_to_destroy() {
    let env = Env::start("lifecycle").await;
    let stage = Stage::new("feature/ÜBER_new--thing");
    let stack = stage.stack_name();

    // 1. A new stage: created through a CREATE change set, tagged.
    let t = std::time::Instant::now();
    let req = support::request(&stage, env.zips("v1", &[]));
    let synth = t.elapsed();
    let t = std::time::Instant::now();
    let outcome = tally_deploy::deploy(&env.clients, &req)
        .await
        .expect("first deploy");
    let first = t.elapsed();
    let DeployOutcome::Deployed { plan, uploaded, .. } = outcome else {
        panic!("first deploy did nothing: {outcome:?}")
    };
    assert_eq!(uploaded, 6, "six zips uploaded");
    assert!(
        plan.changes.iter().all(|c| c.action == Action::Add),
        "{plan}"
    );
    assert!(
        !plan.iam_changes().is_empty(),
        "roles are IAM changes: {plan}"
    );
    let info = tally_deploy::describe(&env.clients, &stack)
        .await
        .expect("describe")
        .expect("stack exists");
    assert_eq!(info.status, "CREATE_COMPLETE");
    let tags = info.tags.clone().expect("tagged");
    assert_eq!(
        (tags.project.as_str(), tags.branch.as_str()),
        ("tally", "feature/ÜBER_new--thing")
    );
    assert_eq!(tags.stage, stage.label());
    assert!(!tags.commit.is_empty() && !tags.created_at.is_empty());

    // Resources exist with the configured properties.
    let res = resources(&env, &stack).await;
    let realtime = physical(&res, "Realtime", "AWS::Lambda::Function");
    let deferred = physical(&res, "Deferred", "AWS::Lambda::Function");
    let collect = physical(&res, "Collect", "AWS::Lambda::Function");
    let realtime_failures = physical(&res, "RealtimeFailures", "AWS::SQS::Queue");
    let deferred_failures = physical(&res, "DeferredFailures", "AWS::SQS::Queue");
    let name_of = |url: &str| url.rsplit('/').next().unwrap_or(url).to_owned();
    // The metrics table on provisioned capacity at auto scaling's floor (its scalable targets and
    // policies are skipped by moto: see the crate comment).
    let table = physical(&res, "Metrics", "AWS::DynamoDB::Table");
    let described = env
        .clients
        .dynamodb
        .describe_table()
        .table_name(&table)
        .send()
        .await
        .expect("DescribeTable")
        .table
        .expect("a table");
    let throughput = described.provisioned_throughput.expect("provisioned");
    assert_eq!(
        (
            throughput.read_capacity_units,
            throughput.write_capacity_units
        ),
        (Some(3), Some(3))
    );
    assert_eq!(
        mapping(&env, &realtime).await,
        format!(
            "batch=Some(500) window=Some(0) retries=Some(3) bisect=Some(true) age=Some(3600) parallel=Some(1) \
             start=Some(\"TRIM_HORIZON\") types=[\"ReportBatchItemFailures\"] on_failure={}",
            name_of(&realtime_failures)
        )
    );
    let deferred_mapping = mapping(&env, &deferred).await;
    assert!(
        deferred_mapping.starts_with(
            "batch=Some(2000) window=Some(30) retries=Some(5) bisect=Some(true) age=Some(86400)"
        ),
        "{deferred_mapping}"
    );
    assert!(
        deferred_mapping.ends_with(&format!("on_failure={}", name_of(&deferred_failures))),
        "{deferred_mapping}"
    );

    let statements = role_statements(&env, &collect).await;
    let stream = physical(&res, "Events", "AWS::Kinesis::Stream");
    assert!(
        statements.iter().any(|(actions, resource)| actions
            .iter()
            .any(|a| a == "kinesis:PutRecords")
            && resource.contains(&stream)),
        "collect may write the events stream: {statements:?}"
    );
    assert!(
        statements
            .iter()
            .all(|(actions, _)| actions.iter().all(|a| a != "*" && !a.ends_with(":*"))),
        "{statements:?}"
    );

    // 2. The same again: nothing created, nothing executed.
    let count_change_sets = || async {
        let out = env
            .clients
            .cfn
            .list_change_sets()
            .stack_name(&stack)
            .send()
            .await
            .expect("ListChangeSets");
        out.summaries().len()
    };
    let count_events = || async {
        let out = env
            .clients
            .cfn
            .describe_stack_events()
            .stack_name(&stack)
            .send()
            .await
            .expect("DescribeStackEvents");
        out.stack_events().len()
    };
    let (events_before, change_sets_before) = (count_events().await, count_change_sets().await);
    let started = std::time::Instant::now();
    let outcome =
        tally_deploy::deploy(&env.clients, &support::request(&stage, env.zips("v1", &[])))
            .await
            .expect("no-op deploy");
    let no_op = started.elapsed();
    assert!(
        matches!(outcome, DeployOutcome::NoChanges { .. }),
        "{outcome:?}"
    );
    assert_eq!(
        count_events().await,
        events_before,
        "a no-op deploy executes nothing"
    );
    assert_eq!(
        count_change_sets().await,
        change_sets_before,
        "a no-op deploy creates no change set"
    );
    // Figures for the README (`cargo test -p tally-deploy --test it lifecycle -- --nocapture`).
    println!("timing: synth (with placeholder zips) {synth:?}, first deploy {first:?}, no-op deploy {no_op:?}");

    // 3. One function changes: diff shows exactly its code key and version (the zip is not uploaded yet, so
    //    the version is `pending-upload`), deploy changes exactly its code.
    let changed = support::request(&stage, env.zips("v2", &["collect"]));
    let plan = tally_deploy::diff(&env.clients, &changed)
        .await
        .expect("diff");
    let lines: Vec<String> = plan
        .changes
        .iter()
        .map(|c| {
            format!(
                "{} {} {:?} {:?}",
                c.action, c.logical_id, c.properties, c.parameters
            )
        })
        .collect();
    assert_eq!(lines.len(), 1, "{plan}");
    assert!(
        lines[0].starts_with("modify Collect")
            && lines[0].ends_with(
                "[\"Code.S3Key\", \"Code.S3ObjectVersion\"] [\"CollectCodeKey\", \"CollectCodeVersion\"]"
            ),
        "{plan}"
    );
    assert_eq!(
        plan.parameters.keys().collect::<Vec<_>>(),
        ["CollectCodeKey", "CollectCodeVersion"],
        "{plan}"
    );
    assert_eq!(
        plan.parameters["CollectCodeVersion"].1.as_deref(),
        Some(tally_deploy::PENDING_VERSION),
        "{plan}"
    );
    assert!(
        plan.destructive().is_empty() && plan.iam_changes().is_empty(),
        "{plan}"
    );
    let shas_before = [
        code_sha(&env, &collect).await,
        code_sha(&env, &realtime).await,
        code_sha(&env, &deferred).await,
    ];
    let outcome = tally_deploy::deploy(&env.clients, &changed)
        .await
        .expect("deploy the change");
    let DeployOutcome::Deployed {
        plan: deployed_plan,
        uploaded,
        ..
    } = outcome
    else {
        panic!("{outcome:?}")
    };
    assert_eq!(uploaded, 1, "only the changed zip is uploaded");
    // Deploy does what diff said; the pending version is now the one it uploaded.
    assert_eq!(
        deployed_plan.changes, plan.changes,
        "deploy does what diff said"
    );
    let uploaded_version = &deployed_plan.parameters["CollectCodeVersion"].1;
    assert!(
        uploaded_version
            .as_deref()
            .is_some_and(|v| v != tally_deploy::PENDING_VERSION),
        "{deployed_plan}"
    );
    let mut expected = plan.parameters.clone();
    if let Some(v) = expected.get_mut("CollectCodeVersion") {
        v.1 = uploaded_version.clone();
    }
    assert_eq!(
        deployed_plan.parameters, expected,
        "deploy does what diff said"
    );
    let shas_after = [
        code_sha(&env, &collect).await,
        code_sha(&env, &realtime).await,
        code_sha(&env, &deferred).await,
    ];
    assert_ne!(shas_before[0], shas_after[0], "collect's code changed");
    assert_eq!(
        shas_before[1..],
        shas_after[1..],
        "the other functions' code did not"
    );
    let info = tally_deploy::describe(&env.clients, &stack)
        .await
        .expect("describe")
        .expect("stack");
    assert_eq!(
        info.tags.expect("tags").created_at,
        tags.created_at,
        "creation time kept across updates"
    );

    // 4. A second stage beside it.
    let other = Stage::new("dependabot/cargo/aws-sdk-1.2.3");
    tally_deploy::deploy(&env.clients, &support::request(&other, env.zips("v1", &[])))
        .await
        .expect("second stage");
    let other_res = resources(&env, &other.stack_name()).await;
    let shared: Vec<&String> = other_res
        .values()
        .map(|(_, p)| p)
        .filter(|p| !p.is_empty())
        .filter(|p| res.values().any(|(_, q)| q == *p))
        .collect();
    assert!(
        shared.is_empty(),
        "two stages share no physical resource: {shared:?}"
    );

    // 5. Destroy the first: a versioned archive bucket with objects, versions and a delete marker is emptied.
    let archive = physical(&res, "Archive", "AWS::S3::Bucket");
    let s3 = &env.clients.s3;
    s3.put_bucket_versioning()
        .bucket(&archive)
        .versioning_configuration(
            VersioningConfiguration::builder()
                .status(BucketVersioningStatus::Enabled)
                .build(),
        )
        .send()
        .await
        .expect("versioning");
    for body in ["one", "two"] {
        s3.put_object()
            .bucket(&archive)
            .key("2026/11/26/12.ndjson.gz")
            .body(body.as_bytes().to_vec().into())
            .send()
            .await
            .expect("put");
    }
    s3.delete_object()
        .bucket(&archive)
        .key("2026/11/26/12.ndjson.gz")
        .send()
        .await
        .expect("delete marker");
    let t = std::time::Instant::now();
    let outcome = tally_deploy::destroy(&env.clients, &support::destroy_request(&stage))
        .await
        .expect("destroy");
    println!("timing: destroy {:?}", t.elapsed());
    let DestroyOutcome::Destroyed {
        objects_deleted,
        verified,
        ..
    } = outcome
    else {
        panic!("{outcome:?}")
    };
    assert_eq!(objects_deleted, 3, "two versions and a delete marker");
    assert!(
        verified >= 5,
        "bucket, stream, table, queues, log groups checked: {verified}"
    );
    assert!(
        tally_deploy::describe(&env.clients, &stack)
            .await
            .expect("describe")
            .is_none(),
        "stack gone"
    );
    assert!(
        s3.head_bucket().bucket(&archive).send().await.is_err(),
        "archive bucket gone"
    );
    let stream_gone = env
        .clients
        .kinesis
        .describe_stream_summary()
        .stream_name(&stream)
        .send()
        .await;
    assert!(stream_gone.is_err(), "stream gone");

    // The other stage is intact.
    let other_info = tally_deploy::describe(&env.clients, &other.stack_name())
        .await
        .expect("describe")
        .expect("other stack");
    assert_eq!(other_info.status, "CREATE_COMPLETE");
    let other_stream = physical(&other_res, "Events", "AWS::Kinesis::Stream");
    env.clients
        .kinesis
        .describe_stream_summary()
        .stream_name(&other_stream)
        .send()
        .await
        .expect("other stream intact");
    assert_eq!(resources(&env, &other.stack_name()).await, other_res);

    // 6. Nothing left to delete.
    let again = tally_deploy::destroy(&env.clients, &support::destroy_request(&stage))
        .await
        .expect("destroy again");
    assert_eq!(again, DestroyOutcome::NothingToDelete);
}

/// A template over CloudFormation's 51,200-byte inline limit goes through the assets bucket (`TemplateURL`).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_large_template_is_passed_by_url() {
    let env = Env::start("large").await;
    let stage = Stage::new("large");
    let mut req = support::request(&stage, Vec::new());
    req.template = serde_json::json!({
        "Parameters": {"AssetsBucket": {"Type": "String"}},
        "Metadata": {"Padding": "x".repeat(60_000)},
        "Resources": {"Queue": {"Type": "AWS::SQS::Queue", "Properties": {"QueueName": "tally-large-q"}}}
    })
    .to_string();
    let outcome = tally_deploy::deploy(&env.clients, &req)
        .await
        .expect("deploy by url");
    assert!(
        matches!(outcome, DeployOutcome::Deployed { .. }),
        "{outcome:?}"
    );
    let templates = env
        .clients
        .s3
        .list_objects_v2()
        .bucket(env.assets_bucket())
        .prefix("templates/")
        .send()
        .await
        .expect("list");
    assert_eq!(templates.contents().len(), 1, "the template was uploaded");
    env.clients
        .sqs
        .get_queue_url()
        .queue_name("tally-large-q")
        .send()
        .await
        .expect("the queue exists");
    let again = tally_deploy::deploy(&env.clients, &req)
        .await
        .expect("no-op");
    assert!(
        matches!(again, DeployOutcome::NoChanges { .. }),
        "{again:?}"
    );
}
