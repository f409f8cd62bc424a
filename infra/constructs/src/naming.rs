//! Stages and physical names.
//!
//! A [`Stage`] comes from any string (usually a git branch) and yields the stack name and every
//! physical name, each valid for its AWS service and distinct for distinct stages:
//!
//! * A stage whose text is already a clean label (`[a-z0-9]+(-[a-z0-9]+)*`) that fits the name's
//!   budget is used as it is: `main` → `tally-main-collect`.
//! * Anything else is sanitised (lowercase, common accented letters folded, every other character
//!   becomes `-`, runs of `-` collapse), cut to the budget, and followed by `--` and eight hex digits of
//!   the SHA-256 of the original text: `feature/ÜBER_new--thing` → `tally-feature-uber-new-thing--xxxxxxxx-collect`.
//!
//! Clean labels never contain `--` and hashed labels always do, so the two never collide; two hashed
//! labels differ unless their 32-bit hashes do.

use std::fmt;

use sha2::{Digest, Sha256};

use crate::core::Scope;
use crate::expr::Expr;

/// Prefix of every stack and physical name.
pub const APP: &str = "tally";

/// Length reserved for `AWS::Region` in names that contain it (the longest region today has 14).
pub const REGION_BUDGET: usize = 16;

/// The name of the permissions boundary every function role carries, without its region:
/// `tally-function-boundary-<region>` is created once per account and region by `cargo xtask bootstrap`.
pub const FUNCTION_BOUNDARY_PREFIX: &str = "tally-function-boundary-";

/// The ARN of the function roles' permissions boundary in the stack's account and region.
pub fn function_boundary_arn() -> Expr {
    Expr::concat([
        Expr::text("arn:"),
        Expr::partition(),
        Expr::text(":iam::"),
        Expr::account_id(),
        Expr::text(format!(":policy/{FUNCTION_BOUNDARY_PREFIX}")),
        Expr::region(),
    ])
}
/// Length of `AWS::AccountId`.
pub const ACCOUNT_LEN: usize = 12;

/// The kinds of physical names, with their AWS limits.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NameKind {
    /// CloudFormation stack: `[A-Za-z][A-Za-z0-9-]{0,127}`.
    Stack,
    /// Lambda function: `[A-Za-z0-9-_]{1,64}`.
    Function,
    /// IAM role, ≤ 64; global per account, so the region is part of the name.
    Role,
    /// SQS queue: `[A-Za-z0-9-_]{1,80}`.
    Queue,
    /// S3 bucket: 3–63 lowercase letters, digits, `-`; global, so account and region are part of it.
    Bucket,
    /// DynamoDB table: `[A-Za-z0-9_.-]{3,255}`.
    Table,
    /// Kinesis stream: `[A-Za-z0-9_.-]{1,128}`.
    Stream,
    /// Kinesis consumer: `[A-Za-z0-9_.-]{1,128}`.
    Consumer,
    /// SNS topic: `[A-Za-z0-9-_]{1,256}`.
    Topic,
    /// Secrets Manager secret: ≤ 512 of `[A-Za-z0-9/_+=.@-]`.
    Secret,
    /// EventBridge rule: `[.\-_A-Za-z0-9]{1,64}`.
    Rule,
    /// CloudWatch alarm: ≤ 255.
    Alarm,
    /// ElastiCache serverless cache, user and user group: 1–40 lowercase letters, digits and `-`,
    /// starting with a letter, no `--`, not ending in `-`. A hashed label's `--` becomes `-h` here.
    Cache,
}

impl NameKind {
    /// Every kind, for tests and tools.
    pub const ALL: [NameKind; 13] = [
        NameKind::Stack,
        NameKind::Function,
        NameKind::Role,
        NameKind::Queue,
        NameKind::Bucket,
        NameKind::Table,
        NameKind::Stream,
        NameKind::Consumer,
        NameKind::Topic,
        NameKind::Secret,
        NameKind::Rule,
        NameKind::Alarm,
        NameKind::Cache,
    ];

