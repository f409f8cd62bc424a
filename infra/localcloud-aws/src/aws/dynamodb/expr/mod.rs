//! DynamoDB expressions: condition, filter and key-condition expressions, update expressions, projections.
//!
//! The grammar is AWS's (names, `#name` and `:value` references, document paths `a.b[2]`); supported:
//! comparisons `= <> < <= > >=`, `BETWEEN`, `IN`, `AND` / `OR` / `NOT`, parentheses, the functions
//! `attribute_exists`, `attribute_not_exists`, `attribute_type`, `begins_with`, `contains`, `size`; update
//! clauses `SET` (with `+`, `-`, `if_not_exists`, `list_append`), `ADD` (numbers, sets), `REMOVE`, `DELETE` (sets).
//! Values are AttributeValue JSON (`{"N": "1"}`), kept in their wire form.
//!
//! Limits, as AWS documents them (Constraints, "Expression parameters"): an expression is at most 4 KB
//! ([`MAX_EXPRESSION_BYTES`]), holds at most 300 operators and functions ([`MAX_OPERATORS`]), an `IN` list at
//! most 100 operands ([`MAX_IN_OPERANDS`]), a document path at most 32 levels ([`MAX_PATH_DEPTH`]). AWS
//! documents no limit on parentheses; the parser recurses on them, so the local cloud refuses nesting deeper
//! than [`MAX_PARENTHESES`] (which no 300-operator expression needs) rather than overflow its stack.
//! Every limit answers `ValidationException` naming the expression and the count.
//!
//! Here: the syntax tree and the request's references ([`Refs`]); `parse.rs` turns the text into the tree,
//! `eval.rs` evaluates conditions and applies updates and projections to items; `tests.rs` is their table.

use std::collections::BTreeSet;

use serde_json::{Map, Value};

use crate::aws::AwsError;

mod eval;
mod parse;
#[cfg(test)]
mod tests;

pub use eval::{apply, compare, equal, eval, get_path, project, type_of, updated_names};
pub use parse::{parse_condition, parse_projection, parse_update};

pub type Item = Map<String, Value>;

/// Longest expression string AWS accepts, in bytes.
pub const MAX_EXPRESSION_BYTES: usize = 4096;
/// Most operators and functions in one expression.
pub const MAX_OPERATORS: usize = 300;
/// Most operands in the list of one `IN`.
pub const MAX_IN_OPERANDS: usize = 100;
/// Most levels of a document path (`a.b[1].c` has 4).
pub const MAX_PATH_DEPTH: usize = 32;
/// Deepest parenthesis nesting the local cloud parses (a local limit: AWS documents none).
pub const MAX_PARENTHESES: usize = 64;

/// One step of a document path.
#[derive(Debug, Clone, PartialEq)]
pub enum Seg {
    Name(String),
    Index(usize),
}

pub type Path = Vec<Seg>;

#[derive(Debug, Clone, PartialEq)]
pub enum Operand {
    Path(Path),
    Value(Value),
    Size(Path),
    IfNotExists(Path, Box<Operand>),
    ListAppend(Box<Operand>, Box<Operand>),
    Plus(Box<Operand>, Box<Operand>),
    Minus(Box<Operand>, Box<Operand>),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Cmp {
    Eq,
    Ne,
    Lt,
    Le,
    Gt,
    Ge,
}

#[derive(Debug, Clone, PartialEq)]
pub enum Cond {
    Cmp(Operand, Cmp, Operand),
    Between(Operand, Operand, Operand),
    In(Operand, Vec<Operand>),
    And(Box<Cond>, Box<Cond>),
    Or(Box<Cond>, Box<Cond>),
    Not(Box<Cond>),
    Exists(Path),
    NotExists(Path),
    Type(Path, Operand),
    BeginsWith(Operand, Operand),
    Contains(Operand, Operand),
}

#[derive(Debug, Clone, Default, PartialEq)]
pub struct Update {
    pub set: Vec<(Path, Operand)>,
    pub add: Vec<(Path, Operand)>,
    pub remove: Vec<Path>,
    pub delete: Vec<(Path, Operand)>,
}

/// `ExpressionAttributeNames` and `ExpressionAttributeValues` of one request, with what was used.
#[derive(Debug, Default)]
pub struct Refs<'a> {
    names: Option<&'a Map<String, Value>>,
    values: Option<&'a Map<String, Value>>,
    used_names: BTreeSet<String>,
    used_values: BTreeSet<String>,
}

impl<'a> Refs<'a> {
    pub fn new(request: &'a Value) -> Result<Refs<'a>, AwsError> {
        let names = crate::aws::input::opt_object(request, "ExpressionAttributeNames")?;
        let values = crate::aws::input::opt_object(request, "ExpressionAttributeValues")?;
        if let Some(values) = values {
            for (key, value) in values {
                super::check_value(value, key)?;
            }
        }
        Ok(Refs {
            names,
            values,
            ..Refs::default()
        })
    }

    /// AWS refuses names and values that were supplied but not used by any expression of the request.
    pub fn check_all_used(&self) -> Result<(), AwsError> {
        let unused = |map: Option<&Map<String, Value>>, used: &BTreeSet<String>| -> Vec<String> {
            map.map(|m| m.keys().filter(|k| !used.contains(*k)).cloned().collect())
                .unwrap_or_default()
        };
        let names = unused(self.names, &self.used_names);
        if !names.is_empty() {
            return Err(AwsError::validation(format!(
                "Value provided in ExpressionAttributeNames unused in expressions: keys: {{{}}}",
                names.join(", ")
            )));
        }
        let values = unused(self.values, &self.used_values);
        if !values.is_empty() {
            return Err(AwsError::validation(format!(
                "Value provided in ExpressionAttributeValues unused in expressions: keys: {{{}}}",
                values.join(", ")
            )));
        }
        Ok(())
    }

    fn name(&mut self, reference: &str) -> Result<String, AwsError> {
        let found = self
            .names
            .and_then(|m| m.get(reference))
            .and_then(Value::as_str);
        match found {
            Some(name) => {
                self.used_names.insert(reference.to_owned());
                Ok(name.to_owned())
            }
            None => Err(AwsError::validation(format!(
                "An expression attribute name used in the document path is not defined; attribute name: {reference}"
            ))),
        }
    }

    fn value(&mut self, reference: &str) -> Result<Value, AwsError> {
        match self.values.and_then(|m| m.get(reference)) {
            Some(value) => {
                self.used_values.insert(reference.to_owned());
                Ok(value.clone())
            }
            None => Err(AwsError::validation(format!(
                "An expression attribute value used in expression is not defined; attribute value: {reference}"
            ))),
        }
    }
}

pub fn show_path(path: &[Seg]) -> String {
    let mut out = String::new();
    for seg in path {
        match seg {
            Seg::Name(name) => {
                if !out.is_empty() {
                    out.push_str(", ");
                }
                out.push_str(name);
            }
            Seg::Index(i) => out.push_str(&format!("[{i}]")),
        }
    }
    out
}
