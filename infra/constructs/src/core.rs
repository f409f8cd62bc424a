//! The construct tree: [`Stack`], [`Scope`], [`Node`]; logical ids; synthesis.

use std::cell::RefCell;
use std::collections::HashSet;
use std::fmt;
use std::rc::Rc;
use std::sync::atomic::{AtomicU64, Ordering};

use serde_json::{json, Map, Value};
use sha2::{Digest, Sha256};

use crate::expr::{Expr, Target};
use crate::iam_policy::Statement;
use crate::Error;

static NEXT_STACK: AtomicU64 = AtomicU64::new(1);

/// One broken rule: where (the construct path) and what.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Violation {
    /// Construct path, `Stack/Construct/Child`.
    pub path: String,
    /// The rule that is broken and what to do about it.
    pub rule: String,
}

impl fmt::Display for Violation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.path, self.rule)
    }
}

#[derive(Debug)]
pub(crate) struct Resource {
    pub(crate) logical_id: String,
    pub(crate) type_name: &'static str,
    pub(crate) properties: Map<String, Value>,
    pub(crate) depends_on: Vec<String>,
    pub(crate) skips: Vec<(String, String)>,
    /// `DeletionPolicy` and `UpdateReplacePolicy: Retain`.
    pub(crate) retain: bool,
    /// Statements of the inline policy (roles only), added by grants.
    pub(crate) statements: Vec<Statement>,
}

#[derive(Debug)]
struct Inner {
    id: u64,
    name: String,
    description: Option<String>,
    parameters: Map<String, Value>,
    resources: Vec<Resource>,
    outputs: Map<String, Value>,
    paths: HashSet<String>,
    logical_ids: HashSet<String>,
    violations: Vec<Violation>,
}

/// A CloudFormation stack: the root of a construct tree and the unit of synthesis.
///
/// Cloning a `Stack` clones a handle to the same stack.
#[derive(Clone)]
pub struct Stack {
    inner: Rc<RefCell<Inner>>,
}

impl fmt::Debug for Stack {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Stack")
            .field("name", &self.inner.borrow().name)
            .finish_non_exhaustive()
    }
}

impl Stack {
    /// A new, empty stack. The name must be a valid CloudFormation stack name
    /// (`[A-Za-z][A-Za-z0-9-]{0,127}`); a bad one is reported at synth.
    pub fn new(name: &str) -> Stack {
        let mut violations = Vec::new();
        if !valid_stack_name(name) {
            violations.push(Violation {
                path: name.to_owned(),
                rule: format!(
                    "stack name `{name}` is invalid: it must match [A-Za-z][A-Za-z0-9-]{{0,127}} (use naming::Stage::stack_name)"
                ),
            });
        }
        Stack {
            inner: Rc::new(RefCell::new(Inner {
                id: NEXT_STACK.fetch_add(1, Ordering::Relaxed),
                name: name.to_owned(),
                description: None,
                parameters: Map::new(),
                resources: Vec::new(),
                outputs: Map::new(),
                paths: HashSet::new(),
                logical_ids: HashSet::new(),
                violations,
            })),
        }
    }

    /// The stack's name.
    pub fn name(&self) -> String {
        self.inner.borrow().name.clone()
    }

    /// Sets the template's `Description`.
    pub fn set_description(&self, description: &str) {
        self.inner.borrow_mut().description = Some(description.to_owned());
    }

    /// The root scope: constructs created in it are top-level.
    pub fn root(&self) -> Scope {
        Scope {
            stack: self.clone(),
            path: Vec::new(),
        }
    }

    fn id(&self) -> u64 {
        self.inner.borrow().id
    }

    pub(crate) fn same_as(&self, other: &Stack) -> bool {
        Rc::ptr_eq(&self.inner, &other.inner)
    }

    /// A `String` template parameter whose logical id is `id` (top-level ids are kept as written,
    /// so parameters have the names a deploy step fills in).
    pub fn string_parameter(&self, id: &str, description: &str) -> Parameter {
        let scope = self.root();
        let logical_id = scope.register(id);
        let mut inner = self.inner.borrow_mut();
        inner.parameters.insert(
            logical_id.clone(),
            json!({ "Type": "String", "MinLength": 1, "Description": description }),
        );
        Parameter {
            target: Target {
                stack: inner.id,
                path: id.to_owned(),
                logical_id,
            },
        }
    }

    /// A template output named `id` with `value`. References must be to this stack.
    pub fn output(&self, id: &str, description: &str, value: &Expr) {
        let scope = self.root();
        let logical_id = scope.register(id);
        let value = scope.resolve(value);
        self.inner.borrow_mut().outputs.insert(
            logical_id,
            json!({ "Description": description, "Value": value }),
        );
    }

