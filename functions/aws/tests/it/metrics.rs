//! The metrics table's campaign index against `moto_server`: first/last seen moving the right way, rows
//! expiring a window after the last event, corrupt index rows and a missing table as clear errors; and the
//! SDK configuration honouring `AWS_ENDPOINT_URL`.

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

/// Index rows expire a window after the campaign's last event: `expires_at` (the table's TTL attribute) moves
/// with every later touch, a row past it is not listed (moto, like DynamoDB for up to days, keeps it stored),
/// and a campaign seen again comes back.
#[tokio::test]
async fn the_campaign_index_keeps_campaigns_active_in_its_window() {
    const DAY_MS: i64 = 86_400_000;
    let moto = Moto::start();
    let table = table(&moto).await;
    let client = aws_sdk_dynamodb::Client::new(&sdk_at(&moto.endpoint()).await);
    let writer = MetricsWriter::new(client.clone(), table.table()).with_campaign_index_days(35);
    let t0: i64 = 1_795_698_000_000;
    let touch = |campaign: &str, at: i64| {
        let mut seen = BTreeMap::new();
        seen.insert(campaign.to_owned(), (at, at));
        seen
    };
    writer
        .touch_campaigns(&touch("old", t0))
        .await
        .expect("touch old");
    writer
        .touch_campaigns(&touch("busy", t0 + 20 * DAY_MS))
        .await
        .expect("touch busy");
    let stored = client
        .get_item()
        .table_name("metrics")
        .key("pk", AttributeValue::S(CAMPAIGNS_PK.into()))
        .key("sk", AttributeValue::S("old".into()))
        .send()
        .await
        .expect("get")
        .item
        .expect("the row");
    assert_eq!(
        stored["expires_at"],
        AttributeValue::N((t0 / 1000 + 35 * 86_400).to_string()),
        "expires_at is unix seconds, 35 days after the last event"
    );
    let listed = |at: i64| {
        let table = table.clone();
        async move {
            table
                .campaigns_at(at)
                .await
                .expect("campaigns")
                .into_iter()
                .map(|c| c.campaign_id)
                .collect::<Vec<_>>()
        }
    };
    assert_eq!(listed(t0 + 34 * DAY_MS).await, ["busy", "old"]);
    // 35 days after its last event `old` is not listed, though the row is still stored.
    assert_eq!(listed(t0 + 35 * DAY_MS).await, ["busy"]);
    assert_eq!(table.campaigns().await.expect("stored").len(), 2);
    // Seen again: it comes back, its window counted from the new event; its first sighting is kept.
    let again = t0 + 40 * DAY_MS;
    writer
        .touch_campaigns(&touch("old", again))
        .await
        .expect("seen again");
    assert_eq!(listed(again).await, ["busy", "old"]);
    assert_eq!(listed(t0 + 55 * DAY_MS).await, ["old"]);
    let old = table
        .campaigns_at(again)
        .await
        .expect("campaigns")
        .into_iter()
        .find(|c| c.campaign_id == "old")
        .expect("old");
    assert_eq!((old.first_seen_ms, old.last_seen_ms), (t0, again));
    // A redelivered older batch moves neither the last sighting nor the expiry.
    writer
        .touch_campaigns(&touch("old", t0 + DAY_MS))
        .await
        .expect("older batch");
    assert_eq!(listed(t0 + 74 * DAY_MS).await, ["old"]);
    assert_eq!(listed(t0 + 75 * DAY_MS).await, Vec::<String>::new());
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
