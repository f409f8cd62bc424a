//! Expressions from text: the tokenizer, the limits AWS counts, and a recursive-descent parser into the tree of
//! `mod.rs`.

use super::*;

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
