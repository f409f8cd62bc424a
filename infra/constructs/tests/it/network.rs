//! The VPC, security groups, endpoints and the serverless cache: what they synthesize, and every rule
//! as a synth error naming the construct path.

use serde_json::{json, Value};
use tally_constructs::ec2::{
    EndpointAllow, GatewayEndpoint, GatewayEndpointProps, GatewayService, Ingress,
    InterfaceEndpoint, InterfaceEndpointProps, SecurityGroup, SecurityGroupProps, Vpc, VpcProps,
};
use tally_constructs::elasticache::{
    ServerlessCache, ServerlessCacheProps, User, UserGroup, UserGroupProps, UserProps,
};
use tally_constructs::lambda::{
    Code, Function, FunctionProps, VPC_ACCESS_READS, VPC_ACCESS_WRITES,
};
use tally_constructs::secrets::{Secret, SecretProps};
use tally_constructs::{Name, Scope, Stack};

use super::{check, synth, synth_error, table};

const ACCESS: &str = "on ~app:* -@all +@read +@write";

struct Net {
    vpc: Vpc,
    functions: SecurityGroup,
    cache: SecurityGroup,
}

fn net(root: &Scope) -> Net {
    let vpc = Vpc::new(root, "Vpc", VpcProps::default());
    let functions = SecurityGroup::new(
        root,
        "Functions",
        &vpc,
        SecurityGroupProps {
            description: "functions".into(),
            ingress: vec![],
        },
    );
    let cache = SecurityGroup::new(
        root,
        "CacheGroup",
        &vpc,
        SecurityGroupProps {
            description: "cache".into(),
            ingress: vec![Ingress {
                from: functions.clone(),
                ports: (6379, 6380),
                description: "functions".into(),
            }],
        },
    );
    Net {
        vpc,
        functions,
        cache,
    }
}

fn user(root: &Scope, access: &str) -> User {
    User::new(
        root,
        "User",
        UserProps {
            user_id: Name::literal("app-user"),
            access_string: access.into(),
        },
    )
}

fn cache_props(n: &Net, group: Option<UserGroup>) -> ServerlessCacheProps {
    ServerlessCacheProps {
        name: Name::literal("app-cache"),
        description: None,
        max_storage_gb: 1,
        max_ecpu_per_second: 100_000,
        vpc: n.vpc.clone(),
        security_groups: vec![n.cache.clone()],
        kms_key_id: None,
        snapshot_retention_days: 0,
        user_group: group,
    }
}

/// A complete app: VPC, groups, user, group, cache, a function in the VPC that connects.
fn app(change: impl FnOnce(&mut ServerlessCacheProps)) -> (Stack, ServerlessCache) {
    let stack = Stack::new("app");
    let root = stack.root();
    let n = net(&root);
    let u = user(&root, ACCESS);
    let group = UserGroup::new(
        &root,
        "Users",
        UserGroupProps {
            group_id: Name::literal("app-users"),
            users: vec![u.clone()],
        },
    );
    let mut props = cache_props(&n, Some(group));
    change(&mut props);
    let cache = ServerlessCache::new(&root, "Counters", props);
    let bucket = stack.string_parameter("B", "bucket");
    let key = stack.string_parameter("K", "key");
    let f = Function::new(
        &root,
        "Fn",
        FunctionProps {
            code: Some(Code::s3(bucket.value(), key.value())),
            vpc: Some(n.vpc.placement(&[&n.functions])),
            ..FunctionProps::default()
        },
    );
    cache.grant_connect(&f, &u);
    (stack, cache)
}

fn resource<'t>(template: &'t Value, ty: &str) -> Vec<(&'t String, &'t Value)> {
    template["Resources"]
        .as_object()
        .expect("resources")
        .iter()
        .filter(|(_, r)| r["Type"] == ty)
        .collect()
}

