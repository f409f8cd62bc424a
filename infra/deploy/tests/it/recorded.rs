//! What moto cannot show — a rollback after a failed update, a change set that says `Replacement: True` — driven
//! through the real SDK clients against a loopback server that answers with CloudFormation responses as AWS
//! records them (XML shapes and values from AWS's API reference and real sessions). The server is a replay of
//! recorded answers, scripted per scenario; it checks nothing, so every assertion is on what `deploy` did.
//!
//! S3 is replayed too where moto falls short: moto 5.2 neither stores nor returns `x-amz-checksum-sha256` and
//! ignores `x-amz-expected-bucket-owner`, so the stored-checksum comparison (a tampered asset caught by its
//! checksum alone, before any change set) and the owner header on every S3 call are shown here, with the
//! headers S3 answers `HeadObject` with (`x-amz-version-id`, `x-amz-checksum-sha256`).

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpListener;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use aws_config::{BehaviorVersion, Region};
use aws_sdk_cloudformation::config::Credentials;
use tally_deploy::{Asset, Clients, Confirm, DeployRequest, Error, Output, StackTags};

const ACCOUNT: &str = "111122223333";
const STACK: &str = "tally-pr-42";
const STACK_ID: &str = "arn:aws:cloudformation:us-east-1:111122223333:stack/tally-pr-42/5b3c1e60-aaaa-bbbb-cccc-0123456789ab";

/// What the recorded session looks like after `ExecuteChangeSet`.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Scenario {
    /// The function update fails (its zip is missing) and CloudFormation rolls the stack back.
    RollbackAfterFailedUpdate,
    /// The change set replaces the events stream.
    ReplacesTheStream,
    /// The function update fails, and so does the rollback of the table: `UPDATE_ROLLBACK_FAILED`.
    RollbackFails,
    /// A stack of the same name tagged by another project.
    OtherProject,
    /// The zip's key exists in the assets bucket, but S3's checksum of it is not the local zip's.
    TamperedAsset,
}

struct Replay {
    scenario: Scenario,
    executed: bool,
    actions: Vec<String>,
    old_key: String,
    /// `x-amz-checksum-sha256` of the local zip.
    checksum: String,
    /// S3 requests: method, path and (lowercased) headers.
    s3: Vec<S3Request>,
}

const BOOTSTRAP_OUTPUTS: [(&str, &str); 5] = [
    (
        "AssetsBucket",
        "tally-bootstrap-assetsad0c8a0d-1x2y3z4w5v6u",
    ),
    (
        "ExecutionRoleArn",
        "arn:aws:iam::111122223333:role/tally-bootstrap-ExecutionRole75BC075A-AB12CD34EF56",
    ),
    (
        "PreviewRoleArn",
        "arn:aws:iam::111122223333:role/tally-bootstrap-PreviewRoleC9F065EB-AB12CD34EF56",
    ),
    (
        "ReleaseRoleArn",
        "arn:aws:iam::111122223333:role/tally-bootstrap-ReleaseRole51D6FFA2-AB12CD34EF56",
    ),
    ("BootstrapVersion", "1"),
];

fn template(stream_mode: &str) -> String {
    serde_json::json!({
        "Parameters": {"AssetsBucket": {"Type": "String"}, "CollectCodeKey": {"Type": "String"},
            "CollectCodeVersion": {"Type": "String"}},
        "Resources": {
            "Collect": {"Type": "AWS::Lambda::Function", "Properties": {
                "Code": {"S3Bucket": {"Ref": "AssetsBucket"}, "S3Key": {"Ref": "CollectCodeKey"},
                    "S3ObjectVersion": {"Ref": "CollectCodeVersion"}}}},
            "Events": {"Type": "AWS::Kinesis::Stream", "Properties": {
                "Name": "tally-pr-42-events", "StreamModeDetails": {"StreamMode": stream_mode}}}
        }
    })
    .to_string()
}

fn xml_escape(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}

