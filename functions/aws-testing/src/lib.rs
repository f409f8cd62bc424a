//! A loopback HTTP/1.1 proxy in front of `moto_server`, for tests of the functions' AWS side.
//!
//! Two things moto cannot do on its own:
//!
//! * **Atomic requests.** moto serves requests on threads and its DynamoDB `UpdateItem` reads the item, checks
//!   the condition and writes without a lock, so two concurrent conditional writes to one item can both pass.
//!   DynamoDB makes each single-item write atomic. The proxy forwards one request at a time, which gives moto
//!   that atomicity while the callers still interleave freely between requests (a read-modify-write can still
//!   lose a race, as on DynamoDB).
//! * **Service errors on demand.** A [`Faults`] rule answers chosen requests itself — for example every
//!   `UpdateItem` after the fifth with `ProvisionedThroughputExceededException` — so a test can throttle a
//!   function half-way through a batch, then heal the proxy and let the retry finish.
//!
//! [`valkey_counters`] reads a lane's counters off a test's `valkey-server`, summed over shards, the way
//! `MemoryStore::counters` reads the model.
//!
//! It speaks only what the AWS SDK sends to the JSON protocols (DynamoDB, Kinesis): requests with a
//! `Content-Length`. Nothing here leaves 127.0.0.1.

use std::time::Duration;
use tally_contract::metrics_table::{PARTITION_KEY, SORT_KEY};

use aws_config::retry::RetryConfig;
use aws_config::{BehaviorVersion, Region, SdkConfig};
use aws_sdk_dynamodb::config::Credentials;
use aws_sdk_dynamodb::types::{
    AttributeDefinition, BillingMode, KeySchemaElement, KeyType, ScalarAttributeType,
};
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{Shutdown, SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::thread;

/// A canned answer instead of forwarding.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Answer {
    pub status: u16,
    pub body: String,
}

impl Answer {
    /// DynamoDB's throttling error (awsJson1.0 shape).
    pub fn dynamodb_throttled() -> Answer {
        Answer {
            status: 400,
            body: r#"{"__type":"com.amazonaws.dynamodb.v20120810#ProvisionedThroughputExceededException","message":"The level of configured provisioned throughput for the table was exceeded."}"#.to_owned(),
        }
    }

    /// A 500 with an internal error, as any service may answer.
    pub fn internal_error() -> Answer {
        Answer {
            status: 500,
            body: r#"{"__type":"InternalServerError","message":"injected by the test proxy"}"#
                .to_owned(),
        }
    }
}

/// Which requests get a canned [`Answer`]: those whose `X-Amz-Target` ends with `.{operation}` and whose
/// position among the requests for that operation (0-based, counted since the rule was set) is at least
/// `after`. Set with [`Proxy::fail`], removed with [`Proxy::heal`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Faults {
    pub operation: String,
    pub after: usize,
    pub answer: Answer,
}

#[derive(Debug, Default)]
struct State {
    faults: Option<Faults>,
    seen_for_rule: usize,
    /// Every request's operation, in the order served; answered ones are marked with a leading `!`.
    log: Vec<String>,
}

/// The running proxy; stops accepting when dropped.
#[derive(Debug)]
pub struct Proxy {
    addr: SocketAddr,
    state: Arc<Mutex<State>>,
    stop: Arc<AtomicBool>,
}

impl Proxy {
    /// Starts forwarding 127.0.0.1:(free port) to `upstream` (an `http://127.0.0.1:PORT` endpoint).
    pub fn start(upstream: &str) -> Proxy {
        let upstream: SocketAddr = upstream
            .trim_start_matches("http://")
            .trim_end_matches('/')
            .parse()
            .unwrap_or_else(|e| panic!("upstream {upstream:?} is not http://IP:PORT ({e})"));
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind 127.0.0.1:0");
        let addr = listener.local_addr().expect("local addr");
        let state = Arc::new(Mutex::new(State::default()));
        let stop = Arc::new(AtomicBool::new(false));
        let (st, sp) = (Arc::clone(&state), Arc::clone(&stop));
        thread::spawn(move || {
            for conn in listener.incoming() {
                if sp.load(Ordering::SeqCst) {
                    break;
                }
                let Ok(conn) = conn else { continue };
                let st = Arc::clone(&st);
                thread::spawn(move || serve(conn, upstream, &st));
            }
        });
        Proxy { addr, state, stop }
    }

