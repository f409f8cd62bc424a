//! The crate's one error type, and the SDK errors turned into it.

use aws_sdk_dynamodb::config::http::HttpResponse;
use aws_sdk_dynamodb::error::{DisplayErrorContext, ProvideErrorMetadata, SdkError};

/// Everything that can go wrong on the AWS side of a function.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A required environment variable is missing or empty.
    #[error("environment variable {name} is not set: {hint}")]
    MissingEnv {
        name: &'static str,
        hint: &'static str,
    },
    /// An environment variable holds a value the function cannot use.
    #[error("environment variable {name}={value:?} is invalid: {rule}")]
    InvalidEnv {
        name: &'static str,
        value: String,
        rule: String,
    },
    /// A Kinesis sequence number that is not a canonical decimal number.
    #[error("invalid kinesis sequence number {value:?}: {rule}")]
    InvalidSequenceNumber { value: String, rule: &'static str },
    /// A shard id that cannot name a fencing attribute.
    #[error("invalid kinesis shard id {value:?}: {rule}")]
    InvalidShardId { value: String, rule: &'static str },
    /// A record that Kinesis would reject whatever the retries; the caller built it wrong.
    #[error("record {index} cannot be written to kinesis: {rule}")]
    InvalidRecord { index: usize, rule: String },
    /// A Kinesis invocation that Lambda would never send (the whole batch is refused).
    #[error("malformed kinesis batch at record {index}: {rule}")]
    MalformedBatch { index: usize, rule: String },
    /// A reader argument out of range.
    #[error("invalid metrics query: {0}")]
    InvalidQuery(String),
    /// A DynamoDB call failed.
    #[error("dynamodb {op} on table {table} failed: {message}")]
    Dynamo {
        op: &'static str,
        table: String,
        message: String,
        retryable: bool,
    },
    /// A Kinesis call failed as a whole.
    #[error("kinesis {op} on stream {stream} failed: {message}")]
    Kinesis {
        op: &'static str,
        stream: String,
        message: String,
        retryable: bool,
    },
    /// A row of the metrics table that does not follow the layout.
    #[error("row {pk}/{sk} of table {table} is corrupt: {rule}")]
    CorruptRow {
        table: String,
        pk: String,
        sk: String,
        rule: String,
    },
    /// A counter store (Valkey) command failed.
    #[error("counter store {op} failed: {message}")]
    Store {
        op: &'static str,
        message: String,
        retryable: bool,
    },
    /// A key of the counter store holds something the layout never writes (it needs an operator).
    #[error("counter store key {key} is corrupt: {rule}")]
    CorruptStore { key: String, rule: String },
    /// Concurrent invocations kept moving a shard's mark between our plan and our atomic step.
    #[error("counter store: the mark of shard {shard} kept moving: gave up after {attempts} conflicting attempts")]
    StoreContention { shard: String, attempts: u32 },
    /// Concurrent writers kept changing a row between our read and our conditional write.
    #[error(
        "row {pk}/{sk} of table {table}: gave up after {attempts} conflicting concurrent updates"
    )]
    Contention {
        table: String,
        pk: String,
        sk: String,
        attempts: u32,
    },
}

impl Error {
    /// Whether trying the same thing again later can succeed (throttling, timeouts, contention),
    /// as opposed to bad input or configuration.
    pub fn is_retryable(&self) -> bool {
        match self {
            Error::Dynamo { retryable, .. }
            | Error::Kinesis { retryable, .. }
            | Error::Store { retryable, .. } => *retryable,
            Error::Contention { .. } | Error::StoreContention { .. } => true,
            Error::MissingEnv { .. }
            | Error::InvalidEnv { .. }
            | Error::InvalidSequenceNumber { .. }
            | Error::InvalidShardId { .. }
            | Error::InvalidRecord { .. }
            | Error::MalformedBatch { .. }
            | Error::InvalidQuery(_)
            | Error::CorruptRow { .. }
            | Error::CorruptStore { .. } => false,
        }
    }
}

/// A failed DynamoDB call on `table` as [`Error::Dynamo`] (retryable when throttled, timed out or a 5xx).
pub(crate) fn dynamo_error<E>(
    table: &str,
    op: &'static str,
    err: SdkError<E, HttpResponse>,
) -> Error
where
    E: ProvideErrorMetadata + std::error::Error + 'static,
{
    Error::Dynamo {
        op,
        table: table.to_owned(),
        retryable: is_retryable(&err),
        message: sdk_message(&err),
    }
}

/// An item of `table` that does not follow the layout.
pub(crate) fn corrupt_row(table: &str, pk: &str, sk: &str, rule: String) -> Error {
    Error::CorruptRow {
        table: table.to_owned(),
        pk: pk.to_owned(),
        sk: sk.to_owned(),
        rule,
    }
}

/// A readable one-line description of an SDK error: the service's code and message when there is one.
pub(crate) fn sdk_message<E, R>(err: &SdkError<E, R>) -> String
where
    E: ProvideErrorMetadata + std::error::Error + 'static,
    R: std::fmt::Debug,
{
    match err.as_service_error() {
        Some(service) => format!(
            "{}: {}",
            service.code().unwrap_or("unknown error"),
            service.message().unwrap_or("no message")
        ),
        None => format!("{}", DisplayErrorContext(err)),
    }
}

/// Throttling, server errors, timeouts and connection failures are worth retrying; the rest is not.
pub(crate) fn is_retryable<E>(err: &SdkError<E, HttpResponse>) -> bool
where
    E: ProvideErrorMetadata,
{
    match err {
        SdkError::TimeoutError(_) | SdkError::DispatchFailure(_) | SdkError::ResponseError(_) => {
            true
        }
        SdkError::ServiceError(service) => {
            let code = service.err().code().unwrap_or_default();
            code.contains("Throttl")
                || code.contains("ThroughputExceeded")
                || code.contains("LimitExceeded")
                || code.contains("InternalServer")
                || code.contains("InternalFailure")
                || code.contains("ServiceUnavailable")
                || service.raw().status().is_server_error()
        }
        _ => false,
    }
}