    /// Records a broken rule at `path`.
    pub(crate) fn violation(&self, path: &str, rule: String) {
        self.inner.borrow_mut().violations.push(Violation {
            path: path.to_owned(),
            rule,
        });
    }

    pub(crate) fn with_resource<R>(&self, index: usize, f: impl FnOnce(&mut Resource) -> R) -> R {
        f(&mut self.inner.borrow_mut().resources[index])
    }

    /// The template, or every broken rule of the app.
    pub fn synth(&self) -> Result<Value, Error> {
        let inner = self.inner.borrow();
        if !inner.violations.is_empty() {
            return Err(Error::Invalid(inner.violations.clone()));
        }
        let mut template = Map::new();
        template.insert("AWSTemplateFormatVersion".into(), json!("2010-09-09"));
        if let Some(description) = &inner.description {
            template.insert("Description".into(), json!(description));
        }
        if !inner.parameters.is_empty() {
            template.insert("Parameters".into(), Value::Object(inner.parameters.clone()));
        }
        let mut resources = Map::new();
        for resource in &inner.resources {
            let mut properties = resource.properties.clone();
            if !resource.statements.is_empty() {
                properties.insert(
                    "Policies".into(),
                    json!([{
                        "PolicyName": "least-privilege",
                        "PolicyDocument": crate::iam_policy::document(&resource.statements),
                    }]),
                );
            }
            let mut entry = Map::new();
            entry.insert("Type".into(), json!(resource.type_name));
            if resource.retain {
                entry.insert("DeletionPolicy".into(), json!("Retain"));
                entry.insert("UpdateReplacePolicy".into(), json!("Retain"));
            }
            if !resource.depends_on.is_empty() {
                entry.insert("DependsOn".into(), json!(resource.depends_on));
            }
            if !resource.skips.is_empty() {
                let skips: Vec<Value> = resource
                    .skips
                    .iter()
                    .map(|(id, comment)| json!({ "id": id, "comment": comment }))
                    .collect();
                entry.insert("Metadata".into(), json!({ "checkov": { "skip": skips } }));
            }
            entry.insert("Properties".into(), Value::Object(properties));
            resources.insert(resource.logical_id.clone(), Value::Object(entry));
        }
        template.insert("Resources".into(), Value::Object(resources));
        if !inner.outputs.is_empty() {
            template.insert("Outputs".into(), Value::Object(inner.outputs.clone()));
        }
        Ok(Value::Object(template))
    }

    /// The template as pretty JSON with a trailing newline.
    pub fn synth_string(&self) -> Result<String, Error> {
        let mut text = serde_json::to_string_pretty(&self.synth()?)?;
        text.push('\n');
        Ok(text)
    }
}

/// A place in the construct tree: a stack and a path below it.
#[derive(Clone)]
pub struct Scope {
    stack: Stack,
    path: Vec<String>,
}

impl fmt::Debug for Scope {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Scope").field("path", &self.path()).finish()
    }
}

impl Scope {
    /// The stack this scope belongs to.
    pub fn stack(&self) -> &Stack {
        &self.stack
    }

    /// `Stack/a/b`: the path that error messages name.
    pub fn path(&self) -> String {
        let mut path = self.stack.name();
        for part in &self.path {
            path.push('/');
            path.push_str(part);
        }
        path
    }

    /// A child scope with construct id `id`. Ids are `[A-Za-z][A-Za-z0-9]*` and unique among
    /// siblings; a bad or repeated id is reported at synth.
    pub fn child(&self, id: &str) -> Scope {
        self.register(id);
        let mut path = self.path.clone();
        path.push(id.to_owned());
        Scope {
            stack: self.stack.clone(),
            path,
        }
    }

    /// Records a broken rule at this scope's path.
    pub fn violation(&self, rule: impl Into<String>) {
        self.stack.violation(&self.path(), rule.into());
    }

    /// Claims `id` under this scope and returns the logical id of that path.
    fn register(&self, id: &str) -> String {
        let mut components = self.path.clone();
        components.push(id.to_owned());
        let full = components.join("/");
        if !valid_construct_id(id) {
            self.violation(format!(
                "construct id `{}` is invalid: ids start with an ASCII letter and contain only ASCII letters and digits",
                id.escape_debug()
            ));
        }
        let fresh = self.stack.inner.borrow_mut().paths.insert(full);
        if !fresh {
            self.violation(format!(
                "construct id `{id}` is used twice in this scope; give each construct its own id"
            ));
        }
        logical_id(&components)
    }

