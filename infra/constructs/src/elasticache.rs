//! ElastiCache Serverless for Valkey: a [`ServerlessCache`] with bounded usage, reached with IAM
//! authentication as a [`User`] of a [`UserGroup`].
//!
//! ElastiCache Serverless is TLS-only and cluster-mode only. With a user group attached, Valkey's
//! `default` user is disabled (Valkey user groups need no `default` user), so the only way in is an IAM
//! user: a client signs a short-lived token for the cache name and user id, and its role needs
//! `elasticache:Connect` on both ([`ServerlessCache::grant_connect`]).

use serde_json::{json, Map};

use crate::core::{Node, Scope};
use crate::ec2::{SecurityGroup, Vpc};
use crate::expr::Expr;
use crate::iam::{grant, Grantee};
use crate::naming::{Name, NameKind};

/// Largest `CacheUsageLimits.DataStorage.Maximum` ElastiCache accepts, in GB.
pub const MAX_STORAGE_GB: u32 = 5_000;
/// Smallest and largest `CacheUsageLimits.ECPUPerSecond.Maximum` ElastiCache accepts.
pub const ECPU_PER_SECOND_RANGE: (u32, u32) = (1_000, 15_000_000);
/// Days of automatic snapshots ElastiCache keeps at most.
pub const MAX_SNAPSHOT_RETENTION_DAYS: u32 = 35;

/// Properties of a [`User`].
#[derive(Debug, Clone)]
pub struct UserProps {
    /// User id, also its user name (IAM users must have both equal).
    pub user_id: Name,
    /// Valkey ACL rules: `on`, key patterns (`~…`), command categories (`+@read`, `-@dangerous`…).
    /// Keep it to the keys and commands the clients use.
    pub access_string: String,
}

/// An ElastiCache user (`AWS::ElastiCache::User`), engine `valkey`, authenticated by IAM.
#[derive(Debug, Clone)]
pub struct User {
    node: Node,
    user_id: Name,
}

impl User {
    /// Creates the user at `scope/id`.
    pub fn new(scope: &Scope, id: &str, props: UserProps) -> User {
        let scope = scope.child(id);
        props.user_id.check(&scope, NameKind::Cache);
        let access = props.access_string.trim();
        if !access.split_whitespace().any(|rule| rule == "on") {
            scope.violation("access_string does not contain `on`: the user could never log in");
        }
        if access
            .split_whitespace()
            .any(|rule| rule == "+@all" || rule == "allcommands")
        {
            scope.violation(
                "access_string allows every command (`+@all`): list the command categories the clients use",
            );
        }
        if access
            .split_whitespace()
            .any(|rule| rule == "~*" || rule == "allkeys")
        {
            scope.violation(
                "access_string allows every key (`~*`): list the key patterns the clients use",
            );
        }
        if access.split_whitespace().any(|rule| rule.starts_with('>')) {
            scope.violation(
                "access_string holds a password (`>…`): IAM users have none, and a template must not hold one",
            );
        }
        let mut properties = Map::new();
        let user_id = scope.resolve(&props.user_id.to_expr());
        properties.insert("UserId".into(), user_id.clone());
        properties.insert("UserName".into(), user_id);
        properties.insert("Engine".into(), json!("valkey"));
        properties.insert("AuthenticationMode".into(), json!({ "Type": "iam" }));
        properties.insert("AccessString".into(), json!(access));
        User {
            node: scope.add_resource("Resource", "AWS::ElastiCache::User", properties),
            user_id: props.user_id,
        }
    }

    /// The resource handle.
    pub fn node(&self) -> &Node {
        &self.node
    }

    /// The user id (also its name), as the literal the template gives it: what a client logs in as.
    pub fn user_id(&self) -> Expr {
        self.user_id.to_expr()
    }

    /// The user's ARN (`Fn::GetAtt Arn`).
    pub fn arn(&self) -> Expr {
        self.node.attribute("Arn")
    }
}