    /// `http://127.0.0.1:PORT`, for `AWS_ENDPOINT_URL` / `endpoint_url`.
    pub fn endpoint(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// From now on, answer requests matching `faults` with its answer.
    pub fn fail(&self, faults: Faults) {
        let mut state = lock(&self.state);
        state.faults = Some(faults);
        state.seen_for_rule = 0;
    }

    /// Forward everything again.
    pub fn heal(&self) {
        lock(&self.state).faults = None;
    }

    /// The operations served so far (`!` in front of the ones answered by a fault rule).
    pub fn log(&self) -> Vec<String> {
        lock(&self.state).log.clone()
    }
}

impl Drop for Proxy {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        // Wake the accept loop so it sees the flag.
        let _ = TcpStream::connect(self.addr);
    }
}

fn lock(state: &Mutex<State>) -> MutexGuard<'_, State> {
    state
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

/// One client connection: requests in sequence (keep-alive), each forwarded under the global lock.
fn serve(conn: TcpStream, upstream: SocketAddr, state: &Mutex<State>) {
    let mut reader = BufReader::new(match conn.try_clone() {
        Ok(c) => c,
        Err(_) => return,
    });
    let mut writer = conn;
    while let Some((head, body)) = read_request(&mut reader) {
        let operation = header(&head, "x-amz-target")
            .and_then(|t| t.rsplit('.').next().map(str::to_owned))
            .unwrap_or_else(|| head.lines().next().unwrap_or_default().to_owned());
        // The state lock is held for the whole exchange: one request at a time reaches moto.
        let mut guard = lock(state);
        let state = &mut *guard;
        let canned = match &state.faults {
            Some(rule) if rule.operation == operation => {
                let nth = state.seen_for_rule;
                state.seen_for_rule += 1;
                (nth >= rule.after).then(|| rule.answer.clone())
            }
            _ => None,
        };
        let response = match canned {
            Some(answer) => {
                guard.log.push(format!("!{operation}"));
                format!(
                    "HTTP/1.1 {} Injected\r\nContent-Type: application/x-amz-json-1.0\r\nContent-Length: {}\r\n\r\n{}",
                    answer.status,
                    answer.body.len(),
                    answer.body
                )
                .into_bytes()
            }
            None => {
                guard.log.push(operation);
                match forward(upstream, &head, &body) {
                    Some(bytes) => bytes,
                    None => break,
                }
            }
        };
        drop(guard);
        if writer.write_all(&response).is_err() {
            break;
        }
    }
    let _ = writer.shutdown(Shutdown::Both);
}

/// Reads one request: the head (up to the blank line) and a `Content-Length` body.
fn read_request(reader: &mut BufReader<TcpStream>) -> Option<(String, Vec<u8>)> {
    let mut head = String::new();
    loop {
        let mut line = String::new();
        if reader.read_line(&mut line).ok()? == 0 {
            return None;
        }
        if line == "\r\n" || line == "\n" {
            break;
        }
        head.push_str(&line);
    }
    let length: usize = header(&head, "content-length")
        .and_then(|v| v.parse().ok())
        .unwrap_or(0);
    let mut body = vec![0; length];
    reader.read_exact(&mut body).ok()?;
    Some((head, body))
}

fn header(head: &str, name: &str) -> Option<String> {
    head.lines().skip(1).find_map(|line| {
        let (key, value) = line.split_once(':')?;
        key.trim()
            .eq_ignore_ascii_case(name)
            .then(|| value.trim().to_owned())
    })
}

