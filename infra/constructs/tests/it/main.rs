//! Integration tests of the constructs: validation rules, grants, references, synthesis.

mod grants;
mod iam;
mod network;
mod references;
mod validation;

use serde_json::Value;
use tally_constructs::lambda::{Code, Function, FunctionProps};
use tally_constructs::{Scope, Stack};

/// A function with code from two parameters, in `scope`.
fn function(stack: &Stack, scope: &Scope, id: &str) -> Function {
    let bucket = stack.string_parameter(&format!("{id}Bucket"), "bucket");
    let key = stack.string_parameter(&format!("{id}Key"), "key");
    Function::new(
        scope,
        id,
        FunctionProps {
            code: Some(Code::s3(bucket.value(), key.value())),
            ..FunctionProps::default()
        },
    )
}

/// The synthesized template, or the test fails with the synth error.
fn synth(stack: &Stack) -> Value {
    match stack.synth() {
        Ok(template) => template,
        Err(error) => panic!("{error}"),
    }
}

/// The synth error's text, or the test fails because synth succeeded.
fn synth_error(stack: &Stack) -> String {
    match stack.synth() {
        Ok(_) => panic!("expected a synth error"),
        Err(error) => error.to_string(),
    }
}

/// Builds an app named `app` with `build` and expects a synth error containing `expect`.
fn check(build: impl FnOnce(&Stack, &Scope), expect: &str) {
    let stack = Stack::new("app");
    build(&stack, &stack.root());
    let error = synth_error(&stack);
    assert!(
        error.contains(expect),
        "error\n{error}\ndoes not contain\n{expect}"
    );
}

/// A table `T` with partition key `pk` and nothing else.
fn table(stack: &Stack) -> tally_constructs::dynamodb::Table {
    use tally_constructs::dynamodb::{AttributeType, Billing, Table, TableProps};
    Table::new(
        &stack.root(),
        "T",
        TableProps {
            name: None,
            partition_key: ("pk".into(), AttributeType::String),
            sort_key: None,
            ttl_attribute: None,
            point_in_time_recovery: false,
            billing: Billing::OnDemand,
        },
    )
}