fn wrap(action: &str, result: &str) -> String {
    format!(
        "<{action}Response xmlns=\"http://cloudformation.amazonaws.com/doc/2010-05-15/\"><{action}Result>{result}</{action}Result>\
         <ResponseMetadata><RequestId>b9b4b068-3a41-11e5-94eb-example</RequestId></ResponseMetadata></{action}Response>"
    )
}

fn event(id: u32, logical: &str, ty: &str, status: &str, reason: &str) -> String {
    let physical = if ty == "AWS::CloudFormation::Stack" {
        STACK_ID
    } else {
        logical
    };
    format!(
        "<member><EventId>{logical}-{id}</EventId><StackId>{STACK_ID}</StackId><StackName>{STACK}</StackName>\
         <LogicalResourceId>{logical}</LogicalResourceId><PhysicalResourceId>{physical}</PhysicalResourceId>\
         <ResourceType>{ty}</ResourceType><Timestamp>2026-11-26T12:00:{id:02}.000Z</Timestamp>\
         <ResourceStatus>{status}</ResourceStatus><ResourceStatusReason>{}</ResourceStatusReason></member>",
        xml_escape(reason)
    )
}

/// An S3 request the replay saw: method, path, (lowercased) headers.
type S3Request = (String, String, Vec<(String, String)>);

/// An HTTP answer: status, extra headers, body.
type Answer = (u16, Vec<(String, String)>, String);

impl Replay {
    fn answer(
        &mut self,
        method: &str,
        path: &str,
        headers: &[(String, String)],
        body: &str,
    ) -> Answer {
        if method == "HEAD" {
            // S3 HeadObject: the zip exists, in version `v-existing`, with the checksum S3 keeps.
            self.s3
                .push((method.to_owned(), path.to_owned(), headers.to_vec()));
            let checksum = if self.scenario == Scenario::TamperedAsset {
                "47DEQpj8HBSa+/TImW+5JCeuQeRkm5NMpJWZG3hSuFU=".to_owned() // the empty object's SHA-256
            } else {
                self.checksum.clone()
            };
            let headers = vec![
                ("x-amz-version-id".to_owned(), "v-existing".to_owned()),
                ("x-amz-checksum-sha256".to_owned(), checksum),
                ("x-amz-checksum-type".to_owned(), "FULL_OBJECT".to_owned()),
            ];
            return (200, headers, String::new());
        }
        let (status, text) = self.cloudformation(path, body);
        (status, Vec::new(), text)
    }

