//! Typed references render as `Ref` / `Fn::GetAtt` / `Fn::Sub`, and never cross stacks.

use serde_json::json;
use tally_constructs::kinesis::{Stream, StreamProps};
use tally_constructs::lambda::{Code, Function, FunctionProps};
use tally_constructs::sqs::{Queue, QueueProps};
use tally_constructs::{Expr, Stack};

use super::{function, synth, synth_error};

#[test]
fn handles_render_as_intrinsics() {
    let stack = Stack::new("app");
    let root = stack.root();
    let events = Stream::new(&root, "Events", StreamProps::default());
    let queue = Queue::new(&root, "Failures", QueueProps::default());
    let id = events.node().logical_id().to_owned();
    assert_eq!(events.name().to_json(), json!({"Ref": id}));
    assert_eq!(events.arn().to_json(), json!({"Fn::GetAtt": [id, "Arn"]}));
    assert_eq!(
        events.arn().with_suffix("/*").to_json(),
        json!({"Fn::Sub": format!("${{{id}.Arn}}/*")})
    );
    let q = queue.node().logical_id().to_owned();
    assert_eq!(queue.url().to_json(), json!({"Ref": q}));
    assert_eq!(
        queue.name().to_json(),
        json!({"Fn::GetAtt": [q, "QueueName"]})
    );
    assert_eq!(
        Expr::concat([Expr::text("arn:"), Expr::partition()]).to_json(),
        json!({"Fn::Sub": "arn:${AWS::Partition}"})
    );
    synth(&stack);
}

#[test]
fn environment_may_not_refer_to_another_stack() {
    let storage = Stack::new("storage");
    let events = Stream::new(&storage.root(), "Events", StreamProps::default());
    let app = Stack::new("app");
    let bucket = app.string_parameter("Bucket", "b");
    let key = app.string_parameter("Key", "k");
    Function::new(
        &app.root(),
        "Collect",
        FunctionProps {
            code: Some(Code::s3(bucket.value(), key.value())),
            environment: vec![("TALLY_STREAM_NAME".into(), events.name())],
            ..FunctionProps::default()
        },
    );
    let error = synth_error(&app);
    assert!(
        error.contains("app/Collect: refers to `storage/Events`, a construct of another stack"),
        "{error}"
    );
    synth(&storage);
}

#[test]
fn grants_may_not_cross_stacks() {
    let storage = Stack::new("storage");
    let events = Stream::new(&storage.root(), "Events", StreamProps::default());
    let app = Stack::new("app");
    let collect = function(&app, &app.root(), "Collect");
    events.grant_write(&collect);
    let error = synth_error(&app);
    assert!(
        error.contains(
            "app/Collect/Role: is granted access to `storage/Events`, a construct of another stack"
        ),
        "{error}"
    );
}

#[test]
fn outputs_and_dependencies_may_not_cross_stacks() {
    let storage = Stack::new("storage");
    let events = Stream::new(&storage.root(), "Events", StreamProps::default());
    let app = Stack::new("app");
    app.output("StreamName", "the stream", &events.name());
    let queue = Queue::new(&app.root(), "Q", QueueProps::default());
    queue.node().add_dependency(events.node());
    let error = synth_error(&app);
    assert!(error.contains("app: refers to `storage/Events`"), "{error}");
    assert!(
        error.contains("app/Q: depends on `storage/Events`, a construct of another stack"),
        "{error}"
    );
}

#[test]
fn same_app_twice_is_byte_identical() {
    let build = || {
        let stack = Stack::new("app");
        let events = Stream::new(&stack.root(), "Events", StreamProps::default());
        let collect = function(&stack, &stack.root(), "Collect");
        events.grant_write(&collect);
        stack.output("StreamName", "the stream", &events.name());
        stack.synth_string().expect("synthesizes")
    };
    assert_eq!(build(), build());
}