/// Properties of a [`UserGroup`].
#[derive(Debug, Clone)]
pub struct UserGroupProps {
    /// The group id.
    pub group_id: Name,
    /// Its users (at least one; Valkey groups need no `default` user).
    pub users: Vec<User>,
}

/// An ElastiCache user group (`AWS::ElastiCache::UserGroup`), engine `valkey`.
#[derive(Debug, Clone)]
pub struct UserGroup {
    node: Node,
}

impl UserGroup {
    /// Creates the group at `scope/id`.
    pub fn new(scope: &Scope, id: &str, props: UserGroupProps) -> UserGroup {
        let scope = scope.child(id);
        props.group_id.check(&scope, NameKind::Cache);
        if props.users.is_empty() {
            scope.violation("the user group has no users: nobody could connect to its cache");
        }
        let mut properties = Map::new();
        properties.insert(
            "UserGroupId".into(),
            scope.resolve(&props.group_id.to_expr()),
        );
        properties.insert("Engine".into(), json!("valkey"));
        let users: Vec<_> = props
            .users
            .iter()
            .map(|u| scope.resolve(&u.node.reference()))
            .collect();
        properties.insert("UserIds".into(), json!(users));
        UserGroup {
            node: scope.add_resource("Resource", "AWS::ElastiCache::UserGroup", properties),
        }
    }

    /// The resource handle.
    pub fn node(&self) -> &Node {
        &self.node
    }

    /// The group id (`Ref`).
    pub fn id(&self) -> Expr {
        self.node.reference()
    }
}

/// Properties of a [`ServerlessCache`]. Engine `valkey`, major version 8.
#[derive(Debug, Clone)]
pub struct ServerlessCacheProps {
    /// The cache name (IAM tokens are signed for it).
    pub name: Name,
    /// Free text.
    pub description: Option<String>,
    /// Maximum data storage, GB (1..=5000): storage above it evicts keys with a TTL, then refuses
    /// writes; the bill's storage part never exceeds it.
    pub max_storage_gb: u32,
    /// Maximum ECPU per second (1,000..=15,000,000): requests above it are throttled; the bill's
    /// request part never exceeds it per second.
    pub max_ecpu_per_second: u32,
    /// The VPC whose private subnets hold the cache's endpoints.
    pub vpc: Vpc,
    /// Who may connect (its ingress rules), 1..=5 groups.
    pub security_groups: Vec<SecurityGroup>,
    /// A customer-managed KMS key (ARN or id); `None` for the AWS-owned key.
    pub kms_key_id: Option<Expr>,
    /// Days of daily snapshots to keep (0 = none, at most 35).
    pub snapshot_retention_days: u32,
    /// The users who may connect; `None` leaves the `default` user open (refused: see [`User`]).
    pub user_group: Option<UserGroup>,
}

/// An ElastiCache Serverless cache (`AWS::ElastiCache::ServerlessCache`).
///
/// Unlike the other constructs, the resource's logical id is the construct id itself (a top-level
/// `CounterCache` stays `CounterCache`): the functions' contract and the local cloud name the cache by it.
#[derive(Debug, Clone)]
pub struct ServerlessCache {
    node: Node,
}