    fn cloudformation(&mut self, path: &str, body: &str) -> (u16, String) {
        let action = body
            .split('&')
            .find_map(|kv| kv.strip_prefix("Action="))
            .unwrap_or(path)
            .to_owned();
        self.actions.push(action.clone());
        const STACK_TYPE: &str = "AWS::CloudFormation::Stack";
        match action.as_str() {
            "GetCallerIdentity" => (
                200,
                format!(
                    "<GetCallerIdentityResponse xmlns=\"https://sts.amazonaws.com/doc/2011-06-15/\"><GetCallerIdentityResult>\
                     <Arn>arn:aws:sts::{ACCOUNT}:assumed-role/tally-deploy/ci</Arn><UserId>AROAEXAMPLE:ci</UserId><Account>{ACCOUNT}</Account>\
                     </GetCallerIdentityResult><ResponseMetadata><RequestId>1</RequestId></ResponseMetadata></GetCallerIdentityResponse>"
                ),
            ),
            "DescribeStacks" if body.contains("StackName=tally-bootstrap") => {
                let outputs: String = BOOTSTRAP_OUTPUTS
                    .iter()
                    .map(|(k, v)| format!("<member><OutputKey>{k}</OutputKey><OutputValue>{v}</OutputValue></member>"))
                    .collect();
                let stack = format!(
                    "<Stacks><member><StackName>tally-bootstrap</StackName>\
                     <StackId>arn:aws:cloudformation:us-east-1:{ACCOUNT}:stack/tally-bootstrap/0a1b2c3d-aaaa-bbbb-cccc-0123456789ab</StackId>\
                     <CreationTime>2026-11-01T09:00:00.000Z</CreationTime><StackStatus>CREATE_COMPLETE</StackStatus>\
                     <Outputs>{outputs}</Outputs></member></Stacks>"
                );
                (200, wrap("DescribeStacks", &stack))
            }
            "DescribeStacks" => {
                let status = match (self.executed, self.scenario) {
                    (false, _) => "UPDATE_COMPLETE",
                    (true, Scenario::RollbackAfterFailedUpdate) => "UPDATE_ROLLBACK_COMPLETE",
                    (true, Scenario::ReplacesTheStream | Scenario::OtherProject | Scenario::TamperedAsset) => "UPDATE_COMPLETE",
                    (true, Scenario::RollbackFails) => "UPDATE_ROLLBACK_FAILED",
                };
                let project = if self.scenario == Scenario::OtherProject { "billing" } else { "tally" };
                let stack = format!(
                    "<Stacks><member><StackName>{STACK}</StackName><StackId>{STACK_ID}</StackId>\
                     <CreationTime>2026-11-20T09:00:00.000Z</CreationTime><LastUpdatedTime>2026-11-25T09:00:00.000Z</LastUpdatedTime>\
                     <StackStatus>{status}</StackStatus>\
                     <Parameters><member><ParameterKey>AssetsBucket</ParameterKey><ParameterValue>tally-assets-{ACCOUNT}-us-east-1</ParameterValue></member>\
                     <member><ParameterKey>CollectCodeKey</ParameterKey><ParameterValue>{}</ParameterValue></member>\
                     <member><ParameterKey>CollectCodeVersion</ParameterKey><ParameterValue>v-old</ParameterValue></member></Parameters>\
                     <Tags><member><Key>tally:project</Key><Value>{project}</Value></member><member><Key>tally:stage</Key><Value>pr-42</Value></member>\
                     <member><Key>tally:created-at</Key><Value>2026-11-20T09:00:00Z</Value></member></Tags>\
                     </member></Stacks>",
                    self.old_key
                );
                (200, wrap("DescribeStacks", &stack))
            }
            "GetTemplate" => (200, wrap("GetTemplate", &format!("<TemplateBody>{}</TemplateBody>", xml_escape(&template("PROVISIONED"))))),
            "CreateChangeSet" => (
                200,
                wrap("CreateChangeSet", &format!("<Id>arn:aws:cloudformation:us-east-1:{ACCOUNT}:changeSet/tally-1/abc</Id><StackId>{STACK_ID}</StackId>")),
            ),
            "DescribeChangeSet" => {
                let change = match self.scenario {
                    Scenario::RollbackAfterFailedUpdate | Scenario::RollbackFails | Scenario::OtherProject | Scenario::TamperedAsset => "<member><Type>Resource</Type><ResourceChange><Action>Modify</Action>\
                        <LogicalResourceId>Collect</LogicalResourceId><PhysicalResourceId>tally-pr-42-collect</PhysicalResourceId>\
                        <ResourceType>AWS::Lambda::Function</ResourceType><Replacement>False</Replacement><Scope><member>Properties</member></Scope>\
                        <Details><member><Target><Attribute>Properties</Attribute><Name>Code</Name><RequiresRecreation>Never</RequiresRecreation></Target>\
                        <Evaluation>Dynamic</Evaluation><ChangeSource>ParameterReference</ChangeSource><CausingEntity>CollectCodeKey</CausingEntity></member></Details>\
                        </ResourceChange></member>",
                    Scenario::ReplacesTheStream => "<member><Type>Resource</Type><ResourceChange><Action>Modify</Action>\
                        <LogicalResourceId>Events</LogicalResourceId><PhysicalResourceId>tally-pr-42-events</PhysicalResourceId>\
                        <ResourceType>AWS::Kinesis::Stream</ResourceType><Replacement>True</Replacement><Scope><member>Properties</member></Scope>\
                        <Details><member><Target><Attribute>Properties</Attribute><Name>StreamModeDetails</Name><RequiresRecreation>Always</RequiresRecreation></Target>\
                        <Evaluation>Static</Evaluation><ChangeSource>DirectModification</ChangeSource></member></Details>\
                        </ResourceChange></member>",
                };
                let result = format!(
                    "<ChangeSetName>tally-1</ChangeSetName><StackName>{STACK}</StackName><StackId>{STACK_ID}</StackId>\
                     <Status>CREATE_COMPLETE</Status><ExecutionStatus>AVAILABLE</ExecutionStatus><Changes>{change}</Changes>"
                );
                (200, wrap("DescribeChangeSet", &result))
            }
            "ExecuteChangeSet" => {
                self.executed = true;
                (200, wrap("ExecuteChangeSet", ""))
            }
            "DeleteChangeSet" => (200, wrap("DeleteChangeSet", "")),
            "DescribeStackEvents" => {
                // Newest first, as CloudFormation lists them.
                let mut events = vec![event(1, STACK, STACK_TYPE, "UPDATE_COMPLETE", "")];
                if self.executed && self.scenario == Scenario::ReplacesTheStream {
                    let replacing = "Requested update requires the creation of a new physical resource; hence creating one.";
                    events = vec![
                        event(9, STACK, STACK_TYPE, "UPDATE_COMPLETE", ""),
                        event(8, "Events", "AWS::Kinesis::Stream", "DELETE_COMPLETE", ""),
                        event(7, "Events", "AWS::Kinesis::Stream", "DELETE_IN_PROGRESS", ""),
                        event(6, STACK, STACK_TYPE, "UPDATE_COMPLETE_CLEANUP_IN_PROGRESS", ""),
                        event(5, "Events", "AWS::Kinesis::Stream", "UPDATE_COMPLETE", ""),
                        event(4, "Events", "AWS::Kinesis::Stream", "UPDATE_IN_PROGRESS", replacing),
                        event(3, STACK, STACK_TYPE, "UPDATE_IN_PROGRESS", "User Initiated"),
                    ]
                    .into_iter()
                    .chain(events)
                    .collect();
                } else if self.executed && self.scenario == Scenario::RollbackFails {
                    events = vec![
                        event(9, STACK, STACK_TYPE, "UPDATE_ROLLBACK_FAILED", "The following resource(s) failed to update: [Metrics]. "),
                        event(8, "Metrics", "AWS::DynamoDB::Table", "UPDATE_FAILED", "Resource handler returned message: \"Subscriber limit exceeded: Provisioned throughput decreases are limited within a given UTC day.\""),
                        event(7, STACK, STACK_TYPE, "UPDATE_ROLLBACK_IN_PROGRESS", "The following resource(s) failed to update: [Collect]. "),
                        event(6, "Collect", "AWS::Lambda::Function", "UPDATE_FAILED", "Resource handler returned message: \"Error occurred while GetObject. S3 Error Code: NoSuchKey.\""),
                        event(5, "Collect", "AWS::Lambda::Function", "UPDATE_IN_PROGRESS", ""),
                        event(4, STACK, STACK_TYPE, "UPDATE_IN_PROGRESS", "User Initiated"),
                    ]
                    .into_iter()
                    .chain(events)
                    .collect();
                } else if self.executed {
                    let reason = "Resource handler returned message: \"Error occurred while GetObject. S3 Error Code: NoSuchKey. \
                                  S3 Error Message: The specified key does not exist. (Service: Lambda, Status Code: 400)\"";
                    events = vec![
                        event(9, STACK, STACK_TYPE, "UPDATE_ROLLBACK_COMPLETE", ""),
                        event(8, "Collect", "AWS::Lambda::Function", "UPDATE_COMPLETE", ""),
                        event(7, STACK, STACK_TYPE, "UPDATE_ROLLBACK_IN_PROGRESS", "The following resource(s) failed to update: [Collect]. "),
                        event(6, "Collect", "AWS::Lambda::Function", "UPDATE_FAILED", reason),
                        event(5, "Collect", "AWS::Lambda::Function", "UPDATE_IN_PROGRESS", ""),
                        event(4, STACK, STACK_TYPE, "UPDATE_IN_PROGRESS", "User Initiated"),
                    ]
                    .into_iter()
                    .chain(events)
                    .collect();
                }
                (200, wrap("DescribeStackEvents", &format!("<StackEvents>{}</StackEvents>", events.concat())))
            }
            other => (400, format!("<ErrorResponse><Error><Type>Sender</Type><Code>InvalidAction</Code><Message>not recorded: {other}</Message></Error></ErrorResponse>")),
        }
    }
}