    /// The maximum length AWS allows.
    pub fn max_len(self) -> usize {
        match self {
            NameKind::Stack | NameKind::Stream | NameKind::Consumer => 128,
            NameKind::Function | NameKind::Role | NameKind::Rule => 64,
            NameKind::Queue => 80,
            NameKind::Bucket => 63,
            NameKind::Table | NameKind::Alarm => 255,
            NameKind::Topic => 256,
            NameKind::Secret => 512,
            NameKind::Cache => 40,
        }
    }

    /// Whether `name` (with account and region filled in) is valid for this kind.
    pub fn is_valid(self, name: &str) -> bool {
        let len_ok = name.len() <= self.max_len() && !name.is_empty();
        let chars = |extra: &str| {
            name.chars()
                .all(|c| c.is_ascii_alphanumeric() || extra.contains(c))
        };
        len_ok
            && match self {
                NameKind::Stack => {
                    name.starts_with(|c: char| c.is_ascii_alphabetic()) && chars("-")
                }
                NameKind::Function | NameKind::Queue | NameKind::Topic => chars("-_"),
                NameKind::Role => chars("+=,.@_-"),
                NameKind::Bucket => {
                    name.len() >= 3
                        && name.chars().all(|c| {
                            c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-' || c == '.'
                        })
                        && name.starts_with(|c: char| c.is_ascii_alphanumeric())
                        && name.ends_with(|c: char| c.is_ascii_alphanumeric())
                        && !name.starts_with("xn--")
                        && !name.ends_with("-s3alias")
                        && !name.ends_with("--ol-s3")
                        && !name.contains("..")
                }
                NameKind::Table => name.len() >= 3 && chars("_.-"),
                NameKind::Stream | NameKind::Consumer => chars("_.-"),
                NameKind::Secret => chars("/_+=.@-"),
                NameKind::Rule => chars("._-"),
                NameKind::Alarm => !name.chars().any(char::is_control),
                NameKind::Cache => {
                    name.starts_with(|c: char| c.is_ascii_lowercase())
                        && name
                            .chars()
                            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-')
                        && !name.contains("--")
                        && !name.ends_with('-')
                }
            }
    }

    /// Characters taken by what follows the label: `-suffix`, and account / region where included.
    fn overhead(self, suffix: &str) -> usize {
        let suffix = if suffix.is_empty() {
            0
        } else {
            suffix.len() + 1
        };
        let extra = match self {
            NameKind::Role => 1 + REGION_BUDGET,
            NameKind::Bucket => 1 + ACCOUNT_LEN + 1 + REGION_BUDGET,
            _ => 0,
        };
        APP.len() + 1 + suffix + extra
    }
}

/// A deployment stage: production, staging, or one preview per branch.
#[derive(Clone, PartialEq, Eq)]
pub struct Stage {
    raw: String,
    slug: String,
    hash: String,
}

impl fmt::Debug for Stage {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Stage({:?} → {})", self.raw, self.label())
    }
}

impl fmt::Display for Stage {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.label())
    }
}

impl Stage {
    /// The stage for a git branch or an explicit stage name. Any string works.
    pub fn new(raw: &str) -> Stage {
        let digest = Sha256::digest(raw.as_bytes());
        Stage {
            raw: raw.to_owned(),
            slug: sanitise(raw),
            hash: hex::encode(&digest[..4]),
        }
    }

    /// Alias of [`Stage::new`] that says where the text came from.
    pub fn from_branch(branch: &str) -> Stage {
        Stage::new(branch)
    }

    /// The text the stage was made from (the branch name).
    pub fn raw(&self) -> &str {
        &self.raw
    }

    /// The stage's label as it appears in the stack name (at most 121 characters).
    pub fn label(&self) -> String {
        self.label_within(NameKind::Stack.max_len() - NameKind::Stack.overhead(""))
    }

    /// `tally-<label>`: the CloudFormation stack name.
    pub fn stack_name(&self) -> String {
        format!("{APP}-{}", self.label())
    }