    /// Adds a resource named `id` under this scope. `properties` are already resolved.
    pub(crate) fn add_resource(
        &self,
        id: &str,
        type_name: &'static str,
        properties: Map<String, Value>,
    ) -> Node {
        let logical_id = self.register(id);
        let scope_path = self.path();
        let mut path = scope_path.clone();
        if id != "Resource" {
            path.push('/');
            path.push_str(id);
        }
        let mut inner = self.stack.inner.borrow_mut();
        if !inner.logical_ids.insert(logical_id.clone()) {
            inner.violations.push(Violation {
                path: scope_path,
                rule: format!(
                    "logical id `{logical_id}` is produced twice; rename one of the constructs"
                ),
            });
        }
        inner.resources.push(Resource {
            logical_id: logical_id.clone(),
            type_name,
            properties,
            depends_on: Vec::new(),
            skips: Vec::new(),
            retain: false,
            statements: Vec::new(),
        });
        let index = inner.resources.len() - 1;
        Node {
            stack: self.stack.clone(),
            stack_id: inner.id,
            index,
            logical_id,
            path,
        }
    }

    /// The JSON of `value`, reporting a reference to a construct of another stack.
    pub(crate) fn resolve(&self, value: &Expr) -> Value {
        let id = self.stack.id();
        for target in value.targets() {
            if target.stack != id {
                self.violation(format!(
                    "refers to `{}`, a construct of another stack; a stack can only refer to its own constructs (pass the value in as a parameter)",
                    target.path
                ));
            }
        }
        value.to_json()
    }
}

/// The handle of one resource in a stack: its logical id and construct path.
#[derive(Clone)]
pub struct Node {
    stack: Stack,
    stack_id: u64,
    index: usize,
    logical_id: String,
    path: String,
}

impl fmt::Debug for Node {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Node")
            .field("path", &self.path)
            .field("logical_id", &self.logical_id)
            .finish()
    }
}

impl Node {
    /// The logical id in the template.
    pub fn logical_id(&self) -> &str {
        &self.logical_id
    }

    /// The construct path.
    pub fn path(&self) -> &str {
        &self.path
    }

    pub(crate) fn stack(&self) -> &Stack {
        &self.stack
    }

    fn target(&self) -> Target {
        Target {
            stack: self.stack_id,
            path: self.path.clone(),
            logical_id: self.logical_id.clone(),
        }
    }

    /// `{"Ref": logical id}`.
    pub fn reference(&self) -> Expr {
        Expr::reference(self.target())
    }

    /// `{"Fn::GetAtt": [logical id, attribute]}`.
    pub fn attribute(&self, attribute: &str) -> Expr {
        Expr::get_att(self.target(), attribute)
    }

    /// Skips a checkov check on this resource, with the one-line reason (template metadata).
    pub fn skip_check(&self, id: &str, reason: &str) {
        if reason.trim().is_empty() {
            self.stack.violation(
                &self.path,
                format!("checkov skip `{id}` has no reason; say why in one line"),
            );
        }
        self.stack.with_resource(self.index, |r| {
            r.skips.push((id.to_owned(), reason.to_owned()))
        });
    }

    /// Keeps the resource (and its data) when the stack is deleted or the resource replaced
    /// (`DeletionPolicy` and `UpdateReplacePolicy: Retain`).
    pub fn retain(&self) {
        self.stack.with_resource(self.index, |r| r.retain = true);
    }

    /// Makes this resource wait for `other` (`DependsOn`).
    pub fn add_dependency(&self, other: &Node) {
        if !self.stack.same_as(&other.stack) {
            self.stack.violation(
                &self.path,
                format!("depends on `{}`, a construct of another stack; a stack can only depend on its own constructs", other.path),
            );
            return;
        }
        let id = other.logical_id.clone();
        self.stack.with_resource(self.index, |r| {
            if !r.depends_on.contains(&id) {
                r.depends_on.push(id);
            }
        });
    }

    /// Sets property `key` to `value`, reporting a reference to a construct of another stack.
    pub(crate) fn set_property(&self, key: &str, value: &Expr) {
        for target in value.targets() {
            if target.stack != self.stack_id {
                self.violation(format!(
                    "refers to `{}`, a construct of another stack; a stack can only refer to its own constructs",
                    target.path
                ));
            }
        }
        let json = value.to_json();
        self.stack.with_resource(self.index, |r| {
            r.properties.insert(key.to_owned(), json);
        });
    }

    pub(crate) fn add_statement(&self, statement: Statement) {
        self.stack.with_resource(self.index, |r| {
            if !r.statements.contains(&statement) {
                r.statements.push(statement);
            }
        });
    }

    pub(crate) fn violation(&self, rule: String) {
        self.stack.violation(&self.path, rule);
    }
}