/// Sends the request upstream on a fresh connection with `Connection: close` and returns the whole
/// response, rewritten to keep the client's connection open.
fn forward(upstream: SocketAddr, head: &str, body: &[u8]) -> Option<Vec<u8>> {
    let mut out = TcpStream::connect(upstream).ok()?;
    let mut request = String::new();
    for line in head.lines() {
        if !line.to_ascii_lowercase().starts_with("connection:") {
            request.push_str(line);
            request.push_str("\r\n");
        }
    }
    request.push_str("Connection: close\r\n\r\n");
    out.write_all(request.as_bytes()).ok()?;
    out.write_all(body).ok()?;
    let mut response = Vec::new();
    out.read_to_end(&mut response).ok()?;
    // Drop the upstream's `Connection: close` so the client may reuse its connection to us.
    let split = response.windows(4).position(|w| w == b"\r\n\r\n")? + 4;
    let (resp_head, resp_body) = response.split_at(split);
    let resp_head = String::from_utf8_lossy(resp_head);
    let mut rewritten = String::new();
    for line in resp_head.split("\r\n").filter(|l| !l.is_empty()) {
        if !line.to_ascii_lowercase().starts_with("connection:") {
            rewritten.push_str(line);
            rewritten.push_str("\r\n");
        }
    }
    if header(&rewritten, "content-length").is_none()
        && header(&rewritten, "transfer-encoding").is_none()
    {
        rewritten.push_str(&format!("Content-Length: {}\r\n", resp_body.len()));
    }
    rewritten.push_str("\r\n");
    let mut bytes = rewritten.into_bytes();
    bytes.extend_from_slice(resp_body);
    Some(bytes)
}

/// SDK configuration for `endpoint` (moto or a [`Proxy`]) and nothing else: test credentials, us-east-1, and
/// two quick attempts per call so that injected faults surface fast.
pub async fn sdk_config(endpoint: &str) -> SdkConfig {
    aws_config::defaults(BehaviorVersion::latest())
        .endpoint_url(endpoint)
        .region(Region::new("us-east-1"))
        .credentials_provider(Credentials::new("test", "test", None, None, "test"))
        .retry_config(
            RetryConfig::standard()
                .with_max_attempts(2)
                .with_initial_backoff(Duration::from_millis(5)),
        )
        .load()
        .await
}

/// Creates a metrics table as the template declares it: on-demand, `pk` (S) and `sk` (S).
pub async fn create_metrics_table(client: &aws_sdk_dynamodb::Client, name: &str) {
    let key = |name: &str, kind| {
        KeySchemaElement::builder()
            .attribute_name(name)
            .key_type(kind)
            .build()
            .expect("key schema")
    };
    let attr = |name: &str| {
        AttributeDefinition::builder()
            .attribute_name(name)
            .attribute_type(ScalarAttributeType::S)
            .build()
            .expect("attribute definition")
    };
    client
        .create_table()
        .table_name(name)
        .billing_mode(BillingMode::PayPerRequest)
        .key_schema(key(PARTITION_KEY, KeyType::Hash))
        .key_schema(key(SORT_KEY, KeyType::Range))
        .attribute_definitions(attr(PARTITION_KEY))
        .attribute_definitions(attr(SORT_KEY))
        .send()
        .await
        .expect("create the metrics table");
}

/// The sequence number of record `i` of a test shard (56 digits, as Kinesis writes them).
pub fn sequence_number(i: usize) -> String {
    format!(
        "4959033827149025660855969253836157109592157598913{:07}",
        1_000_000 + i * 17
    )
}

