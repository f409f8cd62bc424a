//! A loopback CloudWatch endpoint for `GetMetricStatistics`.
//!
//! The current AWS SDK speaks Smithy RPC v2 CBOR to CloudWatch, which moto 5.2 does not serve (it answers
//! 404), so the scaler's CloudWatch side is tested against this endpoint instead: it decodes the SDK's real CBOR
//! request, checks it, and answers the datapoints the test published, the way CloudWatch aggregates them
//! (one datapoint per period that has data, none for empty periods). Kinesis stays on moto.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};

use minicbor::data::{Tag, Type};
use minicbor::{Decoder, Encoder};
use serde_json::{json, Value};
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::TcpListener;

/// Published values: (metric name) → (unix seconds, value).
type Store = Arc<Mutex<BTreeMap<String, Vec<(i64, f64)>>>>;

#[derive(Clone)]
pub struct FakeCloudWatch {
    pub url: String,
    store: Store,
    /// Every decoded request, for assertions.
    pub requests: Arc<Mutex<Vec<Value>>>,
}

impl FakeCloudWatch {
    pub async fn start() -> FakeCloudWatch {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let url = format!("http://{}", listener.local_addr().expect("addr"));
        let fake = FakeCloudWatch {
            url,
            store: Store::default(),
            requests: Arc::default(),
        };
        let served = fake.clone();
        tokio::spawn(async move {
            while let Ok((socket, _)) = listener.accept().await {
                let served = served.clone();
                tokio::spawn(async move { served.connection(socket).await });
            }
        });
        fake
    }

    /// Records `value` for `metric` at `at` (unix seconds).
    pub fn publish(&self, metric: &str, at: i64, value: f64) {
        self.store
            .lock()
            .expect("lock")
            .entry(metric.to_owned())
            .or_default()
            .push((at, value));
    }

    async fn connection(&self, socket: tokio::net::TcpStream) {
        let (read, mut write) = socket.into_split();
        let mut reader = BufReader::new(read);
        loop {
            let mut line = String::new();
            if reader.read_line(&mut line).await.unwrap_or(0) == 0 {
                return;
            }
            let path = line.split_whitespace().nth(1).unwrap_or("").to_owned();
            let mut length = 0;
            let mut protocol = String::new();
            loop {
                line.clear();
                if reader.read_line(&mut line).await.unwrap_or(0) == 0 {
                    return;
                }
                if line == "\r\n" {
                    break;
                }
                if let Some((name, value)) = line.split_once(':') {
                    match name.to_ascii_lowercase().as_str() {
                        "content-length" => length = value.trim().parse().unwrap_or(0),
                        "smithy-protocol" => protocol = value.trim().to_owned(),
                        _ => {}
                    }
                }
            }
            let mut body = vec![0; length];
            if reader.read_exact(&mut body).await.is_err() {
                return;
            }
            let (status, answer) = self.answer(&path, &protocol, &body);
            let head = format!(
                "HTTP/1.1 {status}\r\ncontent-type: application/cbor\r\nsmithy-protocol: rpc-v2-cbor\r\ncontent-length: {}\r\n\r\n",
                answer.len()
            );
            if write.write_all(head.as_bytes()).await.is_err()
                || write.write_all(&answer).await.is_err()
            {
                return;
            }
        }
    }

    fn answer(&self, path: &str, protocol: &str, body: &[u8]) -> (&'static str, Vec<u8>) {
        let request = decode(&mut Decoder::new(body)).unwrap_or(Value::Null);
        self.requests
            .lock()
            .expect("lock")
            .push(json!({"path": path, "protocol": protocol, "body": request}));
        if path != "/service/GraniteServiceVersion20100801/operation/GetMetricStatistics"
            || protocol != "rpc-v2-cbor"
        {
            return ("404 Not Found", Vec::new());
        }
        let name = request["MetricName"].as_str().unwrap_or("").to_owned();
        let start = request["StartTime"]["$time"].as_f64().unwrap_or(0.0) as i64;
        let end = request["EndTime"]["$time"].as_f64().unwrap_or(0.0) as i64;
        let period = request["Period"].as_i64().unwrap_or(60).max(1);
        let statistic = request["Statistics"][0]
            .as_str()
            .unwrap_or("Sum")
            .to_owned();
        let mut buckets: BTreeMap<i64, Vec<f64>> = BTreeMap::new();
        for &(at, value) in self
            .store
            .lock()
            .expect("lock")
            .get(&name)
            .into_iter()
            .flatten()
        {
            if at >= start && at < end {
                buckets
                    .entry(start + (at - start) / period * period)
                    .or_default()
                    .push(value);
            }
        }
        let mut out = Encoder::new(Vec::new());
        let ok = (|| -> Result<(), minicbor::encode::Error<std::convert::Infallible>> {
            out.map(2)?
                .str("Label")?
                .str(&name)?
                .str("Datapoints")?
                .array(buckets.len() as u64)?;
            for (at, values) in &buckets {
                let value = if statistic == "Maximum" {
                    values.iter().copied().fold(f64::MIN, f64::max)
                } else {
                    values.iter().sum()
                };
                out.map(3)?
                    .str("Timestamp")?
                    .tag(Tag::new(1))?
                    .f64(*at as f64)?;
                out.str(&statistic)?.f64(value)?.str("Unit")?.str("Count")?;
            }
            Ok(())
        })();
        ok.expect("encode");
        ("200 OK", out.into_writer())
    }
}

/// Decodes one CBOR item into JSON; timestamps (tag 1) become `{"$time": seconds}`.
fn decode(d: &mut Decoder<'_>) -> Result<Value, minicbor::decode::Error> {
    Ok(match d.datatype()? {
        Type::Map | Type::MapIndef => {
            let len = d.map()?;
            let mut map = serde_json::Map::new();
            let mut i = 0;
            while len.is_none_or(|n| i < n) {
                if len.is_none() && d.datatype()? == Type::Break {
                    d.skip()?;
                    break;
                }
                let key = d.str()?.to_owned();
                map.insert(key, decode(d)?);
                i += 1;
            }
            Value::Object(map)
        }
        Type::Array | Type::ArrayIndef => {
            let len = d.array()?;
            let mut items = Vec::new();
            let mut i = 0;
            while len.is_none_or(|n| i < n) {
                if len.is_none() && d.datatype()? == Type::Break {
                    d.skip()?;
                    break;
                }
                items.push(decode(d)?);
                i += 1;
            }
            Value::Array(items)
        }
        Type::String => json!(d.str()?),
        Type::U8 | Type::U16 | Type::U32 | Type::U64 => json!(d.u64()?),
        Type::I8 | Type::I16 | Type::I32 | Type::I64 => json!(d.i64()?),
        Type::F16 => json!(f64::from(d.f16()?)),
        Type::F32 => json!(f64::from(d.f32()?)),
        Type::F64 => json!(d.f64()?),
        Type::Bool => json!(d.bool()?),
        Type::Tag => {
            let tag = d.tag()?;
            let inner = decode(d)?;
            if tag.as_u64() == 1 {
                json!({"$time": inner})
            } else {
                json!({"$tag": tag.as_u64(), "value": inner})
            }
        }
        _ => {
            d.skip()?;
            Value::Null
        }
    })
}
