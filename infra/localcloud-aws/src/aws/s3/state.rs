//! The buckets' in-memory state and its operations: objects, bodies on disk, listings.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;

use bytes::Bytes;
use md5::{Digest, Md5};
use serde::{Deserialize, Serialize};

use super::replay::Entry;
use super::wire::{check_key, no_bucket, s3_error};
use super::S3;
use crate::aws::{now_ms, AwsError};
use crate::store::{lock, write_file_durable};

#[derive(Debug, Default)]
pub(super) struct Bucket {
    pub(super) created_ms: i64,
    pub(super) objects: BTreeMap<String, Object>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub(super) struct Object {
    pub(super) etag: String,
    pub(super) size: u64,
    pub(super) content_type: String,
    pub(super) metadata: BTreeMap<String, String>,
    pub(super) modified_ms: i64,
    /// The body file's number under `<state>/s3/objects/`, when persisted.
    pub(super) file: Option<u64>,
    #[serde(skip)]
    pub(super) body: Option<Bytes>,
}

impl S3 {
    pub(crate) fn new(dir: Option<PathBuf>) -> S3 {
        S3 {
            dir,
            log: None,
            buckets: Mutex::new(BTreeMap::new()),
            files: AtomicU64::new(0),
        }
    }

    pub(super) fn object_path(&self, file: u64) -> Option<PathBuf> {
        self.dir
            .as_ref()
            .map(|d| d.join("objects").join(file.to_string()))
    }

    pub(super) fn append(&self, entry: &Entry) -> Result<(), AwsError> {
        let ticket = crate::aws::log_write(self.log.as_ref(), entry)?;
        crate::aws::log_sync(self.log.as_ref(), ticket)
    }

    /// Creates a bucket (the template loader and tests). Re-creating an own bucket succeeds, as in us-east-1.
    pub fn create_bucket(&self, name: &str) -> Result<(), AwsError> {
        let valid = (3..=63).contains(&name.len())
            && name
                .bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-' || b == b'.')
            && name.starts_with(|c: char| c.is_ascii_alphanumeric())
            && name.ends_with(|c: char| c.is_ascii_alphanumeric());
        if !valid {
            return Err(s3_error(
                400,
                "InvalidBucketName",
                format!("The specified bucket is not valid: {name} (3-63 lowercase letters, digits, dots and hyphens)"),
            ));
        }
        let mut buckets = lock(&self.buckets);
        if buckets.contains_key(name) {
            return Ok(());
        }
        let created_ms = now_ms();
        self.append(&Entry::CreateBucket {
            name: name.to_owned(),
            created_ms,
        })?;
        buckets.insert(
            name.to_owned(),
            Bucket {
                created_ms,
                objects: BTreeMap::new(),
            },
        );
        Ok(())
    }

    pub(super) fn delete_bucket(&self, name: &str) -> Result<(), AwsError> {
        let mut buckets = lock(&self.buckets);
        let bucket = buckets.get(name).ok_or_else(|| no_bucket(name))?;
        if !bucket.objects.is_empty() {
            return Err(s3_error(
                409,
                "BucketNotEmpty",
                "The bucket you tried to delete is not empty",
            ));
        }
        self.append(&Entry::DeleteBucket {
            name: name.to_owned(),
        })?;
        buckets.remove(name);
        Ok(())
    }

    /// Stores an object durably.
    pub fn put_object(
        &self,
        bucket: &str,
        key: &str,
        body: Bytes,
        content_type: &str,
        metadata: BTreeMap<String, String>,
    ) -> Result<String, AwsError> {
        self.store(bucket, key, body, content_type, metadata)
            .map(|(etag, _)| etag)
    }

    /// Stores an object durably; answers its ETag and the size of the object it replaced, if any.
    pub(super) fn store(
        &self,
        bucket: &str,
        key: &str,
        body: Bytes,
        content_type: &str,
        metadata: BTreeMap<String, String>,
    ) -> Result<(String, Option<u64>), AwsError> {
        check_key(key)?;
        if !lock(&self.buckets).contains_key(bucket) {
            return Err(no_bucket(bucket));
        }
        let etag = format!("\"{}\"", hex::encode(Md5::digest(&body)));
        let file = match &self.dir {
            Some(_) => {
                let n = self.files.fetch_add(1, Ordering::Relaxed);
                let path = self
                    .object_path(n)
                    .ok_or_else(|| AwsError::internal("no state directory"))?;
                write_file_durable(&path, &body).map_err(|e| AwsError::storage(&path, e))?;
                Some(n)
            }
            None => None,
        };
        let object = Object {
            etag: etag.clone(),
            size: body.len() as u64,
            content_type: content_type.to_owned(),
            metadata,
            modified_ms: now_ms(),
            file,
            body: if file.is_some() { None } else { Some(body) },
        };
        let replaced = {
            let mut buckets = lock(&self.buckets);
            let b = buckets.get_mut(bucket).ok_or_else(|| no_bucket(bucket))?;
            self.append(&Entry::Put {
                bucket: bucket.to_owned(),
                key: key.to_owned(),
                object: object.clone(),
            })?;
            b.objects.insert(key.to_owned(), object)
        };
        let replaced_size = replaced.as_ref().map(|o| o.size);
        self.forget(replaced);
        Ok((etag, replaced_size))
    }