/// A Kinesis event as Lambda delivers it to `function`: one record per `(partition key, data)`, all from
/// `shard` of the stream `tally-main-events`, record `i` with [`sequence_number`]`(i)` and arriving at
/// `arrival_ms + i`.
pub fn kinesis_event(
    function: &str,
    shard: &str,
    records: Vec<(String, Vec<u8>)>,
    arrival_ms: i64,
) -> aws_lambda_events::event::kinesis::KinesisEvent {
    let mut event = aws_lambda_events::event::kinesis::KinesisEvent::default();
    for (i, (partition_key, data)) in records.into_iter().enumerate() {
        let mut r = aws_lambda_events::event::kinesis::KinesisEventRecord::default();
        let seq = sequence_number(i);
        r.event_id = Some(format!("{shard}:{seq}"));
        r.event_name = Some("aws:kinesis:record".into());
        r.event_source = Some("aws:kinesis".into());
        r.event_version = Some("1.0".into());
        r.aws_region = Some("us-east-1".into());
        r.event_source_arn =
            Some("arn:aws:kinesis:us-east-1:123456789012:stream/tally-main-events".into());
        r.invoke_identity_arn = Some(format!(
            "arn:aws:iam::123456789012:role/tally-main-{function}"
        ));
        r.kinesis.kinesis_schema_version = Some("1.0".into());
        r.kinesis.partition_key = partition_key;
        r.kinesis.sequence_number = seq;
        *r.kinesis.data = data;
        let arrival = arrival_ms + i64::try_from(i).unwrap_or(0);
        r.kinesis.approximate_arrival_timestamp.0 =
            chrono::DateTime::from_timestamp_millis(arrival).unwrap_or_default();
        event.records.push(r);
    }
    event
}

/// The JSON Lambda sends: as the event type serializes it, except that Lambda writes the arrival time as a
/// number of seconds (the type writes a string; it reads both).
pub fn lambda_json(event: &aws_lambda_events::event::kinesis::KinesisEvent) -> String {
    let mut value = serde_json::to_value(event).expect("serialize");
    for record in value["Records"].as_array_mut().into_iter().flatten() {
        let ts = &mut record["kinesis"]["approximateArrivalTimestamp"];
        let seconds: f64 = ts
            .as_str()
            .and_then(|s| s.parse().ok())
            .expect("arrival time");
        *ts = serde_json::json!(seconds);
    }
    serde_json::to_string_pretty(&value).expect("serialize") + "\n"
}

/// Checks a committed fixture against what the code generates (`UPDATE_FIXTURES=1` rewrites it), and that
/// it parses as a Kinesis event that serializes back to the same event.
pub fn check_fixture(
    path: &std::path::Path,
    generated: &aws_lambda_events::event::kinesis::KinesisEvent,
) {
    let want = lambda_json(generated);
    if std::env::var_os("UPDATE_FIXTURES").is_some() {
        std::fs::write(path, &want).expect("write the fixture");
    }
    let got = std::fs::read_to_string(path).unwrap_or_default();
    assert!(
        got == want,
        "{} is stale: rerun the test with UPDATE_FIXTURES=1",
        path.display()
    );
    let parsed: aws_lambda_events::event::kinesis::KinesisEvent =
        serde_json::from_str(&got).expect("parse");
    let again: aws_lambda_events::event::kinesis::KinesisEvent =
        serde_json::from_str(&serde_json::to_string(&parsed).expect("serialize")).expect("parse");
    assert!(
        parsed == again,
        "{}: parse, serialize, parse changes the event",
        path.display()
    );
    assert!(
        parsed.records.len() == generated.records.len(),
        "{}: record count",
        path.display()
    );
    let raw: serde_json::Value = serde_json::from_str(&got).expect("json");
    assert_eq!(raw["Records"][0]["eventSource"], "aws:kinesis");
    assert!(raw["Records"][0]["kinesis"]["approximateArrivalTimestamp"].is_number());
}

/// The strings of an array reply (panics on anything else: a test helper).
pub fn valkey_strings(reply: tally_testkit::Reply) -> Vec<String> {
    use tally_testkit::Reply;
    match reply {
        Reply::Array(items) => items
            .into_iter()
            .map(|i| match i {
                Reply::Bulk(Some(s)) => s,
                other => panic!("expected a string, got {other:?}"),
            })
            .collect(),
        other => panic!("expected an array, got {other:?}"),
    }
}

