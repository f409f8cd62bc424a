//! Least privilege, derived rather than listed: for every function, the IAM actions its code can call plus
//! what the platform does with its role must be exactly the actions the role grants. A grant the code never
//! uses fails the test, and so does a call the role does not allow (an `AccessDenied` in production).
//!
//! # How the actions are derived
//!
//! * **Sources.** A function's code is every file of its crate (`functions/<name>/src`), every `tally-aws`
//!   module (`functions/aws/src/<module>.rs`) a source names as `tally_aws::<module>` or, inside
//!   `tally-aws`, as `crate::<module>` — transitively — and the crate of any other function it names as
//!   `tally_<function>::`. Comments and `#[cfg(test)] mod tests` are not read. The unit is the module: a
//!   function that names a module "uses" every call in it, so `tally-aws` keeps readers and writers in
//!   separate modules (`compacted`/`metrics` read the metrics table, `metrics_write` writes it;
//!   `redrive` replays in a lane, `stream_read` reads the stream for `cargo xtask redrive`).
//! * **Calls.** Each `….<operation>()…send()` chain of an AWS SDK client in those sources needs the actions
//!   [`OPERATIONS`] lists for the operation (a `.send()` that names no listed operation fails the test: add
//!   it there). A transaction needs the item actions of the builders its file uses; connecting to the cache
//!   with IAM (`cache_auth`) needs `elasticache:Connect`.
//! * **Platform.** Lambda writes the logs, attaches the function to its VPC, reads the stream of its event
//!   source mappings and sends to their failure destination, all with the function's role.
//!
//! Only actions are compared. Resources are scoped by the grants themselves (one table, one stream, one
//! secret, the archive's `events/` prefix) and checked by `template.rs`.
//!
//! Run: `cargo test -p tally-pipeline --test it least_privilege`.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

use serde_json::Value;
use tally_pipeline::FUNCTIONS;

use super::template;

/// SDK operations (the client's method name) and the IAM actions they need. A chain ending in `.send()` that
/// names none of these fails the test, so a new call cannot slip past it: add its action here.
const OPERATIONS: [(&str, &[&str]); 21] = [
    ("put_records", &["kinesis:PutRecords"]),
    ("put_record", &["kinesis:PutRecord"]),
    ("get_shard_iterator", &["kinesis:GetShardIterator"]),
    ("get_records", &["kinesis:GetRecords"]),
    (
        "describe_stream_summary",
        &["kinesis:DescribeStreamSummary"],
    ),
    ("list_shards", &["kinesis:ListShards"]),
    ("update_shard_count", &["kinesis:UpdateShardCount"]),
    ("list_tags_for_stream", &["kinesis:ListTagsForStream"]),
    ("add_tags_to_stream", &["kinesis:AddTagsToStream"]),
    ("get_item", &["dynamodb:GetItem"]),
    ("put_item", &["dynamodb:PutItem"]),
    ("update_item", &["dynamodb:UpdateItem"]),
    ("query", &["dynamodb:Query"]),
    ("batch_get_item", &["dynamodb:BatchGetItem"]),
    // Its items' actions are added from the builders the file uses (see `transact_actions`).
    ("transact_write_items", &[]),
    ("put_object", &["s3:PutObject"]),
    ("get_object", &["s3:GetObject"]),
    ("list_objects_v2", &["s3:ListBucket"]),
    ("get_secret_value", &["secretsmanager:GetSecretValue"]),
    ("get_metric_statistics", &["cloudwatch:GetMetricStatistics"]),
    ("get_metric_data", &["cloudwatch:GetMetricData"]),
];

fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../..")
        .canonicalize()
        .expect("workspace root")
}

fn rust_files(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for entry in std::fs::read_dir(&d).expect("read_dir").flatten() {
            let p = entry.path();
            if p.is_dir() {
                stack.push(p);
            } else if p.extension().is_some_and(|e| e == "rs") {
                out.push(p);
            }
        }
    }
    out.sort();
    out
}

