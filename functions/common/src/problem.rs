//! RFC 9457 problem documents, the error bodies of the HTTP functions (collect, query).

use serde_json::{json, Value};

/// `type`, `title`, `status`, `detail`, plus the members of `extra` (when it is an object).
pub fn document(status: u16, kind: &str, title: &str, detail: String, extra: Value) -> Value {
    let mut doc = json!({
        "type": format!("https://tally.invalid/problems/{kind}"),
        "title": title,
        "status": status,
        "detail": detail,
    });
    if let (Some(doc), Value::Object(extra)) = (doc.as_object_mut(), extra) {
        doc.extend(extra);
    }
    doc
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn extra_members_join_the_standard_ones() {
        let doc = document(
            400,
            "invalid-events",
            "invalid events",
            "2 of 3 events were rejected".into(),
            json!({"rejected": [{"index": 1}]}),
        );
        assert_eq!(
            doc,
            json!({"type": "https://tally.invalid/problems/invalid-events", "title": "invalid events",
                   "status": 400, "detail": "2 of 3 events were rejected", "rejected": [{"index": 1}]})
        );
        assert_eq!(
            document(404, "k", "t", "d".into(), Value::Null)["status"],
            404
        );
    }
}
