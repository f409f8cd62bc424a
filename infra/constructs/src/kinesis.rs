//! Kinesis: the stream (`AWS::Kinesis::Stream`) and enhanced fan-out consumers
//! (`AWS::Kinesis::StreamConsumer`).

use serde_json::{json, Map};

use crate::core::{Node, Scope};
use crate::expr::Expr;
use crate::iam::{grant, Grantee};
use crate::naming::{Name, NameKind};

/// Capacity mode of a stream.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StreamMode {
    /// Pay per shard-hour; `shards` to start with (1..=500 here; scaled by a scaler afterwards).
    Provisioned {
        /// Initial shard count.
        shards: u32,
    },
    /// Pay per GB; AWS scales.
    OnDemand,
}

/// Properties of a [`Stream`].
#[derive(Debug, Clone)]
pub struct StreamProps {
    /// Physical name; `None` lets CloudFormation choose.
    pub name: Option<Name>,
    /// Capacity mode.
    pub mode: StreamMode,
    /// How long records are kept, 24..=8760 hours.
    pub retention_hours: u32,
    /// Server-side encryption with the AWS-managed key `alias/aws/kinesis`.
    pub encrypted: bool,
}

impl Default for StreamProps {
    fn default() -> StreamProps {
        StreamProps {
            name: None,
            mode: StreamMode::Provisioned { shards: 1 },
            retention_hours: 24,
            encrypted: true,
        }
    }
}

/// [`Stream::grant_peek`]'s actions.
const PEEK: [&str; 3] = [
    "kinesis:GetRecords",
    "kinesis:GetShardIterator",
    "kinesis:ListShards",
];

/// A Kinesis data stream.
#[derive(Debug, Clone)]
pub struct Stream {
    node: Node,
    mode: StreamMode,
}

impl Stream {
    /// Creates the stream at `scope/id`.
    pub fn new(scope: &Scope, id: &str, props: StreamProps) -> Stream {
        let scope = scope.child(id);
        let mut properties = Map::new();
        if let Some(name) = &props.name {
            name.check(&scope, NameKind::Stream);
            properties.insert("Name".into(), scope.resolve(&name.to_expr()));
        }
        if !(24..=8760).contains(&props.retention_hours) {
            scope.violation(format!(
                "retention_hours {} is outside 24..=8760 (Kinesis RetentionPeriodHours)",
                props.retention_hours
            ));
        }
        properties.insert("RetentionPeriodHours".into(), json!(props.retention_hours));
        match props.mode {
            StreamMode::Provisioned { shards } => {
                if !(1..=500).contains(&shards) {
                    scope.violation(format!(
                        "shards {shards} is outside 1..=500 (Kinesis ShardCount; the default account quota is 500 shards)"
                    ));
                }
                properties.insert("ShardCount".into(), json!(shards));
                properties.insert(
                    "StreamModeDetails".into(),
                    json!({ "StreamMode": "PROVISIONED" }),
                );
            }
            StreamMode::OnDemand => {
                properties.insert(
                    "StreamModeDetails".into(),
                    json!({ "StreamMode": "ON_DEMAND" }),
                );
            }
        }
        if props.encrypted {
            properties.insert(
                "StreamEncryption".into(),
                json!({ "EncryptionType": "KMS", "KeyId": "alias/aws/kinesis" }),
            );
        }
        Stream {
            node: scope.add_resource("Resource", "AWS::Kinesis::Stream", properties),
            mode: props.mode,
        }
    }

    /// The resource handle.
    pub fn node(&self) -> &Node {
        &self.node
    }

    /// The capacity mode.
    pub fn mode(&self) -> StreamMode {
        self.mode
    }

    /// The stream's name (`Ref`).
    pub fn name(&self) -> Expr {
        self.node.reference()
    }

    /// The stream's ARN (`Fn::GetAtt Arn`).
    pub fn arn(&self) -> Expr {
        self.node.attribute("Arn")
    }

