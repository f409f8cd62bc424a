//! A running local cloud as the traffic tools see it: the endpoints file `tally-localcloud --endpoints-file FILE`
//! writes once everything is ready (JSON, `docs/local-cloud.md`), read for the URLs the tools send to and the
//! credentials a client of the stack holds (the collect key; with the edge, the collect origin secret).

use serde_json::Value;

/// What the traffic tools read from a local cloud's endpoints file.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Endpoints {
    /// The local AWS endpoint (`http://127.0.0.1:PORT`): the meter (`/_tally/meter`) and the Kinesis API.
    pub aws_endpoint: Option<String>,
    /// The template's `CollectUrl` and `QueryUrl` outputs.
    pub collect_url: Option<String>,
    pub query_url: Option<String>,
    /// A collect key `(key id, secret)` of the stack's collect keys secret (`collect_key`: `{"key_id",
    /// "secret"}`); `None` when the stack has none.
    pub collect_key: Option<(String, String)>,
    /// The collect origin secret (`collect_origin_secret`), which collect requires in every request when the
    /// stack has the edge; `None` without it.
    pub collect_origin: Option<String>,
}

impl Endpoints {
    /// The fields of an endpoints file's JSON; what is missing is `None`.
    pub fn from_json(doc: &Value) -> Endpoints {
        let text = |key: &str| doc[key].as_str().map(str::to_owned);
        let key = &doc["collect_key"];
        Endpoints {
            aws_endpoint: text("aws_endpoint"),
            collect_url: text("collect_url"),
            query_url: text("query_url"),
            collect_key: key["key_id"]
                .as_str()
                .zip(key["secret"].as_str())
                .map(|(id, secret)| (id.to_owned(), secret.to_owned())),
            collect_origin: text("collect_origin_secret"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn reads_what_the_binary_writes_and_misses_nothing_else() {
        let doc = json!({
            "aws_endpoint": "http://127.0.0.1:4566", "meter": "http://127.0.0.1:4566/_tally/meter",
            "collect_url": "http://127.0.0.1:9001", "query_url": "http://127.0.0.1:9002",
            "collect_key": {"key_id": "k1", "secret": "s3cret"}, "collect_origin_secret": null,
        });
        let e = Endpoints::from_json(&doc);
        assert_eq!(e.aws_endpoint.as_deref(), Some("http://127.0.0.1:4566"));
        assert_eq!(e.collect_url.as_deref(), Some("http://127.0.0.1:9001"));
        assert_eq!(e.query_url.as_deref(), Some("http://127.0.0.1:9002"));
        assert_eq!(e.collect_key, Some(("k1".to_owned(), "s3cret".to_owned())));
        assert_eq!(e.collect_origin, None);
        assert_eq!(Endpoints::from_json(&json!({})), Endpoints::default());
    }
}
