//! What every test here needs: moto, clients for it, placeholder zips, the synthesized pipeline.

use std::path::PathBuf;
use std::time::Duration;

use aws_config::{BehaviorVersion, Region};
use aws_sdk_cloudformation::config::Credentials;
use tally_deploy::bootstrap::read::Bootstrapped;
use tally_deploy::bootstrap::stack::{BootstrapOptions, GithubRepo};
use tally_deploy::bootstrap::BootstrapRequest;
use tally_deploy::{Asset, Clients, Confirm, DeployRequest, Output, StackTags};
use tally_pipeline::{
    code_key_parameter, code_version_parameter, CriticalLane, PipelineOptions, Stage, FUNCTIONS,
};
use tally_testkit::Moto;

pub const PROJECT: &str = "tally";

/// A moto server and an SDK configuration that talks to it and nothing else.
pub struct Env {
    /// Kept for its lifetime: the server stops when the test's `Env` drops.
    _moto: Moto,
    pub config: aws_config::SdkConfig,
    pub clients: Clients,
    pub dir: PathBuf,
    /// The bootstrap stack every deploy needs, deployed by [`Env::start`].
    pub bootstrapped: Option<Bootstrapped>,
}

/// The bootstrap stack of the tests (`cargo xtask bootstrap --github-repo acme/tally`).
pub fn bootstrap_request() -> BootstrapRequest {
    BootstrapRequest {
        options: BootstrapOptions::new(GithubRepo::parse("acme/tally").expect("valid repo")),
        commit: "test".into(),
        confirm: Confirm::Refuse,
        output: Output::Quiet,
        timeout: Duration::from_secs(120),
    }
}

/// Creates the bootstrap stack on moto and reads it back as deploys do.
///
/// Two moto 5.2 gaps are worked around here, and only here:
/// * a stack created by executing a change set gets no `Outputs` on moto (AWS evaluates them; `CreateStack`
///   on moto does too), and deploys read the bucket and the execution role from those outputs. So the
///   synthesized bootstrap template is created with `CreateStack`; `bootstrap::deploy`'s own change-set path
///   is tested in `bootstrap.rs` on a moto of its own.
/// * moto drops the bucket's `VersioningConfiguration` (observed with moto 5.x); AWS applies it. This
///   turns versioning on through the S3 API, as the template asks, so uploads get version ids to pin.
///
/// Everything else is deployed as synthesized (moto skips the bucket policy and the OIDC provider; the
/// policies are tested by the policy test, cfn-lint and checkov).
pub async fn bootstrap(clients: &Clients) -> Bootstrapped {
    let template = tally_deploy::bootstrap::stack::synth(&bootstrap_request().options)
        .expect("the bootstrap stack synthesizes");
    clients
        .cfn
        .create_stack()
        .stack_name(tally_deploy::bootstrap::stack::BOOTSTRAP_STACK)
        .template_body(template.to_string())
        .capabilities(aws_sdk_cloudformation::types::Capability::CapabilityNamedIam)
        .send()
        .await
        .expect("the bootstrap stack is created");
    let bootstrapped = tally_deploy::bootstrap::read::read(clients)
        .await
        .expect("the bootstrap stack reads back");
    clients
        .s3
        .put_bucket_versioning()
        .bucket(&bootstrapped.assets_bucket)
        .versioning_configuration(
            aws_sdk_s3::types::VersioningConfiguration::builder()
                .status(aws_sdk_s3::types::BucketVersioningStatus::Enabled)
                .build(),
        )
        .send()
        .await
        .expect("versioning on");
    bootstrapped
}

impl Env {
    /// moto with the bootstrap stack in place, as every deploy needs.
    pub async fn start(name: &str) -> Env {
        let mut env = Env::bare(name).await;
        env.bootstrapped = Some(bootstrap(&env.clients).await);
        env
    }

    /// The bootstrap stack's outputs (of [`Env::start`]).
    pub fn assets_bucket(&self) -> String {
        self.bootstrapped
            .as_ref()
            .map(|b| b.assets_bucket.clone())
            .expect("started with Env::start")
    }

