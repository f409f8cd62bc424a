//! The secrets' in-memory state: versions and their stages, lookup by name or ARN, new versions and generated values.

use std::collections::BTreeMap;
use std::io::Read;
use std::path::Path;

use serde::{Deserialize, Serialize};

use super::wire::not_found;
use crate::aws::{now_ms, AwsError};

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub(super) struct Version {
    pub(super) id: String,
    pub(super) string: String,
    pub(super) stages: Vec<String>,
    pub(super) created_ms: i64,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub(super) struct Secret {
    pub(super) arn: String,
    pub(super) versions: Vec<Version>,
}

pub(super) const CURRENT: &str = "AWSCURRENT";
pub(super) const PREVIOUS: &str = "AWSPREVIOUS";

pub(super) fn has_stage(v: &Version, stage: &str) -> bool {
    v.stages.iter().any(|s| s == stage)
}

pub(super) fn find<'a>(
    secrets: &'a BTreeMap<String, Secret>,
    secret_id: &str,
) -> Result<(&'a str, &'a Secret), AwsError> {
    secrets
        .iter()
        .find(|(name, s)| *name == secret_id || s.arn == secret_id)
        .map(|(name, s)| (name.as_str(), s))
        .ok_or_else(|| not_found(secret_id))
}

pub(super) fn new_version(string: &str, stages: Vec<String>) -> Result<Version, AwsError> {
    let id = random_bytes(16)?
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect();
    Ok(Version {
        id,
        string: string.to_owned(),
        stages,
        created_ms: now_ms(),
    })
}

pub(super) fn random_bytes(n: usize) -> Result<Vec<u8>, AwsError> {
    let mut out = vec![0u8; n];
    std::fs::File::open("/dev/urandom")
        .and_then(|mut f| f.read_exact(&mut out))
        .map_err(|e| AwsError::storage(Path::new("/dev/urandom"), e))?;
    Ok(out)
}

/// `length` letters and digits, uniformly (bytes of 248 and above are drawn again: 248 = 4 × 62).
pub(super) fn random_alphanumeric(length: usize) -> Result<String, AwsError> {
    const ALPHABET: &[u8; 62] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789";
    let mut out = String::with_capacity(length);
    while out.len() < length {
        for b in random_bytes(length)? {
            if b < 248 && out.len() < length {
                out.push(char::from(ALPHABET[usize::from(b % 62)]));
            }
        }
    }
    Ok(out)
}
