//! What every test here needs: moto, clients for it, placeholder zips, the synthesized pipeline.

use std::path::PathBuf;
use std::time::Duration;

use aws_config::{BehaviorVersion, Region};
use aws_sdk_cloudformation::config::Credentials;
use tally_deploy::{Asset, Clients, Confirm, DeployRequest, Output, StackTags};
use tally_pipeline::{code_key_parameter, CriticalLane, PipelineOptions, Stage, FUNCTIONS};
use tally_testkit::Moto;

pub const PROJECT: &str = "tally";

/// A moto server and an SDK configuration that talks to it and nothing else.
pub struct Env {
    /// Kept for its lifetime: the server stops when the test's `Env` drops.
    _moto: Moto,
    pub config: aws_config::SdkConfig,
    pub clients: Clients,
    pub dir: PathBuf,
}

impl Env {
    pub async fn start(name: &str) -> Env {
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

pub fn template(stage: &Stage) -> String {
    tally_pipeline::synth_json(stage, &options()).expect("the pipeline synthesizes")
}

pub fn request(stage: &Stage, assets: Vec<Asset>) -> DeployRequest {
    DeployRequest {
        stack_name: stage.stack_name(),
        template: template(stage),
        parameters: Default::default(),
        assets,
        tags: tags(stage, "2026-11-26T12:00:00Z"),
        confirm: Confirm::Refuse,
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