    /// moto with nothing in it: an account that was never bootstrapped.
    pub async fn bare(name: &str) -> Env {
        let moto = Moto::start();
        let config = aws_config::defaults(BehaviorVersion::latest())
            .endpoint_url(moto.endpoint())
            .region(Region::new("us-east-1"))
            .credentials_provider(Credentials::new(
                "test",
                "test",
                None,
                None,
                "tally-deploy-tests",
            ))
            .load()
            .await;
        let mut clients = Clients::from_config(&config).expect("region is set");
        clients.poll = Duration::from_millis(50);
        let dir =
            std::env::temp_dir().join(format!("tally-deploy-it-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).expect("temp dir");
        Env {
            _moto: moto,
            config,
            clients,
            dir,
            bootstrapped: None,
        }
    }

    /// Writes one placeholder zip per function (`version` changes its bytes) and returns the assets.
    pub fn zips(&self, version: &str, changed: &[&str]) -> Vec<Asset> {
        FUNCTIONS
            .iter()
            .map(|name| {
                let content = if changed.contains(name) {
                    format!("{name} {version}")
                } else {
                    format!("{name} v1")
                };
                let path = self.dir.join(format!("{name}-{}.zip", sanitize(&content)));
                std::fs::write(&path, empty_zip_with_comment(&content)).expect("write zip");
                Asset {
                    name: (*name).to_owned(),
                    path,
                    parameter: code_key_parameter(name),
                    version_parameter: code_version_parameter(name),
                }
            })
            .collect()
    }

    pub fn lambda(&self) -> aws_sdk_lambda::Client {
        aws_sdk_lambda::Client::new(&self.config)
    }

    pub fn iam(&self) -> aws_sdk_iam::Client {
        aws_sdk_iam::Client::new(&self.config)
    }
}

impl Drop for Env {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

fn sanitize(s: &str) -> String {
    s.chars()
        .map(|c| if c.is_ascii_alphanumeric() { c } else { '-' })
        .collect()
}

/// A valid, empty zip archive whose end-of-central-directory comment is `comment`: distinct bytes per
/// function and version, and accepted wherever a zip is.
pub fn empty_zip_with_comment(comment: &str) -> Vec<u8> {
    let mut zip = b"PK\x05\x06".to_vec();
    zip.extend([0u8; 16]);
    let len = u16::try_from(comment.len()).expect("short comment");
    zip.extend(len.to_le_bytes());
    zip.extend(comment.as_bytes());
    zip
}

/// The pipeline option deployed to moto (see the crate-level comment of this test binary).
pub fn options() -> PipelineOptions {
    PipelineOptions {
        critical_lane: CriticalLane::SharedIterator,
        ..PipelineOptions::default()
    }
}

/// The template deployed to moto: the real pipeline, with its ElastiCache resources substituted and its
/// route tables left out.
///
/// Route tables: moto 5.2 creates `AWS::EC2::RouteTable` but never deletes it with its stack (the model has
/// no CloudFormation delete), so `DeleteStack` ends in `DependencyViolation` on the VPC; and a gateway
/// endpoint without route tables answers HTTP 500. So the route tables, their subnet associations and the
/// two gateway endpoints (DynamoDB, S3), which exist only to be routed through them, are removed
/// ([`without_route_tables`]); nothing else refers to them. Their shape (one table per private subnet, both
/// gateway endpoints on every table, policies restricted to the stack's table and bucket) is checked by
/// the template tests.
///
/// moto 5.2 has no CloudFormation support for `AWS::ElastiCache::ServerlessCache`, `User` or `UserGroup`:
/// it skips them (a phantom row), and any `Fn::GetAtt` on them fails the whole stack ("references undefined
/// resource"). The product has no option without the cache (the counters live in it), so this test — and
/// only this test — removes those three resources and writes, where the template refers to them, the values
/// CloudFormation would give: `Ref` → the name the template itself sets (cache name, user id, group id),
/// `Endpoint.Address` → `counter-cache.moto.invalid`, `Endpoint.Port` → `6379`, `ARN`/`Arn` → an
/// ElastiCache ARN of that name in moto's account. Everything else (VPC, subnets, route tables, security
/// groups, the three endpoints, the functions' `VpcConfig` and environment, the `elasticache:Connect`
/// grant) is deployed as synthesized. The cache itself is covered by the template tests, cfn-lint and
/// checkov (`infra/pipeline/tests`) and by the local cloud, which runs it as a real Valkey.
pub fn template(stage: &Stage) -> String {
    template_with(stage, &options())
}

/// [`template`] with other pipeline options (as `retain_data = true` in `tally.toml`).
pub fn template_with(stage: &Stage, options: &PipelineOptions) -> String {
    let json = tally_pipeline::synth_json(stage, options).expect("the pipeline synthesizes");
    let mut template: serde_json::Value = serde_json::from_str(&json).expect("json");
    without_elasticache(&mut template);
    without_route_tables(&mut template);
    serde_json::to_string_pretty(&template).expect("json")
}

/// Removes the route tables, their associations and the gateway endpoints of `template` (see [`template`]).
pub fn without_route_tables(template: &mut serde_json::Value) {
    let resources = template["Resources"].as_object_mut().expect("resources");
    let before = resources.len();
    let mut removed = Vec::new();
    resources.retain(|id, r| {
        let drop = r["Type"] == "AWS::EC2::RouteTable"
            || r["Type"] == "AWS::EC2::SubnetRouteTableAssociation"
            || (r["Type"] == "AWS::EC2::VPCEndpoint"
                && r["Properties"]["VpcEndpointType"] == "Gateway");
        if drop {
            removed.push(id.clone());
        }
        !drop
    });
    assert_eq!(
        before - resources.len(),
        6,
        "expected 2 route tables, 2 associations, 2 gateway endpoints: {removed:?}"
    );
    let text = template.to_string();
    for id in &removed {
        assert!(
            !text.contains(&format!("\"{id}\"")),
            "{id} is still referred to"
        );
    }
}

const ELASTICACHE: [(&str, &str, &str); 3] = [
    (
        "AWS::ElastiCache::ServerlessCache",
        "ServerlessCacheName",
        "serverlesscache",
    ),
    ("AWS::ElastiCache::User", "UserId", "user"),
    ("AWS::ElastiCache::UserGroup", "UserGroupId", "usergroup"),
];

/// Removes the ElastiCache resources of `template` and substitutes every reference to them (see
/// [`template`]).
pub fn without_elasticache(template: &mut serde_json::Value) {
    use serde_json::Value;
    let resources = template["Resources"].as_object_mut().expect("resources");
    let mut removed: Vec<(String, String, &str)> = Vec::new();
    resources.retain(|id, resource| {
        let found = ELASTICACHE
            .iter()
            .find(|(ty, _, _)| resource["Type"] == *ty);
        match found {
            Some((_, name_property, arn_kind)) => {
                let name = resource["Properties"][*name_property]
                    .as_str()
                    .expect("the template names its ElastiCache resources literally")
                    .to_owned();
                removed.push((id.clone(), name, arn_kind));
                false
            }
            None => true,
        }
    });
    assert!(
        !removed.is_empty(),
        "the pipeline has no ElastiCache resources any more: drop this substitution"
    );
    fn substitute(value: &mut Value, removed: &[(String, String, &str)]) {
        let replacement = match &*value {
            Value::Object(map) if map.len() == 1 => {
                let target = |id: &Value| removed.iter().find(|(r, _, _)| id == r.as_str());
                match (map.get("Ref"), map.get("Fn::GetAtt")) {
                    (Some(id), _) => target(id).map(|(_, name, _)| Value::from(name.clone())),
                    (_, Some(Value::Array(pair))) if pair.len() == 2 => {
                        target(&pair[0]).map(|(_, name, kind)| match pair[1].as_str() {
                            Some("Endpoint.Address" | "ReaderEndpoint.Address") => {
                                Value::from("counter-cache.moto.invalid")
                            }
                            Some("Endpoint.Port") => Value::from("6379"),
                            Some("ReaderEndpoint.Port") => Value::from("6380"),
                            Some("ARN" | "Arn") => Value::from(format!(
                                "arn:aws:elasticache:us-east-1:123456789012:{kind}:{name}"
                            )),
                            other => panic!("no substitute for attribute {other:?} of {name}"),
                        })
                    }
                    _ => None,
                }
            }
            _ => None,
        };
        if let Some(replacement) = replacement {
            *value = replacement;
            return;
        }
        match value {
            Value::Object(map) => map.values_mut().for_each(|v| substitute(v, removed)),
            Value::Array(items) => items.iter_mut().for_each(|v| substitute(v, removed)),
            _ => {}
        }
    }
    substitute(template, &removed);
    let text = template.to_string();
    for (id, _, _) in &removed {
        assert!(
            !text.contains(&format!("\"{id}\"")),
            "a reference to {id} was not substituted"
        );
    }
}

pub fn request(stage: &Stage, assets: Vec<Asset>) -> DeployRequest {
    DeployRequest {
        stack_name: stage.stack_name(),
        template: template(stage),
        parameters: Default::default(),
        assets,
        tags: tags(stage, "2026-11-26T12:00:00Z"),
        confirm: Confirm::Refuse,
        protected: false,
        output: Output::Quiet,
        timeout: Duration::from_secs(60),
    }
}

pub fn tags(stage: &Stage, created_at: &str) -> StackTags {
    StackTags {
        project: PROJECT.to_owned(),
        stage: stage.label(),
        branch: stage.raw().to_owned(),
        commit: "0123456789abcdef".to_owned(),
        created_at: created_at.to_owned(),
    }
}

pub fn destroy_request(stage: &Stage) -> tally_deploy::DestroyRequest {
    let template: serde_json::Value = serde_json::from_str(&template(stage)).expect("json");
    tally_deploy::DestroyRequest {
        stack_name: stage.stack_name(),
        project: PROJECT.to_owned(),
        template,
        confirm: Confirm::Yes,
        output: Output::Quiet,
        timeout: Duration::from_secs(60),
    }
}
