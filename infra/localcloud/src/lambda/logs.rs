//! What Lambda sends to CloudWatch Logs under a function's `LoggingConfig`, as the meter counts it.
//!
//! * **Application lines** (the function's stdout and stderr, one log event per line). With `LogFormat: JSON`
//!   a line's level is its JSON `level` key (any case); a line without one, or that is not a JSON object, is
//!   `INFO` (an embedded-metric line is `INFO`). Lines more detailed than `ApplicationLogLevel` are dropped.
//!   With `Text` nothing is filtered.
//! * **System lines** Lambda writes per invocation: `START`, `END` and `REPORT` in text; `platform.start` and
//!   `platform.report` records in JSON. They are `INFO`, so `SystemLogLevel: WARN` drops them.
//!
//! The meter counts each sent line's UTF-8 bytes (the event's message; CloudWatch Logs' ingestion is priced
//! per GB of it) and the number of log events.

use serde_json::Value;
use tally_billing::lambda::LogFormat;

/// A log level, most detailed first.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Level {
    Trace,
    Debug,
    Info,
    Warn,
    Error,
    Fatal,
}

impl Level {
    /// `TRACE` … `FATAL`, any case (`WARNING` too); `None` otherwise.
    pub fn parse(text: &str) -> Option<Level> {
        match text.to_ascii_uppercase().as_str() {
            "TRACE" => Some(Level::Trace),
            "DEBUG" => Some(Level::Debug),
            "INFO" => Some(Level::Info),
            "WARN" | "WARNING" => Some(Level::Warn),
            "ERROR" => Some(Level::Error),
            "FATAL" | "CRITICAL" => Some(Level::Fatal),
            _ => None,
        }
    }
}

/// A function's `LoggingConfig` as the local cloud applies it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LogConfig {
    /// `LogFormat: JSON`.
    pub json: bool,
    /// `ApplicationLogLevel` (JSON only; Lambda's default `INFO`).
    pub application: Level,
    /// `SystemLogLevel` (JSON only; Lambda's default `INFO`).
    pub system: Level,
}

impl Default for LogConfig {
    /// Lambda's default: plain text, nothing filtered.
    fn default() -> LogConfig {
        LogConfig {
            json: false,
            application: Level::Info,
            system: Level::Info,
        }
    }
}

impl LogConfig {
    /// From the function's `LoggingConfig` properties (absent = the default); errors name the key.
    pub fn from_properties(config: Option<&Value>) -> Result<LogConfig, String> {
        let mut out = LogConfig::default();
        let Some(config) = config else {
            return Ok(out);
        };
        let text = |key: &str| config.get(key).and_then(Value::as_str);
        out.json = match text("LogFormat") {
            None | Some("Text") => false,
            Some("JSON") => true,
            Some(other) => return Err(format!("LogFormat `{other}` is not JSON or Text")),
        };
        for (key, slot, allowed) in [
            (
                "ApplicationLogLevel",
                &mut out.application,
                Level::Trace..=Level::Fatal,
            ),
            (
                "SystemLogLevel",
                &mut out.system,
                Level::Debug..=Level::Warn,
            ),
        ] {
            if let Some(value) = config.get(key) {
                let level = value
                    .as_str()
                    .and_then(Level::parse)
                    .filter(|l| allowed.contains(l))
                    .ok_or_else(|| format!("{key} {value} is not a level Lambda accepts"))?;
                if !out.json {
                    return Err(format!(
                        "{key} needs LogFormat JSON (Lambda filters JSON logs only)"
                    ));
                }
                *slot = level;
            }
        }
        Ok(out)
    }

    /// Whether Lambda sends this application line.
    pub fn sends_application_line(&self, line: &str) -> bool {
        !self.json || line_level(line) >= self.application
    }

    /// Whether Lambda writes its per-invocation system lines.
    pub fn sends_platform_lines(&self) -> bool {
        !self.json || self.system <= Level::Info
    }

    /// The values Lambda gives the runtime (`AWS_LAMBDA_LOG_FORMAT`, `AWS_LAMBDA_LOG_LEVEL`) with JSON.
    pub fn runtime_env(&self) -> Vec<(&'static str, String)> {
        if !self.json {
            return Vec::new();
        }
        let level = format!("{:?}", self.application).to_ascii_uppercase();
        vec![
            ("AWS_LAMBDA_LOG_FORMAT", "JSON".to_owned()),
            ("AWS_LAMBDA_LOG_LEVEL", level),
        ]
    }

    fn format(&self) -> LogFormat {
        if self.json {
            LogFormat::Json
        } else {
            LogFormat::Text
        }
    }

