//! Values of template properties: literals, references to other constructs (`Ref`, `Fn::GetAtt`),
//! pseudo parameters, strings built from them (`Fn::Sub`), joins (`Fn::Join`) and availability zones
//! (`Fn::Select` over `Fn::GetAZs`).
//!
//! A reference remembers the stack and construct path it points to, so that a reference that crosses
//! stacks is caught at synth instead of producing a template that CloudFormation rejects.

use serde_json::{json, Value};

/// Identity of the construct a reference points to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Target {
    pub(crate) stack: u64,
    pub(crate) path: String,
    pub(crate) logical_id: String,
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum Part {
    Text(String),
    Ref(Target),
    GetAtt(Target, String),
    Pseudo(&'static str),
    /// `Fn::Join [separator, [items]]`.
    Join(String, Vec<Expr>),
    /// `Fn::Select [index, Fn::GetAZs ""]`: the region's zone number `index`.
    Zone(u32),
    /// `Fn::Select [2, Fn::Split ["/", url]]`: the host of an `https://host/` URL.
    UrlHost(Box<Expr>),
}

/// A property value: a literal string, a reference, or a string assembled from both.
///
/// Built only by this crate's handles (`.arn()`, `.name()`, `.url()`, …) and [`Expr::text`];
/// an app never writes a logical id or an ARN by hand.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Expr {
    parts: Vec<Part>,
}

impl Expr {
    /// A literal string.
    pub fn text(text: impl Into<String>) -> Expr {
        Expr {
            parts: vec![Part::Text(text.into())],
        }
    }

    pub(crate) fn reference(target: Target) -> Expr {
        Expr {
            parts: vec![Part::Ref(target)],
        }
    }

    pub(crate) fn get_att(target: Target, attribute: &str) -> Expr {
        Expr {
            parts: vec![Part::GetAtt(target, attribute.to_owned())],
        }
    }

    /// `AWS::AccountId`.
    pub fn account_id() -> Expr {
        Expr {
            parts: vec![Part::Pseudo("AWS::AccountId")],
        }
    }

    /// `AWS::Region`.
    pub fn region() -> Expr {
        Expr {
            parts: vec![Part::Pseudo("AWS::Region")],
        }
    }

    /// `AWS::Partition`.
    pub fn partition() -> Expr {
        Expr {
            parts: vec![Part::Pseudo("AWS::Partition")],
        }
    }

    /// `AWS::URLSuffix`.
    pub fn url_suffix() -> Expr {
        Expr {
            parts: vec![Part::Pseudo("AWS::URLSuffix")],
        }
    }

    /// `items` joined with `separator`, rendered as `Fn::Join` (even when every item is literal, so
    /// the template says what the value is made of).
    pub fn join(separator: &str, items: impl IntoIterator<Item = Expr>) -> Expr {
        Expr {
            parts: vec![Part::Join(
                separator.to_owned(),
                items.into_iter().collect(),
            )],
        }
    }

    /// The region's availability zone number `index` (0-based, in the order `Fn::GetAZs` lists them).
    pub fn availability_zone(index: u32) -> Expr {
        Expr {
            parts: vec![Part::Zone(index)],
        }
    }

    /// The host of this URL value (`https://host/…` → `host`), rendered as
    /// `Fn::Select [2, Fn::Split ["/", url]]`: what a CloudFront origin's `DomainName` takes from a
    /// Function URL.
    pub fn url_host(&self) -> Expr {
        Expr {
            parts: vec![Part::UrlHost(Box::new(self.clone()))],
        }
    }

    /// The concatenation of `parts`, rendered as `Fn::Sub` when any part is not literal (and as
    /// `Fn::Join` with an empty separator when a part is itself a function that `Fn::Sub` cannot hold).
    pub fn concat(parts: impl IntoIterator<Item = Expr>) -> Expr {
        let mut out: Vec<Part> = Vec::new();
        for part in parts.into_iter().flat_map(|e| e.parts) {
            match (out.last_mut(), part) {
                (Some(Part::Text(prev)), Part::Text(next)) => prev.push_str(&next),
                (_, Part::Text(next)) if next.is_empty() => {}
                (_, part) => out.push(part),
            }
        }
        Expr { parts: out }
    }

    /// This value followed by a literal suffix.
    pub fn with_suffix(&self, suffix: &str) -> Expr {
        Expr::concat([self.clone(), Expr::text(suffix)])
    }

    /// The literal text, when this value has no reference in it.
    pub fn as_text(&self) -> Option<String> {
        let mut text = String::new();
        for part in &self.parts {
            match part {
                Part::Text(t) => text.push_str(t),
                _ => return None,
            }
        }
        Some(text)
    }

    /// The constructs this value refers to.
    pub(crate) fn targets(&self) -> Vec<&Target> {
        let mut out = Vec::new();
        for part in &self.parts {
            match part {
                Part::Ref(t) | Part::GetAtt(t, _) => out.push(t),
                Part::Join(_, items) => out.extend(items.iter().flat_map(Expr::targets)),
                Part::UrlHost(url) => out.extend(url.targets()),
                Part::Text(_) | Part::Pseudo(_) | Part::Zone(_) => {}
            }
        }
        out
    }

