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

use std::cmp::Ordering;
use std::collections::BTreeSet;

use serde_json::{json, Map, Value};

use crate::aws::AwsError;

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

#[derive(Debug, Clone, PartialEq)]
enum Tok {
    Word(String),
    Name(String),
    Val(String),
    Num(usize),
    Punct(&'static str),
}

fn tokenize(text: &str, what: &str) -> Result<Vec<Tok>, AwsError> {
    let bytes = text.as_bytes();
    let mut tokens = Vec::new();
    let mut i = 0;
    let word_char = |b: u8| b.is_ascii_alphanumeric() || b == b'_';
    while i < bytes.len() {
        let b = bytes[i];
        if b.is_ascii_whitespace() {
            i += 1;
            continue;
        }
        let start = i;
        if b == b'#' || b == b':' {
            i += 1;
            while i < bytes.len() && word_char(bytes[i]) {
                i += 1;
            }
            if i == start + 1 {
                return Err(syntax(what, &text[start..start + 1], text));
            }
            let reference = text[start..i].to_owned();
            tokens.push(if b == b'#' {
                Tok::Name(reference)
            } else {
                Tok::Val(reference)
            });
            continue;
        }
        if b.is_ascii_digit() {
            while i < bytes.len() && bytes[i].is_ascii_digit() {
                i += 1;
            }
            let n = text[start..i]
                .parse()
                .map_err(|_| syntax(what, &text[start..i], text))?;
            tokens.push(Tok::Num(n));
            continue;
        }
        if word_char(b) {
            while i < bytes.len() && word_char(bytes[i]) {
                i += 1;
            }
            tokens.push(Tok::Word(text[start..i].to_owned()));
            continue;
        }
        let two = text.get(i..i + 2).unwrap_or("");
        let punct = match two {
            "<>" => Some("<>"),
            "<=" => Some("<="),
            ">=" => Some(">="),
            _ => None,
        };
        if let Some(p) = punct {
            tokens.push(Tok::Punct(p));
            i += 2;
            continue;
        }
        let p = match b {
            b'(' => "(",
            b')' => ")",
            b',' => ",",
            b'.' => ".",
            b'[' => "[",
            b']' => "]",
            b'=' => "=",
            b'<' => "<",
            b'>' => ">",
            b'+' => "+",
            b'-' => "-",
            _ => {
                let ch = text[i..].chars().next().unwrap_or('?');
                return Err(AwsError::validation(format!(
                    "Invalid {what}: Syntax error; token: \"{ch}\", near: \"{}\"",
                    near(text, i)
                )));
            }
        };
        tokens.push(Tok::Punct(p));
        i += 1;
    }
    Ok(tokens)
}

/// Operators and functions, as AWS counts them against [`MAX_OPERATORS`]: comparators, `AND`, `OR`, `NOT`,
/// `BETWEEN`, `IN`, `+`, `-` and every function call.
fn count_operators(tokens: &[Tok]) -> usize {
    tokens
        .iter()
        .zip(tokens.iter().skip(1).map(Some).chain([None]))
        .filter(|(tok, next)| match tok {
            Tok::Punct(p) => ["=", "<>", "<", "<=", ">", ">=", "+", "-"].contains(p),
            Tok::Word(w) => {
                ["AND", "OR", "NOT", "BETWEEN", "IN"]
                    .iter()
                    .any(|op| w.eq_ignore_ascii_case(op))
                    || matches!(next, Some(Tok::Punct("(")))
            }
            _ => false,
        })
        .count()
}

fn near(text: &str, at: usize) -> String {
    let start = text[..at].char_indices().rev().nth(8).map_or(0, |(i, _)| i);
    text[start..].chars().take(20).collect()
}

fn syntax(what: &str, token: &str, text: &str) -> AwsError {
    AwsError::validation(format!(
        "Invalid {what}: Syntax error; token: \"{token}\", near: \"{text}\""
    ))
}

/// Words AWS reserves that may not be used bare as attribute names (a subset: the ones that collide in
/// practice; the full list has 573).
const RESERVED: &[&str] = &[
    "and",
    "between",
    "in",
    "not",
    "or",
    "set",
    "add",
    "remove",
    "delete",
    "size",
    "count",
    "name",
    "value",
    "values",
    "data",
    "date",
    "timestamp",
    "type",
    "status",
    "key",
    "keys",
    "user",
    "users",
    "comment",
    "time",
    "year",
    "month",
    "day",
    "hour",
    "minute",
    "second",
    "table",
    "index",
    "order",
    "group",
    "by",
    "from",
    "select",
    "where",
    "ttl",
    "first",
    "last",
    "sum",
    "avg",
    "min",
    "max",
    "limit",
    "level",
    "range",
    "hash",
];

struct Parser<'r, 'a> {
    tokens: Vec<Tok>,
    at: usize,
    /// Open parentheses around the current position.
    depth: usize,
    refs: &'r mut Refs<'a>,
    what: &'static str,
    text: String,
}

impl<'r, 'a> Parser<'r, 'a> {
    fn new(
        text: &str,
        what: &'static str,
        refs: &'r mut Refs<'a>,
    ) -> Result<Parser<'r, 'a>, AwsError> {
        if text.trim().is_empty() {
            return Err(AwsError::validation(format!(
                "Invalid {what}: The expression can not be empty;"
            )));
        }
        if text.len() > MAX_EXPRESSION_BYTES {
            return Err(AwsError::validation(format!(
                "Invalid {what}: Expression size has exceeded the maximum allowed size; expression size: {} (at most {MAX_EXPRESSION_BYTES} bytes)",
                text.len()
            )));
        }
        let tokens = tokenize(text, what)?;
        let operators = count_operators(&tokens);
        if operators > MAX_OPERATORS {
            return Err(AwsError::validation(format!(
                "Invalid {what}: The expression contains too many operators; operator count: {operators} (at most {MAX_OPERATORS})"
            )));
        }
        Ok(Parser {
            tokens,
            at: 0,
            depth: 0,
            refs,
            what,
            text: text.to_owned(),
        })
    }

