//! What moto cannot show — a rollback after a failed update, a change set that says `Replacement: True` — driven
//! through the real SDK clients against a loopback server that answers with CloudFormation responses as AWS
//! records them (XML shapes and values from AWS's API reference and real sessions). The server is a replay of
//! recorded answers, scripted per scenario; it checks nothing, so every assertion is on what `deploy` did.

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
}

struct Replay {
    scenario: Scenario,
    executed: bool,
    actions: Vec<String>,
    old_key: String,
}

fn template(stream_mode: &str) -> String {
    serde_json::json!({
        "Parameters": {"AssetsBucket": {"Type": "String"}, "CollectCodeKey": {"Type": "String"}},
        "Resources": {
            "Collect": {"Type": "AWS::Lambda::Function", "Properties": {
                "Code": {"S3Bucket": {"Ref": "AssetsBucket"}, "S3Key": {"Ref": "CollectCodeKey"}}}},
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

impl Replay {
    fn answer(&mut self, method: &str, path: &str, body: &str) -> (u16, String) {
        if method == "HEAD" {
            return (200, String::new()); // S3: the assets bucket and the zip exist
        }
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
            "DescribeStacks" => {
                let status = match (self.executed, self.scenario) {
                    (false, _) => "UPDATE_COMPLETE",
                    (true, Scenario::RollbackAfterFailedUpdate) => "UPDATE_ROLLBACK_COMPLETE",
                    (true, Scenario::ReplacesTheStream | Scenario::OtherProject) => "UPDATE_COMPLETE",
                    (true, Scenario::RollbackFails) => "UPDATE_ROLLBACK_FAILED",
                };
                let project = if self.scenario == Scenario::OtherProject { "billing" } else { "tally" };
                let stack = format!(
                    "<Stacks><member><StackName>{STACK}</StackName><StackId>{STACK_ID}</StackId>\
                     <CreationTime>2026-11-20T09:00:00.000Z</CreationTime><LastUpdatedTime>2026-11-25T09:00:00.000Z</LastUpdatedTime>\
                     <StackStatus>{status}</StackStatus>\
                     <Parameters><member><ParameterKey>AssetsBucket</ParameterKey><ParameterValue>tally-assets-{ACCOUNT}-us-east-1</ParameterValue></member>\
                     <member><ParameterKey>CollectCodeKey</ParameterKey><ParameterValue>{}</ParameterValue></member></Parameters>\
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
                    Scenario::RollbackAfterFailedUpdate | Scenario::RollbackFails | Scenario::OtherProject => "<member><Type>Resource</Type><ResourceChange><Action>Modify</Action>\
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
            loop {
                let mut header = String::new();
                if reader.read_line(&mut header).is_err() || header.trim().is_empty() {
                    break;
                }
                if let Some((name, value)) = header.split_once(':') {
                    if name.eq_ignore_ascii_case("content-length") {
                        length = value.trim().parse().unwrap_or(0);
                    }
                }
            }
            let mut body = vec![0; length];
            let _ = reader.read_exact(&mut body);
            let (status, text) = replay.lock().expect("lock").answer(
                &method,
                &path,
                &String::from_utf8_lossy(&body),
            );
            let response = format!(
                "HTTP/1.1 {status} X\r\nContent-Type: text/xml\r\nContent-Length: {}\r\nx-amzn-requestid: 1\r\nConnection: close\r\n\r\n{text}",
                text.len()
            );
            let _ = stream.write_all(response.as_bytes());
        }
    });
    format!("http://{addr}")
}

async fn run(
    scenario: Scenario,
    confirm: Confirm,
) -> (Result<tally_deploy::DeployOutcome, Error>, Vec<String>) {
    run_as(scenario, confirm, false).await
}

async fn run_as(
    scenario: Scenario,
    confirm: Confirm,
    protected: bool,
) -> (Result<tally_deploy::DeployOutcome, Error>, Vec<String>) {
    let dir = std::env::temp_dir().join(format!(
        "tally-deploy-recorded-{}-{}",
        std::process::id(),
        scenario as u8
    ));
    std::fs::create_dir_all(&dir).expect("dir");
    let zip = dir.join("collect.zip");
    std::fs::write(&zip, crate::support::empty_zip_with_comment("collect v2")).expect("zip");
    let replay = Arc::new(Mutex::new(Replay {
        scenario,
        executed: false,
        actions: Vec::new(),
        old_key: "0ld.zip".into(),
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
    let actions = replay.lock().expect("lock").actions.clone();
    (outcome, actions)
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