    /// The system line at an invocation's start (`tally_billing::lambda::start_line`).
    pub fn start_line(&self, request_id: &str, time: &str) -> String {
        tally_billing::lambda::start_line(self.format(), request_id, time)
    }

    /// The system lines at an invocation's end (`tally_billing::lambda::end_lines`).
    pub fn end_lines(
        &self,
        request_id: &str,
        time: &str,
        micros: u64,
        memory_mb: u32,
    ) -> Vec<String> {
        tally_billing::lambda::end_lines(self.format(), request_id, time, micros, memory_mb)
    }
}

/// A JSON line's `level` (any case), else `INFO`.
fn line_level(line: &str) -> Level {
    let trimmed = line.trim_start();
    if !trimmed.starts_with('{') {
        return Level::Info;
    }
    serde_json::from_str::<Value>(trimmed)
        .ok()
        .and_then(|v| {
            v.get("level")
                .and_then(Value::as_str)
                .and_then(Level::parse)
        })
        .unwrap_or(Level::Info)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn quiet() -> LogConfig {
        LogConfig::from_properties(Some(&json!({
            "LogFormat": "JSON", "ApplicationLogLevel": "INFO", "SystemLogLevel": "WARN", "LogGroup": "g"
        })))
        .expect("valid")
    }

    #[test]
    fn reads_the_template_values() {
        assert_eq!(LogConfig::from_properties(None), Ok(LogConfig::default()));
        let text = LogConfig::from_properties(Some(&json!({ "LogFormat": "Text" }))).expect("text");
        assert!(!text.json && text.sends_platform_lines());
        let q = quiet();
        assert_eq!(
            (q.json, q.application, q.system),
            (true, Level::Info, Level::Warn)
        );
        for (config, expect) in [
            (
                json!({ "LogFormat": "XML" }),
                "LogFormat `XML` is not JSON or Text",
            ),
            (
                json!({ "LogFormat": "Text", "SystemLogLevel": "WARN" }),
                "SystemLogLevel needs LogFormat JSON",
            ),
            (
                json!({ "LogFormat": "JSON", "SystemLogLevel": "ERROR" }),
                "SystemLogLevel \"ERROR\" is not a level",
            ),
            (
                json!({ "LogFormat": "JSON", "ApplicationLogLevel": "LOUD" }),
                "ApplicationLogLevel \"LOUD\" is not a level",
            ),
        ] {
            let error = LogConfig::from_properties(Some(&config)).expect_err("invalid");
            assert!(error.contains(expect), "{error}");
        }
    }

    #[test]
    fn filters_like_lambda() {
        let q = quiet();
        assert!(!q.sends_platform_lines());
        assert!(q.sends_application_line(r#"{"_aws":{"Timestamp":1},"BatchEvents":[3]}"#));
        assert!(q.sends_application_line("plain text is INFO"));
        assert!(q.sends_application_line(r#"{"level":"WARN","fields":{}}"#));
        assert!(!q.sends_application_line(r#"{"level":"DEBUG","fields":{}}"#));
        assert!(!q.sends_application_line(r#"{"level":"trace"}"#));
        let text = LogConfig::default();
        assert!(text.sends_application_line(r#"{"level":"DEBUG"}"#));
        assert_eq!(
            q.runtime_env(),
            vec![
                ("AWS_LAMBDA_LOG_FORMAT", "JSON".to_owned()),
                ("AWS_LAMBDA_LOG_LEVEL", "INFO".to_owned())
            ]
        );
        assert!(text.runtime_env().is_empty());
    }

    #[test]
    fn platform_lines() {
        let text = LogConfig::default();
        let id = "8fc6f963-411b-58b5-8483-a32130c0f45d";
        assert_eq!(
            text.start_line(id, "t"),
            format!("START RequestId: {id} Version: $LATEST")
        );
        let end = text.end_lines(id, "t", 12_345, 256);
        assert_eq!(end[0], format!("END RequestId: {id}"));
        assert!(end[1].starts_with(&format!("REPORT RequestId: {id}\tDuration: 12.35 ms\tBilled Duration: 13 ms\tMemory Size: 256 MB")), "{}", end[1]);
        let json_info = LogConfig {
            json: true,
            ..LogConfig::default()
        };
        assert!(json_info.sends_platform_lines());
        let report: Value =
            serde_json::from_str(&json_info.end_lines(id, "t", 12_345, 256)[0]).expect("json");
        assert_eq!(report["type"], "platform.report");
        assert_eq!(report["record"]["metrics"]["billedDurationMs"], 13);
    }
}
