//! `bootstrap --show`: the bootstrap stack's policies as they will be in the account, for review and for the
//! policy test. Intrinsics are resolved without calling AWS: pseudo parameters from the given account and
//! region, names CloudFormation generates as `<stack>-<logical id>-RANDOM` (`RANDOM` stands for its suffix).

use serde_json::{json, Map, Value};

use super::stack::BOOTSTRAP_STACK;
use crate::Error;

/// Where the policies are shown for.
#[derive(Debug, Clone)]
pub struct ShowContext {
    pub account: String,
    pub region: String,
    pub partition: String,
}

impl ShowContext {
    /// For `account` in `region` of the `aws` partition.
    pub fn new(account: &str, region: &str) -> ShowContext {
        ShowContext {
            account: account.to_owned(),
            region: region.to_owned(),
            partition: "aws".to_owned(),
        }
    }
}

/// What `cargo xtask bootstrap --show` prints: the policies of the bootstrap stack for `options`, resolved for
/// `ctx`, as pretty JSON.
pub fn render(
    options: &super::stack::BootstrapOptions,
    ctx: &ShowContext,
) -> Result<String, Error> {
    let template = super::stack::synth(options)?;
    let shown = policies(&template, ctx)?;
    let mut text =
        serde_json::to_string_pretty(&shown).map_err(|e| Error::Template(e.to_string()))?;
    text.push('\n');
    Ok(text)
}

/// The roles (trust, inline policy, boundary) and managed policies of a bootstrap template, resolved.
pub fn policies(template: &Value, ctx: &ShowContext) -> Result<Value, Error> {
    let resources = template["Resources"]
        .as_object()
        .ok_or_else(|| Error::Template("the bootstrap template has no Resources".to_owned()))?;
    let resolver = Resolver { resources, ctx };
    let mut roles = Map::new();
    let mut managed = Map::new();
    for (id, resource) in resources {
        let properties = &resource["Properties"];
        match resource["Type"].as_str() {
            Some("AWS::IAM::Role") => {
                let policy = properties["Policies"][0]["PolicyDocument"].clone();
                let boundary = match properties.get("PermissionsBoundary") {
                    Some(b) => json!(resolver.string(b)?),
                    None => Value::Null,
                };
                roles.insert(
                    friendly(id),
                    json!({
                        "Arn": resolver.attribute(id, "Arn")?,
                        "Trust": resolver.value(&properties["AssumeRolePolicyDocument"])?,
                        "Policy": resolver.value(&policy)?,
                        "Boundary": boundary,
                    }),
                );
            }
            Some("AWS::IAM::ManagedPolicy") => {
                managed.insert(
                    friendly(id),
                    json!({
                        "Arn": resolver.reference(id)?,
                        "Document": resolver.value(&properties["PolicyDocument"])?,
                    }),
                );
            }
            _ => {}
        }
    }
    Ok(json!({
        "Stack": BOOTSTRAP_STACK,
        "Account": ctx.account,
        "Region": ctx.region,
        "Roles": roles,
        "ManagedPolicies": managed,
    }))
}

/// `ExecutionRole1A2B3C4D` → `ExecutionRole`: the construct id, without the logical id's hash.
fn friendly(logical_id: &str) -> String {
    let hashed = logical_id.len() > 8
        && logical_id[logical_id.len() - 8..]
            .chars()
            .all(|c| c.is_ascii_digit() || c.is_ascii_uppercase());
    if hashed {
        logical_id[..logical_id.len() - 8].to_owned()
    } else {
        logical_id.to_owned()
    }
}

struct Resolver<'a> {
    resources: &'a Map<String, Value>,
    ctx: &'a ShowContext,
}