    /// The physical name of kind `kind` for the part `suffix` (a clean label such as `collect`).
    pub fn name(&self, kind: NameKind, suffix: &str) -> Name {
        debug_assert!(
            is_clean(suffix) || suffix.is_empty(),
            "suffix `{suffix}` must be a clean label"
        );
        let budget = kind.max_len().saturating_sub(kind.overhead(suffix));
        let mut text = format!("{APP}-{}", self.label_within(budget));
        if !suffix.is_empty() {
            text.push('-');
            text.push_str(suffix);
        }
        if kind == NameKind::Cache {
            // ElastiCache refuses `--`, which only ever separates a hashed label from its hash (clean
            // labels have none); `-h` keeps the length, and a clean label ending in `-h<8 hex>` would
            // have to match another stage's hash to collide.
            text = text.replace("--", "-h");
        }
        let mut parts = vec![NamePart::Text(text)];
        match kind {
            NameKind::Role => parts.extend([NamePart::Text("-".into()), NamePart::Region]),
            NameKind::Bucket => parts.extend([
                NamePart::Text("-".into()),
                NamePart::Account,
                NamePart::Text("-".into()),
                NamePart::Region,
            ]),
            _ => {}
        }
        Name { parts }
    }

    fn label_within(&self, budget: usize) -> String {
        if is_clean(&self.raw) && self.raw.len() <= budget {
            return self.raw.clone();
        }
        // `<slug>--<hash>`, or `-<hash>` when nothing of the slug is left (the name then has `--`
        // right after the app prefix).
        let room = budget.saturating_sub(self.hash.len() + 2);
        let mut slug: String = self.slug.chars().take(room).collect();
        while slug.ends_with('-') {
            slug.pop();
        }
        if slug.is_empty() {
            return format!("-{}", self.hash);
        }
        format!("{slug}--{}", self.hash)
    }
}

/// A physical name: text, with the account id and region where the name must be globally unique.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Name {
    parts: Vec<NamePart>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum NamePart {
    Text(String),
    Account,
    Region,
}

impl Name {
    /// A name given as text (checked against its kind when used).
    pub fn literal(text: &str) -> Name {
        Name {
            parts: vec![NamePart::Text(text.to_owned())],
        }
    }

    /// The template value (`Fn::Sub` when account or region are part of it).
    pub fn to_expr(&self) -> Expr {
        Expr::concat(self.parts.iter().map(|p| match p {
            NamePart::Text(t) => Expr::text(t.clone()),
            NamePart::Account => Expr::account_id(),
            NamePart::Region => Expr::region(),
        }))
    }

    /// The name with `account` and `region` filled in.
    pub fn render(&self, account: &str, region: &str) -> String {
        self.parts
            .iter()
            .map(|p| match p {
                NamePart::Text(t) => t.as_str(),
                NamePart::Account => account,
                NamePart::Region => region,
            })
            .collect()
    }

    /// The name with a worst-case account and region: what must fit the kind's limits.
    pub fn render_longest(&self) -> String {
        self.render(&"1".repeat(ACCOUNT_LEN), &"r".repeat(REGION_BUDGET))
    }

    /// Reports at `scope` when this name cannot be valid for `kind`.
    pub(crate) fn check(&self, scope: &Scope, kind: NameKind) {
        let longest = self.render_longest();
        if !kind.is_valid(&longest) {
            scope.violation(format!(
                "name `{}` is not a valid {kind:?} name (at most {} characters of the allowed set); derive it with Stage::name",
                self.render("${AWS::AccountId}", "${AWS::Region}"),
                kind.max_len()
            ));
        }
    }
}

/// Lowercase, fold common accented letters, every other character → `-`, collapse and trim `-`.
fn sanitise(raw: &str) -> String {
    let mut out = String::with_capacity(raw.len());
    for c in raw.chars() {
        let folded: &str = match c {
            'a'..='z' | '0'..='9' => {
                out.push(c);
                continue;
            }
            'A'..='Z' => {
                out.push(c.to_ascii_lowercase());
                continue;
            }
            'à' | 'á' | 'â' | 'ã' | 'å' | 'À' | 'Á' | 'Â' | 'Ã' | 'Å' => "a",
            'ä' | 'Ä' | 'æ' | 'Æ' => "ae",
            'ç' | 'Ç' => "c",
            'è' | 'é' | 'ê' | 'ë' | 'È' | 'É' | 'Ê' | 'Ë' => "e",
            'ì' | 'í' | 'î' | 'ï' | 'Ì' | 'Í' | 'Î' | 'Ï' => "i",
            'ñ' | 'Ñ' => "n",
            'ò' | 'ó' | 'ô' | 'õ' | 'ø' | 'Ò' | 'Ó' | 'Ô' | 'Õ' | 'Ø' => "o",
            'ö' | 'Ö' | 'œ' | 'Œ' => "oe",
            'ù' | 'ú' | 'û' | 'Ù' | 'Ú' | 'Û' => "u",
            'ü' | 'Ü' => "u",
            'ý' | 'ÿ' | 'Ý' => "y",
            'ß' => "ss",
            _ => "-",
        };
        if folded == "-" {
            if !out.is_empty() && !out.ends_with('-') {
                out.push('-');
            }
        } else {
            out.push_str(folded);
        }
    }
    while out.ends_with('-') {
        out.pop();
    }
    out
}