/// Source text without `#[cfg(test)] mod tests { … }` (tests may call anything against moto), without
/// comment lines (a doc link to a module is not a use of it) and with the insides of string literals blanked
/// (a `{` or `;` in a format string does not end a chain).
fn non_test_source(path: &Path) -> String {
    let text = std::fs::read_to_string(path).expect("read source");
    blank_strings(&without_comments(
        match text.find("#[cfg(test)]\nmod tests") {
            Some(at) => &text[..at],
            None => &text,
        },
    ))
}

/// `text` with every character inside a string literal (plain or raw) replaced by a space, newlines kept.
fn blank_strings(text: &str) -> String {
    let chars: Vec<char> = text.chars().collect();
    let blank = |c: char| if c == '\n' { '\n' } else { ' ' };
    let mut out = String::with_capacity(text.len());
    let mut i = 0;
    while i < chars.len() {
        let c = chars[i];
        if c == '\'' && chars.get(i + 1) == Some(&'"') && chars.get(i + 2) == Some(&'\'') {
            // The character literal '"'.
            out.push_str("' '");
            i += 3;
        } else if c == 'r' && matches!(chars.get(i + 1), Some('"' | '#')) {
            // r"…" or r#"…"#: ends at a quote followed by as many hashes.
            let hashes = chars[i + 1..].iter().take_while(|c| **c == '#').count();
            if chars.get(i + 1 + hashes) != Some(&'"') {
                out.push(c);
                i += 1;
                continue;
            }
            out.push('"');
            i += 2 + hashes;
            while i < chars.len()
                && !(chars[i] == '"'
                    && chars[i + 1..]
                        .iter()
                        .take(hashes)
                        .filter(|c| **c == '#')
                        .count()
                        == hashes)
            {
                out.push(blank(chars[i]));
                i += 1;
            }
            out.push('"');
            i += 1 + hashes;
        } else if c == '"' {
            out.push('"');
            i += 1;
            while i < chars.len() && chars[i] != '"' {
                let skip = if chars[i] == '\\' { 2 } else { 1 };
                for k in 0..skip {
                    if let Some(c) = chars.get(i + k) {
                        out.push(blank(*c));
                    }
                }
                i += skip;
            }
            out.push('"');
            i += 1;
        } else {
            out.push(c);
            i += 1;
        }
    }
    out
}

fn without_comments(text: &str) -> String {
    text.lines()
        .filter(|line| !line.trim_start().starts_with("//"))
        .collect::<Vec<_>>()
        .join("\n")
}

/// The modules of `prefix` (`tally_aws::` or `crate::`) a source names, grouped imports included.
fn modules_named(source: &str, prefix: &str) -> BTreeSet<String> {
    let mut out = BTreeSet::new();
    let mut rest = source;
    while let Some(at) = rest.find(prefix) {
        let after = &rest[at + prefix.len()..];
        if let Some(group) = after.strip_prefix('{') {
            out.extend(group_heads(group));
        } else {
            let ident: String = after
                .chars()
                .take_while(|c| c.is_ascii_alphanumeric() || *c == '_')
                .collect();
            if !ident.is_empty() {
                out.insert(ident);
            }
        }
        rest = after;
    }
    out
}

/// The first segment of each item of a `{…}` import group (`store::{A, B}, kinesis}` → `store`, `kinesis`).
fn group_heads(group: &str) -> Vec<String> {
    let (mut depth, mut item, mut heads) = (0usize, String::new(), Vec::new());
    let mut push = |item: &str| {
        let head = item.trim().split("::").next().unwrap_or("").trim();
        if !head.is_empty() {
            heads.push(head.to_owned());
        }
    };
    for c in group.chars() {
        match c {
            '{' => depth += 1,
            '}' if depth == 0 => break,
            '}' => depth -= 1,
            ',' if depth == 0 => {
                push(&item);
                item.clear();
                continue;
            }
            _ => {}
        }
        item.push(c);
    }
    push(&item);
    heads
}

