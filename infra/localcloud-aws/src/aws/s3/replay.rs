//! The service log: its entries and their replay on open.

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::atomic::AtomicU64;

use serde::{Deserialize, Serialize};

use super::state::{Bucket, Object};
use super::S3;
use crate::aws::AwsError;
use crate::store::{lock, Durability, Log};

#[derive(Debug, Serialize, Deserialize)]
#[serde(tag = "t", rename_all = "snake_case")]
pub(super) enum Entry {
    CreateBucket {
        name: String,
        created_ms: i64,
    },
    DeleteBucket {
        name: String,
    },
    Put {
        bucket: String,
        key: String,
        object: Object,
    },
    Delete {
        bucket: String,
        keys: Vec<String>,
    },
}

impl S3 {
    /// Reloads the buckets persisted under `dir`.
    pub(crate) fn open(dir: &Path, durability: Durability) -> Result<S3, AwsError> {
        let path = dir.join("log");
        let (log, entries) =
            Log::open(&path, durability).map_err(|e| AwsError::storage(&path, e))?;
        let mut s3 = S3::new(Some(dir.to_owned()));
        let mut max_file = 0;
        {
            let mut buckets = lock(&s3.buckets);
            for bytes in entries {
                let entry: Entry = serde_json::from_slice(&bytes).map_err(|e| {
                    AwsError::internal(format!("corrupt entry in {}: {e}", path.display()))
                })?;
                match entry {
                    Entry::CreateBucket { name, created_ms } => {
                        buckets.insert(
                            name,
                            Bucket {
                                created_ms,
                                objects: BTreeMap::new(),
                            },
                        );
                    }
                    Entry::DeleteBucket { name } => {
                        buckets.remove(&name);
                    }
                    Entry::Put {
                        bucket,
                        key,
                        object,
                    } => {
                        max_file = max_file.max(object.file.unwrap_or(0) + 1);
                        if let Some(bucket) = buckets.get_mut(&bucket) {
                            bucket.objects.insert(key, object);
                        }
                    }
                    Entry::Delete { bucket, keys } => {
                        if let Some(bucket) = buckets.get_mut(&bucket) {
                            for key in keys {
                                bucket.objects.remove(&key);
                            }
                        }
                    }
                }
            }
        }
        // Body files written after the last logged entry (a crash between the two) are never referenced.
        s3.files = AtomicU64::new(max_file.max(next_free_file(&dir.join("objects"))));
        s3.log = Some(log);
        Ok(s3)
    }
}

pub(super) fn next_free_file(dir: &Path) -> u64 {
    std::fs::read_dir(dir)
        .map(|entries| {
            entries
                .filter_map(|e| e.ok()?.file_name().to_str()?.parse::<u64>().ok())
                .map(|n| n + 1)
                .max()
                .unwrap_or(0)
        })
        .unwrap_or(0)
}