/// `[a-z0-9]+(-[a-z0-9]+)*`.
fn is_clean(text: &str) -> bool {
    !text.is_empty()
        && text.split('-').all(|part| {
            !part.is_empty()
                && part
                    .chars()
                    .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit())
        })
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    /// The shortest label: `-` and the hash.
    const MIN_LABEL: usize = 9;

    fn check(branch: &str, kind: NameKind, expect: &str) {
        let stage = Stage::from_branch(branch);
        let name = stage
            .name(kind, "collect")
            .render("123456789012", "eu-west-1");
        assert_eq!(
            name,
            expect.replace("HASH", &stage.hash),
            "{branch:?} as {kind:?}"
        );
    }

    #[test]
    fn names() {
        check("main", NameKind::Function, "tally-main-collect");
        check("main", NameKind::Role, "tally-main-collect-eu-west-1");
        check(
            "main",
            NameKind::Bucket,
            "tally-main-collect-123456789012-eu-west-1",
        );
        check("123-fix", NameKind::Function, "tally-123-fix-collect");
        check("Main", NameKind::Function, "tally-main--HASH-collect");
        check(
            "feature/ÜBER_new--thing",
            NameKind::Function,
            "tally-feature-uber-new-thing--HASH-collect",
        );
        check(
            "dependabot/cargo/aws-sdk-1.2.3",
            NameKind::Function,
            "tally-dependabot-cargo-aws-sdk-1-2-3--HASH-collect",
        );
        check("", NameKind::Function, "tally--HASH-collect");
        check("///", NameKind::Function, "tally--HASH-collect");
        check("日本語", NameKind::Queue, "tally--HASH-collect");
        check(
            &"b".repeat(60),
            NameKind::Bucket,
            "tally-bbbbbbbbb--HASH-collect-123456789012-eu-west-1",
        );
    }

    #[test]
    fn stack_names() {
        assert_eq!(Stage::new("production").stack_name(), "tally-production");
        assert_eq!(
            Stage::new("feature/x").stack_name(),
            format!("tally-feature-x--{}", Stage::new("feature/x").hash)
        );
        let long = "a".repeat(200);
        let name = Stage::new(&long).stack_name();
        assert_eq!(name.len(), 128);
        assert!(NameKind::Stack.is_valid(&name));
    }

    #[test]
    fn long_clean_names_are_shortened_with_a_hash() {
        let branch = "a".repeat(60);
        let stage = Stage::new(&branch);
        let function = stage.name(NameKind::Function, "realtime").render_longest();
        assert_eq!(function.len(), 64);
        assert!(function.contains("--"));
        assert_eq!(stage.stack_name(), format!("tally-{branch}"));
    }

    fn valid_and_distinct(a: &str, b: &str) -> Result<(), TestCaseError> {
        let (sa, sb) = (Stage::new(a), Stage::new(b));
        for kind in NameKind::ALL {
            for suffix in ["collect", "realtime-failures", "x"] {
                if kind.max_len() < kind.overhead(suffix) + MIN_LABEL {
                    continue;
                }
                let (na, nb) = (
                    sa.name(kind, suffix).render_longest(),
                    sb.name(kind, suffix).render_longest(),
                );
                prop_assert!(
                    kind.is_valid(&na),
                    "{a:?} gives invalid {kind:?} name {na:?}"
                );
                if a != b {
                    prop_assert_ne!(&na, &nb, "{:?} and {:?} share the {:?} name", a, b, kind);
                }
            }
        }
        prop_assert!(NameKind::Stack.is_valid(&sa.stack_name()));
        if a != b {
            prop_assert_ne!(sa.stack_name(), sb.stack_name());
        }
        Ok(())
    }

    #[test]
    fn hostile_branches() {
        let cases = [
            "feature/ÜBER_new--thing",
            "feature/uber-new-thing",
            "dependabot/cargo/aws-sdk-1.2.3",
            "dependabot/cargo/aws-sdk-1-2-3",
            "9-lives",
            "-",
            "--",
            "a--b",
            "a-b",
            "A-B",
            "xn--abc",
            "s3alias",
            "ends-with-",
            "\u{0}\n\t",
            "😀",
            "ß",
            "ss",
        ];
        let long = "x".repeat(200);
        let long2 = format!("{}y", "x".repeat(199));
        let mut all: Vec<&str> = cases.to_vec();
        all.push(&long);
        all.push(&long2);
        for a in &all {
            for b in &all {
                if let Err(e) = valid_and_distinct(a, b) {
                    panic!("{e}");
                }
            }
        }
    }

    proptest! {
        #[test]
        fn any_string_gives_valid_distinct_names(a in any::<String>(), b in any::<String>()) {
            valid_and_distinct(&a, &b)?;
        }

        #[test]
        fn branch_like_strings_give_valid_distinct_names(a in "[a-zA-Z0-9/._Ü-]{0,200}", b in "[a-zA-Z0-9/._Ü-]{0,200}") {
            valid_and_distinct(&a, &b)?;
        }

        #[test]
        fn clean_short_stages_are_kept(a in "[a-z][a-z0-9]{0,10}(-[a-z0-9]{1,10}){0,3}") {
            prop_assert_eq!(Stage::new(&a).name(NameKind::Function, "collect").render_longest(), format!("tally-{a}-collect"));
        }
    }

    #[test]
    fn suffix_too_long_for_the_kind_is_reported() {
        let stack = crate::Stack::new("s");
        let name = Stage::new("main").name(NameKind::Bucket, "a-suffix-far-too-long-for-a-bucket");
        name.check(&stack.root(), NameKind::Bucket);
        let error = stack
            .synth()
            .err()
            .map(|e| e.to_string())
            .unwrap_or_default();
        assert!(
            error.contains("is not a valid Bucket name (at most 63 characters"),
            "{error}"
        );
    }

    fn check_valid(kind: NameKind, name: &str, ok: bool) {
        assert_eq!(kind.is_valid(name), ok, "{kind:?} {name:?}");
    }

    #[test]
    fn validity_rules() {
        check_valid(NameKind::Bucket, "ab", false);
        check_valid(NameKind::Bucket, "Abc", false);
        check_valid(NameKind::Bucket, "abc-", false);
        check_valid(NameKind::Bucket, "xn--abc", false);
        check_valid(NameKind::Bucket, "abc-s3alias", false);
        check_valid(NameKind::Bucket, &"a".repeat(64), false);
        check_valid(NameKind::Bucket, &"a".repeat(63), true);
        check_valid(NameKind::Function, &"a".repeat(65), false);
        check_valid(NameKind::Function, "a.b", false);
        check_valid(NameKind::Queue, &"a".repeat(80), true);
        check_valid(NameKind::Queue, &"a".repeat(81), false);
        check_valid(NameKind::Stack, "1a", false);
        check_valid(NameKind::Table, "ab", false);
        check_valid(NameKind::Rule, "a/b", false);
        check_valid(NameKind::Cache, "tally-main-counters", true);
        check_valid(NameKind::Cache, &format!("a{}", "b".repeat(39)), true);
        check_valid(NameKind::Cache, &format!("a{}", "b".repeat(40)), false);
        check_valid(NameKind::Cache, "tally--x", false);
        check_valid(NameKind::Cache, "tally-x-", false);
        check_valid(NameKind::Cache, "Tally", false);
        check_valid(NameKind::Cache, "1tally", false);
        check_valid(NameKind::Cache, "tally_x", false);
    }

    #[test]
    fn cache_names_have_no_double_hyphen() {
        check("main", NameKind::Cache, "tally-main-collect");
        check(
            "feature/ÜBER_new--thing",
            NameKind::Cache,
            "tally-feature-uber-new-hHASH-collect",
        );
        check("", NameKind::Cache, "tally-hHASH-collect");
    }
}
