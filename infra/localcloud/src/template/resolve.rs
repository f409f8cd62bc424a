//! Intrinsic functions resolved to local values: `Ref`, `Fn::GetAtt`, `Fn::Sub`, `Fn::Join`, parameters and
//! pseudo parameters.

use std::collections::BTreeMap;

use serde_json::{Map, Value};

use crate::Error;

/// What a template's names resolve to on this machine.
#[derive(Debug, Clone, PartialEq)]
pub struct LocalContext {
    pub stack_name: String,
    pub region: String,
    pub account: String,
    /// `http://127.0.0.1:PORT` of the local AWS endpoint (queue URLs are built on it).
    pub endpoint: String,
    /// Template parameters given values (the others take their `Default`).
    pub parameters: BTreeMap<String, String>,
    /// Local URL of each `AWS::Lambda::Url`, by logical id.
    pub function_urls: BTreeMap<String, String>,
    /// Port of each `AWS::ElastiCache::ServerlessCache`'s local server on 127.0.0.1, by logical id (a cache not
    /// listed answers port 6379: the template loads, nothing runs).
    pub cache_ports: BTreeMap<String, u16>,
}

/// A plausible physical id for a resource that does not exist locally (`vpc-…`, `sg-…`): the prefix and 17 hex
/// digits of a hash of the stack and logical id, so it is the same on every start.
fn physical_id(prefix: &str, stack: &str, id: &str) -> String {
    use md5::Digest;
    let digest = hex::encode(md5::Md5::digest(format!("{stack}/{id}").as_bytes()));
    format!("{prefix}-{}", &digest[..17])
}

/// The values a resource exposes: its `Ref` and its `Fn::GetAtt` attributes.
#[derive(Debug, Clone, Default, PartialEq)]
pub(crate) struct Exposed {
    pub reference: String,
    pub attributes: BTreeMap<&'static str, String>,
}

pub(crate) struct Resolver<'a> {
    pub ctx: &'a LocalContext,
    pub parameters: BTreeMap<String, String>,
    pub resources: &'a Map<String, Value>,
    pub exposed: BTreeMap<String, Exposed>,
}