impl Resolver<'_> {
    fn unsupported(what: &Value) -> Error {
        Error::Template(format!("cannot resolve {what} for --show"))
    }

    fn pseudo(&self, name: &str) -> Option<String> {
        match name {
            "AWS::AccountId" => Some(self.ctx.account.clone()),
            "AWS::Region" => Some(self.ctx.region.clone()),
            "AWS::Partition" => Some(self.ctx.partition.clone()),
            "AWS::URLSuffix" => Some("amazonaws.com".to_owned()),
            _ => None,
        }
    }

    /// What `Ref` gives for resource `id`.
    fn reference(&self, id: &str) -> Result<String, Error> {
        let resource = self
            .resources
            .get(id)
            .ok_or_else(|| Error::Template(format!("`Ref` to unknown resource {id}")))?;
        let (p, a) = (&self.ctx.partition, &self.ctx.account);
        let generated = format!("{BOOTSTRAP_STACK}-{id}-RANDOM");
        Ok(match resource["Type"].as_str().unwrap_or_default() {
            "AWS::IAM::ManagedPolicy" => {
                let name = match resource["Properties"].get("ManagedPolicyName") {
                    Some(n) => self.string(n)?,
                    None => generated,
                };
                format!("arn:{p}:iam::{a}:policy/{name}")
            }
            "AWS::IAM::OIDCProvider" => {
                let url = resource["Properties"]["Url"].as_str().unwrap_or_default();
                format!(
                    "arn:{p}:iam::{a}:oidc-provider/{}",
                    url.trim_start_matches("https://")
                )
            }
            "AWS::S3::Bucket" => generated.to_ascii_lowercase(),
            _ => generated,
        })
    }

    /// What `Fn::GetAtt [id, attribute]` gives.
    fn attribute(&self, id: &str, attribute: &str) -> Result<String, Error> {
        let resource = &self.resources[id];
        let (p, a) = (&self.ctx.partition, &self.ctx.account);
        match (resource["Type"].as_str().unwrap_or_default(), attribute) {
            ("AWS::IAM::Role", "Arn") => {
                Ok(format!("arn:{p}:iam::{a}:role/{}", self.reference(id)?))
            }
            ("AWS::S3::Bucket", "Arn") => Ok(format!("arn:{p}:s3:::{}", self.reference(id)?)),
            _ => Err(Self::unsupported(&json!([id, attribute]))),
        }
    }

    fn string(&self, value: &Value) -> Result<String, Error> {
        match self.value(value)? {
            Value::String(s) => Ok(s),
            other => Err(Self::unsupported(&other)),
        }
    }

    fn value(&self, value: &Value) -> Result<Value, Error> {
        Ok(match value {
            Value::Array(items) => Value::Array(
                items
                    .iter()
                    .map(|v| self.value(v))
                    .collect::<Result<_, _>>()?,
            ),
            Value::Object(map) if map.len() == 1 => {
                let (key, arg) = map.iter().next().ok_or_else(|| Self::unsupported(value))?;
                match key.as_str() {
                    "Ref" => {
                        let name = arg.as_str().ok_or_else(|| Self::unsupported(value))?;
                        json!(match self.pseudo(name) {
                            Some(v) => v,
                            None => self.reference(name)?,
                        })
                    }
                    "Fn::GetAtt" => {
                        let id = arg[0].as_str().ok_or_else(|| Self::unsupported(value))?;
                        let attribute = arg[1].as_str().ok_or_else(|| Self::unsupported(value))?;
                        json!(self.attribute(id, attribute)?)
                    }
                    "Fn::Sub" => {
                        json!(self.sub(arg.as_str().ok_or_else(|| Self::unsupported(value))?)?)
                    }
                    "Fn::Join" => {
                        let separator = arg[0].as_str().ok_or_else(|| Self::unsupported(value))?;
                        let items = arg[1].as_array().ok_or_else(|| Self::unsupported(value))?;
                        let parts: Vec<String> = items
                            .iter()
                            .map(|i| self.string(i))
                            .collect::<Result<_, _>>()?;
                        json!(parts.join(separator))
                    }
                    _ => {
                        let mut out = Map::new();
                        out.insert(key.clone(), self.value(arg)?);
                        Value::Object(out)
                    }
                }
            }
            Value::Object(map) => {
                let mut out = Map::new();
                for (k, v) in map {
                    out.insert(k.clone(), self.value(v)?);
                }
                Value::Object(out)
            }
            other => other.clone(),
        })
    }

    /// `Fn::Sub` with `${Name}`, `${Name.Attribute}` and the `${!` escape.
    fn sub(&self, template: &str) -> Result<String, Error> {
        let mut out = String::new();
        let mut rest = template;
        while let Some(start) = rest.find("${") {
            out.push_str(&rest[..start]);
            let after = &rest[start + 2..];
            if let Some(literal) = after.strip_prefix('!') {
                out.push_str("${");
                rest = literal;
                continue;
            }
            let end = after.find('}').ok_or_else(|| {
                Error::Template(format!("unclosed `${{` in Fn::Sub `{template}`"))
            })?;
            let name = &after[..end];
            let resolved = match (self.pseudo(name), name.split_once('.')) {
                (Some(v), _) => v,
                (None, Some((id, attribute))) => self.attribute(id, attribute)?,
                (None, None) => self.reference(name)?,
            };
            out.push_str(&resolved);
            rest = &after[end + 1..];
        }
        out.push_str(rest);
        Ok(out)
    }
}
