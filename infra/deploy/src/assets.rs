//! The assets bucket (one per account and region, like `cdk bootstrap`) and content-hashed uploads.
//!
//! Function zips are stored under `<sha256>.zip`: the key changes exactly when the bytes do, so an unchanged
//! function keeps its key (and CloudFormation has nothing to update), and an object that already exists is
//! never uploaded again. Objects are immutable, so stages sharing the bucket cannot interfere.

use std::path::PathBuf;

use aws_sdk_s3::primitives::ByteStream;
use aws_sdk_s3::types::{ChecksumMode, ServerSideEncryption};
use sha2::{Digest, Sha256};

use crate::aws::err;
use crate::error::Tampered;
use crate::{Clients, Error};

/// One function package to upload; `parameter` is the template parameter that receives its key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Asset {
    pub name: String,
    pub path: PathBuf,
    /// The template parameter that receives the object key (`CollectCodeKey`).
    pub parameter: String,
    /// The template parameter that receives the verified object version (`CollectCodeVersion`).
    pub version_parameter: String,
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

/// The bucket a deploy writes to, and the account that must own it (`ExpectedBucketOwner` on every call:
/// a bucket of the same name in another account is refused by S3 instead of receiving the zips).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AssetsBucket {
    pub name: String,
    pub owner: String,
}

/// An asset in the bucket: its key and the object version the template pins.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Uploaded {
    pub asset: Asset,
    pub key: String,
    pub version: String,
}

/// What S3 holds under a key, as far as verifying it goes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Stored {
    /// The object's full-object SHA-256 checksum (base64), as S3 reports it.
    Checksum(String),
    /// The SHA-256 of the object's bytes, read back (objects without a stored checksum).
    Read([u8; 32]),
}

/// Whether the stored object holds the local bytes; `Err` carries the stored SHA-256 in hex.
pub fn verify(local: &[u8; 32], stored: &Stored) -> Result<(), String> {
    let found = match stored {
        Stored::Checksum(b64) => match base64_decode(b64) {
            Some(bytes) => bytes,
            None => return Err(format!("an unreadable checksum `{b64}`")),
        },
        Stored::Read(digest) => digest.to_vec(),
    };
    if found.as_slice() == local.as_slice() {
        Ok(())
    } else {
        Err(hex::encode(found))
    }
}

/// The standard base64 alphabet with padding (S3's checksum headers).
fn base64_encode(bytes: &[u8]) -> String {
    const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = String::new();
    for chunk in bytes.chunks(3) {
        let b = [
            chunk[0],
            *chunk.get(1).unwrap_or(&0),
            *chunk.get(2).unwrap_or(&0),
        ];
        let n = (u32::from(b[0]) << 16) | (u32::from(b[1]) << 8) | u32::from(b[2]);
        for i in 0..4 {
            if i <= chunk.len() {
                out.push(char::from(ALPHABET[((n >> (18 - 6 * i)) & 63) as usize]));
            } else {
                out.push('=');
            }
        }
    }
    out
}

fn base64_decode(text: &str) -> Option<Vec<u8>> {
    let value = |c: u8| -> Option<u32> {
        Some(match c {
            b'A'..=b'Z' => c - b'A',
            b'a'..=b'z' => c - b'a' + 26,
            b'0'..=b'9' => c - b'0' + 52,
            b'+' => 62,
            b'/' => 63,
            _ => return None,
        } as u32)
    };
    let trimmed = text.trim_end_matches('=');
    if !text.len().is_multiple_of(4) || text.len() - trimmed.len() > 2 {
        return None;
    }
    let mut out = Vec::new();
    for chunk in trimmed.as_bytes().chunks(4) {
        let mut n = 0u32;
        for (i, c) in chunk.iter().enumerate() {
            n |= value(*c)? << (18 - 6 * i);
        }
        let bytes = n.to_be_bytes();
        out.extend_from_slice(&bytes[1..chunk.len()]);
    }
    Some(out)
}

/// S3's `x-amz-checksum-sha256` of `bytes`: their SHA-256, base64.
pub fn checksum_sha256(bytes: &[u8]) -> String {
    base64_encode(&sha256(bytes))
}

/// The SHA-256 of `bytes`.
fn sha256(bytes: &[u8]) -> [u8; 32] {
    Sha256::digest(bytes).into()
}

fn status(error: &impl ProvideStatus) -> Option<u16> {
    error.status()
}

/// The HTTP status of an SDK error, when there was an answer.
trait ProvideStatus {
    fn status(&self) -> Option<u16>;
}

