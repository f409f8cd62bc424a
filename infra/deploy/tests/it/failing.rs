//! A deploy that fails: non-zero (an error), the failing resource and reason named, and a way out.

use tally_deploy::{DestroyOutcome, Error, Named};
use tally_pipeline::Stage;

use crate::support::{self, Env};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_name_taken_outside_the_stack_fails_the_deploy_clearly() {
    let env = Env::start("failing").await;
    let stage = Stage::new("broken");
    let template: serde_json::Value =
        serde_json::from_str(&support::template(&stage)).expect("json");
    let stream = Named::from_template(&template, "123456789012", "us-east-1")
        .into_iter()
        .find_map(|n| match n {
            Named::Stream(s) => Some(s),
            _ => None,
        })
        .expect("the template names its stream");
    // Someone created a stream with the stage's stream name by hand.
    env.clients
        .kinesis
        .create_stream()
        .stream_name(&stream)
        .shard_count(1)
        .send()
        .await
        .expect("CreateStream");

    let error = tally_deploy::deploy(&env.clients, &support::request(&stage, env.zips("v1", &[])))
        .await
        .expect_err("the stream name is taken");
    let text = error.to_string();
    println!("{text}");
    assert!(matches!(error, Error::DeployFailed { .. }), "{error:?}");
    assert!(
        text.contains("deploy of stack `tally-broken` failed"),
        "{text}"
    );
    assert!(
        text.contains(&stream) || text.contains("ResourceInUse") || text.contains("already exists"),
        "names the cause: {text}"
    );
    assert!(
        text.contains("cargo xtask destroy --stage broken"),
        "says how to clean up: {text}"
    );

    // A second deploy does not pile onto the broken stack: it says what state it is in and what to do.
    let again =
        tally_deploy::deploy(&env.clients, &support::request(&stage, env.zips("v1", &[]))).await;
    if let Err(e) = &again {
        let text = e.to_string();
        assert!(
            text.contains("cargo xtask destroy --stage broken"),
            "{text}"
        );
    }

    // destroy removes the stack, and reports the stream it did not create, which is still there.
    let error = tally_deploy::destroy(&env.clients, &support::destroy_request(&stage))
        .await
        .expect_err("the stream remains");
    let text = error.to_string();
    println!("destroy: {text}");
    println!(
        "after destroy: {:?}",
        tally_deploy::describe(&env.clients, &stage.stack_name()).await
    );
    assert!(
        matches!(error, Error::Leftovers { .. }) && text.contains(&format!("stream {stream}")),
        "{text}"
    );
    assert!(
        tally_deploy::describe(&env.clients, &stage.stack_name())
            .await
            .expect("describe")
            .is_none(),
        "stack deleted"
    );

    env.clients
        .kinesis
        .delete_stream()
        .stream_name(&stream)
        .send()
        .await
        .expect("DeleteStream");
    let outcome = tally_deploy::destroy(&env.clients, &support::destroy_request(&stage))
        .await
        .expect("clean now");
    assert_eq!(outcome, DestroyOutcome::NothingToDelete);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn malformed_input_is_refused_before_anything_is_created() {
    let env = Env::start("malformed").await;
    let stage = Stage::new("malformed");
    let check = |mutate: &dyn Fn(&mut tally_deploy::DeployRequest), expect: &'static str| {
        let mut req = support::request(&stage, env.zips("v1", &[]));
        mutate(&mut req);
        (req, expect)
    };
    let cases = [
        check(
            &|r| r.template = "{not json".into(),
            "template: not valid json",
        ),
        check(
            &|r| r.template = r#"{"Resources": {"A": {}}}"#.into(),
            "resource `A` has no string `Type`",
        ),
        check(
            &|r| r.assets.truncate(5),
            "parameter `ScalerCodeKey`: declared by the template without a default",
        ),
        check(
            &|r| {
                r.parameters.insert("Bogus".into(), "1".into());
            },
            "parameter `Bogus`: not declared",
        ),
        check(
            &|r| r.assets[0].path = "/nonexistent/collect.zip".into(),
            "asset `collect`",
        ),
    ];
    for (req, expect) in cases {
        let error = tally_deploy::deploy(&env.clients, &req)
            .await
            .expect_err(expect)
            .to_string();
        assert!(error.contains(expect), "{expect}: {error}");
        assert!(
            tally_deploy::describe(&env.clients, &req.stack_name)
                .await
                .expect("describe")
                .is_none(),
            "{expect}: no stack"
        );
    }
}

