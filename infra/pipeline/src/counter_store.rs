//! The counter store: a private-only VPC in two zones, the functions' security group, the Valkey cache
//! reachable only from it, gateway endpoints for the table and the bucket, and interface endpoints for the
//! two AWS APIs a function in the VPC calls that have no gateway endpoint: the query token's secret (query
//! reads it at cold start) and the events stream (the compactor reads the first record after each lane's
//! mark, "Lane progress" in docs/counter-store.md). The realtime and deferred lanes, query and the
//! compactor use it.

use tally_constructs::dynamodb::Table;
use tally_constructs::dynamodb_items::ItemAction;
use tally_constructs::ec2::{
    EndpointAllow, GatewayEndpoint, GatewayEndpointProps, GatewayService, Ingress,
    InterfaceEndpoint, InterfaceEndpointProps, Placement, SecurityGroup, SecurityGroupProps, Vpc,
    VpcProps,
};
use tally_constructs::elasticache::{
    ServerlessCache, ServerlessCacheProps, User, UserGroup, UserGroupProps, UserProps,
};
use tally_constructs::kinesis::Stream;
use tally_constructs::lambda::Function;
use tally_constructs::s3::Bucket;
use tally_constructs::secrets::Secret;
use tally_constructs::Expr;

use crate::compaction::COMPACTOR_TABLE_ACTIONS;
use crate::context::Context;
use crate::query::QUERY_TABLE_ACTIONS;
use crate::{
    env, NameKind, PipelineOptions, ARCHIVE_EVENTS_PREFIX, CACHE_ACCESS_STRING, COUNTER_CACHE,
};

/// What the counter store's endpoints let through: the resources the functions in the VPC use.
pub(crate) struct CounterStoreProps<'a> {
    /// The metrics table (query reads it, the compactor writes it).
    pub(crate) metrics: &'a Table,
    /// The archive bucket (the deferred lane writes `events/`, the compactor reads it).
    pub(crate) archive: &'a Bucket,
    /// The query token's secret (query reads it through the interface endpoint).
    pub(crate) token: &'a Secret,
    /// The events stream (the compactor reads single records through the interface endpoint).
    pub(crate) events: &'a Stream,
}

/// The network and the cache, as the functions that use the cache see them.
pub(crate) struct CounterStore {
    pub(crate) vpc: Vpc,
    /// The security group of the functions in the VPC (the cache and the endpoints admit it only).
    pub(crate) functions: SecurityGroup,
    pub(crate) cache: ServerlessCache,
    /// The cache user the functions log in as.
    pub(crate) user: User,
}

