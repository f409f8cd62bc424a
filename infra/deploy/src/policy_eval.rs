//! A small IAM policy evaluator, for testing the bootstrap stack's policies as `bootstrap --show` prints them
//! (it is not used to make decisions against AWS; AWS makes those).
//!
//! What it covers: `Effect` Allow/Deny, `Action`/`NotAction` with `*`/`?` wildcards (case-insensitive),
//! `Resource`/`NotResource` with ARN wildcards (matched per ARN segment, as IAM does), and the condition
//! operators `StringEquals`, `StringNotEquals`, `StringLike`, `StringNotLike`, `ArnEquals`, `ArnNotEquals`,
//! `ArnLike`, `ArnNotLike`, `Bool`, each also with `IfExists`. A request is allowed when no statement of
//! the identity policies or the permissions boundary denies it, an identity statement allows it, and (with
//! a boundary) a boundary statement allows it too. A statement without `Resource` (a trust policy's) applies
//! to any resource; its `Principal` is not evaluated (check it directly). Unknown operators and malformed documents are errors,
//! never silently "no match".

use std::collections::BTreeMap;

use serde_json::Value;

use crate::Error;

/// One API call to decide: its action, the resource ARN, and the request's condition keys.
#[derive(Debug, Clone, Default)]
pub struct Request {
    pub action: String,
    pub resource: String,
    /// Condition keys (case-insensitive names) and their values.
    pub context: BTreeMap<String, Vec<String>>,
}

impl Request {
    pub fn new(action: &str, resource: &str) -> Request {
        Request {
            action: action.to_owned(),
            resource: resource.to_owned(),
            context: BTreeMap::new(),
        }
    }

    /// Adds condition key `key` with `value`.
    pub fn with(mut self, key: &str, value: &str) -> Request {
        self.context
            .entry(key.to_ascii_lowercase())
            .or_default()
            .push(value.to_owned());
        self
    }

    fn values(&self, key: &str) -> Option<&Vec<String>> {
        self.context.get(&key.to_ascii_lowercase())
    }
}

/// The outcome, with the statement that decided it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Decision {
    Allow,
    /// A statement denies it (its Sid).
    ExplicitDeny(String),
    /// No statement allows it (in the identity policies, or in the boundary when `boundary` is set).
    ImplicitDeny {
        boundary: bool,
    },
}

impl Decision {
    pub fn allowed(&self) -> bool {
        *self == Decision::Allow
    }
}

fn malformed(problem: String) -> Error {
    Error::Template(format!("policy evaluator: {problem}"))
}

/// Decides `request` for a principal with `identity` policies and an optional permissions `boundary`.
pub fn evaluate(
    identity: &[&Value],
    boundary: Option<&Value>,
    request: &Request,
) -> Result<Decision, Error> {
    let mut identity_allows = false;
    for document in identity {
        match decide(document, request)? {
            Some(Verdict::Deny(sid)) => return Ok(Decision::ExplicitDeny(sid)),
            Some(Verdict::Allow) => identity_allows = true,
            None => {}
        }
    }
    let boundary_allows = match boundary {
        None => true,
        Some(document) => match decide(document, request)? {
            Some(Verdict::Deny(sid)) => return Ok(Decision::ExplicitDeny(sid)),
            Some(Verdict::Allow) => true,
            None => false,
        },
    };
    Ok(match (identity_allows, boundary_allows) {
        (true, true) => Decision::Allow,
        (false, _) => Decision::ImplicitDeny { boundary: false },
        (true, false) => Decision::ImplicitDeny { boundary: true },
    })
}

enum Verdict {
    Allow,
    Deny(String),
}

/// A Deny of any matching statement wins; else an Allow; else nothing.
fn decide(document: &Value, request: &Request) -> Result<Option<Verdict>, Error> {
    let statements = match &document["Statement"] {
        Value::Array(list) => list.iter().collect::<Vec<_>>(),
        one @ Value::Object(_) => vec![one],
        other => return Err(malformed(format!("`Statement` is {other}"))),
    };
    let mut allowed = false;
    for statement in statements {
        if !matches(statement, request)? {
            continue;
        }
        match statement["Effect"].as_str() {
            Some("Deny") => {
                let sid = statement["Sid"].as_str().unwrap_or("(no Sid)").to_owned();
                return Ok(Some(Verdict::Deny(sid)));
            }
            Some("Allow") => allowed = true,
            _ => {
                return Err(malformed(format!(
                    "statement without a valid Effect: {statement}"
                )))
            }
        }
    }
    Ok(allowed.then_some(Verdict::Allow))
}

fn strings(value: &Value, what: &str) -> Result<Vec<String>, Error> {
    match value {
        Value::String(s) => Ok(vec![s.clone()]),
        Value::Array(items) => items
            .iter()
            .map(|i| {
                i.as_str()
                    .map(str::to_owned)
                    .ok_or_else(|| malformed(format!("{what} holds {i}")))
            })
            .collect(),
        Value::Bool(b) => Ok(vec![b.to_string()]),
        other => Err(malformed(format!("{what} is {other}"))),
    }
}

