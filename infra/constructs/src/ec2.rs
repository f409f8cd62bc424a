//! EC2 networking: a private-only [`Vpc`], [`SecurityGroup`]s whose ingress names other security
//! groups, and VPC endpoints ([`GatewayEndpoint`] for DynamoDB and S3, [`InterfaceEndpoint`] for other
//! services).
//!
//! The VPC has no internet gateway and no NAT gateway: a function placed in it reaches only what is in
//! the VPC and the AWS services that have an endpoint in it. That is the point (nothing leaves, nothing
//! comes in) and the cost rule (a NAT gateway is billed per hour and per GB; gateway endpoints are free;
//! interface endpoints are billed per zone-hour, so add one only for a service a function needs).

use serde_json::{json, Map, Value};

use crate::core::{Node, Scope};
use crate::expr::Expr;

/// Properties of a [`Vpc`].
#[derive(Debug, Clone)]
pub struct VpcProps {
    /// IPv4 range of the VPC, `a.b.c.d/n` with `n` in 16..=24 (each subnet gets a sixteenth of it).
    pub cidr_block: String,
    /// Private subnets, one per availability zone, in the first `zones` zones of the region (2..=3;
    /// an ElastiCache serverless cache and a Lambda function in a VPC want at least two).
    pub zones: u32,
}

impl Default for VpcProps {
    fn default() -> VpcProps {
        VpcProps {
            cidr_block: "10.0.0.0/16".into(),
            zones: 2,
        }
    }
}

/// One private subnet and its route table.
#[derive(Debug, Clone)]
pub struct Subnet {
    node: Node,
    route_table: Node,
}

impl Subnet {
    /// The subnet's resource handle.
    pub fn node(&self) -> &Node {
        &self.node
    }

    /// The subnet id (`Ref`).
    pub fn id(&self) -> Expr {
        self.node.reference()
    }

    /// The id of the subnet's route table (`Ref`).
    pub fn route_table_id(&self) -> Expr {
        self.route_table.reference()
    }
}

/// A VPC with private subnets only (no internet gateway, no NAT gateway); DNS support and DNS host
/// names are on, so interface endpoints can answer under the services' public names.
#[derive(Debug, Clone)]
pub struct Vpc {
    node: Node,
    subnets: Vec<Subnet>,
}

/// `a.b.c.d/n` → (address, prefix length), or `None`.
fn parse_cidr(text: &str) -> Option<(u32, u32)> {
    let (address, prefix) = text.split_once('/')?;
    let prefix: u32 = prefix.parse().ok()?;
    let octets: Vec<u32> = address
        .split('.')
        .map(|o| o.parse::<u8>().ok().map(u32::from))
        .collect::<Option<_>>()?;
    let [a, b, c, d] = octets[..] else {
        return None;
    };
    Some(((a << 24) | (b << 16) | (c << 8) | d, prefix))
}

fn render_cidr(address: u32, prefix: u32) -> String {
    let [a, b, c, d] = address.to_be_bytes();
    format!("{a}.{b}.{c}.{d}/{prefix}")
}

/// The subnet CIDRs of `cidr` for `zones` zones: consecutive sixteenths of the VPC range.
fn subnet_cidrs(scope: &Scope, cidr: &str, zones: u32) -> Vec<String> {
    let Some((address, prefix)) = parse_cidr(cidr) else {
        scope.violation(format!(
            "cidr_block `{}` is not an IPv4 range a.b.c.d/n",
            cidr.escape_debug()
        ));
        return Vec::new();
    };
    if !(16..=24).contains(&prefix) {
        scope.violation(format!(
            "cidr_block `{cidr}` has prefix /{prefix}: use /16 to /24 (VPCs allow /16 to /28 and each subnet takes a sixteenth)"
        ));
        return Vec::new();
    }
    let host_bits = 32 - prefix;
    if address & ((1u32 << host_bits) - 1) != 0 {
        scope.violation(format!(
            "cidr_block `{cidr}` has host bits set: write the network address ({})",
            render_cidr(address & !((1u32 << host_bits) - 1), prefix)
        ));
        return Vec::new();
    }
    let step = 1u32 << (host_bits - 4);
    (0..zones)
        .map(|i| render_cidr(address + i * step, prefix + 4))
        .collect()
}

