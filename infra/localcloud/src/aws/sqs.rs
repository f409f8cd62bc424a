//! SQS, awsJson1.0.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use bytes::Bytes;
use http_body_util::Full;
use hyper::Response;
use serde_json::Value;

use super::{AwsError, LocalAws};

pub(crate) async fn call(
    _aws: &Arc<LocalAws>,
    _body: &Bytes,
    operation: &str,
) -> Result<Value, AwsError> {
    Err(AwsError::unsupported("SQS", operation))
}

pub(crate) fn error_response(error: &AwsError) -> Response<Full<Bytes>> {
    super::json_error("application/x-amz-json-1.0", error)
}

/// All queues of the local endpoint.
#[derive(Debug)]
pub struct Sqs {
    _dir: Option<PathBuf>,
}

impl Sqs {
    pub(crate) fn new(_region: &str, dir: Option<PathBuf>) -> Sqs {
        Sqs { _dir: dir }
    }

    pub(crate) fn open(region: &str, dir: &Path) -> Result<Sqs, AwsError> {
        Ok(Sqs::new(region, Some(dir.to_owned())))
    }
}