#[test]
fn vpc_has_private_subnets_in_two_zones_and_nothing_public() {
    let (stack, _) = app(|_| {});
    let t = synth(&stack);
    for ty in [
        "AWS::EC2::InternetGateway",
        "AWS::EC2::NatGateway",
        "AWS::EC2::EIP",
        "AWS::EC2::Route",
        "AWS::EC2::VPCGatewayAttachment",
    ] {
        assert!(resource(&t, ty).is_empty(), "{ty} in a private-only VPC");
    }
    let subnets = resource(&t, "AWS::EC2::Subnet");
    let zones: Vec<&Value> = subnets
        .iter()
        .map(|(_, s)| &s["Properties"]["AvailabilityZone"])
        .collect();
    assert_eq!(
        zones,
        [
            &json!({"Fn::Select": [0, {"Fn::GetAZs": ""}]}),
            &json!({"Fn::Select": [1, {"Fn::GetAZs": ""}]}),
        ]
    );
    for (_, s) in &subnets {
        assert_eq!(s["Properties"]["MapPublicIpOnLaunch"], false);
    }
    assert_eq!(resource(&t, "AWS::EC2::RouteTable").len(), 2);
    assert_eq!(
        resource(&t, "AWS::EC2::SubnetRouteTableAssociation").len(),
        2
    );
}

#[test]
fn cache_is_valkey_8_bounded_and_reached_by_iam() {
    let (stack, cache) = app(|_| {});
    let t = synth(&stack);
    let c = &t["Resources"]["Counters"]["Properties"];
    assert_eq!(c["Engine"], "valkey");
    assert_eq!(c["MajorEngineVersion"], "8");
    assert_eq!(
        c["CacheUsageLimits"],
        json!({"DataStorage": {"Maximum": 1, "Unit": "GB"}, "ECPUPerSecond": {"Maximum": 100000}})
    );
    assert_eq!(c["SubnetIds"].as_array().map(Vec::len), Some(2));
    assert!(c["UserGroupId"]["Ref"].is_string());
    let (_, u) = resource(&t, "AWS::ElastiCache::User")[0];
    assert_eq!(
        u["Properties"]["AuthenticationMode"],
        json!({"Type": "iam"})
    );
    assert_eq!(u["Properties"]["UserId"], u["Properties"]["UserName"]);
    assert_eq!(
        cache.endpoint().to_json(),
        json!({"Fn::Join": [":", [
            {"Fn::GetAtt": ["Counters", "Endpoint.Address"]},
            {"Fn::GetAtt": ["Counters", "Endpoint.Port"]},
        ]]})
    );
    let (_, ingress_group) = resource(&t, "AWS::EC2::SecurityGroup")
        .into_iter()
        .find(|(id, _)| id.starts_with("CacheGroup"))
        .expect("cache group");
    let rule = &ingress_group["Properties"]["SecurityGroupIngress"][0];
    assert_eq!(
        (&rule["FromPort"], &rule["ToPort"]),
        (&json!(6379), &json!(6380))
    );
    assert!(rule["SourceSecurityGroupId"]["Fn::GetAtt"][0]
        .as_str()
        .is_some_and(|id| id.starts_with("Functions")));
    assert!(rule.get("CidrIp").is_none());
}

#[test]
fn a_vpc_function_gets_vpc_config_eni_actions_and_connect() {
    let (stack, _) = app(|_| {});
    let t = synth(&stack);
    let (_, f) = resource(&t, "AWS::Lambda::Function")[0];
    let config = &f["Properties"]["VpcConfig"];
    assert_eq!(config["SubnetIds"].as_array().map(Vec::len), Some(2));
    assert_eq!(config["SecurityGroupIds"].as_array().map(Vec::len), Some(1));
    let role = f["Properties"]["Role"]["Fn::GetAtt"][0]
        .as_str()
        .expect("role");
    let statements =
        &t["Resources"][role]["Properties"]["Policies"][0]["PolicyDocument"]["Statement"];
    let statements = statements.as_array().expect("statements");
    assert!(statements.contains(&json!({
        "Effect": "Allow", "Action": VPC_ACCESS_READS, "Resource": "*"
    })));
    assert!(statements.contains(&json!({
        "Effect": "Allow",
        "Action": VPC_ACCESS_WRITES,
        "Resource": {"Fn::Sub": "arn:${AWS::Partition}:ec2:${AWS::Region}:${AWS::AccountId}:*"},
    })));
    let user = resource(&t, "AWS::ElastiCache::User")[0].0;
    assert!(statements.contains(&json!({
        "Effect": "Allow",
        "Action": "elasticache:Connect",
        "Resource": [{"Fn::GetAtt": ["Counters", "ARN"]}, {"Fn::GetAtt": [user, "Arn"]}],
    })));
}

