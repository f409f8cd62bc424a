//! The assets bucket (one per account and region, like `cdk bootstrap`) and content-hashed uploads.
//!
//! Function zips are stored under `<sha256>.zip`: the key changes exactly when the bytes do, so an unchanged
//! function keeps its key (and CloudFormation has nothing to update), and an object that already exists is
//! never uploaded again. Objects are immutable, so stages sharing the bucket cannot interfere.

use std::path::PathBuf;

use aws_sdk_s3::primitives::ByteStream;
use aws_sdk_s3::types::{
    BucketLocationConstraint, CreateBucketConfiguration, PublicAccessBlockConfiguration,
    ServerSideEncryption, ServerSideEncryptionByDefault, ServerSideEncryptionConfiguration,
    ServerSideEncryptionRule, Tag, Tagging,
};
use sha2::{Digest, Sha256};

use crate::aws::{code, err};
use crate::{Clients, Error};

/// One function package to upload; `parameter` is the template parameter that receives its key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Asset {
    pub name: String,
    pub path: PathBuf,
    pub parameter: String,
}

/// An asset after reading it: its bytes and content-hash key.
#[derive(Debug, Clone)]
pub(crate) struct HashedAsset {
    pub asset: Asset,
    pub bytes: Vec<u8>,
    pub key: String,
}

impl Asset {
    pub(crate) fn read(&self) -> Result<HashedAsset, Error> {
        let problem = |p: String| Error::Asset {
            name: self.name.clone(),
            path: self.path.display().to_string(),
            problem: p,
        };
        let bytes = std::fs::read(&self.path).map_err(|e| {
            problem(format!(
                "cannot read it ({e}); run `cargo xtask build` first"
            ))
        })?;
        if bytes.is_empty() {
            return Err(problem(
                "the file is empty; rebuild it with `cargo xtask build`".to_owned(),
            ));
        }
        if !bytes.starts_with(b"PK") {
            return Err(problem(
                "not a zip file; Lambda needs the zip that `cargo xtask build` writes".to_owned(),
            ));
        }
        let key = content_key(&bytes);
        Ok(HashedAsset {
            asset: self.clone(),
            bytes,
            key,
        })
    }
}

/// `<sha256 hex>.zip`.
pub fn content_key(bytes: &[u8]) -> String {
    format!("{}.zip", hex::encode(Sha256::digest(bytes)))
}

/// The assets bucket of an account and region.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AssetsBucket {
    pub name: String,
    /// Whether this call created it.
    pub created: bool,
}

/// `tally-assets-<account>-<region>`: unique per account and region, 3–63 lowercase characters.
pub fn bucket_name(account: &str, region: &str) -> String {
    format!("tally-assets-{account}-{region}")
}

pub(crate) async fn account_id(clients: &Clients) -> Result<String, Error> {
    let out = clients
        .sts
        .get_caller_identity()
        .send()
        .await
        .map_err(err("GetCallerIdentity"))?;
    out.account().map(str::to_owned).ok_or_else(|| Error::Aws {
        operation: "GetCallerIdentity",
        message: "the answer has no account id".to_owned(),
    })
}

/// The bucket's name without creating anything (for `diff`).
pub(crate) async fn bucket_for(clients: &Clients) -> Result<String, Error> {
    Ok(bucket_name(&account_id(clients).await?, &clients.region))
}