impl CounterStore {
    /// Adds the network and the cache (`dedup_window_secs` is checked here: the functions refuse a window
    /// the counter store does not accept, so does synth).
    pub(crate) fn new(cx: &Context<'_>, props: &CounterStoreProps<'_>) -> CounterStore {
        let o = cx.options;
        let root = &cx.root;
        let scope = root.child("CounterStore");
        if let Err(e) =
            tally_domain::exactly_once::DedupWindow::from_secs(u64::from(o.dedup_window_secs))
        {
            scope.violation(format!("dedup_window_secs: {e}"));
        }
        let vpc = Vpc::new(
            root,
            "Network",
            VpcProps {
                cidr_block: "10.40.0.0/16".into(),
                zones: 2,
            },
        );
        let functions = SecurityGroup::new(
            root,
            "FunctionsSecurityGroup",
            &vpc,
            SecurityGroupProps {
                description: "tally functions that use the counter cache".into(),
                ingress: vec![],
            },
        );
        let cache_group = SecurityGroup::new(
            root,
            "CacheSecurityGroup",
            &vpc,
            SecurityGroupProps {
                description: "tally counter cache: Valkey from the functions only".into(),
                ingress: vec![Ingress {
                    from: functions.clone(),
                    ports: (6379, 6380),
                    description: "Valkey (6379) and replica reads (6380) from the tally functions"
                        .into(),
                }],
            },
        );
        GatewayEndpoint::new(
            root,
            "DynamoDbEndpoint",
            &vpc,
            GatewayEndpointProps {
                service: GatewayService::DynamoDb,
                // What the roles of the functions in the VPC hold on the table, nothing more.
                allow: vec![EndpointAllow {
                    actions: table_actions(&[&QUERY_TABLE_ACTIONS, &COMPACTOR_TABLE_ACTIONS]),
                    resources: vec![props.metrics.arn()],
                }],
            },
        );
        GatewayEndpoint::new(
            root,
            "S3Endpoint",
            &vpc,
            GatewayEndpointProps {
                service: GatewayService::S3,
                // The deferred lane's puts and the compactor's reads, under `events/` only.
                allow: vec![
                    EndpointAllow {
                        actions: vec!["s3:GetObject", "s3:PutObject"],
                        resources: vec![props
                            .archive
                            .arn()
                            .with_suffix(&format!("/{ARCHIVE_EVENTS_PREFIX}*"))],
                    },
                    EndpointAllow {
                        actions: vec!["s3:ListBucket"],
                        resources: vec![props.archive.arn()],
                    },
                ],
            },
        );
        // Interface endpoints are billed per zone-hour (about $0.01 in us-east-1, so ~$14.60 a month
        // for two zones) plus per GB: one only for a service a function in the VPC calls.
        let endpoint_group = SecurityGroup::new(
            root,
            "EndpointSecurityGroup",
            &vpc,
            SecurityGroupProps {
                description: "tally interface endpoints: HTTPS from the functions only".into(),
                ingress: vec![Ingress {
                    from: functions.clone(),
                    ports: (443, 443),
                    description: "AWS API calls (HTTPS) from the tally functions".into(),
                }],
            },
        );
        InterfaceEndpoint::new(
            root,
            "SecretsManagerEndpoint",
            &vpc,
            InterfaceEndpointProps {
                service: "secretsmanager",
                security_group: endpoint_group.clone(),
                allow: vec![props.token.endpoint_allow()],
            },
        );
        InterfaceEndpoint::new(
            root,
            "KinesisEndpoint",
            &vpc,
            InterfaceEndpointProps {
                service: "kinesis-streams",
                security_group: endpoint_group,
                allow: vec![props.events.endpoint_allow_peek()],
            },
        );
        let user = User::new(
            root,
            "CacheUser",
            UserProps {
                user_id: cx.name(NameKind::Cache, "functions"),
                access_string: CACHE_ACCESS_STRING.into(),
            },
        );
        let users = UserGroup::new(
            root,
            "CacheUsers",
            UserGroupProps {
                group_id: cx.name(NameKind::Cache, "functions"),
                users: vec![user.clone()],
            },
        );
        let cache = ServerlessCache::new(
            root,
            COUNTER_CACHE,
            ServerlessCacheProps {
                name: cx.name(NameKind::Cache, "counters"),
                description: Some(format!(
                    "tally counter store ({}): open minutes, fence marks, event-id claims",
                    cx.stage.label()
                )),
                max_storage_gb: o.cache_max_storage_gb,
                max_ecpu_per_second: o.cache_max_ecpu_per_second,
                vpc: vpc.clone(),
                security_groups: vec![cache_group],
                kms_key_id: None,
                snapshot_retention_days: 0,
                user_group: Some(users),
            },
        );
        CounterStore {
            vpc,
            functions,
            cache,
            user,
        }
    }

    /// Where a function that uses the cache runs: the VPC's subnets, in the functions' security group.
    pub(crate) fn placement(&self) -> Placement {
        self.vpc.placement(&[&self.functions])
    }

    /// Lets `function` log in to the cache as the functions' user.
    pub(crate) fn grant_connect(&self, function: &Function) {
        self.cache.grant_connect(function, &self.user);
    }

    /// The cache's part of the environment (the contract of `env::CACHE_*`).
    pub(crate) fn environment(&self, options: &PipelineOptions) -> Vec<(String, Expr)> {
        [
            (env::CACHE_ENDPOINT, self.cache.endpoint()),
            (env::CACHE_TLS, Expr::text("true")),
            (env::CACHE_AUTH, Expr::text("iam")),
            (env::CACHE_USER, self.user.user_id()),
            (env::CACHE_NAME, self.cache.name()),
            (
                env::DEDUP_WINDOW_SECS,
                Expr::text(options.dedup_window_secs.to_string()),
            ),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_owned(), v))
        .collect()
    }
}

