//! Previews: list only this project's stacks; prune by age and by vanished branch; never protected stages or
//! other projects' stacks.

use std::collections::BTreeSet;
use std::time::{Duration, SystemTime};

use aws_sdk_cloudformation::types::Tag;
use tally_deploy::previews::{self, judge, PrunePolicy, Verdict};
use tally_deploy::tags::now_rfc3339;
use tally_deploy::DestroyOutcome;
use tally_pipeline::Stage;

use crate::support::{self, Env};

fn days_ago(days: u64) -> String {
    let t = SystemTime::now() - Duration::from_secs(days * 86_400);
    aws_sdk_cloudformation::primitives::DateTime::from(t)
        .fmt(aws_sdk_cloudformation::primitives::DateTimeFormat::DateTime)
        .expect("format")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn prune_by_age_and_branch_leaves_protected_and_foreign_stacks() {
    let env = Env::start("prune").await;
    let stages = [
        ("feature/old", days_ago(10)),
        ("feature/fresh", now_rfc3339()),
        ("feature/gone", days_ago(1)),
        ("production", days_ago(400)),
    ];
    for (branch, created) in &stages {
        let stage = Stage::new(branch);
        let mut req = support::request(&stage, env.zips("v1", &[]));
        req.tags = support::tags(&stage, created);
        tally_deploy::deploy(&env.clients, &req)
            .await
            .unwrap_or_else(|e| panic!("deploy {branch}: {e}"));
    }
    // Another project's old preview, and an untagged stack, in the same account.
    let small = r#"{"Resources": {"Q": {"Type": "AWS::SQS::Queue"}}}"#;
    for (name, tags) in [
        (
            "other-feature-old",
            vec![
                ("tally:project", "other"),
                ("tally:stage", "feature-old"),
                ("tally:created-at", "2020-01-01T00:00:00Z"),
            ],
        ),
        ("untagged-stack", vec![]),
    ] {
        let tags: Vec<Tag> = tags
            .iter()
            .map(|(k, v)| Tag::builder().key(*k).value(*v).build())
            .collect();
        env.clients
            .cfn
            .create_stack()
            .stack_name(name)
            .template_body(small)
            .set_tags(Some(tags))
            .send()
            .await
            .expect("CreateStack");
    }

    let list = previews::list(&env.clients, support::PROJECT)
        .await
        .expect("list");
    let branches: Vec<&str> = list.iter().map(|p| p.branch.as_str()).collect();
    assert_eq!(
        branches.len(),
        4,
        "only this project's stacks: {branches:?}"
    );
    let table = previews::table(&list, SystemTime::now());
    assert!(
        table.contains("feature/old")
            && table.contains("10d 0h")
            && table.contains("CREATE_COMPLETE"),
        "{table}"
    );

    let policy = PrunePolicy {
        older_than: Duration::from_secs(7 * 86_400),
        branches: Some(
            ["feature/old", "feature/fresh", "production"]
                .iter()
                .map(|s| (*s).to_owned())
                .collect(),
        ),
        keep_branches: false,
        protected: BTreeSet::from(["production".to_owned()]),
    };
    let now = SystemTime::now();
    let mut pruned = Vec::new();
    for p in &list {
        if let Verdict::Prune(_) = judge(p, &policy, now) {
            let stage = Stage::new(&p.branch);
            assert_eq!(stage.label(), p.stage, "the stage tag names the stage");
            let outcome = tally_deploy::destroy(&env.clients, &support::destroy_request(&stage))
                .await
                .expect("destroy");
            assert!(
                matches!(outcome, DestroyOutcome::Destroyed { .. }),
                "{outcome:?}"
            );
            pruned.push(p.branch.clone());
        }
    }
    pruned.sort();
    assert_eq!(pruned, ["feature/gone", "feature/old"]);

    let left: Vec<String> = previews::list(&env.clients, support::PROJECT)
        .await
        .expect("list")
        .into_iter()
        .map(|p| p.branch)
        .collect();
    assert_eq!(left, ["feature/fresh", "production"]);
    for name in ["other-feature-old", "untagged-stack"] {
        let info = tally_deploy::describe(&env.clients, name)
            .await
            .expect("describe");
        assert!(info.is_some(), "{name} untouched");
    }
    // destroy refuses a stack of another project even by name.
    let mut foreign = support::destroy_request(&Stage::new("x"));
    foreign.stack_name = "other-feature-old".into();
    let error = tally_deploy::destroy(&env.clients, &foreign)
        .await
        .expect_err("foreign stack")
        .to_string();
    assert!(error.contains("belongs to project `other`"), "{error}");
}
