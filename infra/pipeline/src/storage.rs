//! What the stack keeps: the metrics table, the archive bucket and the secrets (query token, collect keys,
//! with the edge the collect origin secret). With `retain_data` they outlive the stack (with the stream).

use tally_constructs::dynamodb::{AttributeType, Table, TableProps};
use tally_constructs::s3::{Bucket, BucketProps, LifecycleRule, StorageClass};
use tally_constructs::secrets::{Secret, SecretProps};
use tally_contract::metrics_table;
use tally_domain::ingest::ORIGIN_HEADER;

use crate::context::Context;
use crate::{
    NameKind, TableBilling, COLLECT_DEFAULT_KEY_ID, COLLECT_KEYS_SECRET_SUFFIX,
    COLLECT_ORIGIN_SECRET_SUFFIX,
};

/// The storage's settings.
#[derive(Debug, Clone, Copy)]
pub(crate) struct StorageProps {
    /// How the metrics table pays for throughput.
    pub(crate) table_billing: TableBilling,
    /// Delete archived events after so many days (`None`: keep).
    pub(crate) archive_expiration_days: Option<u32>,
    /// Add the collect origin secret (the edge sends it, collect checks it).
    pub(crate) origin_secret: bool,
}

/// The stored resources, for the functions' grants and the outputs.
pub(crate) struct Storage {
    /// Counters per (campaign, minute), written by the compactor, read by query.
    pub(crate) metrics: Table,
    /// Every event, archived by the deferred lane under `events/`.
    pub(crate) archive: Bucket,
    /// The bearer token of the query API.
    pub(crate) token: Secret,
    /// Key id → secret for server-to-server posts and signed pixels.
    pub(crate) collect_keys: Secret,
    /// With the edge: what CloudFront adds to every request it forwards and collect checks.
    pub(crate) origin_secret: Option<Secret>,
}

impl Storage {
    /// Adds the table, the bucket and the secrets.
    pub(crate) fn new(cx: &Context<'_>, props: StorageProps) -> Storage {
        let root = &cx.root;
        let metrics = Table::new(
            root,
            "Metrics",
            TableProps {
                name: Some(cx.name(NameKind::Table, "metrics")),
                partition_key: (metrics_table::PARTITION_KEY.into(), AttributeType::String),
                sort_key: Some((metrics_table::SORT_KEY.into(), AttributeType::String)),
                ttl_attribute: Some(metrics_table::TTL_ATTRIBUTE.into()),
                point_in_time_recovery: true,
                billing: props.table_billing,
            },
        );
        metrics.node().skip_check("CKV_AWS_119", "encrypted with the AWS-managed key; a customer key adds cost and key administration for counters");
        let archive = Bucket::new(
            root,
            "Archive",
            BucketProps {
                name: Some(cx.name(NameKind::Bucket, "archive")),
                versioned: true,
                lifecycle: vec![LifecycleRule {
                    id: "archive-tiering".into(),
                    prefix: None,
                    // Straight to Glacier Instant Retrieval after 30 days, without a Standard-IA stop: per
                    // month on daily-curve (`cargo xtask plan`), IA's 60 days cost $16 of storage and $6.6 of
                    // transitions against about $5 in Glacier IR; reads after 30 days (audits, not repair,
                    // which reads recent hours) pay Glacier IR's retrieval either way (docs/plan.md, "S3").
                    transitions: vec![(30, StorageClass::GlacierInstantRetrieval)],
                    expiration_days: props.archive_expiration_days,
                    noncurrent_expiration_days: Some(7),
                    abort_incomplete_multipart_days: Some(1),
                }],
            },
        );
        archive.node().skip_check("CKV_AWS_18", "access logs would need a second bucket per stage; objects are written only by the deferred function's role");
        let token = Secret::new(
            root,
            "QueryToken",
            SecretProps {
                name: Some(cx.name(NameKind::Secret, "query-token")),
                description: "bearer token of the tally query API and dashboard".into(),
                length: 48,
            },
        );
        token.node().skip_check(
            "CKV_AWS_149",
            "encrypted with the AWS-managed key; only the query role may read it",
        );

        let collect_keys = Secret::new_json(
            root,
            "CollectKeys",
            SecretProps {
                name: Some(cx.name(NameKind::Secret, COLLECT_KEYS_SECRET_SUFFIX)),
                description: "collect keys: key id to secret, for server-to-server posts and signed pixels (docs/events.md)".into(),
                length: 40,
            },
            COLLECT_DEFAULT_KEY_ID,
        );
        collect_keys.node().skip_check(
            "CKV_AWS_149",
            "encrypted with the AWS-managed key; only the collect role may read it",
        );

        let origin_secret = props.origin_secret.then(|| {
            let secret = Secret::new(
                root,
                "CollectOrigin",
                SecretProps {
                    name: Some(cx.name(NameKind::Secret, COLLECT_ORIGIN_SECRET_SUFFIX)),
                    description: format!(
                        "collect origin secret: CloudFront sends it in {ORIGIN_HEADER}, collect refuses requests without it"
                    ),
                    length: 48,
                },
            );
            secret.node().skip_check(
                "CKV_AWS_149",
                "encrypted with the AWS-managed key; only the collect role may read it (CloudFormation reads it for the distribution)",
            );
            secret
        });
        Storage {
            metrics,
            archive,
            token,
            collect_keys,
            origin_secret,
        }
    }