    fn part_json(part: &Part) -> Value {
        match part {
            Part::Text(t) => json!(t),
            Part::Ref(t) => json!({ "Ref": t.logical_id }),
            Part::Pseudo(p) => json!({ "Ref": p }),
            Part::GetAtt(t, a) => json!({ "Fn::GetAtt": [t.logical_id, a] }),
            Part::Join(separator, items) => {
                let items: Vec<Value> = items.iter().map(Expr::to_json).collect();
                json!({ "Fn::Join": [separator, items] })
            }
            Part::Zone(index) => json!({ "Fn::Select": [index, { "Fn::GetAZs": "" }] }),
            Part::UrlHost(url) => {
                json!({ "Fn::Select": [2, { "Fn::Split": ["/", url.to_json()] }] })
            }
        }
    }

    /// The CloudFormation JSON of this value.
    pub fn to_json(&self) -> Value {
        match self.parts.as_slice() {
            [] => json!(""),
            [one] => Expr::part_json(one),
            parts => match Expr::sub_template(parts) {
                Some(template) => json!({ "Fn::Sub": template }),
                None => {
                    let items: Vec<Value> = parts.iter().map(Expr::part_json).collect();
                    json!({ "Fn::Join": ["", items] })
                }
            },
        }
    }

    /// The `Fn::Sub` template of `parts`, or `None` when a part is a function `Fn::Sub` cannot hold.
    fn sub_template(parts: &[Part]) -> Option<String> {
        let mut template = String::new();
        for part in parts {
            match part {
                // `${` starts a variable in Fn::Sub; `${!` is its literal escape.
                Part::Text(t) => template.push_str(&t.replace("${", "${!")),
                Part::Ref(t) => template.push_str(&format!("${{{}}}", t.logical_id)),
                Part::GetAtt(t, a) => template.push_str(&format!("${{{}.{a}}}", t.logical_id)),
                Part::Pseudo(p) => template.push_str(&format!("${{{p}}}")),
                Part::Join(..) | Part::Zone(_) | Part::UrlHost(_) => return None,
            }
        }
        Some(template)
    }
}

impl From<&str> for Expr {
    fn from(text: &str) -> Expr {
        Expr::text(text)
    }
}

impl From<String> for Expr {
    fn from(text: String) -> Expr {
        Expr::text(text)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn target(id: &str) -> Target {
        Target {
            stack: 1,
            path: id.to_owned(),
            logical_id: id.to_owned(),
        }
    }

    fn check(expr: Expr, expect: Value) {
        assert_eq!(expr.to_json(), expect);
    }

    #[test]
    fn renders() {
        check(Expr::text("a"), json!("a"));
        check(Expr::text(""), json!(""));
        check(
            Expr::concat([Expr::text("a"), Expr::text("b")]),
            json!("ab"),
        );
        check(Expr::reference(target("Q")), json!({"Ref": "Q"}));
        check(Expr::region(), json!({"Ref": "AWS::Region"}));
        check(
            Expr::get_att(target("Q"), "Arn"),
            json!({"Fn::GetAtt": ["Q", "Arn"]}),
        );
        check(
            Expr::reference(target("Q")).with_suffix("/*"),
            json!({"Fn::Sub": "${Q}/*"}),
        );
        check(
            Expr::get_att(target("Q"), "Arn").with_suffix("/x"),
            json!({"Fn::Sub": "${Q.Arn}/x"}),
        );
        check(
            Expr::concat([
                Expr::text("b-"),
                Expr::account_id(),
                Expr::text("-"),
                Expr::region(),
            ]),
            json!({"Fn::Sub": "b-${AWS::AccountId}-${AWS::Region}"}),
        );
        check(
            Expr::concat([Expr::text("${x}"), Expr::region()]),
            json!({"Fn::Sub": "${!x}${AWS::Region}"}),
        );
        check(
            Expr::concat([Expr::text(""), Expr::region(), Expr::text("")]),
            json!({"Ref": "AWS::Region"}),
        );
    }

    #[test]
    fn renders_functions() {
        check(
            Expr::join(
                ":",
                [
                    Expr::get_att(target("C"), "Endpoint.Address"),
                    Expr::get_att(target("C"), "Endpoint.Port"),
                ],
            ),
            json!({"Fn::Join": [":", [
                {"Fn::GetAtt": ["C", "Endpoint.Address"]},
                {"Fn::GetAtt": ["C", "Endpoint.Port"]},
            ]]}),
        );
        check(
            Expr::availability_zone(1),
            json!({"Fn::Select": [1, {"Fn::GetAZs": ""}]}),
        );
        check(
            Expr::concat([Expr::text("az-"), Expr::availability_zone(0)]),
            json!({"Fn::Join": ["", ["az-", {"Fn::Select": [0, {"Fn::GetAZs": ""}]}]]}),
        );
        let host = Expr::get_att(target("U"), "FunctionUrl").url_host();
        check(
            host.clone(),
            json!({"Fn::Select": [2, {"Fn::Split": ["/", {"Fn::GetAtt": ["U", "FunctionUrl"]}]}]}),
        );
        assert_eq!(host.targets(), [&target("U")]);
        let joined = Expr::join(",", [Expr::reference(target("A")), Expr::text("x")]);
        assert_eq!(joined.targets(), [&target("A")]);
        assert_eq!(joined.as_text(), None);
    }

    #[test]
    fn literal_text_only_without_references() {
        assert_eq!(
            Expr::concat([Expr::text("a"), Expr::text("b")])
                .as_text()
                .as_deref(),
            Some("ab")
        );
        assert_eq!(Expr::region().as_text(), None);
    }
}
