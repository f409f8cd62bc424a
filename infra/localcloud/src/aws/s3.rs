//! S3, REST.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use bytes::Bytes;
use http_body_util::Full;
use hyper::{Request, Response};

use super::{AwsError, LocalAws};

pub(crate) async fn handle(_aws: &Arc<LocalAws>, request: Request<Bytes>) -> Response<Full<Bytes>> {
    let error = AwsError::unsupported("S3", request.method().as_str());
    super::json_error("application/xml", &error)
}

/// All buckets of the local endpoint.
#[derive(Debug)]
pub struct S3 {
    _dir: Option<PathBuf>,
}

impl S3 {
    pub(crate) fn new(dir: Option<PathBuf>) -> S3 {
        S3 { _dir: dir }
    }

    pub(crate) fn open(dir: &Path) -> Result<S3, AwsError> {
        Ok(S3::new(Some(dir.to_owned())))
    }
}
