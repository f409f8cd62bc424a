//! The metrics table's campaign index against `moto_server`: first/last seen moving the right way, corrupt
//! index rows and a missing table as clear errors; and the SDK configuration honouring `AWS_ENDPOINT_URL`.

use std::collections::BTreeMap;

use aws_sdk_dynamodb::types::AttributeValue;
use tally_aws::metrics::{MetricsTable, CAMPAIGNS_PK};
use tally_aws::metrics_write::MetricsWriter;
use tally_aws::Error;
use tally_testkit::Moto;

use crate::{sdk, sdk_at};

async fn table(moto: &Moto) -> MetricsTable {
    let client = aws_sdk_dynamodb::Client::new(&sdk_at(&moto.endpoint()).await);
    tally_aws_testing::create_metrics_table(&client, "metrics").await;
    MetricsTable::new(client, "metrics")
}

#[tokio::test]
async fn the_campaign_index() {
    let moto = Moto::start();
    let table = table(&moto).await;
    let writer = MetricsWriter::new(
        aws_sdk_dynamodb::Client::new(&sdk_at(&moto.endpoint()).await),
        table.table(),
    );
    let seen = |pairs: &[(&str, i64, i64)]| -> BTreeMap<String, (i64, i64)> {
        pairs
            .iter()
            .map(|(c, f, l)| (c.to_string(), (*f, *l)))
            .collect()
    };
    writer
        .touch_campaigns(&seen(&[("camp-1", 100, 200), ("camp-0", 50, 60)]))
        .await
        .expect("touch");
    writer
        .touch_campaigns(&seen(&[("camp-1", 150, 300)]))
        .await
        .expect("later");
    writer
        .touch_campaigns(&seen(&[("camp-1", 10, 250)]))
        .await
        .expect("older batch redelivered");
    let got: Vec<_> = table
        .campaigns()
        .await
        .expect("campaigns")
        .into_iter()
        .map(|c| (c.campaign_id, c.first_seen_ms, c.last_seen_ms))
        .collect();
    assert_eq!(
        got,
        [
            ("camp-0".to_owned(), 50, 60),
            ("camp-1".to_owned(), 100, 300)
        ]
    );
}

#[tokio::test]
async fn corrupt_index_rows_and_missing_tables_are_clear_errors() {
    let moto = Moto::start();
    let table = table(&moto).await;
    let client = aws_sdk_dynamodb::Client::new(&sdk(&moto).await);
    client
        .put_item()
        .table_name("metrics")
        .item("pk", AttributeValue::S(CAMPAIGNS_PK.into()))
        .item("sk", AttributeValue::S("camp-9".into()))
        .item("first_seen_ms", AttributeValue::S("yesterday".into()))
        .item("last_seen_ms", AttributeValue::N("5".into()))
        .send()
        .await
        .expect("put");
    let err = table.campaigns().await.expect_err("corrupt");
    assert!(matches!(err, Error::CorruptRow { .. }), "{err}");
    assert!(
        err.to_string()
            .starts_with("row campaigns/camp-9 of table metrics is corrupt: first_seen_ms:"),
        "{err}"
    );
    assert!(!err.is_retryable());

    let missing = MetricsTable::new(client, "no-such-table");
    let err = missing.campaigns().await.expect_err("missing table");
    assert!(err.to_string().starts_with("dynamodb "), "{err}");
    assert!(
        err.to_string().contains("no-such-table") && err.to_string().contains("ResourceNotFound"),
        "{err}"
    );
    assert!(!err.is_retryable());
}

#[tokio::test]
async fn sdk_config_honours_aws_endpoint_url() {
    let moto = Moto::start();
    let _table = table(&moto).await;
    for (name, value) in moto.env() {
        std::env::set_var(name, value);
    }
    let config = tally_aws::config::sdk_config().await;
    let client = tally_aws::config::dynamodb(&config);
    let tables = client
        .list_tables()
        .send()
        .await
        .expect("list tables through AWS_ENDPOINT_URL");
    assert_eq!(tables.table_names(), ["metrics"]);
}
