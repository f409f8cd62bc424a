//! `cargo xtask bootstrap` against moto: created through a change set, idempotent, upgradable; deploys refuse
//! an account without it or with an older one; a tampered asset stops a deploy before any change set.

use tally_deploy::bootstrap::stack::{synth, BOOTSTRAP_STACK, REQUIRED_BOOTSTRAP_VERSION};
use tally_deploy::{DeployOutcome, Error};
use tally_pipeline::Stage;

use crate::support::{self, Env};

/// The logical-id prefixes and types of what the bootstrap stack holds (moto lists its skipped bucket policy
/// and OIDC provider as rows without an id).
async fn resource_types(env: &Env) -> Vec<(String, String)> {
    let out = env
        .clients
        .cfn
        .list_stack_resources()
        .stack_name(BOOTSTRAP_STACK)
        .send()
        .await
        .expect("ListStackResources");
    let mut found: Vec<(String, String)> = out
        .stack_resource_summaries()
        .iter()
        .filter(|r| r.logical_resource_id().is_some_and(|id| !id.is_empty()))
        .map(|r| {
            let id = r.logical_resource_id().unwrap_or_default();
            (
                id[..id.len() - 8].to_owned(),
                r.resource_type().unwrap_or_default().to_owned(),
            )
        })
        .collect();
    found.sort();
    found
}

async fn physical(env: &Env, prefix: &str) -> String {
    let out = env
        .clients
        .cfn
        .list_stack_resources()
        .stack_name(BOOTSTRAP_STACK)
        .send()
        .await
        .expect("ListStackResources");
    out.stack_resource_summaries()
        .iter()
        .find(|r| {
            r.logical_resource_id()
                .is_some_and(|id| id.starts_with(prefix))
        })
        .and_then(|r| r.physical_resource_id())
        .unwrap_or_else(|| panic!("{prefix} in the bootstrap stack"))
        .to_owned()
}