/// moto's change sets carry no `Replacement`: the guard still sees a stream rename from the template diff
/// (our table of replacement-causing properties) and refuses without `--yes`, executing nothing.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn renaming_the_stream_needs_yes() {
    let env = Env::start("guard").await;
    let stage = Stage::new("guard");
    let template = |stream: &str| {
        serde_json::json!({
            "Parameters": {"AssetsBucket": {"Type": "String"}},
            "Resources": {"Events": {"Type": "AWS::Kinesis::Stream", "Properties": {"Name": stream, "ShardCount": 1}}}
        })
        .to_string()
    };
    let mut req = support::request(&stage, Vec::new());
    req.template = template("tally-guard-events");
    tally_deploy::deploy(&env.clients, &req)
        .await
        .expect("first deploy");

    req.template = template("tally-guard-events-2");
    let plan = tally_deploy::diff(&env.clients, &req).await.expect("diff");
    assert_eq!(plan.destructive().len(), 1, "{plan}");
    assert!(
        plan.to_string().contains("DATA LOSS: REPLACE Events"),
        "{plan}"
    );

    let error = tally_deploy::deploy(&env.clients, &req)
        .await
        .expect_err("refused");
    let text = error.to_string();
    assert!(
        matches!(error, Error::NeedsConfirmation { .. }) && text.contains("--yes"),
        "{text}"
    );
    let kinesis = &env.clients.kinesis;
    kinesis
        .describe_stream_summary()
        .stream_name("tally-guard-events")
        .send()
        .await
        .expect("old stream kept");
    assert!(
        kinesis
            .describe_stream_summary()
            .stream_name("tally-guard-events-2")
            .send()
            .await
            .is_err(),
        "nothing executed"
    );

    // With --yes the change set is executed. (moto keeps the old stream on a rename, so what is checked here is
    // that the deploy ran, not moto's replacement.)
    req.confirm = tally_deploy::Confirm::Yes;
    let outcome = tally_deploy::deploy(&env.clients, &req)
        .await
        .expect("with --yes");
    assert!(
        matches!(outcome, tally_deploy::DeployOutcome::Deployed { .. }),
        "{outcome:?}"
    );
    let again = tally_deploy::diff(&env.clients, &req).await.expect("diff");
    assert!(again.is_empty(), "deployed: {again}");
}

/// A stack of the stage's name that tally did not deploy (no `tally:project` tag) is neither updated nor
/// deleted: deploy and destroy refuse it before any change, and it keeps its resources.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stack_tally_did_not_deploy_is_left_alone() {
    let env = Env::start("untagged").await;
    let stage = Stage::new("pr-3");
    let stack = stage.stack_name();
    env.clients
        .cfn
        .create_stack()
        .stack_name(&stack)
        .template_body(r#"{"Resources": {"Q": {"Type": "AWS::SQS::Queue", "Properties": {"QueueName": "someone-elses"}}}}"#)
        .send()
        .await
        .expect("CreateStack");

    let error = tally_deploy::deploy(&env.clients, &support::request(&stage, env.zips("v1", &[])))
        .await
        .expect_err("not tally's");
    let text = error.to_string();
    assert!(
        text.contains(&format!(
            "stack `{stack}` is CREATE_COMPLETE: it has no tally:project tag"
        )) && text.contains("Nothing was changed"),
        "{text}"
    );
    let change_sets = env
        .clients
        .cfn
        .list_change_sets()
        .stack_name(&stack)
        .send()
        .await
        .expect("ListChangeSets");
    assert!(change_sets.summaries().is_empty(), "{change_sets:?}");

    let error = tally_deploy::destroy(&env.clients, &support::destroy_request(&stage))
        .await
        .expect_err("not tally's");
    assert!(
        error.to_string().contains("no tally:project tag"),
        "{error}"
    );
    env.clients
        .sqs
        .get_queue_url()
        .queue_name("someone-elses")
        .send()
        .await
        .expect("its queue is still there");
}