/// Serves `replay` on a loopback port until the test ends; returns the endpoint.
fn serve(replay: Arc<Mutex<Replay>>) -> String {
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
    let addr = listener.local_addr().expect("addr");
    std::thread::spawn(move || {
        for stream in listener.incoming() {
            let Ok(mut stream) = stream else { continue };
            let mut reader = BufReader::new(stream.try_clone().expect("clone"));
            let mut line = String::new();
            if reader.read_line(&mut line).is_err() {
                continue;
            }
            let mut parts = line.split_whitespace();
            let (method, path) = (
                parts.next().unwrap_or("").to_owned(),
                parts.next().unwrap_or("").to_owned(),
            );
            let mut length = 0;
            let mut headers = Vec::new();
            loop {
                let mut header = String::new();
                if reader.read_line(&mut header).is_err() || header.trim().is_empty() {
                    break;
                }
                if let Some((name, value)) = header.split_once(':') {
                    if name.eq_ignore_ascii_case("content-length") {
                        length = value.trim().parse().unwrap_or(0);
                    }
                    headers.push((name.trim().to_ascii_lowercase(), value.trim().to_owned()));
                }
            }
            let mut body = vec![0; length];
            let _ = reader.read_exact(&mut body);
            let (status, extra, text) = replay.lock().expect("lock").answer(
                &method,
                &path,
                &headers,
                &String::from_utf8_lossy(&body),
            );
            let extra: String = extra.iter().map(|(k, v)| format!("{k}: {v}\r\n")).collect();
            let length = if method == "HEAD" { 0 } else { text.len() };
            let response = format!(
                "HTTP/1.1 {status} X\r\nContent-Type: text/xml\r\nContent-Length: {length}\r\n{extra}x-amzn-requestid: 1\r\nConnection: close\r\n\r\n{text}"
            );
            let _ = stream.write_all(response.as_bytes());
        }
    });
    format!("http://{addr}")
}