/// One command to a test's server (panics with the command on an error).
pub fn valkey(server: &tally_testkit::Valkey, args: &[&str]) -> tally_testkit::Reply {
    server
        .command(args)
        .unwrap_or_else(|e| panic!("{args:?}: {e}"))
}

/// A lane's counters on a server, summed over shards, per (campaign, ad, minute).
pub fn valkey_counters(
    server: &tally_testkit::Valkey,
    lane: tally_domain::store_keys::StoreLane,
) -> std::collections::BTreeMap<(String, String, i64), tally_domain::exactly_once::Tally> {
    use tally_domain::store_keys::{parse_counter_field, parse_counter_key};
    let mut out: std::collections::BTreeMap<
        (String, String, i64),
        tally_domain::exactly_once::Tally,
    > = std::collections::BTreeMap::new();
    for key in valkey_strings(valkey(server, &["KEYS", "*"])) {
        let Some((l, _shard, campaign, minute)) = parse_counter_key(&key) else {
            continue;
        };
        if l != lane {
            continue;
        }
        let flat = valkey_strings(valkey(server, &["HGETALL", &key]));
        for pair in flat.chunks(2) {
            if tally_domain::store_keys::parse_user_field(&pair[0]).is_some() {
                continue;
            }
            let (ad, counter) = parse_counter_field(&pair[0]).expect("a field of the layout");
            let v: u64 = pair[1].parse().expect("a counter");
            let t = out
                .entry((campaign.to_owned(), ad.to_owned(), minute))
                .or_default();
            t.set(counter, t.get(counter) + v);
        }
    }
    out
}

/// The unique-user sketches a lane's counter hashes hold in a real server, per (campaign, ad, minute), merged
/// over shards (the register fields `<ad>#u<register>`).
pub fn valkey_users(
    server: &tally_testkit::Valkey,
    lane: tally_domain::store_keys::StoreLane,
) -> std::collections::BTreeMap<(String, String, i64), tally_domain::hll::Hll> {
    use tally_domain::store_keys::{parse_counter_key, parse_user_field};
    let mut out: std::collections::BTreeMap<(String, String, i64), tally_domain::hll::Hll> =
        std::collections::BTreeMap::new();
    for key in valkey_strings(valkey(server, &["KEYS", "*"])) {
        let Some((l, _shard, campaign, minute)) = parse_counter_key(&key) else {
            continue;
        };
        if l != lane {
            continue;
        }
        let flat = valkey_strings(valkey(server, &["HGETALL", &key]));
        for pair in flat.chunks(2) {
            let Some((ad, register)) = parse_user_field(&pair[0]) else {
                continue;
            };
            let rank: u8 = pair[1].parse().expect("a rank");
            out.entry((campaign.to_owned(), ad.to_owned(), minute))
                .or_default()
                .raise(register, rank)
                .expect("a valid register");
        }
    }
    out
}

/// What `events` must add up to when each distinct id counts once (its first occurrence), per (campaign, ad,
/// minute): the truth a lane's counters are compared with.
pub fn distinct_tallies<'a>(
    events: impl IntoIterator<Item = &'a tally_domain::event::Event>,
) -> std::collections::BTreeMap<(String, String, i64), tally_domain::exactly_once::Tally> {
    let mut seen = std::collections::BTreeSet::new();
    let mut out: std::collections::BTreeMap<
        (String, String, i64),
        tally_domain::exactly_once::Tally,
    > = std::collections::BTreeMap::new();
    for e in events {
        if !seen.insert(e.id.clone()) {
            continue;
        }
        out.entry((
            e.campaign_id.clone(),
            e.ad_id.clone(),
            tally_domain::rollup::minute_of(e.received_ms),
        ))
        .or_default()
        .add(e);
    }
    out
}