    fn peek(&self) -> Option<&Tok> {
        self.tokens.get(self.at)
    }

    fn next(&mut self) -> Option<Tok> {
        let tok = self.tokens.get(self.at).cloned();
        self.at += 1;
        tok
    }

    fn error(&self) -> AwsError {
        let token = match self.tokens.get(self.at) {
            None => "<EOF>".to_owned(),
            Some(Tok::Word(w)) | Some(Tok::Name(w)) | Some(Tok::Val(w)) => w.clone(),
            Some(Tok::Num(n)) => n.to_string(),
            Some(Tok::Punct(p)) => (*p).to_owned(),
        };
        syntax(self.what, &token, &self.text)
    }

    fn is_word(&self, word: &str) -> bool {
        matches!(self.peek(), Some(Tok::Word(w)) if w.eq_ignore_ascii_case(word))
    }

    fn is_punct(&self, p: &str) -> bool {
        matches!(self.peek(), Some(Tok::Punct(q)) if *q == p)
    }

    fn expect_punct(&mut self, p: &str) -> Result<(), AwsError> {
        if self.is_punct(p) {
            self.at += 1;
            Ok(())
        } else {
            Err(self.error())
        }
    }

    fn expect_word(&mut self, word: &str) -> Result<(), AwsError> {
        if self.is_word(word) {
            self.at += 1;
            Ok(())
        } else {
            Err(self.error())
        }
    }

    fn done(&self) -> Result<(), AwsError> {
        if self.at < self.tokens.len() {
            Err(self.error())
        } else {
            Ok(())
        }
    }

    fn path_name(&mut self) -> Result<String, AwsError> {
        match self.next() {
            Some(Tok::Name(reference)) => self.refs.name(&reference),
            Some(Tok::Word(word)) => {
                if RESERVED.contains(&word.to_ascii_lowercase().as_str()) {
                    return Err(AwsError::validation(format!(
                        "Invalid {}: Attribute name is a reserved keyword; reserved keyword: {word}",
                        self.what
                    )));
                }
                Ok(word)
            }
            _ => {
                self.at -= 1;
                Err(self.error())
            }
        }
    }

    fn path(&mut self) -> Result<Path, AwsError> {
        let mut path = vec![Seg::Name(self.path_name()?)];
        loop {
            if self.is_punct(".") {
                self.at += 1;
                path.push(Seg::Name(self.path_name()?));
            } else if self.is_punct("[") {
                self.at += 1;
                match self.next() {
                    Some(Tok::Num(n)) => path.push(Seg::Index(n)),
                    _ => {
                        self.at -= 1;
                        return Err(self.error());
                    }
                }
                self.expect_punct("]")?;
            } else {
                return Ok(path);
            }
            if path.len() > MAX_PATH_DEPTH {
                return Err(AwsError::validation(format!(
                    "Invalid {}: The document path has too many nesting levels; nesting levels: {} (at most {MAX_PATH_DEPTH})",
                    self.what,
                    path.len()
                )));
            }
        }
    }

    fn function_name(&self) -> Option<String> {
        match (self.tokens.get(self.at), self.tokens.get(self.at + 1)) {
            (Some(Tok::Word(w)), Some(Tok::Punct("("))) => Some(w.to_ascii_lowercase()),
            _ => None,
        }
    }

    /// An operand of a condition: a path, a value or `size(path)`.
    fn operand(&mut self) -> Result<Operand, AwsError> {
        if let Some(Tok::Val(reference)) = self.peek().cloned() {
            self.at += 1;
            return Ok(Operand::Value(self.refs.value(&reference)?));
        }
        if self.function_name().as_deref() == Some("size") {
            self.at += 2;
            let path = self.path()?;
            self.expect_punct(")")?;
            return Ok(Operand::Size(path));
        }
        Ok(Operand::Path(self.path()?))
    }

    fn condition(&mut self) -> Result<Cond, AwsError> {
        let mut left = self.and()?;
        while self.is_word("OR") {
            self.at += 1;
            left = Cond::Or(Box::new(left), Box::new(self.and()?));
        }
        Ok(left)
    }

    fn and(&mut self) -> Result<Cond, AwsError> {
        let mut left = self.not()?;
        while self.is_word("AND") {
            self.at += 1;
            left = Cond::And(Box::new(left), Box::new(self.not()?));
        }
        Ok(left)
    }

    fn not(&mut self) -> Result<Cond, AwsError> {
        if self.is_word("NOT") {
            self.at += 1;
            return Ok(Cond::Not(Box::new(self.not()?)));
        }
        self.primary()
    }