/// What the replay saw: CloudFormation actions, and S3 requests with their headers.
struct Seen {
    actions: Vec<String>,
    s3: Vec<S3Request>,
}

async fn run(
    scenario: Scenario,
    confirm: Confirm,
) -> (Result<tally_deploy::DeployOutcome, Error>, Vec<String>) {
    let (outcome, seen) = run_seen(scenario, confirm, false).await;
    (outcome, seen.actions)
}

async fn run_as(
    scenario: Scenario,
    confirm: Confirm,
    protected: bool,
) -> (Result<tally_deploy::DeployOutcome, Error>, Vec<String>) {
    let (outcome, seen) = run_seen(scenario, confirm, protected).await;
    (outcome, seen.actions)
}

async fn run_seen(
    scenario: Scenario,
    confirm: Confirm,
    protected: bool,
) -> (Result<tally_deploy::DeployOutcome, Error>, Seen) {
    let dir = std::env::temp_dir().join(format!(
        "tally-deploy-recorded-{}-{}",
        std::process::id(),
        scenario as u8
    ));
    std::fs::create_dir_all(&dir).expect("dir");
    let zip = dir.join("collect.zip");
    let bytes = crate::support::empty_zip_with_comment("collect v2");
    std::fs::write(&zip, &bytes).expect("zip");
    let replay = Arc::new(Mutex::new(Replay {
        scenario,
        executed: false,
        actions: Vec::new(),
        old_key: "0ld.zip".into(),
        checksum: tally_deploy::assets::checksum_sha256(&bytes),
        s3: Vec::new(),
    }));
    let endpoint = serve(replay.clone());
    let config = aws_config::defaults(BehaviorVersion::latest())
        .endpoint_url(endpoint)
        .region(Region::new("us-east-1"))
        .credentials_provider(Credentials::new("test", "test", None, None, "recorded"))
        .load()
        .await;
    let mut clients = Clients::from_config(&config).expect("clients");
    clients.poll = Duration::from_millis(10);
    let stream_mode = if scenario == Scenario::ReplacesTheStream {
        "ON_DEMAND"
    } else {
        "PROVISIONED"
    };
    let req = DeployRequest {
        stack_name: STACK.into(),
        template: template(stream_mode),
        parameters: Default::default(),
        assets: vec![Asset {
            name: "collect".into(),
            path: zip,
            parameter: "CollectCodeKey".into(),
            version_parameter: "CollectCodeVersion".into(),
        }],
        tags: StackTags {
            project: "tally".into(),
            stage: "pr-42".into(),
            branch: "pr-42".into(),
            commit: "abc".into(),
            created_at: "2026-11-26T12:00:00Z".into(),
        },
        confirm,
        protected,
        output: Output::Quiet,
        timeout: Duration::from_secs(20),
    };
    let outcome = tally_deploy::deploy(&clients, &req).await;
    let _ = std::fs::remove_dir_all(&dir);
    let replay = replay.lock().expect("lock");
    let seen = Seen {
        actions: replay.actions.clone(),
        s3: replay.s3.clone(),
    };
    (outcome, seen)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failed_update_names_the_resource_and_the_rollback() {
    let (outcome, actions) = run(Scenario::RollbackAfterFailedUpdate, Confirm::Refuse).await;
    let error = outcome.expect_err("the update failed");
    let text = error.to_string();
    let Error::DeployFailed {
        resource,
        reason,
        hint,
        ..
    } = &error
    else {
        panic!("{error:?}")
    };
    assert_eq!(resource, "Collect (AWS::Lambda::Function)", "{text}");
    assert!(
        reason.contains("NoSuchKey"),
        "the root cause, not the cancellation: {text}"
    );
    assert!(
        hint.contains("rolled back to its previous state (UPDATE_ROLLBACK_COMPLETE)"),
        "{text}"
    );
    assert!(
        actions.contains(&"ExecuteChangeSet".to_owned()),
        "{actions:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_replacement_the_change_set_reports_needs_yes() {
    let (outcome, actions) = run(Scenario::ReplacesTheStream, Confirm::Refuse).await;
    let error = outcome.expect_err("refused without --yes");
    let text = error.to_string();
    assert!(
        matches!(error, Error::NeedsConfirmation { .. }),
        "{error:?}"
    );
    assert!(
        text.contains("REPLACE Events (AWS::Kinesis::Stream)") && text.contains("--yes"),
        "{text}"
    );
    assert!(
        !actions.contains(&"ExecuteChangeSet".to_owned()),
        "nothing executed: {actions:?}"
    );
    assert!(
        actions.contains(&"DeleteChangeSet".to_owned()),
        "the change set is cleaned up: {actions:?}"
    );

    let (outcome, actions) = run(Scenario::ReplacesTheStream, Confirm::Yes).await;
    let outcome = outcome.expect("with --yes it deploys");
    let tally_deploy::DeployOutcome::Deployed { plan, .. } = outcome else {
        panic!("{outcome:?}")
    };
    assert_eq!(plan.destructive().len(), 1, "{plan}");
    assert!(
        actions.contains(&"ExecuteChangeSet".to_owned()),
        "{actions:?}"
    );
}

/// A failed rollback (`UPDATE_ROLLBACK_FAILED`) of a protected stage: the hint is `continue-update-rollback`,
/// never `destroy`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failed_rollback_of_a_protected_stage_says_continue_update_rollback() {
    let (outcome, actions) = run_as(Scenario::RollbackFails, Confirm::Yes, true).await;
    let error = outcome.expect_err("the update and its rollback failed");
    let text = error.to_string();
    let Error::DeployFailed { resource, hint, .. } = &error else {
        panic!("{error:?}")
    };
    assert_eq!(resource, "Collect (AWS::Lambda::Function)", "{text}");
    assert!(
        hint.contains(&format!(
            "aws cloudformation continue-update-rollback --stack-name {STACK}"
        )),
        "{text}"
    );
    assert!(
        !text.contains("destroy"),
        "no destroy for a protected stage: {text}"
    );
    assert!(
        actions.contains(&"ExecuteChangeSet".to_owned()),
        "{actions:?}"
    );
}

/// A stack of the same name that another project tagged is not updated: refused before any change set.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stack_of_another_project_is_not_updated() {
    let (outcome, actions) = run(Scenario::OtherProject, Confirm::Yes).await;
    let error = outcome.expect_err("not ours");
    let text = error.to_string();
    assert!(
        text.contains("tagged tally:project=billing, not tally")
            && text.contains("Nothing was changed"),
        "{text}"
    );
    assert!(
        !actions.iter().any(|a| a.contains("ChangeSet")),
        "no change set created: {actions:?}"
    );
}