/// The sources a function's code runs: its crate, the crates of the other functions it names, and the
/// `tally-aws` modules reachable from them.
fn function_sources(function: &str) -> Vec<PathBuf> {
    let root = root();
    let mut crates = vec![function];
    let mut at = 0;
    while let Some(name) = crates.get(at).copied() {
        at += 1;
        for file in rust_files(&root.join("functions").join(name).join("src")) {
            let source = non_test_source(&file);
            for other in FUNCTIONS {
                if !crates.contains(&other) && source.contains(&format!("tally_{other}::")) {
                    crates.push(other);
                }
            }
        }
    }
    let mut files: Vec<PathBuf> = crates
        .iter()
        .flat_map(|name| rust_files(&root.join("functions").join(name).join("src")))
        .collect();
    let common = root.join("functions/aws/src");
    let mut wanted: BTreeSet<String> = BTreeSet::new();
    for f in &files {
        wanted.extend(modules_named(&non_test_source(f), "tally_aws::"));
    }
    let mut done: BTreeSet<String> = BTreeSet::new();
    while let Some(module) = wanted.iter().find(|m| !done.contains(*m)).cloned() {
        done.insert(module.clone());
        let path = common.join(format!("{module}.rs"));
        if path.exists() {
            wanted.extend(modules_named(&non_test_source(&path), "crate::"));
            files.push(path);
        }
    }
    files
}

/// The item actions of the transactions a file writes: one per builder kind it uses.
fn transact_actions(source: &str) -> Vec<&'static str> {
    [
        ("Put::builder", "dynamodb:PutItem"),
        ("Update::builder", "dynamodb:UpdateItem"),
        ("Delete::builder", "dynamodb:DeleteItem"),
        ("ConditionCheck::builder", "dynamodb:ConditionCheckItem"),
    ]
    .into_iter()
    .filter(|(builder, _)| source.contains(builder))
    .map(|(_, action)| action)
    .collect()
}