    fn primary(&mut self) -> Result<Cond, AwsError> {
        if self.is_punct("(") {
            self.at += 1;
            self.depth += 1;
            if self.depth > MAX_PARENTHESES {
                return Err(AwsError::validation(format!(
                    "Invalid {}: The expression nests parentheses more than {MAX_PARENTHESES} deep; flatten it",
                    self.what
                )));
            }
            let inner = self.condition()?;
            self.expect_punct(")")?;
            self.depth -= 1;
            return Ok(inner);
        }
        if let Some(function) = self.function_name() {
            if function != "size" {
                self.at += 2;
                let cond = match function.as_str() {
                    "attribute_exists" => Cond::Exists(self.path()?),
                    "attribute_not_exists" => Cond::NotExists(self.path()?),
                    "attribute_type" => {
                        let path = self.path()?;
                        self.expect_punct(",")?;
                        Cond::Type(path, self.operand()?)
                    }
                    "begins_with" | "contains" => {
                        let a = self.operand()?;
                        self.expect_punct(",")?;
                        let b = self.operand()?;
                        if function == "contains" {
                            Cond::Contains(a, b)
                        } else {
                            Cond::BeginsWith(a, b)
                        }
                    }
                    other => {
                        return Err(AwsError::validation(format!(
                            "Invalid {}: Invalid function name; function: {other}",
                            self.what
                        )))
                    }
                };
                self.expect_punct(")")?;
                return Ok(cond);
            }
        }
        let left = self.operand()?;
        if self.is_word("BETWEEN") {
            self.at += 1;
            let low = self.operand()?;
            self.expect_word("AND")?;
            let high = self.operand()?;
            return Ok(Cond::Between(left, low, high));
        }
        if self.is_word("IN") {
            self.at += 1;
            self.expect_punct("(")?;
            let mut list = vec![self.operand()?];
            while self.is_punct(",") {
                self.at += 1;
                list.push(self.operand()?);
                if list.len() > MAX_IN_OPERANDS {
                    return Err(AwsError::validation(format!(
                        "Invalid {}: The IN operator is provided with too many operands; number of operands: more than {MAX_IN_OPERANDS}",
                        self.what
                    )));
                }
            }
            self.expect_punct(")")?;
            return Ok(Cond::In(left, list));
        }
        let op = match self.next() {
            Some(Tok::Punct("=")) => Cmp::Eq,
            Some(Tok::Punct("<>")) => Cmp::Ne,
            Some(Tok::Punct("<")) => Cmp::Lt,
            Some(Tok::Punct("<=")) => Cmp::Le,
            Some(Tok::Punct(">")) => Cmp::Gt,
            Some(Tok::Punct(">=")) => Cmp::Ge,
            _ => {
                self.at -= 1;
                return Err(self.error());
            }
        };
        Ok(Cond::Cmp(left, op, self.operand()?))
    }

    /// The right-hand side of `SET path = ...`.
    fn set_value(&mut self) -> Result<Operand, AwsError> {
        let left = self.set_term()?;
        if self.is_punct("+") || self.is_punct("-") {
            let plus = self.is_punct("+");
            self.at += 1;
            let right = self.set_term()?;
            return Ok(if plus {
                Operand::Plus(Box::new(left), Box::new(right))
            } else {
                Operand::Minus(Box::new(left), Box::new(right))
            });
        }
        Ok(left)
    }

    fn set_term(&mut self) -> Result<Operand, AwsError> {
        match self.function_name().as_deref() {
            Some("if_not_exists") => {
                self.at += 2;
                let path = self.path()?;
                self.expect_punct(",")?;
                let fallback = self.set_value()?;
                self.expect_punct(")")?;
                Ok(Operand::IfNotExists(path, Box::new(fallback)))
            }
            Some("list_append") => {
                self.at += 2;
                let a = self.set_value()?;
                self.expect_punct(",")?;
                let b = self.set_value()?;
                self.expect_punct(")")?;
                Ok(Operand::ListAppend(Box::new(a), Box::new(b)))
            }
            Some(other) => Err(AwsError::validation(format!(
                "Invalid {}: Invalid function name; function: {other}",
                self.what
            ))),
            None => match self.peek().cloned() {
                Some(Tok::Val(reference)) => {
                    self.at += 1;
                    Ok(Operand::Value(self.refs.value(&reference)?))
                }
                _ => Ok(Operand::Path(self.path()?)),
            },
        }
    }

    fn update(&mut self) -> Result<Update, AwsError> {
        let mut update = Update::default();
        let mut seen = BTreeSet::new();
        while self.at < self.tokens.len() {
            let clause = match self.next() {
                Some(Tok::Word(w)) => w.to_ascii_uppercase(),
                _ => {
                    self.at -= 1;
                    return Err(self.error());
                }
            };
            if !seen.insert(clause.clone()) {
                return Err(AwsError::validation(format!(
                    "Invalid UpdateExpression: The \"{clause}\" section can only be used once in an update expression;"
                )));
            }
            loop {
                match clause.as_str() {
                    "SET" => {
                        let path = self.path()?;
                        self.expect_punct("=")?;
                        update.set.push((path, self.set_value()?));
                    }
                    "ADD" | "DELETE" => {
                        let path = self.path()?;
                        let value = match self.next() {
                            Some(Tok::Val(reference)) => {
                                Operand::Value(self.refs.value(&reference)?)
                            }
                            _ => {
                                self.at -= 1;
                                return Err(self.error());
                            }
                        };
                        if clause == "ADD" {
                            update.add.push((path, value));
                        } else {
                            update.delete.push((path, value));
                        }
                    }
                    "REMOVE" => update.remove.push(self.path()?),
                    _ => {
                        self.at -= 1;
                        return Err(self.error());
                    }
                }
                if self.is_punct(",") {
                    self.at += 1;
                } else {
                    break;
                }
            }
        }
        Ok(update)
    }
}

pub fn parse_condition(
    text: &str,
    what: &'static str,
    refs: &mut Refs<'_>,
) -> Result<Cond, AwsError> {
    let mut parser = Parser::new(text, what, refs)?;
    let cond = parser.condition()?;
    parser.done()?;
    Ok(cond)
}

pub fn parse_update(text: &str, refs: &mut Refs<'_>) -> Result<Update, AwsError> {
    let mut parser = Parser::new(text, "UpdateExpression", refs)?;
    let update = parser.update()?;
    parser.done()?;
    let mut paths: Vec<&Path> = update.set.iter().map(|(p, _)| p).collect();
    paths.extend(update.add.iter().map(|(p, _)| p));
    paths.extend(update.remove.iter());
    paths.extend(update.delete.iter().map(|(p, _)| p));
    for (i, a) in paths.iter().enumerate() {
        for b in &paths[i + 1..] {
            let n = a.len().min(b.len());
            if a[..n] == b[..n] {
                return Err(AwsError::validation(format!(
                    "Invalid UpdateExpression: Two document paths overlap with each other; must remove or rewrite one of these paths; path one: [{}], path two: [{}]",
                    show_path(a),
                    show_path(b)
                )));
            }
        }
    }
    Ok(update)
}

pub fn parse_projection(text: &str, refs: &mut Refs<'_>) -> Result<Vec<Path>, AwsError> {
    let mut parser = Parser::new(text, "ProjectionExpression", refs)?;
    let mut paths = vec![parser.path()?];
    while parser.is_punct(",") {
        parser.at += 1;
        paths.push(parser.path()?);
    }
    parser.done()?;
    Ok(paths)
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

/// The value at a path, if present.
pub fn get_path<'v>(item: &'v Item, path: &[Seg]) -> Option<&'v Value> {
    let (Seg::Name(first), rest) = path.split_first()? else {
        return None;
    };
    let mut value = item.get(first)?;
    for seg in rest {
        value = match seg {
            Seg::Name(name) => value.get("M")?.get(name)?,
            Seg::Index(i) => value.get("L")?.get(*i)?,
        };
    }
    Some(value)
}