#[test]
fn endpoints_are_restricted_to_the_granted_resources() {
    let stack = Stack::new("app");
    let root = stack.root();
    let n = net(&root);
    let table = table(&stack);
    GatewayEndpoint::new(
        &root,
        "Ddb",
        &n.vpc,
        GatewayEndpointProps {
            service: GatewayService::DynamoDb,
            // What the pipeline lets through: the item actions its functions call, on this table only.
            allow: vec![EndpointAllow {
                actions: vec!["dynamodb:GetItem", "dynamodb:Query"],
                resources: vec![table.arn()],
            }],
        },
    );
    let secret = Secret::new(
        &root,
        "S",
        SecretProps {
            name: None,
            description: "s".into(),
            length: 32,
        },
    );
    InterfaceEndpoint::new(
        &root,
        "Secrets",
        &n.vpc,
        InterfaceEndpointProps {
            service: "secretsmanager",
            security_group: n.cache.clone(),
            allow: vec![secret.endpoint_allow()],
        },
    );
    let t = synth(&stack);
    let endpoints = resource(&t, "AWS::EC2::VPCEndpoint");
    let (_, gateway) = endpoints
        .iter()
        .find(|(id, _)| id.starts_with("Ddb"))
        .expect("gateway");
    let p = &gateway["Properties"];
    assert_eq!(p["VpcEndpointType"], "Gateway");
    assert_eq!(
        p["ServiceName"],
        json!({"Fn::Sub": "com.amazonaws.${AWS::Region}.dynamodb"})
    );
    assert_eq!(p["RouteTableIds"].as_array().map(Vec::len), Some(2));
    let statement = &p["PolicyDocument"]["Statement"][0];
    assert_eq!(statement["Resource"], json!([table.arn().to_json()]));
    assert_eq!(
        statement["Action"],
        json!(["dynamodb:GetItem", "dynamodb:Query"])
    );
    let (_, interface) = endpoints
        .iter()
        .find(|(id, _)| id.starts_with("Secrets"))
        .expect("interface");
    let p = &interface["Properties"];
    assert_eq!(p["PrivateDnsEnabled"], true);
    assert_eq!(p["SubnetIds"].as_array().map(Vec::len), Some(2));
    assert_eq!(
        p["PolicyDocument"]["Statement"][0]["Action"],
        json!(["secretsmanager:GetSecretValue"])
    );
}

fn check_cache(change: impl FnOnce(&mut ServerlessCacheProps), expect: &str) {
    let (stack, _) = app(change);
    let error = synth_error(&stack);
    assert!(
        error.contains(expect),
        "error\n{error}\ndoes not contain\n{expect}"
    );
}

#[test]
fn cache_rules() {
    check_cache(
        |p| p.max_storage_gb = 0,
        "app/Counters: max_storage_gb 0 is outside 1..=5000",
    );
    check_cache(
        |p| p.max_storage_gb = 5001,
        "max_storage_gb 5001 is outside 1..=5000",
    );
    check_cache(
        |p| p.max_ecpu_per_second = 999,
        "app/Counters: max_ecpu_per_second 999 is outside 1000..=15000000",
    );
    check_cache(
        |p| p.max_ecpu_per_second = 15_000_001,
        "max_ecpu_per_second 15000001 is outside",
    );
    check_cache(
        |p| p.snapshot_retention_days = 36,
        "snapshot_retention_days 36 is above 35",
    );
    check_cache(
        |p| p.security_groups.clear(),
        "0 security groups: give 1..=5",
    );
    check_cache(|p| p.user_group = None, "no user_group");
    check_cache(
        |p| p.name = Name::literal("app--cache"),
        "name `app--cache` is not a valid Cache name",
    );
    check_cache(
        |p| p.name = Name::literal(&"a".repeat(41)),
        "is not a valid Cache name (at most 40 characters",
    );
}