async fn trust_subject(env: &Env, name: &str) -> String {
    let role = env
        .iam()
        .get_role()
        .role_name(name)
        .send()
        .await
        .expect("GetRole");
    let document = role
        .role()
        .map(|r| {
            r.assume_role_policy_document()
                .unwrap_or_default()
                .to_owned()
        })
        .unwrap_or_default();
    let decoded = tally_domain::urlencoded::decode_lossy(&document);
    let trust: serde_json::Value = serde_json::from_str(&decoded).expect("trust policy JSON");
    trust["Statement"][0]["Condition"]["StringEquals"]["token.actions.githubusercontent.com:sub"]
        .as_str()
        .unwrap_or_default()
        .to_owned()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bootstrap_creates_then_changes_nothing_then_upgrades() {
    let env = Env::bare("bootstrap").await;
    let stage = Stage::new("pr-7");

    // A deploy before the bootstrap says what to run, and creates nothing.
    let error = tally_deploy::deploy(&env.clients, &support::request(&stage, env.zips("v1", &[])))
        .await
        .expect_err("not bootstrapped");
    assert!(matches!(error, Error::NotBootstrapped { .. }), "{error:?}");
    assert!(
        error
            .to_string()
            .contains("run `cargo xtask bootstrap --github-repo OWNER/NAME`"),
        "{error}"
    );
    let buckets = env
        .clients
        .s3
        .list_buckets()
        .send()
        .await
        .expect("ListBuckets");
    assert!(buckets.buckets().is_empty(), "nothing was created");

    // Created through a change set.
    let req = support::bootstrap_request();
    let outcome = tally_deploy::bootstrap::deploy(&env.clients, &req)
        .await
        .expect("bootstrap");
    assert!(
        matches!(outcome, DeployOutcome::Deployed { .. }),
        "{outcome:?}"
    );
    let want: Vec<(String, String)> = [
        ("Assets", "AWS::S3::Bucket"),
        ("ExecutionBoundary", "AWS::IAM::ManagedPolicy"),
        ("ExecutionRole", "AWS::IAM::Role"),
        ("FunctionBoundary", "AWS::IAM::ManagedPolicy"),
        ("PreviewRole", "AWS::IAM::Role"),
        ("ReleaseRole", "AWS::IAM::Role"),
    ]
    .iter()
    .map(|(a, b)| ((*a).to_owned(), (*b).to_owned()))
    .collect();
    assert_eq!(resource_types(&env).await, want);
    let preview = physical(&env, "PreviewRole").await;
    assert_eq!(
        trust_subject(&env, &preview).await,
        "repo:acme/tally:pull_request"
    );
    let release = physical(&env, "ReleaseRole").await;
    assert_eq!(
        trust_subject(&env, &release).await,
        "repo:acme/tally:environment:production"
    );
    let info = tally_deploy::describe(&env.clients, BOOTSTRAP_STACK)
        .await
        .expect("describe")
        .expect("exists");
    let tags = info.tags.expect("tagged");
    assert_eq!(
        tags.project, "tally-bootstrap",
        "never a `tally` stack that previews could prune"
    );

    // Idempotent: the same bootstrap again executes nothing.
    let again = tally_deploy::bootstrap::deploy(&env.clients, &req)
        .await
        .expect("again");
    assert!(
        matches!(again, DeployOutcome::NoChanges { .. }),
        "{again:?}"
    );

    // Upgradable: a changed bootstrap updates the stack in place.
    let mut changed = support::bootstrap_request();
    changed.options.release_environment = "prod".into();
    let upgraded = tally_deploy::bootstrap::deploy(&env.clients, &changed)
        .await
        .expect("upgrade");
    let DeployOutcome::Deployed { plan, .. } = upgraded else {
        panic!("{upgraded:?}")
    };
    assert!(
        plan.changes
            .iter()
            .any(|c| c.logical_id.starts_with("ReleaseRole")),
        "{plan}"
    );
    let after = tally_deploy::describe(&env.clients, BOOTSTRAP_STACK)
        .await
        .expect("describe")
        .expect("exists");
    assert_eq!(after.status, "UPDATE_COMPLETE");
    // moto 5.2 keeps a role's trust policy on a stack update (AWS applies it), so the upgrade is checked
    // in the template the stack now holds.
    let deployed = env
        .clients
        .cfn
        .get_template()
        .stack_name(BOOTSTRAP_STACK)
        .send()
        .await
        .expect("GetTemplate");
    let body = deployed.template_body().unwrap_or_default();
    assert!(
        body.contains("repo:acme/tally:environment:prod\"")
            && !body.contains("repo:acme/tally:environment:production"),
        "the release role trusts the new environment"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_older_bootstrap_is_refused_with_what_to_run() {
    let env = Env::bare("old-bootstrap").await;
    let mut template = synth(&support::bootstrap_request().options).expect("synth");
    template["Outputs"]["BootstrapVersion"]["Value"] =
        serde_json::json!((REQUIRED_BOOTSTRAP_VERSION - 1).to_string());
    env.clients
        .cfn
        .create_stack()
        .stack_name(BOOTSTRAP_STACK)
        .template_body(template.to_string())
        .capabilities(aws_sdk_cloudformation::types::Capability::CapabilityNamedIam)
        .send()
        .await
        .expect("create an old bootstrap");
    let stage = Stage::new("pr-8");
    let error = tally_deploy::deploy(&env.clients, &support::request(&stage, env.zips("v1", &[])))
        .await
        .expect_err("too old");
    let text = error.to_string();
    assert!(
        text.contains(&format!(
            "is version {}, but this deploy needs version {REQUIRED_BOOTSTRAP_VERSION} or newer",
            REQUIRED_BOOTSTRAP_VERSION - 1
        )) && text.contains("cargo xtask bootstrap"),
        "{text}"
    );
    assert!(tally_deploy::describe(&env.clients, &stage.stack_name())
        .await
        .expect("describe")
        .is_none());
}

/// Someone with write access to the bucket puts other bytes under the key of the next build's zip. moto keeps
/// no checksum (see `recorded.rs` for S3's `x-amz-checksum-sha256` path), so this is the read-back path: the
/// object's bytes are hashed and compared.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_tampered_asset_is_detected_before_a_change_set_is_created() {
    let env = Env::start("tampered").await;
    let bucket = env.assets_bucket();
    let stage = Stage::new("pr-9");
    let assets = env.zips("v2", &["collect"]);
    let collect = assets
        .iter()
        .find(|a| a.name == "collect")
        .expect("collect");
    let key = tally_deploy::assets::content_key(&std::fs::read(&collect.path).expect("zip"));
    env.clients
        .s3
        .put_object()
        .bucket(&bucket)
        .key(&key)
        .body(support::empty_zip_with_comment("collect, but not the build").into())
        .send()
        .await
        .expect("the attacker's write");

    let error = tally_deploy::deploy(&env.clients, &support::request(&stage, assets.clone()))
        .await
        .expect_err("tampered");
    let text = error.to_string();
    assert!(matches!(error, Error::TamperedAsset(_)), "{error:?}");
    assert!(
        text.starts_with(&format!("tampered asset `collect`: s3://{bucket}/{key}")),
        "{text}"
    );
    assert!(
        tally_deploy::describe(&env.clients, &stage.stack_name())
            .await
            .expect("describe")
            .is_none(),
        "no stack, no change set"
    );

    // The diff refuses it as well.
    let diff = tally_deploy::diff(&env.clients, &support::request(&stage, assets.clone()))
        .await
        .expect_err("tampered");
    assert!(matches!(diff, Error::TamperedAsset(_)), "{diff:?}");

    // Once that object version is gone, the deploy uploads the real zip and pins the version it wrote.
    let versions = env
        .clients
        .s3
        .list_object_versions()
        .bucket(&bucket)
        .prefix(&key)
        .send()
        .await
        .expect("versions");
    for v in versions.versions() {
        env.clients
            .s3
            .delete_object()
            .bucket(&bucket)
            .key(&key)
            .set_version_id(v.version_id().map(str::to_owned))
            .send()
            .await
            .expect("delete the tampered version");
    }
    let outcome = tally_deploy::deploy(&env.clients, &support::request(&stage, assets))
        .await
        .expect("deploys");
    let DeployOutcome::Deployed { uploaded, .. } = outcome else {
        panic!("{outcome:?}")
    };
    assert_eq!(uploaded, 6);
    let head = env
        .clients
        .s3
        .head_object()
        .bucket(&bucket)
        .key(&key)
        .send()
        .await
        .expect("head");
    let info = tally_deploy::describe(&env.clients, &stage.stack_name())
        .await
        .expect("describe")
        .expect("exists");
    assert_eq!(info.parameters.get("CollectCodeKey"), Some(&key));
    assert_eq!(
        info.parameters
            .get("CollectCodeVersion")
            .map(String::as_str),
        head.version_id(),
        "the version written is pinned"
    );
}
