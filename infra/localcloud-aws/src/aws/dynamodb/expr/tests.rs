use serde_json::json;

use super::*;

fn item(v: Value) -> Item {
    v.as_object().cloned().unwrap_or_default()
}

/// `cond` with `:a`..`:c` bound to values, evaluated on `it`.
fn check(cond: &str, it: Value, values: Value, expect: Result<bool, &str>) {
    let request =
        json!({"ExpressionAttributeValues": values, "ExpressionAttributeNames": {"#n": "name"}});
    let mut refs = Refs::new(&request).expect("refs");
    let got =
        parse_condition(cond, "ConditionExpression", &mut refs).and_then(|c| eval(&item(it), &c));
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