/// The statement's `X` or `NotX` element: the patterns and whether they are negated.
fn element(statement: &Value, name: &str) -> Result<(Vec<String>, bool), Error> {
    let not = format!("Not{name}");
    match (statement.get(name), statement.get(&not)) {
        (Some(v), None) => Ok((strings(v, name)?, false)),
        (None, Some(v)) => Ok((strings(v, &not)?, true)),
        _ => Err(malformed(format!(
            "statement needs exactly one of {name} and {not}: {statement}"
        ))),
    }
}

fn matches(statement: &Value, request: &Request) -> Result<bool, Error> {
    let (actions, not_action) = element(statement, "Action")?;
    let action_hit = actions.iter().any(|a| {
        glob(
            &a.to_ascii_lowercase(),
            &request.action.to_ascii_lowercase(),
        )
    });
    if action_hit == not_action {
        return Ok(false);
    }
    // A trust policy's statements have a Principal and no Resource: they apply to the role itself.
    if statement.get("Resource").is_none() && statement.get("NotResource").is_none() {
        return conditions(statement, request);
    }
    let (resources, not_resource) = element(statement, "Resource")?;
    let resource_hit = resources.iter().any(|r| arn_like(r, &request.resource));
    if resource_hit == not_resource {
        return Ok(false);
    }
    conditions(statement, request)
}

/// Every condition of the statement holds (operators and keys AND, values OR).
fn conditions(statement: &Value, request: &Request) -> Result<bool, Error> {
    match statement.get("Condition") {
        None => Ok(true),
        Some(Value::Object(operators)) => {
            for (operator, keys) in operators {
                let keys = keys
                    .as_object()
                    .ok_or_else(|| malformed(format!("condition {operator} is not an object")))?;
                for (key, values) in keys {
                    if !condition(operator, request.values(key), &strings(values, key)?)? {
                        return Ok(false);
                    }
                }
            }
            Ok(true)
        }
        Some(other) => Err(malformed(format!("Condition is {other}"))),
    }
}

/// One condition: `operator` between the request's values of a key (`None`: the key is absent) and the
/// policy's values.
fn condition(
    operator: &str,
    present: Option<&Vec<String>>,
    expected: &[String],
) -> Result<bool, Error> {
    let (base, if_exists) = match operator.strip_suffix("IfExists") {
        Some(base) => (base, true),
        None => (operator, false),
    };
    let (test, negated): (fn(&str, &str) -> bool, bool) = match base {
        "StringEquals" | "ArnEquals" => (|p, v| p == v, false),
        "StringNotEquals" | "ArnNotEquals" => (|p, v| p == v, true),
        "StringLike" => (glob, false),
        "StringNotLike" => (glob, true),
        "ArnLike" => (arn_like, false),
        "ArnNotLike" => (arn_like, true),
        "Bool" => (|p, v| p.eq_ignore_ascii_case(v), false),
        _ => {
            return Err(malformed(format!(
                "condition operator `{operator}` is not supported"
            )))
        }
    };
    let Some(values) = present else {
        // An absent key: the negated operators match, the others do not (unless IfExists).
        return Ok(if_exists || negated);
    };
    let any = values.iter().any(|v| expected.iter().any(|p| test(p, v)));
    Ok(any != negated)
}

/// `*` (any run, also empty) and `?` (one character) wildcards.
pub fn glob(pattern: &str, value: &str) -> bool {
    let (p, v): (Vec<char>, Vec<char>) = (pattern.chars().collect(), value.chars().collect());
    let (mut pi, mut vi) = (0, 0);
    let mut star: Option<(usize, usize)> = None;
    while vi < v.len() {
        match p.get(pi) {
            Some('*') => {
                star = Some((pi, vi));
                pi += 1;
            }
            Some(c) if *c == '?' || *c == v[vi] => {
                pi += 1;
                vi += 1;
            }
            _ => match star {
                Some((sp, sv)) => {
                    pi = sp + 1;
                    vi = sv + 1;
                    star = Some((sp, sv + 1));
                }
                None => return false,
            },
        }
    }
    p[pi..].iter().all(|c| *c == '*')
}

