//! Secrets Manager behaviours (what collect's keys and a rotation rely on), each run against the local
//! endpoint and moto.

use aws_sdk_secretsmanager::Client;

use crate::harness::{agree, code, unique};

/// The secret string in `stage`, or the error code.
async fn value(client: &Client, id: &str, stage: &str) -> String {
    match client
        .get_secret_value()
        .secret_id(id)
        .version_stage(stage)
        .send()
        .await
    {
        Ok(out) => out.secret_string().unwrap_or("(binary)").to_owned(),
        Err(e) => code::<(), _>(Err(e)),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rotation_moves_current_and_previous() {
    agree(|target| async move {
        let client = target.secretsmanager();
        let name = unique("collect-keys");
        let created = client
            .create_secret()
            .name(&name)
            .secret_string(r#"{"k":"one"}"#)
            .send()
            .await
            .expect("create");
        let arn = created.arn().expect("arn").to_owned();
        let mut seen = vec![
            value(&client, &name, "AWSCURRENT").await,
            value(&client, &arn, "AWSCURRENT").await,
            value(&client, &name, "AWSPREVIOUS").await,
        ];
        for next in [r#"{"k":"two"}"#, r#"{"k":"three"}"#] {
            client
                .put_secret_value()
                .secret_id(&arn)
                .secret_string(next)
                .send()
                .await
                .expect("put");
            seen.push(value(&client, &name, "AWSCURRENT").await);
            seen.push(value(&client, &name, "AWSPREVIOUS").await);
        }
        seen.push(value(&client, &unique("missing"), "AWSCURRENT").await);
        seen.push(code(
            client
                .create_secret()
                .name(&name)
                .secret_string("x")
                .send()
                .await,
        ));
        assert_eq!(
            seen,
            [
                r#"{"k":"one"}"#,
                r#"{"k":"one"}"#,
                "ResourceNotFoundException",
                r#"{"k":"two"}"#,
                r#"{"k":"one"}"#,
                r#"{"k":"three"}"#,
                r#"{"k":"two"}"#,
                "ResourceNotFoundException",
                "ResourceExistsException",
            ],
            "{:?}",
            target.kind
        );
        seen
    })
    .await;
}