/// The first operation of [`OPERATIONS`] a chain calls.
fn operation_in(chain: &str) -> Option<(usize, &'static str, &'static [&'static str])> {
    OPERATIONS
        .iter()
        .filter_map(|(op, actions)| {
            chain
                .find(&format!(".{op}()"))
                .map(|position| (position, *op, *actions))
        })
        .min_by_key(|(position, _, _)| *position)
}

/// `let result = request.update_expression(…)`, `match put.condition_expression(…)` → the builder's name.
fn receiver_of(chain: &str) -> Option<String> {
    let expression = chain.rsplit_once('=').map_or(chain, |(_, e)| e);
    const KEYWORDS: [&str; 6] = ["match", "return", "let", "mut", "if", "await"];
    let mut rest = expression;
    loop {
        rest = rest.trim_start_matches(|c: char| !(c.is_ascii_alphanumeric() || c == '_'));
        let ident: String = rest
            .chars()
            .take_while(|c| c.is_ascii_alphanumeric() || *c == '_')
            .collect();
        if ident.is_empty() {
            return None;
        }
        rest = &rest[ident.len()..];
        if !KEYWORDS.contains(&ident.as_str()) {
            // The chain ends just before `.send()`: a bare name there is the receiver too.
            let rest = rest.trim_start();
            return (rest.is_empty() || rest.starts_with('.')).then_some(ident);
        }
    }
}

/// The IAM actions a source's SDK calls need; `Err` names a `.send()` chain with no known operation.
fn called_actions(path: &Path) -> Result<BTreeSet<String>, String> {
    let source = non_test_source(path);
    let mut out = BTreeSet::new();
    let mut from = 0;
    while let Some(at) = source[from..].find(".send()") {
        let end = from + at;
        let start = source[..end].rfind([';', '{', '}']).map_or(0, |i| i + 1);
        let chain = &source[start..end];
        let operation = operation_in(chain).or_else(|| {
            // `let request = client.update_item()…; … request.…send()`: the builder was named earlier.
            let receiver = receiver_of(chain)?;
            let named = ["let ", "let mut "]
                .iter()
                .filter_map(|l| source[..start].rfind(&format!("{l}{receiver} =")))
                .max()?;
            let statement_end = source[named..]
                .find(';')
                .map_or(source.len(), |i| named + i);
            operation_in(&source[named..statement_end])
        });
        match operation {
            Some((_, "transact_write_items", _)) => {
                out.extend(transact_actions(&source).iter().map(|a| (*a).to_owned()));
            }
            Some((_, _, actions)) => out.extend(actions.iter().map(|a| (*a).to_owned())),
            None => {
                return Err(format!(
                    "{}: a `.send()` chain names no operation of OPERATIONS: {}",
                    path.display(),
                    chain.trim()
                ))
            }
        }
        from = end + ".send()".len();
    }
    if source.contains("cache_auth::") || path.ends_with("cache_auth.rs") {
        // IAM authentication to ElastiCache: a SigV4-presigned `connect` request.
        out.insert("elasticache:Connect".to_owned());
    }
    Ok(out)
}

/// What the platform does with the function's role: write its logs, attach it to the VPC, read its event
/// source mapping's stream and send to the mapping's failure destination.
fn platform_actions(t: &Value, logical_id: &str) -> BTreeSet<String> {
    let mut out: BTreeSet<String> = ["logs:CreateLogStream", "logs:PutLogEvents"]
        .map(str::to_owned)
        .into();
    let resources = t["Resources"].as_object().expect("resources");
    let function = &resources[logical_id];
    if function["Properties"].get("VpcConfig").is_some() {
        out.extend(
            [
                "ec2:AssignPrivateIpAddresses",
                "ec2:CreateNetworkInterface",
                "ec2:DeleteNetworkInterface",
                "ec2:UnassignPrivateIpAddresses",
                "ec2:DescribeNetworkInterfaces",
                "ec2:DescribeSubnets",
            ]
            .map(str::to_owned),
        );
    }
    for mapping in resources
        .values()
        .filter(|r| r["Type"] == "AWS::Lambda::EventSourceMapping")
    {
        let target = mapping["Properties"]["FunctionName"].to_string();
        if !target.contains(&format!("\"{logical_id}\"")) {
            continue;
        }
        out.extend(
            [
                "kinesis:DescribeStream",
                "kinesis:DescribeStreamSummary",
                "kinesis:GetRecords",
                "kinesis:GetShardIterator",
                "kinesis:ListShards",
            ]
            .map(str::to_owned),
        );
        if mapping["Properties"]["EventSourceArn"]
            .to_string()
            .contains("Consumer")
        {
            out.extend(
                ["kinesis:DescribeStreamConsumer", "kinesis:SubscribeToShard"].map(str::to_owned),
            );
        }
        if mapping["Properties"].get("DestinationConfig").is_some() {
            out.insert("sqs:SendMessage".to_owned());
        }
    }
    out
}

fn granted_actions(t: &Value, logical_id: &str) -> BTreeSet<String> {
    let resources = t["Resources"].as_object().expect("resources");
    let role = resources[logical_id]["Properties"]["Role"]["Fn::GetAtt"][0]
        .as_str()
        .expect("role reference");
    let mut out = BTreeSet::new();
    for policy in resources[role]["Properties"]["Policies"]
        .as_array()
        .into_iter()
        .flatten()
    {
        for statement in policy["PolicyDocument"]["Statement"]
            .as_array()
            .into_iter()
            .flatten()
        {
            match &statement["Action"] {
                Value::Array(actions) => {
                    out.extend(actions.iter().filter_map(Value::as_str).map(str::to_owned))
                }
                Value::String(action) => {
                    out.insert(action.clone());
                }
                other => panic!("{role}: unexpected Action {other}"),
            }
        }
    }
    assert!(
        resources[role]["Properties"]
            .get("ManagedPolicyArns")
            .is_none(),
        "{role}: managed policies grant what no test can see"
    );
    out
}

fn logical_id(t: &Value, function: &str) -> String {
    let prefix: String = function[..1].to_uppercase() + &function[1..];
    let ids: Vec<&String> = t["Resources"]
        .as_object()
        .expect("resources")
        .iter()
        .filter(|(id, r)| r["Type"] == "AWS::Lambda::Function" && id.starts_with(&prefix))
        .map(|(id, _)| id)
        .collect();
    assert_eq!(ids.len(), 1, "one function {prefix}…: {ids:?}");
    ids[0].clone()
}

/// What is wrong with `function`'s role, one line per action, each saying what to do; empty when the grants
/// are exactly the actions used.
fn compare(function: &str, used: &BTreeSet<String>, granted: &BTreeSet<String>) -> Vec<String> {
    let extra = granted.difference(used).map(|action| {
        format!(
            "{function}: its role grants {action}, which neither its code nor the platform calls: \
             remove it from the function's grants in its module under infra/pipeline/src/"
        )
    });
    let missing = used.difference(granted).map(|action| {
        format!(
            "{function}: its code or its event source needs {action}, which its role does not grant \
             (AccessDenied in production): grant it in the function's module under infra/pipeline/src/"
        )
    });
    extra.chain(missing).collect()
}

/// The actions `function` uses: its platform's and its code's.
/// What a function's code calls (its sources' SDK calls).
fn code_actions(function: &str) -> BTreeSet<String> {
    let mut used = BTreeSet::new();
    for file in function_sources(function) {
        match called_actions(&file) {
            Ok(actions) => used.extend(actions),
            Err(error) => panic!("{function}: {error}"),
        }
    }
    used
}

fn used_actions(t: &Value, function: &str, id: &str) -> BTreeSet<String> {
    let mut used = platform_actions(t, id);
    used.extend(code_actions(function));
    used
}

#[test]
fn every_role_grants_exactly_what_its_code_and_platform_use() {
    let t = template("main");
    let mut problems = Vec::new();
    for function in FUNCTIONS {
        let id = logical_id(&t, function);
        problems.extend(compare(
            function,
            &used_actions(&t, function, &id),
            &granted_actions(&t, &id),
        ));
    }
    assert!(problems.is_empty(), "{}", problems.join("\n"));
}

/// The actions of an endpoint's policy (`AWS::EC2::VPCEndpoint`) and the IAM prefix of its service.
fn endpoint_actions(endpoint: &Value) -> (String, BTreeSet<String>) {
    let service = endpoint["Properties"]["ServiceName"].to_string();
    let prefix = service
        .rsplit('.')
        .next()
        .expect("service")
        .trim_matches(|c: char| !c.is_ascii_alphanumeric());
    // The endpoint service of Kinesis Data Streams is `kinesis-streams`; its IAM actions are `kinesis:`.
    let prefix = match prefix {
        "kinesis-streams" => "kinesis",
        other => other,
    }
    .to_owned();
    let mut actions = BTreeSet::new();
    for statement in endpoint["Properties"]["PolicyDocument"]["Statement"]
        .as_array()
        .into_iter()
        .flatten()
    {
        match &statement["Action"] {
            Value::Array(list) => {
                actions.extend(list.iter().filter_map(Value::as_str).map(str::to_owned))
            }
            Value::String(action) => {
                actions.insert(action.clone());
            }
            other => panic!("endpoint: unexpected Action {other}"),
        }
    }
    (prefix, actions)
}

/// A VPC endpoint lets through exactly what the code of the functions in the VPC calls on its service (their
/// roles grant exactly that plus what the platform does with them outside the VPC, such as an event source
/// mapping's stream reads): an action no function calls would only serve a stolen credential, one a function
/// calls but the endpoint refuses fails in production.
#[test]
fn every_endpoint_allows_exactly_what_the_functions_in_the_vpc_are_granted() {
    let t = template("main");
    let resources = t["Resources"].as_object().expect("resources");
    let in_vpc: Vec<&str> = FUNCTIONS
        .iter()
        .copied()
        .filter(|f| {
            resources[&logical_id(&t, f)]["Properties"]
                .get("VpcConfig")
                .is_some()
        })
        .collect();
    let endpoints: Vec<(&String, &Value)> = resources
        .iter()
        .filter(|(_, r)| r["Type"] == "AWS::EC2::VPCEndpoint")
        .collect();
    assert!(!endpoints.is_empty(), "the stack has VPC endpoints");
    let mut problems = Vec::new();
    for (id, endpoint) in endpoints {
        let (prefix, allowed) = endpoint_actions(endpoint);
        let granted: BTreeSet<String> = in_vpc
            .iter()
            .flat_map(|f| code_actions(f))
            .filter(|a| a.starts_with(&format!("{prefix}:")))
            .collect();
        for action in allowed.difference(&granted) {
            problems.push(format!(
                "{id}: allows {action}, which no function in the VPC calls: remove it from the \
                 endpoint's `allow` in infra/pipeline/src/counter_store.rs"
            ));
        }
        for action in granted.difference(&allowed) {
            problems.push(format!(
                "{id}: refuses {action}, which the code of a function in the VPC calls: add it to the endpoint's \
                 `allow` in infra/pipeline/src/counter_store.rs"
            ));
        }
    }
    assert!(problems.is_empty(), "{}", problems.join("\n"));
}

/// The test can fail: an extra grant and a missing one are each reported with the function, the action and
/// what to do.
#[test]
fn an_extra_or_a_missing_grant_is_reported() {
    let set = |actions: &[&str]| -> BTreeSet<String> {
        actions.iter().map(|a| (*a).to_owned()).collect()
    };
    let used = set(&["dynamodb:GetItem", "dynamodb:Query"]);
    assert!(compare("query", &used, &used).is_empty());
    let problems = compare(
        "query",
        &used,
        &set(&["dynamodb:GetItem", "dynamodb:Query", "dynamodb:Scan"]),
    );
    assert_eq!(problems.len(), 1, "{problems:?}");
    assert!(
        problems[0].starts_with("query: its role grants dynamodb:Scan")
            && problems[0].contains("remove it"),
        "{}",
        problems[0]
    );
    let problems = compare("query", &used, &set(&["dynamodb:GetItem"]));
    assert_eq!(problems.len(), 1, "{problems:?}");
    assert!(
        problems[0].starts_with("query: its code or its event source needs dynamodb:Query")
            && problems[0].contains("grant it"),
        "{}",
        problems[0]
    );
}

/// The real template, changed: a role that grants one more action (or one fewer) than its code uses fails.
#[test]
fn a_changed_role_in_the_template_fails() {
    let t = template("main");
    let id = logical_id(&t, "query");
    let used = used_actions(&t, "query", &id);
    let mut granted = granted_actions(&t, &id);
    assert!(compare("query", &used, &granted).is_empty());
    granted.insert("dynamodb:DeleteItem".to_owned());
    assert!(compare("query", &used, &granted)
        .iter()
        .any(|p| p.contains("grants dynamodb:DeleteItem")));
    granted.remove("dynamodb:DeleteItem");
    granted.remove("secretsmanager:GetSecretValue");
    assert!(compare("query", &used, &granted)
        .iter()
        .any(|p| p.contains("needs secretsmanager:GetSecretValue")));
}

/// The derivation itself: chains, grouped imports, transactions, an unknown call.
#[test]
fn the_derivation_reads_chains_imports_and_transactions() {
    let dir = std::env::temp_dir().join(format!("tally-lp-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("mkdir");
    let file = dir.join("x.rs");
    std::fs::write(
        &file,
        "use tally_aws::{store::{X, Y}, kinesis};\n/// See [`tally_aws::metrics_write`].\n\
         fn f() { let x = self.db.get_item().key(format!(\"{a};\")).send().await; \
         c.transact_write_items().transact_items(Update::builder().build()).send().await; }\n",
    )
    .expect("write");
    let actions = called_actions(&file).expect("known calls");
    assert_eq!(
        actions.into_iter().collect::<Vec<_>>(),
        vec!["dynamodb:GetItem", "dynamodb:UpdateItem"]
    );
    // A nested group names its head; a doc comment names nothing.
    assert_eq!(
        modules_named(&non_test_source(&file), "tally_aws::"),
        ["kinesis".to_owned(), "store".to_owned()].into()
    );
    std::fs::write(
        &file,
        "fn f() { let mut r = c.update_item().key(k); r = r.x(); let out = r.y().send().await; }\n",
    )
    .expect("write");
    assert_eq!(
        called_actions(&file)
            .expect("named builder")
            .into_iter()
            .collect::<Vec<_>>(),
        vec!["dynamodb:UpdateItem"]
    );
    std::fs::write(&file, "fn f() { c.delete_table().send().await; }\n").expect("write");
    assert!(called_actions(&file)
        .expect_err("unknown")
        .contains("names no operation"));
    std::fs::remove_dir_all(&dir).expect("cleanup");
}