/// An ARN pattern against an ARN: `*` alone matches everything; otherwise the six segments
/// (`arn:partition:service:region:account:resource`) are matched one by one, so a wildcard never spans a
/// `:` before the resource part.
pub fn arn_like(pattern: &str, arn: &str) -> bool {
    if pattern == "*" {
        return true;
    }
    let p: Vec<&str> = pattern.splitn(6, ':').collect();
    let a: Vec<&str> = arn.splitn(6, ':').collect();
    p.len() == 6 && a.len() == 6 && p.iter().zip(&a).all(|(p, a)| glob(p, a))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn wildcards() {
        assert!(glob("tally-pr-*", "tally-pr-7"));
        assert!(glob("*", ""));
        assert!(glob("a?c", "abc"));
        assert!(!glob("a?c", "ac"));
        assert!(glob("iam:*role*", "iam:createrolepolicy"));
        assert!(!glob("tally-pr-*", "tally-production"));
        assert!(arn_like(
            "arn:aws:cloudformation:*:1:stack/tally-pr-*/*",
            "arn:aws:cloudformation:eu-west-1:1:stack/tally-pr-7/abc"
        ));
        assert!(!arn_like(
            "arn:aws:cloudformation:*:1:stack/tally-pr-*/*",
            "arn:aws:cloudformation:eu-west-1:1:stack/tally-production/abc"
        ));
        // A wildcard does not span segments: `*` in the region does not eat the account.
        assert!(!arn_like("arn:aws:s3:*:bucket", "arn:aws:s3:::bucket"));
        assert!(!arn_like("arn:aws:s3:::b", "not-an-arn"));
    }

    fn policy(statements: Value) -> Value {
        json!({ "Version": "2012-10-17", "Statement": statements })
    }

    #[test]
    fn deny_wins_allow_needed_boundary_intersects() {
        let identity = policy(json!([
            {"Sid": "A", "Effect": "Allow", "Action": "s3:*", "Resource": "*"},
            {"Sid": "D", "Effect": "Deny", "Action": "s3:DeleteObject", "Resource": "arn:aws:s3:::keep/*"},
        ]));
        let boundary = policy(
            json!([{"Sid": "B", "Effect": "Allow", "NotAction": "s3:PutObject", "Resource": "*"}]),
        );
        let decide = |action: &str, resource: &str, b: Option<&Value>| {
            evaluate(&[&identity], b, &Request::new(action, resource)).expect("valid policies")
        };
        assert_eq!(
            decide("s3:GetObject", "arn:aws:s3:::x/y", None),
            Decision::Allow
        );
        assert_eq!(
            decide("S3:getobject", "arn:aws:s3:::x/y", None),
            Decision::Allow
        );
        assert_eq!(
            decide("s3:DeleteObject", "arn:aws:s3:::keep/y", None),
            Decision::ExplicitDeny("D".into())
        );
        assert_eq!(
            decide("sqs:SendMessage", "arn:aws:sqs:r:1:q", None),
            Decision::ImplicitDeny { boundary: false }
        );
        assert_eq!(
            decide("s3:PutObject", "arn:aws:s3:::x/y", Some(&boundary)),
            Decision::ImplicitDeny { boundary: true }
        );
        assert_eq!(
            decide("s3:GetObject", "arn:aws:s3:::x/y", Some(&boundary)),
            Decision::Allow
        );
    }

    #[test]
    fn conditions() {
        let identity = policy(json!([{
            "Sid": "C", "Effect": "Allow", "Action": "iam:CreateRole", "Resource": "*",
            "Condition": {"StringEquals": {"iam:PermissionsBoundary": ["arn:b1", "arn:b2"]}, "StringNotLike": {"aws:RequestTag/x": "no*"}}
        }]));
        let decide = |r: Request| evaluate(&[&identity], None, &r).expect("valid").allowed();
        let base = || Request::new("iam:CreateRole", "arn:aws:iam::1:role/r");
        assert!(!decide(base()), "absent key fails StringEquals");
        assert!(decide(base().with("iam:PermissionsBoundary", "arn:b2")));
        assert!(
            decide(base().with("IAM:permissionsboundary", "arn:b1")),
            "keys are case-insensitive"
        );
        assert!(!decide(base().with("iam:PermissionsBoundary", "arn:other")));
        assert!(!decide(
            base()
                .with("iam:PermissionsBoundary", "arn:b1")
                .with("aws:RequestTag/x", "nope")
        ));
        assert!(condition("StringEqualsIfExists", None, &["a".into()]).expect("known"));
        assert!(condition("Bool", Some(&vec!["TRUE".into()]), &["true".into()]).expect("known"));
        let unknown = condition("NumericLessThan", None, &[]).expect_err("unsupported");
        assert!(
            unknown
                .to_string()
                .contains("`NumericLessThan` is not supported"),
            "{unknown}"
        );
    }

    #[test]
    fn malformed_documents_are_errors() {
        let both = policy(
            json!([{"Effect": "Allow", "Action": "a:b", "NotAction": "a:c", "Resource": "*"}]),
        );
        assert!(evaluate(&[&both], None, &Request::new("a:b", "*")).is_err());
        let no_effect = policy(json!([{"Action": "a:b", "Resource": "*"}]));
        assert!(evaluate(&[&no_effect], None, &Request::new("a:b", "*")).is_err());
    }
}