impl<'a> Resolver<'a> {
    pub(crate) fn new(template: &'a Value, ctx: &'a LocalContext) -> Result<Resolver<'a>, Error> {
        let resources = template
            .get("Resources")
            .and_then(Value::as_object)
            .ok_or_else(|| Error::template("", "the template has no Resources object"))?;
        let mut parameters = BTreeMap::new();
        if let Some(declared) = template.get("Parameters") {
            let declared = declared
                .as_object()
                .ok_or_else(|| Error::template("Parameters", "Parameters is not an object"))?;
            for (name, declaration) in declared {
                let value = match (ctx.parameters.get(name), declaration.get("Default")) {
                    (Some(value), _) => value.clone(),
                    (None, Some(Value::String(default))) => default.clone(),
                    (None, Some(default)) => default.to_string(),
                    // The local cloud does not need code locations; other parameters must be given.
                    (None, None) => format!("local-{}", name.to_ascii_lowercase()),
                };
                parameters.insert(name.clone(), value);
            }
        }
        let mut resolver = Resolver {
            ctx,
            parameters,
            resources,
            exposed: BTreeMap::new(),
        };
        // Names first (they may use intrinsics on parameters), then everything else refers to them.
        for (id, resource) in resources {
            let exposed = resolver.expose(id, resource)?;
            resolver.exposed.insert(id.clone(), exposed);
        }
        Ok(resolver)
    }

    /// The physical name of a resource: its name property (resolved) or `<stack>-<logical id>`.
    fn name(&self, id: &str, resource: &Value, property: &str) -> Result<String, Error> {
        match resource.get("Properties").and_then(|p| p.get(property)) {
            Some(value) => self.string(id, value),
            None => Ok(format!("{}-{}", self.ctx.stack_name, id)),
        }
    }

    fn expose(&self, id: &str, resource: &Value) -> Result<Exposed, Error> {
        let kind = resource
            .get("Type")
            .and_then(Value::as_str)
            .unwrap_or_default();
        let (region, account) = (&self.ctx.region, &self.ctx.account);
        let mut exposed = Exposed::default();
        let mut attr = |name: &'static str, value: String| {
            exposed.attributes.insert(name, value);
        };
        let reference = match kind {
            "AWS::Kinesis::Stream" => {
                let name = self.name(id, resource, "Name")?;
                attr(
                    "Arn",
                    format!("arn:aws:kinesis:{region}:{account}:stream/{name}"),
                );
                name
            }
            "AWS::Kinesis::StreamConsumer" => {
                let props = resource.get("Properties").cloned().unwrap_or_default();
                let stream = props
                    .get("StreamARN")
                    .map(|v| self.string_shallow(id, v))
                    .transpose()?
                    .ok_or_else(|| Error::template(id, "StreamConsumer has no StreamARN"))?;
                let name = self.name(id, resource, "ConsumerName")?;
                // The local consumer ARN uses creation time 0 so that it is known before the consumer exists.
                let arn = format!("{stream}/consumer/{name}:0");
                attr("ConsumerARN", arn.clone());
                attr("ConsumerName", name);
                attr("StreamARN", stream);
                arn
            }
            "AWS::DynamoDB::Table" => {
                let name = self.name(id, resource, "TableName")?;
                attr(
                    "Arn",
                    format!("arn:aws:dynamodb:{region}:{account}:table/{name}"),
                );
                name
            }
            "AWS::SQS::Queue" => {
                let name = self.name(id, resource, "QueueName")?;
                attr("Arn", format!("arn:aws:sqs:{region}:{account}:{name}"));
                attr("QueueName", name.clone());
                let url = format!("{}/{account}/{name}", self.ctx.endpoint);
                attr("QueueUrl", url.clone());
                url
            }
            "AWS::S3::Bucket" => {
                let name = self.name(id, resource, "BucketName")?.to_ascii_lowercase();
                attr("Arn", format!("arn:aws:s3:::{name}"));
                attr("DomainName", format!("{name}.s3.amazonaws.com"));
                name
            }
            "AWS::Lambda::Function" => {
                let name = self.name(id, resource, "FunctionName")?;
                attr(
                    "Arn",
                    format!("arn:aws:lambda:{region}:{account}:function:{name}"),
                );
                name
            }
            "AWS::Lambda::Url" => {
                let url = self.ctx.function_urls.get(id).cloned().unwrap_or_default();
                attr("FunctionUrl", url.clone());
                attr("FunctionArn", String::new());
                url
            }
            "AWS::SecretsManager::Secret" => {
                let name = self.name(id, resource, "Name")?;
                format!("arn:aws:secretsmanager:{region}:{account}:secret:{name}")
            }
            "AWS::SNS::Topic" => {
                let name = self.name(id, resource, "TopicName")?;
                attr("TopicName", name.clone());
                format!("arn:aws:sns:{region}:{account}:{name}")
            }
            "AWS::IAM::Role" => {
                let name = self.name(id, resource, "RoleName")?;
                attr("Arn", format!("arn:aws:iam::{account}:role/{name}"));
                name
            }
            "AWS::Logs::LogGroup" => {
                let name = self.name(id, resource, "LogGroupName")?;
                attr(
                    "Arn",
                    format!("arn:aws:logs:{region}:{account}:log-group:{name}:*"),
                );
                name
            }
            "AWS::Events::Rule" => {
                let name = self.name(id, resource, "Name")?;
                attr(
                    "Arn",
                    format!("arn:aws:events:{region}:{account}:rule/{name}"),
                );
                name
            }
            "AWS::ElastiCache::ServerlessCache" => {
                let name = self.name(id, resource, "ServerlessCacheName")?;
                let port = self.ctx.cache_ports.get(id).copied().unwrap_or(6379);
                for address in ["Endpoint.Address", "ReaderEndpoint.Address"] {
                    attr(address, "127.0.0.1".to_owned());
                }
                for port_attr in ["Endpoint.Port", "ReaderEndpoint.Port"] {
                    attr(port_attr, port.to_string());
                }
                // CloudFormation spells this one `ARN`.
                attr(
                    "ARN",
                    format!("arn:aws:elasticache:{region}:{account}:serverlesscache:{name}"),
                );
                attr("Status", "available".to_owned());
                attr("FullEngineVersion", "8.0".to_owned());
                attr("CreateTime", "1970-01-01T00:00:00Z".to_owned());
                name
            }
            "AWS::ElastiCache::User" | "AWS::ElastiCache::UserGroup" => {
                let (property, kind) = if kind == "AWS::ElastiCache::User" {
                    ("UserId", "user")
                } else {
                    ("UserGroupId", "usergroup")
                };
                let name = self.name(id, resource, property)?;
                attr(
                    "Arn",
                    format!("arn:aws:elasticache:{region}:{account}:{kind}:{name}"),
                );
                attr("Status", "active".to_owned());
                name
            }
            "AWS::EC2::VPC" => {
                let stack = &self.ctx.stack_name;
                let vpc = physical_id("vpc", stack, id);
                attr("VpcId", vpc.clone());
                attr(
                    "DefaultSecurityGroup",
                    physical_id("sg", stack, &format!("{id}/default")),
                );
                attr(
                    "DefaultNetworkAcl",
                    physical_id("acl", stack, &format!("{id}/default")),
                );
                let cidr = self
                    .property(id, resource, "CidrBlock")?
                    .unwrap_or_else(|| "10.0.0.0/16".to_owned());
                attr("CidrBlock", cidr);
                vpc
            }
            "AWS::EC2::Subnet" => {
                let subnet = physical_id("subnet", &self.ctx.stack_name, id);
                attr("SubnetId", subnet.clone());
                let vpc = self.property(id, resource, "VpcId")?.unwrap_or_default();
                attr("VpcId", vpc);
                let zone = resource
                    .pointer("/Properties/AvailabilityZone")
                    .and_then(Value::as_str)
                    .map_or_else(|| format!("{region}a"), str::to_owned);
                attr("AvailabilityZone", zone);
                subnet
            }
            "AWS::EC2::RouteTable" => {
                let table = physical_id("rtb", &self.ctx.stack_name, id);
                attr("RouteTableId", table.clone());
                table
            }
            "AWS::EC2::SubnetRouteTableAssociation" => {
                let association = physical_id("rtbassoc", &self.ctx.stack_name, id);
                attr("Id", association.clone());
                association
            }
            "AWS::EC2::SecurityGroup" => {
                let group = physical_id("sg", &self.ctx.stack_name, id);
                attr("GroupId", group.clone());
                let vpc = self.property(id, resource, "VpcId")?.unwrap_or_default();
                attr("VpcId", vpc);
                group
            }
            "AWS::EC2::SecurityGroupIngress" | "AWS::EC2::SecurityGroupEgress" => {
                let rule = physical_id("sgr", &self.ctx.stack_name, id);
                attr("Id", rule.clone());
                rule
            }
            "AWS::EC2::VPCEndpoint" => {
                let endpoint = physical_id("vpce", &self.ctx.stack_name, id);
                attr("Id", endpoint.clone());
                attr("CreationTimestamp", "1970-01-01T00:00:00Z".to_owned());
                endpoint
            }
            // Inert locally (no edge): a host under `.invalid` (RFC 2606), which never resolves, so an
            // output naming it cannot send anything anywhere.
            "AWS::CloudFront::Distribution" => {
                let distribution = physical_id("edge", &self.ctx.stack_name, id);
                attr("DomainName", format!("{distribution}.edge.invalid"));
                attr("Id", distribution.clone());
                distribution
            }
            "AWS::WAFv2::WebACL" => {
                let name = format!("{}-{id}", self.ctx.stack_name);
                attr(
                    "Arn",
                    format!("arn:aws:wafv2:{region}:{account}:global/webacl/{name}/local"),
                );
                attr("Id", "local".to_owned());
                format!("{name}|local|CLOUDFRONT")
            }
            _ => format!("{}-{id}", self.ctx.stack_name),
        };
        exposed.reference = reference;
        Ok(exposed)
    }

    /// A property of `resource` resolved to a string while computing names ([`Self::string_shallow`]).
    fn property(&self, id: &str, resource: &Value, key: &str) -> Result<Option<String>, Error> {
        resource
            .get("Properties")
            .and_then(|p| p.get(key))
            .map(|v| self.string_shallow(id, v))
            .transpose()
    }

    /// Resolves a value that must become a string (used while computing names: only parameters and pseudo
    /// parameters, plus references to resources already exposed).
    fn string_shallow(&self, at: &str, value: &Value) -> Result<String, Error> {
        if let Some(Value::Array(get)) = value.get("Fn::GetAtt") {
            if let (Some(Value::String(target)), Some(Value::String(attr))) =
                (get.first(), get.get(1))
            {
                if let Some(resource) = self.resources.get(target) {
                    if let Some(found) =
                        self.expose(target, resource)?.attributes.get(attr.as_str())
                    {
                        return Ok(found.clone());
                    }
                }
            }
        }
        if let Some(Value::String(target)) = value.get("Ref") {
            if let Some(resource) = self.resources.get(target) {
                return Ok(self.expose(target, resource)?.reference);
            }
        }
        self.string(at, value)
    }

    /// Resolves every intrinsic in `value`; `at` names where it is (for errors).
    pub(crate) fn resolve(&self, at: &str, value: &Value) -> Result<Value, Error> {
        match value {
            Value::Object(map) if map.len() == 1 => {
                let (key, arg) = map
                    .iter()
                    .next()
                    .ok_or_else(|| Error::template(at, "empty object"))?;
                match key.as_str() {
                    "Ref" => self.reference(at, arg).map(Value::String),
                    "Fn::GetAtt" => self.get_att(at, arg).map(Value::String),
                    "Fn::Sub" => self.sub(at, arg).map(Value::String),
                    "Fn::Join" => self.join(at, arg).map(Value::String),
                    "Fn::Select" => self.select(at, arg),
                    "Fn::Split" => self.split(at, arg),
                    "Fn::GetAZs" => self.get_azs(at, arg),
                    other if other.starts_with("Fn::") || other == "Condition" => Err(Error::template(
                        at,
                        format!("intrinsic {other} is not supported by the local cloud (it resolves Ref, Fn::GetAtt, Fn::Sub, Fn::Join, Fn::Select, Fn::Split and Fn::GetAZs)"),
                    )),
                    _ => Ok(Value::Object(Map::from_iter([(key.clone(), self.resolve(at, arg)?)]))),
                }
            }
            Value::Object(map) => {
                let mut out = Map::new();
                for (key, item) in map {
                    out.insert(key.clone(), self.resolve(&format!("{at}.{key}"), item)?);
                }
                Ok(Value::Object(out))
            }
            Value::Array(items) => items
                .iter()
                .enumerate()
                .map(|(i, item)| self.resolve(&format!("{at}[{i}]"), item))
                .collect::<Result<Vec<_>, _>>()
                .map(Value::Array),
            other => Ok(other.clone()),
        }
    }

    pub(crate) fn string(&self, at: &str, value: &Value) -> Result<String, Error> {
        match self.resolve(at, value)? {
            Value::String(text) => Ok(text),
            Value::Number(n) => Ok(n.to_string()),
            Value::Bool(b) => Ok(b.to_string()),
            other => Err(Error::template(
                at,
                format!("expected a string, found {other}"),
            )),
        }
    }

    fn pseudo(&self, name: &str) -> Option<String> {
        Some(match name {
            "AWS::AccountId" => self.ctx.account.clone(),
            "AWS::Region" => self.ctx.region.clone(),
            "AWS::StackName" => self.ctx.stack_name.clone(),
            "AWS::StackId" => format!(
                "arn:aws:cloudformation:{}:{}:stack/{}/local",
                self.ctx.region, self.ctx.account, self.ctx.stack_name
            ),
            "AWS::Partition" => "aws".to_owned(),
            "AWS::URLSuffix" => "amazonaws.com".to_owned(),
            _ => return None,
        })
    }

    fn reference(&self, at: &str, arg: &Value) -> Result<String, Error> {
        let name = arg
            .as_str()
            .ok_or_else(|| Error::template(at, format!("Ref takes a name, found {arg}")))?;
        if let Some(value) = self.pseudo(name) {
            return Ok(value);
        }
        if let Some(value) = self.parameters.get(name) {
            return Ok(value.clone());
        }
        if let Some(exposed) = self.exposed.get(name) {
            return Ok(exposed.reference.clone());
        }
        if let Some(resource) = self.resources.get(name) {
            return Ok(self.expose(name, resource)?.reference);
        }
        Err(Error::template(
            at,
            format!("Ref to {name}, which is neither a parameter nor a resource"),
        ))
    }

    fn get_att(&self, at: &str, arg: &Value) -> Result<String, Error> {
        let (target, attribute) = match arg {
            Value::Array(parts) if parts.len() == 2 => (parts[0].as_str(), parts[1].as_str()),
            Value::String(dotted) => match dotted.split_once('.') {
                Some((t, a)) => (Some(t), Some(a)),
                None => (None, None),
            },
            _ => (None, None),
        };
        let (Some(target), Some(attribute)) = (target, attribute) else {
            return Err(Error::template(
                at,
                format!("Fn::GetAtt takes [resource, attribute], found {arg}"),
            ));
        };
        let exposed = match self.exposed.get(target) {
            Some(exposed) => exposed.clone(),
            None => match self.resources.get(target) {
                Some(resource) => self.expose(target, resource)?,
                None => {
                    return Err(Error::template(
                        at,
                        format!("Fn::GetAtt on {target}, which is not a resource"),
                    ))
                }
            },
        };
        exposed.attributes.get(attribute).cloned().ok_or_else(|| {
            Error::template(
                at,
                format!(
                    "Fn::GetAtt {target}.{attribute}: the local cloud knows {} of this resource",
                    if exposed.attributes.is_empty() {
                        "no attributes".to_owned()
                    } else {
                        exposed
                            .attributes
                            .keys()
                            .copied()
                            .collect::<Vec<_>>()
                            .join(", ")
                    }
                ),
            )
        })
    }

    fn sub(&self, at: &str, arg: &Value) -> Result<String, Error> {
        let (text, vars) =
            match arg {
                Value::String(text) => (text.as_str(), None),
                Value::Array(parts) if parts.len() == 2 => (
                    parts[0].as_str().ok_or_else(|| {
                        Error::template(at, "Fn::Sub's first element is not a string")
                    })?,
                    Some(parts[1].as_object().ok_or_else(|| {
                        Error::template(at, "Fn::Sub's variables are not an object")
                    })?),
                ),
                _ => {
                    return Err(Error::template(
                        at,
                        format!("Fn::Sub takes a string or [string, variables], found {arg}"),
                    ))
                }
            };
        let mut out = String::with_capacity(text.len());
        let mut rest = text;
        while let Some(start) = rest.find("${") {
            out.push_str(&rest[..start]);
            let after = &rest[start + 2..];
            if let Some(literal) = after.strip_prefix('!') {
                // `${!Literal}` is written as `${Literal}`.
                let end = literal.find('}').ok_or_else(|| {
                    Error::template(at, format!("unclosed ${{ in Fn::Sub {text:?}"))
                })?;
                out.push_str("${");
                out.push_str(&literal[..=end]);
                rest = &literal[end + 1..];
                continue;
            }
            let end = after
                .find('}')
                .ok_or_else(|| Error::template(at, format!("unclosed ${{ in Fn::Sub {text:?}")))?;
            let name = &after[..end];
            let value = match vars.and_then(|v| v.get(name)) {
                Some(value) => self.string(at, value)?,
                None => match name.split_once('.') {
                    Some((target, attribute)) if !name.starts_with("AWS::") => {
                        self.get_att(at, &Value::Array(vec![target.into(), attribute.into()]))?
                    }
                    _ => self.reference(at, &Value::String(name.to_owned()))?,
                },
            };
            out.push_str(&value);
            rest = &after[end + 1..];
        }
        out.push_str(rest);
        Ok(out)
    }

    /// `Fn::Select [index, list]`: the index a number or a numeric string, the list any list value.
    /// `Fn::Split [separator, string]`: the list of pieces (a CloudFront origin takes the host of a Function
    /// URL with `Fn::Select [2, Fn::Split ["/", url]]`).
    fn split(&self, at: &str, arg: &Value) -> Result<Value, Error> {
        let usage = || {
            Error::template(
                at,
                format!("Fn::Split takes [separator, string], found {arg}"),
            )
        };
        let parts = arg.as_array().filter(|p| p.len() == 2).ok_or_else(usage)?;
        let separator = parts[0]
            .as_str()
            .filter(|s| !s.is_empty())
            .ok_or_else(usage)?;
        let text = self.string(at, &parts[1])?;
        Ok(Value::Array(
            text.split(separator)
                .map(|piece| Value::String(piece.to_owned()))
                .collect(),
        ))
    }

    fn select(&self, at: &str, arg: &Value) -> Result<Value, Error> {
        let usage = || {
            Error::template(
                at,
                format!("Fn::Select takes [index, [values]], found {arg}"),
            )
        };
        let parts = arg.as_array().filter(|p| p.len() == 2).ok_or_else(usage)?;
        let index = match self.resolve(at, &parts[0])? {
            Value::Number(n) => n.as_u64(),
            Value::String(s) if !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit()) => {
                s.parse().ok()
            }
            _ => None,
        }
        .ok_or_else(|| {
            Error::template(
                at,
                format!(
                    "Fn::Select's index must be a whole number, found {}",
                    parts[0]
                ),
            )
        })?;
        let Value::Array(list) = self.resolve(at, &parts[1])? else {
            return Err(usage());
        };
        let len = list.len();
        usize::try_from(index)
            .ok()
            .and_then(|i| list.into_iter().nth(i))
            .ok_or_else(|| {
                Error::template(
                    at,
                    format!("Fn::Select index {index} is out of range for a list of {len}"),
                )
            })
    }

    /// `Fn::GetAZs ""` (or the stack's region): the local cloud's three zones, `<region>a`, `b` and `c`.
    fn get_azs(&self, at: &str, arg: &Value) -> Result<Value, Error> {
        let region = match self.resolve(at, arg)? {
            Value::String(r) if r.is_empty() => self.ctx.region.clone(),
            Value::String(r) if r == self.ctx.region => r,
            other => {
                return Err(Error::template(
                    at,
                    format!(
                        "Fn::GetAZs takes \"\" or the stack's region {}, found {other}",
                        self.ctx.region
                    ),
                ))
            }
        };
        Ok(Value::Array(
            ["a", "b", "c"]
                .iter()
                .map(|z| Value::String(format!("{region}{z}")))
                .collect(),
        ))
    }

    fn join(&self, at: &str, arg: &Value) -> Result<String, Error> {
        let parts = arg.as_array().filter(|p| p.len() == 2);
        let (Some(Value::String(separator)), Some(list)) =
            (parts.and_then(|p| p.first()), parts.and_then(|p| p.get(1)))
        else {
            return Err(Error::template(
                at,
                format!("Fn::Join takes [separator, [values]], found {arg}"),
            ));
        };
        let list = match self.resolve(at, list)? {
            Value::Array(items) => items,
            other => {
                return Err(Error::template(
                    at,
                    format!("Fn::Join's values are not a list: {other}"),
                ))
            }
        };
        let strings = list
            .iter()
            .map(|item| match item {
                Value::String(s) => Ok(s.clone()),
                Value::Number(n) => Ok(n.to_string()),
                other => Err(Error::template(
                    at,
                    format!("Fn::Join value is not a string: {other}"),
                )),
            })
            .collect::<Result<Vec<_>, _>>()?;
        Ok(strings.join(separator))
    }
}