    /// `PutRecords` on this stream (writers batch; `PutRecord` is not granted).
    pub fn grant_write(&self, grantee: &dyn Grantee) {
        grant(grantee, &self.node, &["kinesis:PutRecords"], &[self.arn()]);
    }

    /// What a shared-iterator reader (a Lambda event source mapping) needs.
    pub fn grant_read(&self, grantee: &dyn Grantee) {
        grant(
            grantee,
            &self.node,
            &[
                "kinesis:DescribeStream",
                "kinesis:DescribeStreamSummary",
                "kinesis:GetRecords",
                "kinesis:GetShardIterator",
                "kinesis:ListShards",
            ],
            &[self.arn()],
        );
    }

    /// What a reader of single records needs: the shards, an iterator and records, without the event source
    /// mapping's `DescribeStream*` (the compactor looks at the first record after each lane's mark, and after
    /// the archive's last record of each shard in a repair).
    pub fn grant_peek(&self, grantee: &dyn Grantee) {
        grant(grantee, &self.node, &PEEK, &[self.arn()]);
    }

    /// What an interface endpoint's policy lets through for [`Stream::grant_peek`].
    pub fn endpoint_allow_peek(&self) -> crate::ec2::EndpointAllow {
        crate::ec2::EndpointAllow {
            actions: PEEK.to_vec(),
            resources: vec![self.arn()],
        }
    }

    /// What a shard scaler needs: read the shape, change the shard count, and keep its call history in a tag of
    /// the stream (read and written: `UpdateShardCount` is limited to 10 calls a rolling 24 h, and the history
    /// must survive the scaler's own restarts).
    pub fn grant_scale(&self, grantee: &dyn Grantee) {
        grant(
            grantee,
            &self.node,
            &[
                "kinesis:AddTagsToStream",
                "kinesis:DescribeStreamSummary",
                "kinesis:ListTagsForStream",
                "kinesis:UpdateShardCount",
            ],
            &[self.arn()],
        );
    }
}

/// Properties of a [`StreamConsumer`].
#[derive(Debug, Clone)]
pub struct StreamConsumerProps {
    /// The consumer's name (unique per stream).
    pub name: Name,
}

/// An enhanced fan-out consumer: its own 2 MB/s per shard, records pushed (≈ 70 ms).
#[derive(Debug, Clone)]
pub struct StreamConsumer {
    node: Node,
    stream: Stream,
}

impl StreamConsumer {
    /// Registers a consumer of `stream` at `scope/id`.
    pub fn new(
        scope: &Scope,
        id: &str,
        stream: &Stream,
        props: StreamConsumerProps,
    ) -> StreamConsumer {
        let scope = scope.child(id);
        props.name.check(&scope, NameKind::Consumer);
        let mut properties = Map::new();
        properties.insert("ConsumerName".into(), scope.resolve(&props.name.to_expr()));
        properties.insert("StreamARN".into(), scope.resolve(&stream.arn()));
        StreamConsumer {
            node: scope.add_resource("Resource", "AWS::Kinesis::StreamConsumer", properties),
            stream: stream.clone(),
        }
    }

    /// The resource handle.
    pub fn node(&self) -> &Node {
        &self.node
    }

    /// The consumer's ARN (`Fn::GetAtt ConsumerARN`).
    pub fn arn(&self) -> Expr {
        self.node.attribute("ConsumerARN")
    }

    /// The stream it reads.
    pub fn stream(&self) -> &Stream {
        &self.stream
    }

    /// What an enhanced fan-out event source mapping needs: the stream's read actions and
    /// `SubscribeToShard` / `DescribeStreamConsumer` on this consumer.
    pub fn grant_read(&self, grantee: &dyn Grantee) {
        self.stream.grant_read(grantee);
        grant(
            grantee,
            &self.node,
            &["kinesis:DescribeStreamConsumer", "kinesis:SubscribeToShard"],
            &[self.arn()],
        );
    }
}