fn set_path(item: &mut Item, path: &[Seg], new: Value) -> Result<(), AwsError> {
    let invalid = || {
        AwsError::validation(
            "The document path provided in the update expression is invalid for update",
        )
    };
    let Some((Seg::Name(first), rest)) = path.split_first() else {
        return Err(invalid());
    };
    if rest.is_empty() {
        item.insert(first.clone(), new);
        return Ok(());
    }
    let mut value = item.get_mut(first).ok_or_else(invalid)?;
    for (i, seg) in rest.iter().enumerate() {
        let last = i + 1 == rest.len();
        match seg {
            Seg::Name(name) => {
                let map = value
                    .get_mut("M")
                    .and_then(Value::as_object_mut)
                    .ok_or_else(invalid)?;
                if last {
                    map.insert(name.clone(), new);
                    return Ok(());
                }
                value = map.get_mut(name).ok_or_else(invalid)?;
            }
            Seg::Index(index) => {
                let list = value
                    .get_mut("L")
                    .and_then(Value::as_array_mut)
                    .ok_or_else(invalid)?;
                if last {
                    if *index < list.len() {
                        list[*index] = new;
                    } else {
                        list.push(new);
                    }
                    return Ok(());
                }
                value = list.get_mut(*index).ok_or_else(invalid)?;
            }
        }
    }
    Err(invalid())
}

fn remove_path(item: &mut Item, path: &[Seg]) {
    let Some((Seg::Name(first), rest)) = path.split_first() else {
        return;
    };
    if rest.is_empty() {
        item.remove(first);
        return;
    }
    let Some(mut value) = item.get_mut(first) else {
        return;
    };
    for (i, seg) in rest.iter().enumerate() {
        let last = i + 1 == rest.len();
        match seg {
            Seg::Name(name) => {
                let Some(map) = value.get_mut("M").and_then(Value::as_object_mut) else {
                    return;
                };
                if last {
                    map.remove(name);
                    return;
                }
                let Some(next) = map.get_mut(name) else {
                    return;
                };
                value = next;
            }
            Seg::Index(index) => {
                let Some(list) = value.get_mut("L").and_then(Value::as_array_mut) else {
                    return;
                };
                if last {
                    if *index < list.len() {
                        list.remove(*index);
                    }
                    return;
                }
                let Some(next) = list.get_mut(*index) else {
                    return;
                };
                value = next;
            }
        }
    }
}

/// The AttributeValue's type tag (`S`, `N`, `B`, `SS`, ...).
pub fn type_of(value: &Value) -> &str {
    value
        .as_object()
        .and_then(|o| o.keys().next())
        .map_or("", String::as_str)
}

fn resolve(item: &Item, operand: &Operand) -> Result<Option<Value>, AwsError> {
    Ok(match operand {
        Operand::Path(path) => get_path(item, path).cloned(),
        Operand::Value(value) => Some(value.clone()),
        Operand::Size(path) => match get_path(item, path) {
            None => None,
            Some(value) => {
                let size = match value.as_object().and_then(|o| o.iter().next()) {
                    Some((t, Value::String(s))) if t == "S" => s.chars().count(),
                    Some((t, Value::String(s))) if t == "B" => {
                        super::decode_b64(s).map(|b| b.len()).unwrap_or(0)
                    }
                    Some((_, Value::Array(a))) => a.len(),
                    Some((_, Value::Object(m))) => m.len(),
                    _ => {
                        return Err(AwsError::validation(format!(
                            "Invalid ConditionExpression: Incorrect operand type for operator or function; operator or function: size, operand type: {}",
                            type_of(value)
                        )))
                    }
                };
                Some(json!({"N": size.to_string()}))
            }
        },
        Operand::IfNotExists(path, fallback) => match get_path(item, path) {
            Some(value) => Some(value.clone()),
            None => resolve(item, fallback)?,
        },
        Operand::ListAppend(a, b) => {
            let (a, b) = (resolve(item, a)?, resolve(item, b)?);
            let list = |v: Option<Value>| -> Result<Vec<Value>, AwsError> {
                match v.as_ref().and_then(|v| v.get("L")).and_then(Value::as_array) {
                    Some(list) => Ok(list.clone()),
                    None => Err(AwsError::validation(
                        "Invalid UpdateExpression: Incorrect operand type for operator or function; operator or function: list_append, operand type: not a list",
                    )),
                }
            };
            let mut out = list(a)?;
            out.extend(list(b)?);
            Some(json!({ "L": out }))
        }
        Operand::Plus(a, b) | Operand::Minus(a, b) => {
            let plus = matches!(operand, Operand::Plus(..));
            let (a, b) = (resolve(item, a)?, resolve(item, b)?);
            let number = |v: &Option<Value>| -> Result<String, AwsError> {
                v.as_ref().and_then(|v| v.get("N")).and_then(Value::as_str).map(str::to_owned).ok_or_else(|| {
                    match v {
                        None => AwsError::validation(
                            "The provided expression refers to an attribute that does not exist in the item",
                        ),
                        Some(v) => AwsError::validation(format!(
                            "An operand in the update expression has an incorrect data type; operator: {}, operand type: {}",
                            if plus { "+" } else { "-" },
                            type_of(v)
                        )),
                    }
                })
            };
            let (a, b) = (number(&a)?, number(&b)?);
            Some(json!({"N": super::number::add(&a, &b, !plus)?}))
        }
    })
}