impl Vpc {
    /// Creates the VPC at `scope/id` with one private subnet and route table per zone
    /// (`id/Private<n>`, `id/Private<n>Routes`).
    pub fn new(scope: &Scope, id: &str, props: VpcProps) -> Vpc {
        let scope = scope.child(id);
        if !(2..=3).contains(&props.zones) {
            scope.violation(format!(
                "zones {} is outside 2..=3: functions and the serverless cache need two zones; each further zone adds a zone-hour per interface endpoint",
                props.zones
            ));
        }
        let cidrs = subnet_cidrs(&scope, &props.cidr_block, props.zones.min(3));
        let mut properties = Map::new();
        properties.insert("CidrBlock".into(), json!(props.cidr_block));
        properties.insert("EnableDnsHostnames".into(), json!(true));
        properties.insert("EnableDnsSupport".into(), json!(true));
        let node = scope.add_resource("Resource", "AWS::EC2::VPC", properties);
        let mut subnets = Vec::new();
        for (index, cidr) in (0u32..).zip(&cidrs) {
            let mut subnet = Map::new();
            subnet.insert("VpcId".into(), node.reference().to_json());
            subnet.insert("CidrBlock".into(), json!(cidr));
            subnet.insert(
                "AvailabilityZone".into(),
                Expr::availability_zone(index).to_json(),
            );
            subnet.insert("MapPublicIpOnLaunch".into(), json!(false));
            let n = index + 1;
            let subnet_node =
                scope.add_resource(&format!("Private{n}"), "AWS::EC2::Subnet", subnet);
            let mut table = Map::new();
            table.insert("VpcId".into(), node.reference().to_json());
            let route_table =
                scope.add_resource(&format!("Private{n}Routes"), "AWS::EC2::RouteTable", table);
            let mut association = Map::new();
            association.insert("SubnetId".into(), subnet_node.reference().to_json());
            association.insert("RouteTableId".into(), route_table.reference().to_json());
            scope.add_resource(
                &format!("Private{n}RoutesAssociation"),
                "AWS::EC2::SubnetRouteTableAssociation",
                association,
            );
            subnets.push(Subnet {
                node: subnet_node,
                route_table,
            });
        }
        Vpc { node, subnets }
    }

    /// The resource handle.
    pub fn node(&self) -> &Node {
        &self.node
    }

    /// The VPC id (`Ref`).
    pub fn id(&self) -> Expr {
        self.node.reference()
    }

    /// The private subnets, one per zone.
    pub fn subnets(&self) -> &[Subnet] {
        &self.subnets
    }

    /// The subnet ids (`Ref`s).
    pub fn subnet_ids(&self) -> Vec<Expr> {
        self.subnets.iter().map(Subnet::id).collect()
    }

    /// Where a function or cache goes: every private subnet, behind `security_groups`.
    pub fn placement(&self, security_groups: &[&SecurityGroup]) -> Placement {
        Placement {
            subnet_ids: self.subnet_ids(),
            security_group_ids: security_groups.iter().map(|g| g.id()).collect(),
        }
    }
}

/// Subnets and security groups of something placed in a VPC (a Lambda `VpcConfig`).
#[derive(Debug, Clone, PartialEq)]
pub struct Placement {
    /// Subnet ids.
    pub subnet_ids: Vec<Expr>,
    /// Security group ids.
    pub security_group_ids: Vec<Expr>,
}

/// One ingress rule: TCP `ports` from the members of another security group.
#[derive(Debug, Clone)]
pub struct Ingress {
    /// The security group whose members may connect.
    pub from: SecurityGroup,
    /// First and last TCP port.
    pub ports: (u16, u16),
    /// Why the rule exists (shown in the console and required by checkov).
    pub description: String,
}

/// Properties of a [`SecurityGroup`].
#[derive(Debug, Clone)]
pub struct SecurityGroupProps {
    /// What the group is for (required by EC2; at most 255 characters).
    pub description: String,
    /// Ingress rules; every one names a source security group, never an address range.
    pub ingress: Vec<Ingress>,
}

/// A security group in a [`Vpc`]. Egress is EC2's default (all outbound): the VPC has no route out, so
/// traffic can reach only the VPC and its endpoints.
#[derive(Debug, Clone)]
pub struct SecurityGroup {
    node: Node,
}

