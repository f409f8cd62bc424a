//! DynamoDB, awsJson1.0.

use std::path::{Path, PathBuf};

use serde_json::Value;

use super::{AwsError, LocalAws};

pub(crate) fn call(_aws: &LocalAws, operation: &str, _input: Value) -> Result<Value, AwsError> {
    Err(AwsError::unsupported("DynamoDB", operation))
}

/// All tables of the local endpoint.
#[derive(Debug)]
pub struct DynamoDb {
    _dir: Option<PathBuf>,
}

impl DynamoDb {
    pub(crate) fn new(_region: &str, dir: Option<PathBuf>) -> DynamoDb {
        DynamoDb { _dir: dir }
    }

    pub(crate) fn open(region: &str, dir: &Path) -> Result<DynamoDb, AwsError> {
        Ok(DynamoDb::new(region, Some(dir.to_owned())))
    }
}