    /// Keeps the table, the bucket, the token and the collect keys when the stack is deleted or they are
    /// replaced (the origin secret is regenerated with the edge).
    pub(crate) fn retain(&self) {
        for node in [
            self.metrics.node(),
            self.archive.node(),
            self.token.node(),
            self.collect_keys.node(),
        ] {
            node.retain();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::{Storage, StorageProps};
    use crate::testing::{find, template_of, types_of};
    use crate::{PipelineOptions, TableBilling};

    fn props(origin_secret: bool) -> StorageProps {
        StorageProps {
            table_billing: TableBilling::OnDemand,
            archive_expiration_days: Some(400),
            origin_secret,
        }
    }

    #[test]
    fn adds_the_table_the_bucket_and_the_secrets() {
        let t = template_of(&PipelineOptions::default(), |cx| {
            Storage::new(cx, props(false));
        });
        assert_eq!(
            types_of(
                &t,
                &[
                    "Metrics",
                    "Archive",
                    "QueryToken",
                    "CollectKeys",
                    "CollectOrigin"
                ]
            ),
            [
                "AWS::DynamoDB::Table",
                "AWS::S3::Bucket",
                "AWS::S3::BucketPolicy",
                "AWS::SecretsManager::Secret",
                "AWS::SecretsManager::Secret",
            ]
        );
        let table = find(&t, "AWS::DynamoDB::Table", "Metrics");
        assert_eq!(table["Properties"]["KeySchema"][0]["AttributeName"], "pk");
        assert_eq!(table["Properties"]["KeySchema"][1]["AttributeName"], "sk");
        assert_eq!(
            table["Properties"]["TimeToLiveSpecification"]["AttributeName"],
            "expires_at"
        );
        let bucket = find(&t, "AWS::S3::Bucket", "Archive");
        assert_eq!(
            bucket["Properties"]["LifecycleConfiguration"]["Rules"][0]["ExpirationInDays"],
            400
        );
    }

    #[test]
    fn the_origin_secret_comes_with_the_edge_only() {
        let t = template_of(&PipelineOptions::default(), |cx| {
            Storage::new(cx, props(true));
        });
        assert_eq!(
            types_of(&t, &["CollectOrigin"]),
            ["AWS::SecretsManager::Secret"]
        );
    }

    #[test]
    fn retain_keeps_the_data_but_not_the_origin_secret() {
        let t = template_of(&PipelineOptions::default(), |cx| {
            Storage::new(cx, props(true)).retain();
        });
        for id in ["Metrics", "Archive", "QueryToken", "CollectKeys"] {
            let retained = crate::testing::resources(&t)
                .iter()
                .filter(|(k, r)| k.starts_with(id) && r["Type"] != "AWS::S3::BucketPolicy")
                .all(|(_, r)| r["DeletionPolicy"] == "Retain");
            assert!(retained, "{id}");
        }
        let origin = find(&t, "AWS::SecretsManager::Secret", "CollectOrigin");
        assert!(origin["DeletionPolicy"].is_null());
    }
}
