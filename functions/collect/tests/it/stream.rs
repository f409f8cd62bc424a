//! collect against `moto_server`: what it accepts is what a `GetRecords` reads back, nothing more.

use lambda_http::Body;
use serde_json::json;
use tally_collect::Collector;
use tally_domain::event::{Event, EventKind, Trust};
use tally_testkit::Moto;

use crate::support::{body_json, fixture, kinesis_client, now_ms, url_request};

/// A moto server with a one-shard stream `events`, and a collector writing to it.
async fn setup() -> (Moto, aws_sdk_kinesis::Client, Collector) {
    let moto = Moto::start();
    let client = kinesis_client(&moto.endpoint()).await;
    client
        .create_stream()
        .stream_name("events")
        .shard_count(2)
        .send()
        .await
        .expect("create stream");
    let collector = Collector::new(client.clone(), "events");
    (moto, client, collector)
}

/// The records of each shard, in sequence order: (shard id, [(partition key, events)]).
async fn shard_records(
    client: &aws_sdk_kinesis::Client,
) -> Vec<(String, Vec<(String, Vec<Event>)>)> {
    let shards = client
        .list_shards()
        .stream_name("events")
        .send()
        .await
        .expect("list shards");
    let mut out = Vec::new();
    for shard in shards.shards() {
        let iterator = client
            .get_shard_iterator()
            .stream_name("events")
            .shard_id(shard.shard_id())
            .shard_iterator_type(aws_sdk_kinesis::types::ShardIteratorType::TrimHorizon)
            .send()
            .await
            .expect("iterator");
        let records = client
            .get_records()
            .shard_iterator(iterator.shard_iterator().expect("iterator"))
            .send()
            .await
            .expect("get records");
        let mut packed = Vec::new();
        for record in records.records() {
            let events = tally_domain::wire::unpack(record.data().as_ref())
                .expect("collect writes tally records");
            let key = record.partition_key().expect("partition key").to_owned();
            packed.push((key, events));
        }
        out.push((shard.shard_id().to_owned(), packed));
    }
    out
}

/// The events of each shard, in sequence order: (shard id, events).
async fn read_shards(client: &aws_sdk_kinesis::Client) -> Vec<(String, Vec<Event>)> {
    shard_records(client)
        .await
        .into_iter()
        .map(|(shard, records)| (shard, records.into_iter().flat_map(|(_, e)| e).collect()))
        .collect()
}

/// Every event in the stream, ordered by id.
async fn read_back(client: &aws_sdk_kinesis::Client) -> Vec<Event> {
    let mut events: Vec<Event> = read_shards(client)
        .await
        .into_iter()
        .flat_map(|(_, events)| events)
        .collect();
    events.sort_by(|a, b| a.id.cmp(&b.id));
    events
}

fn ids(events: &[Event]) -> Vec<&str> {
    events.iter().map(|e| e.id.as_str()).collect()
}

#[tokio::test]
async fn accepted_events_are_read_back_from_the_stream() {
    let (_moto, client, collector) = setup().await;
    let received = now_ms();
    let body = json!([
        {"id": "e-1", "kind": "impression", "campaign_id": "summer", "ad_id": "banner", "cost_micros": 1200, "country": "de"},
        {"id": "e-2", "kind": "click", "campaign_id": "summer", "ad_id": "banner", "user_id": "u-7"},
        {"id": "e-3", "kind": "conversion", "campaign_id": "winter", "ad_id": "video", "value_micros": 49_990_000,
         "client_ts_ms": received - 1000}
    ])
    .to_string();
    let response = collector
        .handle_at(
            url_request(
                "POST",
                "/v1/events",
                &[("content-type", "application/json")],
                Some(body.as_bytes()),
            ),
            received,
        )
        .await;
    assert_eq!(response.status().as_u16(), 202, "{:?}", response.body());
    // No key: unsigned, and the money of the two events that named some is dropped (trust.rs posts with keys).
    assert_eq!(
        body_json(&response),
        json!({"accepted": 3, "ids": ["e-1", "e-2", "e-3"], "trust": "unsigned", "money_dropped": 2})
    );

    let events = read_back(&client).await;
    assert_eq!(ids(&events), ["e-1", "e-2", "e-3"]);
    assert!(
        events.iter().all(|e| e.received_ms == received),
        "stamped with the receive time"
    );
    assert_eq!(events[0].country.as_deref(), Some("DE"));
    assert_eq!(events[0].cost_micros, 0);
    assert_eq!(events[1].kind, EventKind::Click);
    assert_eq!(events[2].value_micros, 0);
    assert!(events.iter().all(|e| e.trust == Trust::Unsigned));
}

#[tokio::test]
async fn a_mixed_batch_keeps_its_valid_events_and_says_so() {
    let (_moto, client, collector) = setup().await;
    let body = b"{\"kind\":\"impression\",\"campaign_id\":\"summer\",\"ad_id\":\"banner\"}\n\
{\"kind\":\"impression\",\"campaign_id\":\"summer\"}\n\
\n\
{\"id\":\"keep-me\",\"kind\":\"click\",\"campaign_id\":\"summer\",\"ad_id\":\"banner\"}\n";
    let response = collector
        .handle(url_request(
            "POST",
            "/v1/events",
            &[("content-type", "application/x-ndjson")],
            Some(body),
        ))
        .await;
    assert_eq!(response.status().as_u16(), 400);
    let doc = body_json(&response);
    assert_eq!(doc["accepted"], 2, "{doc}");
    assert_eq!(
        doc["errors"],
        json!([{"index": 1, "field": "ad_id", "rule": doc["errors"][0]["rule"]}]),
        "{doc}"
    );
    assert!(
        doc["detail"]
            .as_str()
            .is_some_and(|d| d.contains("must not be resent")),
        "{doc}"
    );
    let written = read_back(&client).await;
    let mut accepted: Vec<String> = doc["ids"]
        .as_array()
        .expect("ids")
        .iter()
        .map(|v| v.as_str().expect("id").to_owned())
        .collect();
    accepted.sort();
    assert_eq!(
        ids(&written),
        accepted.iter().map(String::as_str).collect::<Vec<_>>()
    );
    assert!(
        accepted.contains(&"keep-me".to_owned()),
        "client ids are kept"
    );
}

