//! S3 buckets (`AWS::S3::Bucket`): encrypted, public access blocked, TLS enforced, lifecycle rules.

use serde_json::{json, Map, Value};

use crate::core::{Node, Scope};
use crate::ec2::EndpointAllow;
use crate::expr::Expr;
use crate::iam::{grant, grant_with_condition, Grantee};
use crate::naming::{Name, NameKind};

/// Storage classes a lifecycle rule can move objects to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StorageClass {
    /// `STANDARD_IA` (AWS requires at least 30 days).
    InfrequentAccess,
    /// `INTELLIGENT_TIERING`.
    IntelligentTiering,
    /// `GLACIER_IR`.
    GlacierInstantRetrieval,
    /// `GLACIER`.
    Glacier,
    /// `DEEP_ARCHIVE`.
    DeepArchive,
}

impl StorageClass {
    fn code(self) -> &'static str {
        match self {
            StorageClass::InfrequentAccess => "STANDARD_IA",
            StorageClass::IntelligentTiering => "INTELLIGENT_TIERING",
            StorageClass::GlacierInstantRetrieval => "GLACIER_IR",
            StorageClass::Glacier => "GLACIER",
            StorageClass::DeepArchive => "DEEP_ARCHIVE",
        }
    }
}

/// One lifecycle rule.
#[derive(Debug, Clone)]
pub struct LifecycleRule {
    /// Rule id, 1..=255 characters.
    pub id: String,
    /// Applies to keys with this prefix (all keys when `None`).
    pub prefix: Option<String>,
    /// Move objects after so many days.
    pub transitions: Vec<(u32, StorageClass)>,
    /// Delete objects after so many days.
    pub expiration_days: Option<u32>,
    /// Delete old versions after so many days.
    pub noncurrent_expiration_days: Option<u32>,
    /// Abort unfinished multipart uploads after so many days.
    pub abort_incomplete_multipart_days: Option<u32>,
}

/// Properties of a [`Bucket`].
#[derive(Debug, Clone, Default)]
pub struct BucketProps {
    /// Physical name; `None` lets CloudFormation choose.
    pub name: Option<Name>,
    /// Keep object versions.
    pub versioned: bool,
    /// Lifecycle rules.
    pub lifecycle: Vec<LifecycleRule>,
}

/// An S3 bucket: SSE-S3 encryption, all public access blocked, bucket-owner-enforced ownership,
/// and a bucket policy that denies requests without TLS.
#[derive(Debug, Clone)]
pub struct Bucket {
    node: Node,
    policy: Node,
}

fn lifecycle_rule(scope: &Scope, rule: &LifecycleRule) -> Value {
    if rule.id.is_empty() || rule.id.len() > 255 {
        scope.violation(format!(
            "lifecycle rule id `{}` must be 1..=255 characters",
            rule.id.escape_debug()
        ));
    }
    let mut out = Map::new();
    out.insert("Id".into(), json!(rule.id));
    out.insert("Status".into(), json!("Enabled"));
    if let Some(prefix) = &rule.prefix {
        out.insert("Prefix".into(), json!(prefix));
    }
    let mut last = 0;
    let mut transitions = Vec::new();
    for (days, class) in &rule.transitions {
        if *class == StorageClass::InfrequentAccess && *days < 30 {
            scope.violation(format!(
                "lifecycle rule `{}`: a transition to STANDARD_IA needs at least 30 days, not {days}",
                rule.id
            ));
        }
        if *days <= last && last > 0 {
            scope.violation(format!(
                "lifecycle rule `{}`: transitions must be in increasing days",
                rule.id
            ));
        }
        last = *days;
        transitions.push(json!({ "TransitionInDays": days, "StorageClass": class.code() }));
    }
    if !transitions.is_empty() {
        out.insert("Transitions".into(), json!(transitions));
    }
    if let Some(days) = rule.expiration_days {
        if days == 0 || days <= last {
            scope.violation(format!(
                "lifecycle rule `{}`: expiration after {days} days must be positive and after the last transition ({last})",
                rule.id
            ));
        }
        out.insert("ExpirationInDays".into(), json!(days));
    }
    if let Some(days) = rule.noncurrent_expiration_days {
        if days == 0 {
            scope.violation(format!(
                "lifecycle rule `{}`: noncurrent expiration must be at least 1 day",
                rule.id
            ));
        }
        out.insert(
            "NoncurrentVersionExpiration".into(),
            json!({ "NoncurrentDays": days }),
        );
    }
    if let Some(days) = rule.abort_incomplete_multipart_days {
        if days == 0 {
            scope.violation(format!(
                "lifecycle rule `{}`: aborting multipart uploads needs at least 1 day",
                rule.id
            ));
        }
        out.insert(
            "AbortIncompleteMultipartUpload".into(),
            json!({ "DaysAfterInitiation": days }),
        );
    }
    if out.len() == 2 + usize::from(rule.prefix.is_some()) {
        scope.violation(format!("lifecycle rule `{}` has no action", rule.id));
    }
    Value::Object(out)
}