impl ServerlessCache {
    /// Creates the cache `id` in `scope`.
    pub fn new(scope: &Scope, id: &str, props: ServerlessCacheProps) -> ServerlessCache {
        // The resource is registered as `id` itself (no child scope), so the rules are collected and
        // reported on the resource's node once it exists.
        let mut rules: Vec<String> = Vec::new();
        let longest = props.name.render_longest();
        if !NameKind::Cache.is_valid(&longest) {
            rules.push(format!(
                "name `{longest}` is not a valid Cache name (at most {} characters of the allowed set); derive it with Stage::name",
                NameKind::Cache.max_len()
            ));
        }
        if !(1..=MAX_STORAGE_GB).contains(&props.max_storage_gb) {
            rules.push(format!(
                "max_storage_gb {} is outside 1..={MAX_STORAGE_GB} (ElastiCache Serverless DataStorage maximum)",
                props.max_storage_gb
            ));
        }
        let (low, high) = ECPU_PER_SECOND_RANGE;
        if !(low..=high).contains(&props.max_ecpu_per_second) {
            rules.push(format!(
                "max_ecpu_per_second {} is outside {low}..={high} (ElastiCache Serverless ECPUPerSecond maximum)",
                props.max_ecpu_per_second
            ));
        }
        if props.snapshot_retention_days > MAX_SNAPSHOT_RETENTION_DAYS {
            rules.push(format!(
                "snapshot_retention_days {} is above {MAX_SNAPSHOT_RETENTION_DAYS}",
                props.snapshot_retention_days
            ));
        }
        if props.security_groups.is_empty() || props.security_groups.len() > 5 {
            rules.push(format!(
                "{} security groups: give 1..=5 (their ingress rules say who may connect)",
                props.security_groups.len()
            ));
        }
        if props.vpc.subnets().len() < 2 {
            rules.push("the cache needs subnets in at least two zones".into());
        }
        if props.user_group.is_none() {
            rules.push(
                "no user_group: the cache would accept Valkey's `default` user without a password; attach a group of IAM users".into(),
            );
        }
        let mut properties = Map::new();
        properties.insert(
            "ServerlessCacheName".into(),
            scope.resolve(&props.name.to_expr()),
        );
        if let Some(description) = &props.description {
            properties.insert("Description".into(), json!(description));
        }
        properties.insert("Engine".into(), json!("valkey"));
        properties.insert("MajorEngineVersion".into(), json!("8"));
        properties.insert(
            "CacheUsageLimits".into(),
            json!({
                "DataStorage": { "Maximum": props.max_storage_gb, "Unit": "GB" },
                "ECPUPerSecond": { "Maximum": props.max_ecpu_per_second },
            }),
        );
        let groups: Vec<_> = props
            .security_groups
            .iter()
            .map(|g| scope.resolve(&g.id()))
            .collect();
        properties.insert("SecurityGroupIds".into(), json!(groups));
        let subnets: Vec<_> = props
            .vpc
            .subnet_ids()
            .iter()
            .map(|s| scope.resolve(s))
            .collect();
        properties.insert("SubnetIds".into(), json!(subnets));
        if let Some(key) = &props.kms_key_id {
            properties.insert("KmsKeyId".into(), scope.resolve(key));
        }
        properties.insert(
            "SnapshotRetentionLimit".into(),
            json!(props.snapshot_retention_days),
        );
        if let Some(group) = &props.user_group {
            properties.insert("UserGroupId".into(), scope.resolve(&group.id()));
        }
        let node = scope.add_resource(id, "AWS::ElastiCache::ServerlessCache", properties);
        for rule in rules {
            node.violation(rule);
        }
        ServerlessCache { node }
    }

    /// The resource handle.
    pub fn node(&self) -> &Node {
        &self.node
    }

    /// The cache name (`Ref`).
    pub fn name(&self) -> Expr {
        self.node.reference()
    }

    /// The cache's ARN (`Fn::GetAtt ARN`).
    pub fn arn(&self) -> Expr {
        self.node.attribute("ARN")
    }

    /// The endpoint's host name (`Fn::GetAtt Endpoint.Address`).
    pub fn endpoint_address(&self) -> Expr {
        self.node.attribute("Endpoint.Address")
    }

    /// The endpoint's port (`Fn::GetAtt Endpoint.Port`; 6379, reads from replicas on 6380).
    pub fn endpoint_port(&self) -> Expr {
        self.node.attribute("Endpoint.Port")
    }

    /// `host:port` (`Fn::Join [":", [Endpoint.Address, Endpoint.Port]]`).
    pub fn endpoint(&self) -> Expr {
        Expr::join(":", [self.endpoint_address(), self.endpoint_port()])
    }

    /// `elasticache:Connect` on this cache as `user` (IAM authentication needs both ARNs).
    pub fn grant_connect(&self, grantee: &dyn Grantee, user: &User) {
        grant(
            grantee,
            &self.node,
            &["elasticache:Connect"],
            &[self.arn(), user.arn()],
        );
    }
}