/// Compares two AttributeValues of the same scalar type (`S`, `N`, `B`); `None` when they do not compare.
pub fn compare(a: &Value, b: &Value) -> Option<Ordering> {
    match (a.as_object()?.iter().next()?, b.as_object()?.iter().next()?) {
        ((ta, Value::String(x)), (tb, Value::String(y))) if ta == tb => match ta.as_str() {
            "S" => Some(x.as_bytes().cmp(y.as_bytes())),
            "N" => super::number::compare(x, y),
            "B" => Some(super::decode_b64(x).ok()?.cmp(&super::decode_b64(y).ok()?)),
            _ => None,
        },
        _ => None,
    }
}

/// AttributeValue equality: numbers by value, sets regardless of order.
pub fn equal(a: &Value, b: &Value) -> bool {
    let (Some((ta, va)), Some((tb, vb))) = (
        a.as_object().and_then(|o| o.iter().next()),
        b.as_object().and_then(|o| o.iter().next()),
    ) else {
        return false;
    };
    if ta != tb {
        return false;
    }
    match ta.as_str() {
        "N" => compare(a, b) == Some(Ordering::Equal),
        "SS" | "BS" | "NS" => {
            let (Some(x), Some(y)) = (va.as_array(), vb.as_array()) else {
                return false;
            };
            x.len() == y.len()
                && x.iter().all(|e| {
                    y.iter().any(|f| {
                        if ta == "NS" {
                            super::number::compare_json(e, f)
                        } else {
                            e == f
                        }
                    })
                })
        }
        "L" => {
            let (Some(x), Some(y)) = (va.as_array(), vb.as_array()) else {
                return false;
            };
            x.len() == y.len() && x.iter().zip(y).all(|(e, f)| equal(e, f))
        }
        "M" => {
            let (Some(x), Some(y)) = (va.as_object(), vb.as_object()) else {
                return false;
            };
            x.len() == y.len() && x.iter().all(|(k, e)| y.get(k).is_some_and(|f| equal(e, f)))
        }
        _ => va == vb,
    }
}

/// Evaluates a condition against an item (an empty item when there is none).
pub fn eval(item: &Item, cond: &Cond) -> Result<bool, AwsError> {
    Ok(match cond {
        Cond::And(a, b) => eval(item, a)? && eval(item, b)?,
        Cond::Or(a, b) => eval(item, a)? || eval(item, b)?,
        Cond::Not(a) => !eval(item, a)?,
        Cond::Exists(path) => get_path(item, path).is_some(),
        Cond::NotExists(path) => get_path(item, path).is_none(),
        Cond::Type(path, t) => {
            let t = resolve(item, t)?;
            match (
                get_path(item, path),
                t.as_ref().and_then(|t| t.get("S")).and_then(Value::as_str),
            ) {
                (Some(value), Some(t)) => type_of(value) == t,
                _ => false,
            }
        }
        Cond::BeginsWith(a, b) => match (resolve(item, a)?, resolve(item, b)?) {
            (Some(a), Some(b)) => match (a.get("S"), b.get("S"), a.get("B"), b.get("B")) {
                (Some(Value::String(x)), Some(Value::String(y)), _, _) => x.starts_with(y.as_str()),
                (_, _, Some(Value::String(x)), Some(Value::String(y))) => {
                    match (super::decode_b64(x), super::decode_b64(y)) {
                        (Ok(x), Ok(y)) => x.starts_with(&y),
                        _ => false,
                    }
                }
                _ => false,
            },
            _ => false,
        },
        Cond::Contains(a, b) => match (resolve(item, a)?, resolve(item, b)?) {
            (Some(a), Some(b)) => {
                match (a.as_object().and_then(|o| o.iter().next()), type_of(&b)) {
                    (Some((t, Value::String(x))), "S") if t == "S" => b
                        .get("S")
                        .and_then(Value::as_str)
                        .is_some_and(|y| x.contains(y)),
                    (Some((t, Value::Array(list))), _) if t == "L" => {
                        list.iter().any(|e| equal(e, &b))
                    }
                    (Some((t, Value::Array(set))), bt)
                        if t.len() == 2 && t.ends_with('S') && t[..1] == *bt =>
                    {
                        set.iter().any(|e| equal(&json!({ bt: e }), &b))
                    }
                    _ => false,
                }
            }
            _ => false,
        },
        Cond::Cmp(a, op, b) => {
            // A missing attribute compares false, except that it is `<>` to anything.
            let (Some(a), Some(b)) = (resolve(item, a)?, resolve(item, b)?) else {
                return Ok(matches!(op, Cmp::Ne));
            };
            match op {
                Cmp::Eq => equal(&a, &b),
                Cmp::Ne => !equal(&a, &b),
                Cmp::Lt => compare(&a, &b) == Some(Ordering::Less),
                Cmp::Le => matches!(compare(&a, &b), Some(Ordering::Less | Ordering::Equal)),
                Cmp::Gt => compare(&a, &b) == Some(Ordering::Greater),
                Cmp::Ge => matches!(compare(&a, &b), Some(Ordering::Greater | Ordering::Equal)),
            }
        }
        Cond::Between(x, low, high) => {
            match (resolve(item, x)?, resolve(item, low)?, resolve(item, high)?) {
                (Some(x), Some(low), Some(high)) => {
                    if compare(&low, &high) == Some(Ordering::Greater) {
                        return Err(AwsError::validation(
                        "Invalid KeyConditionExpression: The BETWEEN operator requires upper bound to be greater than or equal to lower bound",
                    ));
                    }
                    matches!(compare(&low, &x), Some(Ordering::Less | Ordering::Equal))
                        && matches!(compare(&x, &high), Some(Ordering::Less | Ordering::Equal))
                }
                _ => false,
            }
        }
        Cond::In(x, list) => match resolve(item, x)? {
            Some(x) => {
                for candidate in list {
                    if resolve(item, candidate)?.is_some_and(|c| equal(&x, &c)) {
                        return Ok(true);
                    }
                }
                false
            }
            None => false,
        },
    })
}