impl Bucket {
    /// Creates the bucket (and its TLS-only policy, `id/Policy`) at `scope/id`.
    pub fn new(scope: &Scope, id: &str, props: BucketProps) -> Bucket {
        let scope = scope.child(id);
        let mut properties = Map::new();
        if let Some(name) = &props.name {
            name.check(&scope, NameKind::Bucket);
            properties.insert("BucketName".into(), scope.resolve(&name.to_expr()));
        }
        properties.insert(
            "BucketEncryption".into(),
            json!({ "ServerSideEncryptionConfiguration": [
                { "ServerSideEncryptionByDefault": { "SSEAlgorithm": "AES256" }, "BucketKeyEnabled": true }
            ] }),
        );
        properties.insert(
            "PublicAccessBlockConfiguration".into(),
            json!({ "BlockPublicAcls": true, "BlockPublicPolicy": true, "IgnorePublicAcls": true, "RestrictPublicBuckets": true }),
        );
        properties.insert(
            "OwnershipControls".into(),
            json!({ "Rules": [{ "ObjectOwnership": "BucketOwnerEnforced" }] }),
        );
        if props.versioned {
            properties.insert(
                "VersioningConfiguration".into(),
                json!({ "Status": "Enabled" }),
            );
        }
        if !props.lifecycle.is_empty() {
            let rules: Vec<Value> = props
                .lifecycle
                .iter()
                .map(|r| lifecycle_rule(&scope, r))
                .collect();
            properties.insert("LifecycleConfiguration".into(), json!({ "Rules": rules }));
        }
        let node = scope.add_resource("Resource", "AWS::S3::Bucket", properties);
        let arn = node.attribute("Arn");
        let mut policy = Map::new();
        policy.insert("Bucket".into(), node.reference().to_json());
        policy.insert(
            "PolicyDocument".into(),
            json!({
                "Version": "2012-10-17",
                "Statement": [{
                    "Effect": "Deny",
                    "Principal": { "AWS": "*" },
                    "Action": "s3:*",
                    "Resource": [arn.to_json(), arn.with_suffix("/*").to_json()],
                    "Condition": { "Bool": { "aws:SecureTransport": "false" } },
                }],
            }),
        );
        let policy = scope.add_resource("Policy", "AWS::S3::BucketPolicy", policy);
        Bucket { node, policy }
    }

    /// The resource handle.
    pub fn node(&self) -> &Node {
        &self.node
    }

    /// The bucket policy's handle.
    pub fn policy(&self) -> &Node {
        &self.policy
    }

    /// The bucket's name (`Ref`).
    pub fn name(&self) -> Expr {
        self.node.reference()
    }

    /// The bucket's ARN (`Fn::GetAtt Arn`).
    pub fn arn(&self) -> Expr {
        self.node.attribute("Arn")
    }

    /// `GetObject` on its objects and `ListBucket` on the bucket (so a missing key is a 404).
    pub fn grant_read(&self, grantee: &dyn Grantee) {
        grant(
            grantee,
            &self.node,
            &["s3:GetObject"],
            &[self.arn().with_suffix("/*")],
        );
        grant(grantee, &self.node, &["s3:ListBucket"], &[self.arn()]);
    }

    /// `GetObject` on the objects under `prefix` (such as `events/`) and `ListBucket` on the bucket only for
    /// listings under it (`s3:prefix` condition): a reader of one part of the bucket.
    pub fn grant_read_prefix(&self, grantee: &dyn Grantee, prefix: &str) {
        grant(
            grantee,
            &self.node,
            &["s3:GetObject"],
            &[self.arn().with_suffix(&format!("/{prefix}*"))],
        );
        grant_with_condition(
            grantee,
            &self.node,
            &["s3:ListBucket"],
            &[self.arn()],
            serde_json::json!({"StringLike": {"s3:prefix": format!("{prefix}*")}}),
        );
    }

    /// `PutObject` and `AbortMultipartUpload` on its objects.
    pub fn grant_write(&self, grantee: &dyn Grantee) {
        grant(
            grantee,
            &self.node,
            &["s3:AbortMultipartUpload", "s3:PutObject"],
            &[self.arn().with_suffix("/*")],
        );
    }

    /// `PutObject` on the objects under `prefix` only (such as `events/`): a writer of one part of the bucket
    /// that writes each object whole (no multipart upload to abort).
    pub fn grant_put_prefix(&self, grantee: &dyn Grantee, prefix: &str) {
        grant(
            grantee,
            &self.node,
            &["s3:PutObject"],
            &[self.arn().with_suffix(&format!("/{prefix}*"))],
        );
    }

    /// [`Bucket::grant_read`] and [`Bucket::grant_write`].
    pub fn grant_read_write(&self, grantee: &dyn Grantee) {
        self.grant_read(grantee);
        self.grant_write(grantee);
    }

    /// What a VPC endpoint lets through for this bucket: the actions of
    /// [`Bucket::grant_read_write`] on this bucket and its objects, nothing else.
    pub fn endpoint_allow(&self) -> Vec<EndpointAllow> {
        vec![
            EndpointAllow {
                actions: vec!["s3:AbortMultipartUpload", "s3:GetObject", "s3:PutObject"],
                resources: vec![self.arn().with_suffix("/*")],
            },
            EndpointAllow {
                actions: vec!["s3:ListBucket"],
                resources: vec![self.arn()],
            },
        ]
    }
}