/// A key whose stored checksum is not the local zip's stops the deploy before CloudFormation is asked to
/// create a change set; every S3 call names the account that must own the bucket.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_tampered_asset_is_refused_before_any_change_set() {
    let (outcome, seen) = run_seen(Scenario::TamperedAsset, Confirm::Yes, false).await;
    let error = outcome.expect_err("tampered");
    let text = error.to_string();
    assert!(matches!(error, Error::TamperedAsset(_)), "{error:?}");
    assert!(
        text.starts_with("tampered asset `collect`")
            && text.contains("(version v-existing) has SHA-256 e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855")
            && text.contains("Nothing was deployed"),
        "{text}"
    );
    assert!(
        !seen.actions.iter().any(|a| a.contains("ChangeSet")),
        "no change set: {:?}",
        seen.actions
    );
    assert!(!seen.s3.is_empty(), "the asset was looked up");
    for (method, path, headers) in &seen.s3 {
        let header = |name: &str| {
            headers
                .iter()
                .find(|(k, _)| k == name)
                .map(|(_, v)| v.as_str())
        };
        assert_eq!(
            header("x-amz-expected-bucket-owner"),
            Some(ACCOUNT),
            "{method} {path}"
        );
        assert_eq!(
            header("x-amz-checksum-mode"),
            Some("ENABLED"),
            "{method} {path}"
        );
        assert!(
            path.contains(BOOTSTRAP_OUTPUTS[0].1),
            "the bootstrap stack's bucket: {path}"
        );
    }
}

/// The same flow with a matching checksum reuses the object without reading it, and pins its version.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_existing_asset_with_its_checksum_is_reused_and_pinned() {
    let (outcome, seen) = run_seen(Scenario::ReplacesTheStream, Confirm::Yes, false).await;
    let tally_deploy::DeployOutcome::Deployed { plan, uploaded, .. } = outcome.expect("deployed")
    else {
        panic!("expected a deploy")
    };
    assert_eq!(uploaded, 0);
    assert_eq!(
        plan.parameters.get("CollectCodeVersion"),
        Some(&(Some("v-old".to_owned()), Some("v-existing".to_owned()))),
        "{plan}"
    );
    assert!(
        seen.s3.iter().all(|(method, _, _)| method == "HEAD"),
        "no GetObject, no PutObject"
    );
}