/// Applies an update expression to an item (which may be new and hold only its key).
pub fn apply(item: &mut Item, update: &Update) -> Result<(), AwsError> {
    // Every right-hand side sees the item as it was before the update.
    let before = item.clone();
    for (path, value) in &update.set {
        let value = resolve(&before, value)?.ok_or_else(|| {
            AwsError::validation(
                "The provided expression refers to an attribute that does not exist in the item",
            )
        })?;
        set_path(item, path, value)?;
    }
    for path in &update.remove {
        remove_path(item, path);
    }
    for (path, value) in &update.add {
        let value = resolve(&before, value)?.unwrap_or(Value::Null);
        let current = get_path(&before, path).cloned();
        let new = match (type_of(&value), current) {
            ("N", None) => value.clone(),
            ("N", Some(current)) if type_of(&current) == "N" => {
                let (a, b) = (
                    current.get("N").and_then(Value::as_str).unwrap_or("0"),
                    value.get("N").and_then(Value::as_str).unwrap_or("0"),
                );
                json!({"N": super::number::add(a, b, false)?})
            }
            (t @ ("SS" | "NS" | "BS"), None) => json!({ t: value.get(t).cloned().unwrap_or(json!([])) }),
            (t @ ("SS" | "NS" | "BS"), Some(current)) if type_of(&current) == t => {
                let mut set = current.get(t).and_then(Value::as_array).cloned().unwrap_or_default();
                for e in value.get(t).and_then(Value::as_array).into_iter().flatten() {
                    if !set.contains(e) {
                        set.push(e.clone());
                    }
                }
                json!({ t: set })
            }
            (t, current) => {
                return Err(AwsError::validation(format!(
                    "An operand in the update expression has an incorrect data type; ADD needs a number or a set, got {t} for an attribute of type {}",
                    current.as_ref().map_or("(missing)", |c| type_of(c))
                )))
            }
        };
        set_path(item, path, new)?;
    }
    for (path, value) in &update.delete {
        let value = resolve(&before, value)?.unwrap_or(Value::Null);
        let t = type_of(&value).to_owned();
        if !matches!(t.as_str(), "SS" | "NS" | "BS") {
            return Err(AwsError::validation(format!(
                "An operand in the update expression has an incorrect data type; DELETE needs a set, got {t}"
            )));
        }
        if let Some(current) = get_path(&before, path) {
            let remove = value
                .get(&t)
                .and_then(Value::as_array)
                .cloned()
                .unwrap_or_default();
            let set: Vec<Value> = current
                .get(&t)
                .and_then(Value::as_array)
                .into_iter()
                .flatten()
                .filter(|e| !remove.contains(e))
                .cloned()
                .collect();
            if set.is_empty() {
                remove_path(item, path);
            } else {
                set_path(item, path, json!({ t: set }))?;
            }
        }
    }
    Ok(())
}

/// The attributes an update touched, for `UPDATED_OLD` / `UPDATED_NEW`.
pub fn updated_names(update: &Update) -> BTreeSet<String> {
    let first = |p: &Path| match p.first() {
        Some(Seg::Name(n)) => Some(n.clone()),
        _ => None,
    };
    update
        .set
        .iter()
        .map(|(p, _)| p)
        .chain(update.add.iter().map(|(p, _)| p))
        .chain(update.remove.iter())
        .chain(update.delete.iter().map(|(p, _)| p))
        .filter_map(first)
        .collect()
}

/// The item cut to the projected paths (top-level names and nested paths).
pub fn project(item: &Item, paths: &[Path]) -> Item {
    let mut out = Item::new();
    for path in paths {
        if let Some(value) = get_path(item, path) {
            match path.as_slice() {
                [Seg::Name(name)] => {
                    out.insert(name.clone(), value.clone());
                }
                _ => {
                    // Nested projections keep the enclosing structure, as AWS does.
                    build_nested(&mut out, path, value.clone());
                }
            }
        }
    }
    out
}