/// The IAM actions of `sets` together, each once, sorted.
fn table_actions(sets: &[&[ItemAction]]) -> Vec<&'static str> {
    let mut actions: Vec<&'static str> = sets
        .iter()
        .flat_map(|set| set.iter().map(|a| a.iam()))
        .collect();
    actions.sort_unstable();
    actions.dedup();
    actions
}

#[cfg(test)]
mod tests {
    use crate::testing::{
        events_of, find, storage_and_store, template_of, types_of, violations_of,
    };
    use crate::PipelineOptions;

    #[test]
    fn the_cache_is_private_with_iam_users() {
        let t = template_of(&PipelineOptions::default(), |cx| {
            storage_and_store(cx, &events_of(cx));
        });
        let cache = find(&t, "AWS::ElastiCache::ServerlessCache", "CounterCache");
        assert_eq!(cache["Properties"]["Engine"], "valkey");
        assert_eq!(
            types_of(
                &t,
                &[
                    "DynamoDbEndpoint",
                    "S3Endpoint",
                    "SecretsManagerEndpoint",
                    "KinesisEndpoint"
                ]
            ),
            ["AWS::EC2::VPCEndpoint"; 4]
        );
        // Interface endpoints are billed by the zone-hour: the secret's and the stream's, no other.
        let interface: Vec<String> = crate::testing::resources(&t)
            .values()
            .filter(|r| {
                r["Type"] == "AWS::EC2::VPCEndpoint"
                    && r["Properties"]["VpcEndpointType"] == "Interface"
            })
            .map(|r| r["Properties"]["ServiceName"].to_string())
            .collect();
        assert_eq!(interface.len(), 2, "{interface:?}");
        let user = find(&t, "AWS::ElastiCache::User", "CacheUser");
        assert_eq!(
            user["Properties"]["AccessString"],
            crate::CACHE_ACCESS_STRING
        );
    }

    #[test]
    fn the_table_endpoint_allows_what_query_and_the_compactor_hold() {
        let t = template_of(&PipelineOptions::default(), |cx| {
            storage_and_store(cx, &events_of(cx));
        });
        let endpoint = find(&t, "AWS::EC2::VPCEndpoint", "DynamoDbEndpoint");
        let text = endpoint["Properties"]["PolicyDocument"].to_string();
        for action in [
            "dynamodb:BatchGetItem",
            "dynamodb:GetItem",
            "dynamodb:PutItem",
            "dynamodb:Query",
            "dynamodb:UpdateItem",
        ] {
            assert!(text.contains(action), "{action} in {text}");
        }
        assert!(!text.contains("dynamodb:DeleteItem"), "{text}");
    }

    #[test]
    fn the_stream_endpoint_lets_single_record_reads_of_the_events_stream_through() {
        let t = template_of(&PipelineOptions::default(), |cx| {
            storage_and_store(cx, &events_of(cx));
        });
        let endpoint = find(&t, "AWS::EC2::VPCEndpoint", "KinesisEndpoint");
        assert_eq!(endpoint["Properties"]["VpcEndpointType"], "Interface");
        assert!(
            endpoint["Properties"]["ServiceName"]
                .to_string()
                .contains("kinesis-streams"),
            "{endpoint}"
        );
        let policy = &endpoint["Properties"]["PolicyDocument"]["Statement"];
        assert_eq!(
            policy[0]["Action"],
            serde_json::json!([
                "kinesis:GetRecords",
                "kinesis:GetShardIterator",
                "kinesis:ListShards"
            ])
        );
        assert_eq!(
            policy[0]["Resource"],
            serde_json::json!([{"Fn::GetAtt": ["Events664F68C3", "Arn"]}]),
            "{policy}"
        );
        assert_eq!(policy.as_array().map(Vec::len), Some(1), "{policy}");
    }

    #[test]
    fn the_dedup_window_is_checked() {
        let o = PipelineOptions {
            dedup_window_secs: 1,
            ..PipelineOptions::default()
        };
        let e = violations_of(&o, |cx| {
            storage_and_store(cx, &events_of(cx));
        });
        assert!(
            e.contains("CounterStore") && e.contains("dedup_window_secs"),
            "{e}"
        );
    }
}