#[test]
fn user_and_group_rules() {
    for (access, expect) in [
        (
            "~app:* +@read",
            "app/User: access_string does not contain `on`",
        ),
        ("on ~app:* +@all", "allows every command"),
        ("on ~* +@read", "allows every key"),
        ("on allkeys +@read", "allows every key"),
        ("on >secret ~app:* +@read", "holds a password"),
    ] {
        check(|_, r| drop(user(r, access)), expect);
    }
    check(
        |_, r| {
            UserGroup::new(
                r,
                "G",
                UserGroupProps {
                    group_id: Name::literal("g"),
                    users: vec![],
                },
            );
        },
        "app/G: the user group has no users",
    );
    check(
        |_, r| {
            User::new(
                r,
                "U",
                UserProps {
                    user_id: Name::literal("App_User"),
                    access_string: ACCESS.into(),
                },
            );
        },
        "name `App_User` is not a valid Cache name",
    );
}

#[test]
fn network_rules() {
    check(
        |_, r| {
            Vpc::new(
                r,
                "V",
                VpcProps {
                    zones: 1,
                    ..VpcProps::default()
                },
            );
        },
        "app/V: zones 1 is outside 2..=3",
    );
    check(
        |_, r| {
            Vpc::new(
                r,
                "V",
                VpcProps {
                    cidr_block: "10.0.0.0/8".into(),
                    zones: 2,
                },
            );
        },
        "app/V: cidr_block `10.0.0.0/8` has prefix /8",
    );
    check(
        |_, r| {
            let n = net(r);
            SecurityGroup::new(
                r,
                "Bad",
                &n.vpc,
                SecurityGroupProps {
                    description: " ".into(),
                    ingress: vec![Ingress {
                        from: n.functions.clone(),
                        ports: (6380, 6379),
                        description: "".into(),
                    }],
                },
            );
        },
        "app/Bad: description must be 1..=255 characters",
    );
    check(
        |_, r| {
            let n = net(r);
            SecurityGroup::new(
                r,
                "Bad",
                &n.vpc,
                SecurityGroupProps {
                    description: "x".into(),
                    ingress: vec![Ingress {
                        from: n.functions.clone(),
                        ports: (6380, 6379),
                        description: "x".into(),
                    }],
                },
            );
        },
        "ingress ports 6380..=6379 are not a range",
    );
    check(
        |_, r| {
            let n = net(r);
            InterfaceEndpoint::new(
                r,
                "E",
                &n.vpc,
                InterfaceEndpointProps {
                    service: "Secrets Manager",
                    security_group: n.cache.clone(),
                    allow: vec![],
                },
            );
        },
        "app/E: service `Secrets Manager` is not a service short name",
    );
    check(
        |_, r| {
            let n = net(r);
            GatewayEndpoint::new(
                r,
                "E",
                &n.vpc,
                GatewayEndpointProps {
                    service: GatewayService::S3,
                    allow: vec![],
                },
            );
        },
        "app/E: the endpoint policy allows nothing",
    );
    check(
        |s, r| {
            let n = net(r);
            let b = s.string_parameter("B", "b");
            Function::new(
                r,
                "F",
                FunctionProps {
                    code: Some(Code::s3(b.value(), b.value())),
                    vpc: Some(n.vpc.placement(&[])),
                    ..FunctionProps::default()
                },
            );
        },
        "app/F: vpc has 0 security groups",
    );
}

#[test]
fn a_cache_of_another_stack_is_refused() {
    let (_other, cache) = app(|_| {});
    let stack = Stack::new("app2");
    let root = stack.root();
    let u = user(&root, ACCESS);
    let b = stack.string_parameter("B", "b");
    let f = Function::new(
        &root,
        "F",
        FunctionProps {
            code: Some(Code::s3(b.value(), b.value())),
            ..FunctionProps::default()
        },
    );
    cache.grant_connect(&f, &u);
    let error = synth_error(&stack);
    assert!(error.contains("a construct of another stack"), "{error}");
}