fn build_nested(out: &mut Item, path: &[Seg], value: Value) {
    let Some((Seg::Name(first), rest)) = path.split_first() else {
        return;
    };
    if rest.is_empty() {
        out.insert(first.clone(), value);
        return;
    }
    let entry = out.entry(first.clone()).or_insert_with(|| match rest[0] {
        Seg::Name(_) => json!({"M": {}}),
        Seg::Index(_) => json!({"L": []}),
    });
    let mut current = entry;
    for (i, seg) in rest.iter().enumerate() {
        let last = i + 1 == rest.len();
        let next_empty = || match rest.get(i + 1) {
            Some(Seg::Index(_)) => json!({"L": []}),
            _ => json!({"M": {}}),
        };
        match seg {
            Seg::Name(name) => {
                let Some(map) = current.get_mut("M").and_then(Value::as_object_mut) else {
                    return;
                };
                if last {
                    map.insert(name.clone(), value);
                    return;
                }
                current = map.entry(name.clone()).or_insert_with(next_empty);
            }
            Seg::Index(_) => {
                let Some(list) = current.get_mut("L").and_then(Value::as_array_mut) else {
                    return;
                };
                if last {
                    list.push(value);
                    return;
                }
                list.push(next_empty());
                let Some(next) = list.last_mut() else { return };
                current = next;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn item(v: Value) -> Item {
        v.as_object().cloned().unwrap_or_default()
    }

    /// `cond` with `:a`..`:c` bound to values, evaluated on `it`.
    fn check(cond: &str, it: Value, values: Value, expect: Result<bool, &str>) {
        let request = json!({"ExpressionAttributeValues": values, "ExpressionAttributeNames": {"#n": "name"}});
        let mut refs = Refs::new(&request).expect("refs");
        let got = parse_condition(cond, "ConditionExpression", &mut refs)
            .and_then(|c| eval(&item(it), &c));
        match (got, expect) {
            (Ok(got), Ok(expect)) => assert_eq!(got, expect, "{cond}"),
            (Err(error), Err(fragment)) => {
                assert!(
                    error.message.contains(fragment),
                    "{cond}: {} lacks {fragment}",
                    error.message
                )
            }
            (got, expect) => panic!("{cond}: got {got:?}, expected {expect:?}"),
        }
    }

    #[test]
    fn conditions() {
        let it = json!({"pk": {"S": "c#1"}, "n": {"N": "10"}, "#n": {"S": "x"}, "name": {"S": "bob"},
                        "l": {"L": [{"S": "a"}]}, "ss": {"SS": ["a", "b"]}, "m": {"M": {"k": {"N": "2"}}}});
        let v = json!({":a": {"N": "10"}, ":b": {"N": "9.5"}, ":c": {"S": "c#"}});
        check("attribute_exists(pk)", it.clone(), json!({}), Ok(true));
        check("attribute_not_exists(pk)", it.clone(), json!({}), Ok(false));
        check(
            "attribute_not_exists(nope)",
            it.clone(),
            json!({}),
            Ok(true),
        );
        check("n = :a", it.clone(), json!({":a": {"N": "10"}}), Ok(true));
        check("n = :a", it.clone(), json!({":a": {"N": "10.0"}}), Ok(true));
        check("n = :a", it.clone(), json!({":a": {"S": "10"}}), Ok(false));
        check("n <> :a", it.clone(), json!({":a": {"N": "11"}}), Ok(true));
        check(
            "nope <> :a",
            it.clone(),
            json!({":a": {"N": "11"}}),
            Ok(true),
        );
        check(
            "n > :b AND n <= :a",
            it.clone(),
            json!({":a": {"N": "10"}, ":b": {"N": "9.5"}}),
            Ok(true),
        );
        check(
            "n < :b OR begins_with(pk, :c)",
            it.clone(),
            v.clone(),
            Ok(true),
        );
        check(
            "NOT (n < :b OR begins_with(pk, :c))",
            it.clone(),
            v.clone(),
            Ok(false),
        );
        check(
            "n BETWEEN :b AND :a",
            it.clone(),
            json!({":a": {"N": "10"}, ":b": {"N": "9.5"}}),
            Ok(true),
        );
        check(
            "n BETWEEN :a AND :b",
            it.clone(),
            json!({":a": {"N": "10"}, ":b": {"N": "9.5"}}),
            Err("upper bound"),
        );
        check(
            "n IN (:a, :b)",
            it.clone(),
            json!({":a": {"N": "1"}, ":b": {"N": "10"}}),
            Ok(true),
        );
        check("#n = :a", it.clone(), json!({":a": {"S": "bob"}}), Ok(true));
        check(
            "contains(ss, :a)",
            it.clone(),
            json!({":a": {"S": "b"}}),
            Ok(true),
        );
        check(
            "contains(l, :a)",
            it.clone(),
            json!({":a": {"S": "a"}}),
            Ok(true),
        );
        check(
            "size(l) = :a",
            it.clone(),
            json!({":a": {"N": "1"}}),
            Ok(true),
        );
        check("m.k = :a", it.clone(), json!({":a": {"N": "2"}}), Ok(true));
        check(
            "attribute_type(n, :a)",
            it.clone(),
            json!({":a": {"S": "N"}}),
            Ok(true),
        );
        check("n > :a", it.clone(), json!({":a": {"S": "1"}}), Ok(false));
        // hostile and malformed
        check("", it.clone(), json!({}), Err("can not be empty"));
        check("n = ", it.clone(), json!({}), Err("Syntax error"));
        check(
            "n = :zz",
            it.clone(),
            json!({}),
            Err("not defined; attribute value: :zz"),
        );
        check(
            "#zz = :a",
            it.clone(),
            json!({":a": {"N": "1"}}),
            Err("attribute name: #zz"),
        );
        check(
            "n === :a",
            it.clone(),
            json!({":a": {"N": "1"}}),
            Err("Syntax error"),
        );
        check(
            "name = :a",
            it.clone(),
            json!({":a": {"S": "bob"}}),
            Err("reserved keyword"),
        );
        check(
            "n = :a ;",
            it.clone(),
            json!({":a": {"N": "1"}}),
            Err("Syntax error"),
        );
        check(
            "bogus(n)",
            it.clone(),
            json!({}),
            Err("Invalid function name"),
        );
        check(
            "((n = :a)",
            it.clone(),
            json!({":a": {"N": "1"}}),
            Err("Syntax error"),
        );
        check(
            "n = :a)",
            it,
            json!({":a": {"N": "1"}}),
            Err("Syntax error"),
        );
    }

    fn check_update(expr: &str, it: Value, values: Value, expect: Result<Value, &str>) {
        let request = json!({"ExpressionAttributeValues": values});
        let mut refs = Refs::new(&request).expect("refs");
        let mut it = item(it);
        let got = parse_update(expr, &mut refs)
            .and_then(|u| apply(&mut it, &u))
            .map(|()| Value::Object(it));
        match (got, expect) {
            (Ok(got), Ok(expect)) => assert_eq!(got, expect, "{expr}"),
            (Err(error), Err(fragment)) => {
                assert!(
                    error.message.contains(fragment),
                    "{expr}: {} lacks {fragment}",
                    error.message
                )
            }
            (got, expect) => panic!("{expr}: got {got:?}, expected {expect:?}"),
        }
    }

    #[test]
    fn updates() {
        let k = json!({"pk": {"S": "a"}});
        check_update(
            "ADD c :one",
            k.clone(),
            json!({":one": {"N": "1"}}),
            Ok(json!({"pk": {"S": "a"}, "c": {"N": "1"}})),
        );
        check_update(
            "ADD c :one",
            json!({"pk": {"S": "a"}, "c": {"N": "41"}}),
            json!({":one": {"N": "1"}}),
            Ok(json!({"pk": {"S": "a"}, "c": {"N": "42"}})),
        );
        check_update(
            "SET c = if_not_exists(c, :z) + :one, f = :f",
            k.clone(),
            json!({":z": {"N": "0"}, ":one": {"N": "5"}, ":f": {"S": "x"}}),
            Ok(json!({"pk": {"S": "a"}, "c": {"N": "5"}, "f": {"S": "x"}})),
        );
        check_update(
            "SET c = c - :one REMOVE f",
            json!({"pk": {"S": "a"}, "c": {"N": "5"}, "f": {"S": "x"}}),
            json!({":one": {"N": "7"}}),
            Ok(json!({"pk": {"S": "a"}, "c": {"N": "-2"}})),
        );
        check_update(
            "ADD s :s",
            json!({"pk": {"S": "a"}, "s": {"SS": ["x"]}}),
            json!({":s": {"SS": ["x", "y"]}}),
            Ok(json!({"pk": {"S": "a"}, "s": {"SS": ["x", "y"]}})),
        );
        check_update(
            "DELETE s :s",
            json!({"pk": {"S": "a"}, "s": {"SS": ["x"]}}),
            json!({":s": {"SS": ["x"]}}),
            Ok(json!({"pk": {"S": "a"}})),
        );
        check_update(
            "SET l = list_append(l, :l)",
            json!({"pk": {"S": "a"}, "l": {"L": [{"N": "1"}]}}),
            json!({":l": {"L": [{"N": "2"}]}}),
            Ok(json!({"pk": {"S": "a"}, "l": {"L": [{"N": "1"}, {"N": "2"}]}})),
        );
        check_update(
            "SET c = c + :one",
            k.clone(),
            json!({":one": {"N": "1"}}),
            Err("does not exist"),
        );
        check_update(
            "ADD c :s",
            k.clone(),
            json!({":s": {"S": "x"}}),
            Err("incorrect data type"),
        );
        check_update(
            "SET c = :a, c = :a",
            k.clone(),
            json!({":a": {"N": "1"}}),
            Err("overlap"),
        );
        check_update(
            "SET c = :a SET d = :a",
            k.clone(),
            json!({":a": {"N": "1"}}),
            Err("only be used once"),
        );
        check_update("FROB c", k.clone(), json!({}), Err("Syntax error"));
        check_update("SET", k.clone(), json!({}), Err("Syntax error"));
        check_update("ADD c", k, json!({}), Err("Syntax error"));
    }

    #[test]
    fn unused_values_are_refused() {
        let request = json!({"ExpressionAttributeValues": {":a": {"N": "1"}, ":b": {"N": "2"}}});
        let mut refs = Refs::new(&request).expect("refs");
        parse_condition("x = :a", "ConditionExpression", &mut refs).expect("parse");
        let error = refs.check_all_used().expect_err("unused :b");
        assert!(error.message.contains(":b"), "{}", error.message);
    }

    #[test]
    fn projection_keeps_named_and_nested_attributes() {
        let request = json!({});
        let mut refs = Refs::new(&request).expect("refs");
        let paths = parse_projection("a, m.k", &mut refs).expect("parse");
        let it = item(
            json!({"a": {"N": "1"}, "b": {"N": "2"}, "m": {"M": {"k": {"S": "v"}, "j": {"S": "w"}}}}),
        );
        assert_eq!(
            Value::Object(project(&it, &paths)),
            json!({"a": {"N": "1"}, "m": {"M": {"k": {"S": "v"}}}})
        );
    }

    /// Before the limits, `((((...a = :a...))))` recursed once per parenthesis: 2,047 of them overflowed a
    /// 2 MiB stack (debug build), killing the whole local cloud.
    #[test]
    fn deep_long_and_wide_expressions_are_refused_not_crashed() {
        let values = json!({":a": {"N": "1"}});
        let it = json!({"a": {"N": "1"}});
        let nested = |depth: usize| format!("{}a = :a{}", "(".repeat(depth), ")".repeat(depth));
        check(
            &nested(MAX_PARENTHESES),
            it.clone(),
            values.clone(),
            Ok(true),
        );
        check(
            &nested(2000),
            it.clone(),
            values.clone(),
            Err("nests parentheses more than 64"),
        );
        check(
            &nested(100_000),
            it.clone(),
            values.clone(),
            Err("Expression size has exceeded the maximum allowed size; expression size: 200006"),
        );
        let nots = format!("{}a = :a", "NOT ".repeat(1000));
        check(
            &nots,
            it.clone(),
            values.clone(),
            Err("too many operators; operator count: 1001"),
        );
        let ands = vec!["a = :a"; 150].join(" AND ");
        check(&ands, it.clone(), values.clone(), Ok(true));
        let ands = vec!["a = :a"; 151].join(" AND ");
        check(
            &ands,
            it.clone(),
            values.clone(),
            Err("operator count: 301"),
        );
        let list = |n: usize| format!("a IN ({})", vec![":a"; n].join(", "));
        check(&list(MAX_IN_OPERANDS), it.clone(), values.clone(), Ok(true));
        check(
            &list(MAX_IN_OPERANDS + 1),
            it.clone(),
            values.clone(),
            Err("too many operands"),
        );
        let path = |n: usize| format!("attribute_exists(a{})", ".b".repeat(n - 1));
        check(&path(MAX_PATH_DEPTH), it.clone(), values.clone(), Ok(false));
        check(
            &path(MAX_PATH_DEPTH + 1),
            it.clone(),
            values.clone(),
            Err("nesting levels: 33"),
        );
        let update = format!(
            "SET a = {}:a{}",
            "if_not_exists(b, ".repeat(400),
            ")".repeat(400)
        );
        check_update(&update, json!({}), values, Err("expression size: 7210"));
    }
}