impl<E> ProvideStatus for aws_sdk_s3::error::SdkError<E, aws_sdk_s3::config::http::HttpResponse> {
    fn status(&self) -> Option<u16> {
        self.raw_response().map(|r| r.status().as_u16())
    }
}

/// What the bucket holds under `key`: `None` when nothing, else the current version and what verifies it.
async fn stored(
    clients: &Clients,
    bucket: &AssetsBucket,
    key: &str,
) -> Result<Option<(String, Stored)>, Error> {
    let head = clients
        .s3
        .head_object()
        .bucket(&bucket.name)
        .key(key)
        .expected_bucket_owner(&bucket.owner)
        .checksum_mode(ChecksumMode::Enabled)
        .send()
        .await;
    let head = match head {
        Ok(head) => head,
        Err(error) if status(&error) == Some(404) => return Ok(None),
        Err(error) => return Err(err("HeadObject")(error)),
    };
    let version = object_version(bucket, key, head.version_id())?;
    // A full-object checksum is the SHA-256 of the bytes; a multipart one (`…-N`) is not, so read those.
    if let Some(checksum) = head.checksum_sha256().filter(|c| !c.contains('-')) {
        return Ok(Some((version, Stored::Checksum(checksum.to_owned()))));
    }
    let object = clients
        .s3
        .get_object()
        .bucket(&bucket.name)
        .key(key)
        .version_id(&version)
        .expected_bucket_owner(&bucket.owner)
        .send()
        .await
        .map_err(err("GetObject"))?;
    let bytes = object.body.collect().await.map_err(|e| Error::Aws {
        operation: "GetObject",
        message: format!("reading s3://{}/{key}: {e}", bucket.name),
    })?;
    Ok(Some((version, Stored::Read(sha256(&bytes.into_bytes())))))
}

/// The object's version id; an unversioned bucket (no id, or `null`) cannot pin what the template runs.
fn object_version(
    bucket: &AssetsBucket,
    key: &str,
    version: Option<&str>,
) -> Result<String, Error> {
    match version {
        Some(v) if !v.is_empty() && v != "null" => Ok(v.to_owned()),
        _ => Err(Error::Bootstrap {
            stack: crate::bootstrap::stack::BOOTSTRAP_STACK.to_owned(),
            problem: format!(
                "has an assets bucket `{}` without versioning (s3://{}/{key} has no version id), so deploys cannot pin the zips they verified",
                bucket.name, bucket.name
            ),
        }),
    }
}

/// Writes `bytes` under `key` only if nothing is there (`If-None-Match: *`), with its SHA-256 checksum for S3
/// to check and keep. `Ok(None)`: something got there first (verify it instead).
async fn put_new(
    clients: &Clients,
    bucket: &AssetsBucket,
    key: &str,
    bytes: Vec<u8>,
) -> Result<Option<String>, Error> {
    let put = clients
        .s3
        .put_object()
        .bucket(&bucket.name)
        .key(key)
        .if_none_match("*")
        .checksum_sha256(base64_encode(&sha256(&bytes)))
        .expected_bucket_owner(&bucket.owner)
        .server_side_encryption(ServerSideEncryption::Aes256)
        .body(ByteStream::from(bytes))
        .send()
        .await;
    match put {
        Ok(out) => Ok(Some(object_version(bucket, key, out.version_id())?)),
        // 412: written meanwhile; 409: a concurrent conditional write is in progress.
        Err(error) if matches!(status(&error), Some(412 | 409)) => Ok(None),
        Err(error) => Err(err("PutObject")(error)),
    }
}

/// The version of `key` that holds exactly `bytes`: uploaded if the key is new, else the existing object after
/// checking its SHA-256 (a mismatch is [`Error::TamperedAsset`]). `Ok((version, uploaded))`.
pub(crate) async fn put_verified(
    clients: &Clients,
    bucket: &AssetsBucket,
    key: &str,
    bytes: Vec<u8>,
    describe: (&str, &str),
) -> Result<(String, bool), Error> {
    let local = sha256(&bytes);
    let existing = match stored(clients, bucket, key).await? {
        Some(found) => found,
        None => match put_new(clients, bucket, key, bytes).await? {
            Some(version) => return Ok((version, true)),
            None => stored(clients, bucket, key)
                .await?
                .ok_or_else(|| Error::Aws {
                    operation: "PutObject",
                    message: format!(
                        "s3://{}/{key} was written meanwhile but cannot be found",
                        bucket.name
                    ),
                })?,
        },
    };
    let (version, stored) = existing;
    verify(&local, &stored).map_err(|found| {
        Error::TamperedAsset(Box::new(Tampered {
            name: describe.0.to_owned(),
            path: describe.1.to_owned(),
            bucket: bucket.name.clone(),
            key: key.to_owned(),
            version: version.clone(),
            expected: hex::encode(local),
            found,
        }))
    })?;
    Ok((version, false))
}