#[tokio::test]
async fn pixels_and_beacons_land_in_the_stream_with_the_browser_user_agent() {
    let (_moto, client, collector) = setup().await;
    let probe = url_request(
        "HEAD",
        "/p.gif?c=summer-sale&a=banner&e=impression",
        &[],
        None,
    );
    assert_eq!(
        collector.handle(probe).await.status().as_u16(),
        200,
        "HEAD gets the pixel's headers, counts nothing"
    );
    let pixel = collector.handle(fixture("url-pixel.json")).await;
    assert!(matches!(pixel.body(), Body::Binary(_)));
    assert_eq!(collector.rejected_pixels(), 0);
    let beacon = collector.handle(fixture("url-post-beacon.json")).await;
    assert_eq!(beacon.status().as_u16(), 202, "{:?}", beacon.body());

    let events = read_back(&client).await;
    assert_eq!(events.len(), 3);
    let pixel_event = events
        .iter()
        .find(|e| e.kind == EventKind::Impression)
        .expect("pixel event");
    assert_eq!(pixel_event.campaign_id, "summer-sale");
    // The fixture's pixel names m=1250 but is not signed: counted, without its money.
    assert_eq!(pixel_event.cost_micros, 0);
    assert_eq!(pixel_event.trust, Trust::Unsigned);
    assert!(pixel_event
        .user_agent
        .as_deref()
        .is_some_and(|ua| ua.contains("Chrome/131")));
    assert!(!pixel_event.id.is_empty(), "an id is assigned");
    let beacon_ids: Vec<&str> = events
        .iter()
        .filter(|e| e.kind != EventKind::Impression)
        .map(|e| e.id.as_str())
        .collect();
    assert_eq!(beacon_ids, ["ev-1", "ev-2"]);
    assert!(
        events.iter().all(|e| e.user_agent.is_some()),
        "beacons carry the browser's user agent"
    );
}

#[tokio::test]
async fn assigned_ids_are_unique() {
    let (_moto, client, collector) = setup().await;
    let event = r#"{"kind":"impression","campaign_id":"c","ad_id":"a"}"#;
    let body = format!("[{}]", vec![event; 600].join(","));
    let received = now_ms();
    for _ in 0..2 {
        let request = url_request(
            "POST",
            "/v1/events",
            &[("content-type", "application/json")],
            Some(body.as_bytes()),
        );
        let response = collector.handle_at(request, received).await;
        assert_eq!(response.status().as_u16(), 202);
    }
    let events = read_back(&client).await;
    let mut unique: Vec<&str> = ids(&events);
    unique.dedup();
    assert_eq!(unique.len(), 1200);
}

#[tokio::test]
async fn a_request_is_one_record_and_requests_spread_over_the_shards() {
    let (_moto, client, collector) = setup().await;
    // 40 requests of 3 events of 3 campaigns; the last one resent as is (a client retrying after a timeout).
    let body = |n: usize| {
        json!([
            {"id": format!("r{n}-1"), "kind": "impression", "campaign_id": "summer", "ad_id": "banner"},
            {"id": format!("r{n}-2"), "kind": "impression", "campaign_id": "winter", "ad_id": "banner"},
            {"id": format!("r{n}-3"), "kind": "click", "campaign_id": "autumn", "ad_id": "video"}
        ])
        .to_string()
    };
    for n in (0..40).chain([39]) {
        let request = url_request(
            "POST",
            "/v1/events",
            &[("content-type", "application/json")],
            Some(body(n).as_bytes()),
        );
        assert_eq!(collector.handle(request).await.status().as_u16(), 202);
    }
    let mut records_per_shard = Vec::new();
    let mut keys = std::collections::BTreeSet::new();
    for (_, records) in shard_records(&client).await {
        for (key, events) in &records {
            // One record per request, its events in body order.
            let n = events[0]
                .id
                .trim_start_matches('r')
                .split('-')
                .next()
                .expect("n");
            assert_eq!(
                ids(events),
                [format!("r{n}-1"), format!("r{n}-2"), format!("r{n}-3")]
            );
            assert_eq!(key.len(), 32);
            keys.insert(key.clone());
        }
        records_per_shard.push(records.len());
    }
    assert_eq!(records_per_shard.iter().sum::<usize>(), 41);
    assert_eq!(keys.len(), 41, "a key per request, the resend included");
    // Both shards take records (all 41 on one shard: probability 2^-40).
    assert!(
        records_per_shard.iter().all(|&n| n > 0),
        "{records_per_shard:?}"
    );
    // The resent request keeps its ids: the counter store counts them once (docs/counter-store.md).
    let events = read_back(&client).await;
    assert_eq!(events.iter().filter(|e| e.id == "r39-1").count(), 2);
}
