//! A stage deployed with `retain_data = true`: a deploy that would drop the `Retain` policies is refused
//! without `--yes`, and `destroy` leaves the retained bucket with its objects (and the stream and table),
//! names what it left, and empties nothing it keeps.

use aws_sdk_s3::primitives::ByteStream;
use tally_deploy::{DeployOutcome, DestroyOutcome, Error};
use tally_pipeline::{PipelineOptions, Stage};

use crate::support::{self, Env};

fn retaining() -> PipelineOptions {
    PipelineOptions {
        retain_data: true,
        ..support::options()
    }
}

/// `(logical id, physical id)` of the stack's resources of type `ty`.
async fn of_type(env: &Env, stack: &str, ty: &str) -> Vec<(String, String)> {
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
        .filter(|r| r.resource_type() == Some(ty))
        .filter_map(|r| {
            Some((
                r.logical_resource_id()?.to_owned(),
                r.physical_resource_id()?.to_owned(),
            ))
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_retained_stage_keeps_its_bucket_objects_stream_and_table() {
    let env = Env::start("retain").await;
    let stage = Stage::new("pr-9");
    let stack = stage.stack_name();
    let mut req = support::request(&stage, env.zips("v1", &[]));
    req.template = support::template_with(&stage, &retaining());
    let outcome = tally_deploy::deploy(&env.clients, &req)
        .await
        .expect("first deploy");
    assert!(
        matches!(outcome, DeployOutcome::Deployed { .. }),
        "{outcome:?}"
    );

    // Dropping retain_data turns every `Retain` into the default `Delete`: refused without --yes.
    let mut dropped = req.clone();
    dropped.template = support::template(&stage);
    let error = tally_deploy::deploy(&env.clients, &dropped)
        .await
        .expect_err("losing the Retain policies needs a confirmation");
    let text = error.to_string();
    assert!(
        matches!(error, Error::NeedsConfirmation { .. }),
        "{error:?}"
    );
    // Logical ids carry a hash of the construct path (`Events664F68C3`).
    for line in [
        "(AWS::Kinesis::Stream): DeletionPolicy Retain → Delete (removed)",
        "(AWS::DynamoDB::Table): UpdateReplacePolicy Retain → Delete (removed)",
        "(AWS::S3::Bucket): DeletionPolicy Retain → Delete (removed)",
        "(AWS::SecretsManager::Secret): DeletionPolicy Retain → Delete (removed)",
    ] {
        assert!(text.contains(line), "{line}\n in: {text}");
    }

    // Objects in the archive bucket, which the template retains.
    let buckets = of_type(&env, &stack, "AWS::S3::Bucket").await;
    assert_eq!(buckets.len(), 1, "{buckets:?}");
    let (archive_id, archive) = buckets[0].clone();
    let s3 = &env.clients.s3;
    for key in ["2026/12/06/09.ndjson.gz", "2026/12/06/10.ndjson.gz"] {
        s3.put_object()
            .bucket(&archive)
            .key(key)
            .body(ByteStream::from_static(b"{\"n\":1}\n"))
            .send()
            .await
            .expect("put");
    }
    let stream = of_type(&env, &stack, "AWS::Kinesis::Stream").await;
    let table = of_type(&env, &stack, "AWS::DynamoDB::Table").await;

    let mut destroy = support::destroy_request(&stage);
    destroy.template =
        serde_json::from_str(&support::template_with(&stage, &retaining())).expect("json");
    let outcome = tally_deploy::destroy(&env.clients, &destroy)
        .await
        .expect("destroy");
    let DestroyOutcome::Destroyed {
        objects_deleted,
        retained,
        ..
    } = &outcome
    else {
        panic!("{outcome:?}")
    };
    assert_eq!(
        *objects_deleted, 0,
        "no bucket of this stage may be emptied"
    );
    assert!(
        retained.contains(&format!("bucket {archive} ({archive_id})")),
        "the kept bucket is named: {retained:?}"
    );
    assert!(
        retained.iter().any(|l| l.starts_with("stream "))
            && retained.iter().any(|l| l.starts_with("table ")),
        "{retained:?}"
    );
    assert!(
        tally_deploy::describe(&env.clients, &stack)
            .await
            .expect("describe")
            .is_none(),
        "the stack itself is gone"
    );
    let listed = s3
        .list_objects_v2()
        .bucket(&archive)
        .send()
        .await
        .expect("the archive bucket survives");
    assert_eq!(listed.key_count(), Some(2), "{listed:?}");
    env.clients
        .kinesis
        .describe_stream_summary()
        .stream_name(&stream[0].1)
        .send()
        .await
        .expect("the stream survives");
    env.clients
        .dynamodb
        .describe_table()
        .table_name(&table[0].1)
        .send()
        .await
        .expect("the table survives");

    // Destroying again finds nothing to delete: what the template retains is not a leftover.
    let again = tally_deploy::destroy(&env.clients, &destroy)
        .await
        .expect("destroy again");
    assert_eq!(again, DestroyOutcome::NothingToDelete);
}