    /// What each bucket stores now: bytes and objects (the meter's levels when the state is reopened).
    pub(crate) fn stored(&self) -> Vec<(String, u64, u64)> {
        lock(&self.buckets)
            .iter()
            .map(|(name, b)| {
                let bytes = b.objects.values().map(|o| o.size).sum();
                (name.clone(), bytes, b.objects.len() as u64)
            })
            .collect()
    }

    pub(super) fn forget(&self, object: Option<Object>) {
        if let Some(path) = object
            .and_then(|o| o.file)
            .and_then(|n| self.object_path(n))
        {
            let _ = std::fs::remove_file(path);
        }
    }

    pub(super) fn head(&self, bucket: &str, key: &str) -> Result<Object, AwsError> {
        let buckets = lock(&self.buckets);
        let b = buckets.get(bucket).ok_or_else(|| no_bucket(bucket))?;
        b.objects
            .get(key)
            .cloned()
            .ok_or_else(|| s3_error(404, "NoSuchKey", "The specified key does not exist."))
    }

    /// An object's metadata and body.
    pub async fn get_object(&self, bucket: &str, key: &str) -> Result<(Bytes, String), AwsError> {
        let object = self.head(bucket, key)?;
        let body = self.body(&object).await?;
        Ok((body, object.etag))
    }

    pub(super) async fn body(&self, object: &Object) -> Result<Bytes, AwsError> {
        if let Some(body) = &object.body {
            return Ok(body.clone());
        }
        let path = object
            .file
            .and_then(|n| self.object_path(n))
            .ok_or_else(|| AwsError::internal("object has no body"))?;
        tokio::fs::read(&path)
            .await
            .map(Bytes::from)
            .map_err(|e| AwsError::storage(&path, e))
    }

    /// Deletes the keys that exist; answers the bytes and the number of objects removed.
    pub(super) fn delete_objects(
        &self,
        bucket: &str,
        keys: &[String],
    ) -> Result<(u64, u64), AwsError> {
        let removed: Vec<Object> = {
            let mut buckets = lock(&self.buckets);
            let b = buckets.get_mut(bucket).ok_or_else(|| no_bucket(bucket))?;
            let present: Vec<String> = keys
                .iter()
                .filter(|k| b.objects.contains_key(*k))
                .cloned()
                .collect();
            if !present.is_empty() {
                self.append(&Entry::Delete {
                    bucket: bucket.to_owned(),
                    keys: present.clone(),
                })?;
            }
            present.iter().filter_map(|k| b.objects.remove(k)).collect()
        };
        let freed = (removed.iter().map(|o| o.size).sum(), removed.len() as u64);
        for object in removed {
            self.forget(Some(object));
        }
        Ok(freed)
    }

    /// Keys (sorted) under a prefix: `(key, object)` after `start`, at most `max`, and whether more follow.
    pub(super) fn list(&self, bucket: &str, query: &ListQuery) -> Result<ListPage, AwsError> {
        let buckets = lock(&self.buckets);
        let b = buckets.get(bucket).ok_or_else(|| no_bucket(bucket))?;
        let mut page = ListPage::default();
        let after = query.after.clone().unwrap_or_default();
        let mut last = None;
        for (key, object) in b.objects.range::<String, _>((
            std::ops::Bound::Excluded(after.clone()),
            std::ops::Bound::Unbounded,
        )) {
            if !key.starts_with(&query.prefix) || (after.is_empty() && key.is_empty()) {
                if key.as_str() > query.prefix.as_str() && !key.starts_with(&query.prefix) {
                    break;
                }
                continue;
            }
            let rest = &key[query.prefix.len()..];
            let common = query
                .delimiter
                .as_deref()
                .filter(|d| !d.is_empty())
                .and_then(|d| {
                    rest.find(d)
                        .map(|at| format!("{}{}", query.prefix, &rest[..at + d.len()]))
                });
            if let Some(common) = &common {
                if page.prefixes.last() == Some(common) {
                    last = Some(key.clone());
                    continue;
                }
            }
            if page.objects.len() + page.prefixes.len() >= query.max {
                page.truncated = true;
                break;
            }
            match common {
                Some(common) => page.prefixes.push(common),
                None => page.objects.push((key.clone(), object.clone())),
            }
            last = Some(key.clone());
        }
        if page.truncated {
            page.next = last;
        }
        Ok(page)
    }
}
#[derive(Debug)]
pub(super) struct ListQuery {
    pub(super) prefix: String,
    pub(super) delimiter: Option<String>,
    pub(super) max: usize,
    pub(super) after: Option<String>,
}

#[derive(Debug, Default)]
pub(super) struct ListPage {
    pub(super) objects: Vec<(String, Object)>,
    pub(super) prefixes: Vec<String>,
    pub(super) truncated: bool,
    pub(super) next: Option<String>,
}