/// A template parameter.
#[derive(Debug, Clone)]
pub struct Parameter {
    target: Target,
}

impl Parameter {
    /// `{"Ref": parameter}`.
    pub fn value(&self) -> Expr {
        Expr::reference(self.target.clone())
    }

    /// The parameter's logical id.
    pub fn logical_id(&self) -> &str {
        &self.target.logical_id
    }
}

fn valid_construct_id(id: &str) -> bool {
    let mut chars = id.chars();
    matches!(chars.next(), Some(c) if c.is_ascii_alphabetic())
        && chars.all(|c| c.is_ascii_alphanumeric())
}

pub(crate) fn valid_stack_name(name: &str) -> bool {
    let mut chars = name.chars();
    name.len() <= 128
        && matches!(chars.next(), Some(c) if c.is_ascii_alphabetic())
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '-')
}

/// The logical id of a construct path, as CDK's `makeUniqueId` does it: a top-level id is kept as
/// written; deeper paths get their readable components (without `Resource` and repeats) followed by
/// eight hex digits of the SHA-256 of the whole path, so different paths never share an id and a
/// rename is visible as a replacement.
pub(crate) fn logical_id(components: &[String]) -> String {
    const MAX_READABLE: usize = 255 - 8;
    if let [only] = components {
        return only.chars().filter(char::is_ascii_alphanumeric).collect();
    }
    let digest = Sha256::digest(components.join("/").as_bytes());
    let hash = hex::encode_upper(&digest[..4]);
    let mut readable = String::new();
    let mut previous: Option<&str> = None;
    for component in components {
        if component == "Resource" || previous == Some(component.as_str()) {
            continue;
        }
        previous = Some(component);
        readable.extend(component.chars().filter(char::is_ascii_alphanumeric));
    }
    readable.truncate(MAX_READABLE);
    readable + &hash
}

#[cfg(test)]
mod tests {
    use super::*;

    fn check_id(path: &str, expect: &str) {
        let components: Vec<String> = path.split('/').map(str::to_owned).collect();
        assert_eq!(logical_id(&components), expect, "path {path}");
    }

    #[test]
    fn logical_ids() {
        check_id("Events", "Events");
        check_id("Events/Resource", "Events664F68C3");
        check_id("Collect/Role", "CollectRole5D89A537");
        check_id("Collect/Collect", "Collect78E29DF2");
        check_id("A/B/C", "ABC555F2DA3");
    }

    #[test]
    fn logical_ids_are_alphanumeric_and_bounded() {
        let long = vec!["A".repeat(300), "B".repeat(300)];
        let id = logical_id(&long);
        assert_eq!(id.len(), 255);
        assert!(id.chars().all(|c| c.is_ascii_alphanumeric()));
    }

    fn check_stack_name(name: &str, ok: bool) {
        assert_eq!(valid_stack_name(name), ok, "{name:?}");
    }

    #[test]
    fn stack_names() {
        check_stack_name("tally-main", true);
        check_stack_name("a", true);
        check_stack_name(&format!("a{}", "b".repeat(127)), true);
        check_stack_name(&format!("a{}", "b".repeat(128)), false);
        check_stack_name("", false);
        check_stack_name("1abc", false);
        check_stack_name("-abc", false);
        check_stack_name("a_b", false);
        check_stack_name("a/b", false);
        check_stack_name("tally-über", false);
    }

    fn check_construct_id(id: &str, ok: bool) {
        assert_eq!(valid_construct_id(id), ok, "{id:?}");
    }

    #[test]
    fn construct_ids() {
        check_construct_id("Events", true);
        check_construct_id("E2", true);
        check_construct_id("", false);
        check_construct_id("2E", false);
        check_construct_id("A/B", false);
        check_construct_id("A-B", false);
        check_construct_id("Ünter", false);
    }

    #[test]
    fn repeated_and_invalid_ids_are_violations() {
        let stack = Stack::new("s");
        let root = stack.root();
        root.child("A");
        root.child("A");
        root.child("a/b");
        let Err(Error::Invalid(violations)) = stack.synth() else {
            panic!("expected violations")
        };
        let text: Vec<String> = violations.iter().map(ToString::to_string).collect();
        assert_eq!(
            text,
            [
                "s: construct id `A` is used twice in this scope; give each construct its own id",
                "s: construct id `a/b` is invalid: ids start with an ASCII letter and contain only ASCII letters and digits",
            ]
        );
    }

    #[test]
    fn bad_stack_name_is_a_violation() {
        let stack = Stack::new("9lives");
        let error = stack
            .synth()
            .err()
            .map(|e| e.to_string())
            .unwrap_or_default();
        assert!(error.contains("stack name `9lives` is invalid"), "{error}");
    }
}