/// The version `diff` shows for an asset that a deploy would upload first.
pub const PENDING_VERSION: &str = "pending-upload";

/// What a deploy would pass for each asset, writing nothing: the verified version of an existing object, or
/// [`PENDING_VERSION`] for one that would be uploaded.
pub(crate) async fn planned(
    clients: &Clients,
    bucket: &AssetsBucket,
    assets: &[Asset],
) -> Result<Vec<Uploaded>, Error> {
    let mut out = Vec::new();
    for asset in assets {
        let hashed = asset.read()?;
        let version = match stored(clients, bucket, &hashed.key).await? {
            None => PENDING_VERSION.to_owned(),
            Some((version, found)) => {
                let local = sha256(&hashed.bytes);
                verify(&local, &found).map_err(|found| {
                    Error::TamperedAsset(Box::new(Tampered {
                        name: asset.name.clone(),
                        path: asset.path.display().to_string(),
                        bucket: bucket.name.clone(),
                        key: hashed.key.clone(),
                        version: version.clone(),
                        expected: hex::encode(local),
                        found,
                    }))
                })?;
                version
            }
        };
        out.push(Uploaded {
            asset: hashed.asset,
            key: hashed.key,
            version,
        });
    }
    Ok(out)
}

/// Uploads each asset under its content key unless an object with that key exists, whose content is then
/// verified. Returns the keys and versions in the order given and how many were uploaded. Nothing here
/// creates a change set: a tampered asset stops the deploy before CloudFormation is asked anything.
pub async fn upload(
    clients: &Clients,
    bucket: &AssetsBucket,
    assets: &[Asset],
) -> Result<(Vec<Uploaded>, usize), Error> {
    let mut out = Vec::new();
    let mut uploaded = 0;
    for asset in assets {
        let hashed = asset.read()?;
        let path = asset.path.display().to_string();
        let (version, new) = put_verified(
            clients,
            bucket,
            &hashed.key,
            hashed.bytes,
            (&asset.name, &path),
        )
        .await?;
        uploaded += usize::from(new);
        out.push(Uploaded {
            asset: hashed.asset,
            key: hashed.key,
            version,
        });
    }
    Ok((out, uploaded))
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
    fn base64_round_trips_and_matches_known_values() {
        assert_eq!(base64_encode(b""), "");
        assert_eq!(base64_encode(b"f"), "Zg==");
        assert_eq!(base64_encode(b"fo"), "Zm8=");
        assert_eq!(base64_encode(b"foo"), "Zm9v");
        // S3's x-amz-checksum-sha256 of the empty object.
        assert_eq!(
            base64_encode(&sha256(b"")),
            "47DEQpj8HBSa+/TImW+5JCeuQeRkm5NMpJWZG3hSuFU="
        );
        for bytes in [&b"PK\x03\x04"[..], b"ab", b"abcd", &[255, 0, 128]] {
            assert_eq!(base64_decode(&base64_encode(bytes)).as_deref(), Some(bytes));
        }
        assert_eq!(base64_decode("Zg="), None);
        assert_eq!(base64_decode("Z!=="), None);
    }

    #[test]
    fn stored_objects_are_verified_by_checksum_or_bytes() {
        let local = sha256(b"PK zip");
        assert_eq!(
            verify(&local, &Stored::Checksum(base64_encode(&local))),
            Ok(())
        );
        assert_eq!(verify(&local, &Stored::Read(local)), Ok(()));
        let other = sha256(b"PK evil");
        assert_eq!(
            verify(&local, &Stored::Checksum(base64_encode(&other))),
            Err(hex::encode(other))
        );
        assert_eq!(
            verify(&local, &Stored::Read(other)),
            Err(hex::encode(other))
        );
        assert!(verify(&local, &Stored::Checksum("not base64!".into())).is_err());
    }

    #[test]
    fn unversioned_objects_cannot_be_pinned() {
        let bucket = AssetsBucket {
            name: "b".into(),
            owner: "1".into(),
        };
        assert_eq!(
            object_version(&bucket, "k", Some("v1")).expect("versioned"),
            "v1"
        );
        for none in [None, Some("null"), Some("")] {
            let e = object_version(&bucket, "k", none)
                .expect_err("unversioned")
                .to_string();
            assert!(
                e.contains("without versioning") && e.contains("cargo xtask bootstrap"),
                "{e}"
            );
        }
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
                version_parameter: "CollectCodeVersion".into(),
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