/// Creates the assets bucket on first use: encrypted (SSE-S3), all public access blocked, tagged.
pub async fn bootstrap(clients: &Clients) -> Result<AssetsBucket, Error> {
    let name = bucket_for(clients).await?;
    match clients.s3.head_bucket().bucket(&name).send().await {
        Ok(_) => {
            return Ok(AssetsBucket {
                name,
                created: false,
            })
        }
        Err(error) => {
            let status = error.raw_response().map(|r| r.status().as_u16());
            if status == Some(403) {
                return Err(Error::Aws {
                    operation: "HeadBucket",
                    message: format!("bucket `{name}` exists but this account may not use it; check the credentials' account"),
                });
            }
            if status != Some(404) && code(&error) != Some("NotFound") {
                return Err(err("HeadBucket")(error));
            }
        }
    }
    let mut create = clients.s3.create_bucket().bucket(&name);
    if clients.region != "us-east-1" {
        create = create.create_bucket_configuration(
            CreateBucketConfiguration::builder()
                .location_constraint(BucketLocationConstraint::from(clients.region.as_str()))
                .build(),
        );
    }
    create.send().await.map_err(err("CreateBucket"))?;
    let encryption = ServerSideEncryptionConfiguration::builder()
        .rules(
            ServerSideEncryptionRule::builder()
                .apply_server_side_encryption_by_default(
                    ServerSideEncryptionByDefault::builder()
                        .sse_algorithm(ServerSideEncryption::Aes256)
                        .build()
                        .map_err(|e| Error::Aws {
                            operation: "PutBucketEncryption",
                            message: e.to_string(),
                        })?,
                )
                .build(),
        )
        .build()
        .map_err(|e| Error::Aws {
            operation: "PutBucketEncryption",
            message: e.to_string(),
        })?;
    clients
        .s3
        .put_bucket_encryption()
        .bucket(&name)
        .server_side_encryption_configuration(encryption)
        .send()
        .await
        .map_err(err("PutBucketEncryption"))?;
    clients
        .s3
        .put_public_access_block()
        .bucket(&name)
        .public_access_block_configuration(
            PublicAccessBlockConfiguration::builder()
                .block_public_acls(true)
                .ignore_public_acls(true)
                .block_public_policy(true)
                .restrict_public_buckets(true)
                .build(),
        )
        .send()
        .await
        .map_err(err("PutPublicAccessBlock"))?;
    let tag = Tag::builder()
        .key("tally:purpose")
        .value("function packages, content-addressed")
        .build()
        .map_err(|e| Error::Aws {
            operation: "PutBucketTagging",
            message: e.to_string(),
        })?;
    let tagging = Tagging::builder()
        .tag_set(tag)
        .build()
        .map_err(|e| Error::Aws {
            operation: "PutBucketTagging",
            message: e.to_string(),
        })?;
    clients
        .s3
        .put_bucket_tagging()
        .bucket(&name)
        .tagging(tagging)
        .send()
        .await
        .map_err(err("PutBucketTagging"))?;
    Ok(AssetsBucket {
        name,
        created: true,
    })
}

/// Uploads each asset under its content key unless an object with that key exists. Returns the keys in the
/// order given and how many were uploaded.
pub async fn upload(
    clients: &Clients,
    bucket: &str,
    assets: &[Asset],
) -> Result<(Vec<(Asset, String)>, usize), Error> {
    let mut keys = Vec::new();
    let mut uploaded = 0;
    for asset in assets {
        let hashed = asset.read()?;
        let exists = match clients
            .s3
            .head_object()
            .bucket(bucket)
            .key(&hashed.key)
            .send()
            .await
        {
            Ok(_) => true,
            Err(error) if error.raw_response().map(|r| r.status().as_u16()) == Some(404) => false,
            Err(error) => return Err(err("HeadObject")(error)),
        };
        if !exists {
            clients
                .s3
                .put_object()
                .bucket(bucket)
                .key(&hashed.key)
                .server_side_encryption(ServerSideEncryption::Aes256)
                .body(ByteStream::from(hashed.bytes))
                .send()
                .await
                .map_err(err("PutObject"))?;
            uploaded += 1;
        }
        keys.push((hashed.asset, hashed.key));
    }
    Ok((keys, uploaded))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn content_keys_follow_the_bytes() {
        assert_eq!(content_key(b"PK\x03\x04a"), content_key(b"PK\x03\x04a"));
        assert_ne!(content_key(b"PK\x03\x04a"), content_key(b"PK\x03\x04b"));
        assert_eq!(content_key(b"").len(), 64 + 4);
    }

    #[test]
    fn bucket_names_are_valid() {
        let name = bucket_name("123456789012", "ap-southeast-2");
        assert!(
            name.len() <= 63
                && name
                    .chars()
                    .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-')
        );
    }

    #[test]
    fn unreadable_and_non_zip_assets_are_clear_errors() {
        let dir = std::env::temp_dir().join(format!("tally-deploy-assets-{}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("temp dir");
        let check = |file: &str, content: Option<&[u8]>, expect: &str| {
            let path = dir.join(file);
            if let Some(c) = content {
                std::fs::write(&path, c).expect("write");
            }
            let asset = Asset {
                name: "collect".into(),
                path,
                parameter: "CollectCodeKey".into(),
            };
            let error = asset.read().expect_err(file).to_string();
            assert!(
                error.contains("asset `collect`") && error.contains(expect),
                "{error}"
            );
        };
        check("missing.zip", None, "run `cargo xtask build` first");
        check("empty.zip", Some(b""), "empty");
        check("text.zip", Some(b"hello"), "not a zip");
        let _ = std::fs::remove_dir_all(&dir);
    }
}