impl SecurityGroup {
    /// Creates the security group at `scope/id` in `vpc`.
    pub fn new(scope: &Scope, id: &str, vpc: &Vpc, props: SecurityGroupProps) -> SecurityGroup {
        let scope = scope.child(id);
        let mut properties = Map::new();
        if props.description.trim().is_empty() || props.description.len() > 255 {
            scope.violation("description must be 1..=255 characters: say what the group is for");
        }
        properties.insert("GroupDescription".into(), json!(props.description));
        properties.insert("VpcId".into(), scope.resolve(&vpc.id()));
        let mut rules = Vec::new();
        for rule in &props.ingress {
            let (first, last) = rule.ports;
            if first == 0 || first > last {
                scope.violation(format!(
                    "ingress ports {first}..={last} are not a range of TCP ports (1..=65535, first <= last)"
                ));
            }
            if rule.description.trim().is_empty() {
                scope.violation("every ingress rule needs a description: say who connects and why");
            }
            rules.push(json!({
                "IpProtocol": "tcp",
                "FromPort": first,
                "ToPort": last,
                "SourceSecurityGroupId": scope.resolve(&rule.from.id()),
                "Description": rule.description,
            }));
        }
        if !rules.is_empty() {
            properties.insert("SecurityGroupIngress".into(), Value::Array(rules));
        }
        SecurityGroup {
            node: scope.add_resource("Resource", "AWS::EC2::SecurityGroup", properties),
        }
    }

    /// The resource handle.
    pub fn node(&self) -> &Node {
        &self.node
    }

    /// The group id (`Fn::GetAtt GroupId`).
    pub fn id(&self) -> Expr {
        self.node.attribute("GroupId")
    }
}

/// An AWS service reachable through a gateway endpoint (free, routed through the route tables).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum GatewayService {
    /// `com.amazonaws.<region>.dynamodb`.
    DynamoDb,
    /// `com.amazonaws.<region>.s3`.
    S3,
}

impl GatewayService {
    fn name(self) -> &'static str {
        match self {
            GatewayService::DynamoDb => "dynamodb",
            GatewayService::S3 => "s3",
        }
    }
}

/// What an endpoint's policy allows: `actions` on `resources` for any principal of the VPC (the
/// principal's own IAM policy still applies; the endpoint policy only narrows what can pass).
#[derive(Debug, Clone)]
pub struct EndpointAllow {
    /// Exact actions.
    pub actions: Vec<&'static str>,
    /// Resource ARNs (from the constructs' handles).
    pub resources: Vec<Expr>,
}

fn endpoint_policy(scope: &Scope, allow: &[EndpointAllow]) -> Value {
    if allow.is_empty() {
        scope.violation(
            "the endpoint policy allows nothing: list the actions and resources the VPC's functions use",
        );
    }
    let statements: Vec<Value> = allow
        .iter()
        .map(|a| {
            if a.actions.is_empty() || a.resources.is_empty() {
                scope.violation("an endpoint policy statement needs actions and resources");
            }
            let mut actions = a.actions.clone();
            actions.sort_unstable();
            actions.dedup();
            let resources: Vec<Value> = a.resources.iter().map(|r| scope.resolve(r)).collect();
            json!({ "Effect": "Allow", "Principal": "*", "Action": actions, "Resource": resources })
        })
        .collect();
    json!({ "Version": "2012-10-17", "Statement": statements })
}

/// Properties of a [`GatewayEndpoint`].
#[derive(Debug, Clone)]
pub struct GatewayEndpointProps {
    /// The service.
    pub service: GatewayService,
    /// The endpoint policy: what may pass (the stack's own table or bucket).
    pub allow: Vec<EndpointAllow>,
}

/// A gateway VPC endpoint on every private route table of a [`Vpc`].
#[derive(Debug, Clone)]
pub struct GatewayEndpoint {
    node: Node,
}

impl GatewayEndpoint {
    /// Creates the endpoint at `scope/id`.
    pub fn new(scope: &Scope, id: &str, vpc: &Vpc, props: GatewayEndpointProps) -> GatewayEndpoint {
        let scope = scope.child(id);
        let mut properties = Map::new();
        properties.insert("VpcId".into(), scope.resolve(&vpc.id()));
        properties.insert("VpcEndpointType".into(), json!("Gateway"));
        properties.insert(
            "ServiceName".into(),
            service_name(props.service.name()).to_json(),
        );
        let tables: Vec<Value> = vpc
            .subnets()
            .iter()
            .map(|s| scope.resolve(&s.route_table_id()))
            .collect();
        properties.insert("RouteTableIds".into(), Value::Array(tables));
        properties.insert(
            "PolicyDocument".into(),
            endpoint_policy(&scope, &props.allow),
        );
        GatewayEndpoint {
            node: scope.add_resource("Resource", "AWS::EC2::VPCEndpoint", properties),
        }
    }

    /// The resource handle.
    pub fn node(&self) -> &Node {
        &self.node
    }
}

/// Properties of an [`InterfaceEndpoint`].
#[derive(Debug, Clone)]
pub struct InterfaceEndpointProps {
    /// The service's short name, e.g. `secretsmanager` (`com.amazonaws.<region>.<service>`).
    pub service: &'static str,
    /// The endpoint's security group (its ingress says who may use it, on TCP 443).
    pub security_group: SecurityGroup,
    /// The endpoint policy.
    pub allow: Vec<EndpointAllow>,
}

/// An interface VPC endpoint in every private subnet, with private DNS (the SDKs' default endpoint
/// names resolve to it). Billed per zone-hour and per GB: add one only for a service a function in the
/// VPC calls.
#[derive(Debug, Clone)]
pub struct InterfaceEndpoint {
    node: Node,
}

impl InterfaceEndpoint {
    /// Creates the endpoint at `scope/id`.
    pub fn new(
        scope: &Scope,
        id: &str,
        vpc: &Vpc,
        props: InterfaceEndpointProps,
    ) -> InterfaceEndpoint {
        let scope = scope.child(id);
        let valid = !props.service.is_empty()
            && props
                .service
                .chars()
                .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-' || c == '.');
        if !valid {
            scope.violation(format!(
                "service `{}` is not a service short name such as `secretsmanager`",
                props.service.escape_debug()
            ));
        }
        let mut properties = Map::new();
        properties.insert("VpcId".into(), scope.resolve(&vpc.id()));
        properties.insert("VpcEndpointType".into(), json!("Interface"));
        properties.insert("ServiceName".into(), service_name(props.service).to_json());
        properties.insert("PrivateDnsEnabled".into(), json!(true));
        let subnets: Vec<Value> = vpc.subnet_ids().iter().map(|s| scope.resolve(s)).collect();
        properties.insert("SubnetIds".into(), Value::Array(subnets));
        properties.insert(
            "SecurityGroupIds".into(),
            json!([scope.resolve(&props.security_group.id())]),
        );
        properties.insert(
            "PolicyDocument".into(),
            endpoint_policy(&scope, &props.allow),
        );
        InterfaceEndpoint {
            node: scope.add_resource("Resource", "AWS::EC2::VPCEndpoint", properties),
        }
    }

    /// The resource handle.
    pub fn node(&self) -> &Node {
        &self.node
    }
}

fn service_name(service: &str) -> Expr {
    Expr::concat([
        Expr::text("com.amazonaws."),
        Expr::region(),
        Expr::text(format!(".{service}")),
    ])
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::Stack;

    fn check(cidr: &str, zones: u32, expect: &[&str]) {
        let stack = Stack::new("s");
        let got = subnet_cidrs(&stack.root(), cidr, zones);
        assert_eq!(got, expect, "{cidr}");
        assert!(stack.synth().is_ok(), "{cidr} is valid");
    }

    fn check_err(cidr: &str, expect: &str) {
        let stack = Stack::new("s");
        assert!(subnet_cidrs(&stack.root(), cidr, 2).is_empty());
        let error = stack
            .synth()
            .err()
            .map(|e| e.to_string())
            .unwrap_or_default();
        assert!(error.contains(expect), "{cidr}: {error}");
    }

    #[test]
    fn subnets_are_sixteenths_of_the_vpc() {
        check("10.0.0.0/16", 2, &["10.0.0.0/20", "10.0.16.0/20"]);
        check(
            "10.40.0.0/16",
            3,
            &["10.40.0.0/20", "10.40.16.0/20", "10.40.32.0/20"],
        );
        check("192.168.1.0/24", 2, &["192.168.1.0/28", "192.168.1.16/28"]);
        check_err("10.0.0.0/8", "use /16 to /24");
        check_err("10.0.0.0/25", "use /16 to /24");
        check_err("10.0.1.0/16", "write the network address (10.0.0.0/16)");
        check_err("10.0.0/16", "is not an IPv4 range");
        check_err("10.0.0.256/16", "is not an IPv4 range");
        check_err("10.0.0.0", "is not an IPv4 range");
        check_err("", "is not an IPv4 range");
        check_err("10.0.0.0/x", "is not an IPv4 range");
    }
}
