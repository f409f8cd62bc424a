//! DynamoDB's wire form: AttributeValues checked and decoded, request members parsed (items, ReturnValues,
//! conditions, throughput), the errors' codes.

use std::collections::BTreeSet;

use base64::engine::general_purpose::STANDARD;
use base64::Engine as _;
use serde_json::{json, Value};

use super::expr::{Cond, Item, Refs};
use super::{expr, number, MAX_ITEM_BYTES};
use crate::aws::input::{opt_i64, opt_object, opt_str};
use crate::aws::AwsError;

pub(crate) fn decode_b64(text: &str) -> Result<Vec<u8>, base64::DecodeError> {
    STANDARD.decode(text)
}

pub(super) fn not_found(name: &str) -> AwsError {
    AwsError::client(
        "ResourceNotFoundException",
        format!("Requested resource not found: Table: {name} not found"),
    )
}

pub(super) fn conditional_failed(old: Option<&Item>, want_old: bool) -> AwsError {
    let mut error = AwsError::client(
        "ConditionalCheckFailedException",
        "The conditional request failed",
    );
    if let (true, Some(old)) = (want_old, old) {
        error.extra = Some(Box::new(json!({"Item": old})));
    }
    error
}

/// Checks that a value is a well-formed AttributeValue.
/// Deepest nesting of `M` and `L` values AWS accepts in an item.
pub(super) const MAX_NESTING: usize = 32;

pub(crate) fn check_value(value: &Value, at: &str) -> Result<(), AwsError> {
    check_nested(value, at, 0)
}

pub(super) fn check_nested(value: &Value, at: &str, depth: usize) -> Result<(), AwsError> {
    if depth > MAX_NESTING {
        return Err(AwsError::validation(format!(
            "Nesting Levels have exceeded supported limits: {at} nests maps and lists more than {MAX_NESTING} levels deep"
        )));
    }
    let bad = |why: &str| {
        AwsError::validation(format!(
            "One or more parameter values were invalid: {why} (at {at})"
        ))
    };
    let Some(object) = value.as_object() else {
        return Err(AwsError::client(
            "SerializationException",
            format!("AttributeValue at {at} must be a structure such as {{\"S\": \"text\"}}"),
        ));
    };
    if object.len() != 1 {
        return Err(bad("Supplied AttributeValue has more than one datatypes set, must contain exactly one of the supported datatypes"));
    }
    let Some((t, v)) = object.iter().next() else {
        return Err(bad("Supplied AttributeValue is empty"));
    };
    let set = |v: &Value, check: &dyn Fn(&str) -> bool, name: &str| -> Result<(), AwsError> {
        let list = v
            .as_array()
            .ok_or_else(|| bad(&format!("{name} must be a list")))?;
        if list.is_empty() {
            return Err(bad("An string set  may not be empty"));
        }
        let mut seen = BTreeSet::new();
        for e in list {
            let s = e
                .as_str()
                .ok_or_else(|| bad(&format!("{name} members must be strings")))?;
            if !check(s) {
                return Err(bad(&format!("{name} member {s} is not valid")));
            }
            let canonical = if name == "NS" {
                number::canonical(s)?
            } else {
                s.to_owned()
            };
            if !seen.insert(canonical) {
                return Err(bad(&format!("Input collection {name} contains duplicates")));
            }
        }
        Ok(())
    };
    match (t.as_str(), v) {
        ("S", Value::String(_)) => Ok(()),
        ("N", Value::String(n)) => number::canonical(n).map(|_| ()),
        ("B", Value::String(b)) => decode_b64(b)
            .map(|_| ())
            .map_err(|_| bad("B is not base64")),
        ("BOOL", Value::Bool(_)) => Ok(()),
        ("NULL", Value::Bool(true)) => Ok(()),
        ("SS", v) => set(v, &|_| true, "SS"),
        ("NS", v) => set(v, &|s| number::canonical(s).is_ok(), "NS"),
        ("BS", v) => set(v, &|s| decode_b64(s).is_ok(), "BS"),
        ("L", Value::Array(list)) => list.iter().try_for_each(|e| check_nested(e, at, depth + 1)),
        ("M", Value::Object(map)) => map
            .iter()
            .try_for_each(|(k, e)| check_nested(e, &format!("{at}.{k}"), depth + 1)),
        (t, _) => Err(bad(&format!("unknown or ill-typed datatype {t}"))),
    }
}

pub(super) fn check_item(item: &Item) -> Result<(), AwsError> {
    for (name, value) in item {
        check_value(value, name)?;
    }
    let size: usize = item
        .iter()
        .map(|(k, v)| k.len() + v.to_string().len())
        .sum();
    if size > MAX_ITEM_BYTES {
        return Err(AwsError::validation(
            "Item size has exceeded the maximum allowed size",
        ));
    }
    Ok(())
}

pub(super) fn item_of(input: &Value, member: &str) -> Result<Item, AwsError> {
    let item = opt_object(input, member)?
        .ok_or_else(|| crate::aws::input::missing(member))?
        .clone();
    check_item(&item)?;
    Ok(item)
}

/// CreateTable's `ProvisionedThroughput` as (read, write): each at least 1, and none with
/// `PAY_PER_REQUEST` (DynamoDB's rules). A `PROVISIONED` table without it is accepted and reports 0.
pub(super) fn provisioned_throughput(
    input: &Value,
    billing_mode: &str,
) -> Result<Option<(u64, u64)>, AwsError> {
    if !matches!(billing_mode, "PROVISIONED" | "PAY_PER_REQUEST") {
        return Err(AwsError::validation(format!(
            "1 validation error detected: Value '{billing_mode}' at 'billingMode' failed to satisfy constraint: Member must satisfy enum value set: [PROVISIONED, PAY_PER_REQUEST]"
        )));
    }
    let Some(throughput) = input.get("ProvisionedThroughput").filter(|v| !v.is_null()) else {
        return Ok(None);
    };
    if billing_mode == "PAY_PER_REQUEST" {
        return Err(AwsError::validation(
            "One or more parameter values were invalid: Neither ReadCapacityUnits nor WriteCapacityUnits can be specified when BillingMode is PAY_PER_REQUEST",
        ));
    }
    let units = |name: &str| {
        match opt_i64(throughput, name)? {
        Some(n) if n >= 1 => Ok(n as u64),
        _ => Err(AwsError::validation(format!(
            "One or more parameter values were invalid: {name} must be at least 1 in ProvisionedThroughput"
        ))),
    }
    };
    Ok(Some((
        units("ReadCapacityUnits")?,
        units("WriteCapacityUnits")?,
    )))
}

/// What a ReturnValues member asks for.
pub(super) fn return_values(input: &Value, allowed: &[&str]) -> Result<String, AwsError> {
    let value = opt_str(input, "ReturnValues")?.unwrap_or("NONE");
    if !allowed.contains(&value) {
        return Err(AwsError::validation(format!(
            "ReturnValues can only be {} on this operation, got {value}",
            allowed.join(", ")
        )));
    }
    Ok(value.to_owned())
}

pub(super) fn wants_old_on_failure(input: &Value) -> Result<bool, AwsError> {
    match opt_str(input, "ReturnValuesOnConditionCheckFailure")? {
        None | Some("NONE") => Ok(false),
        Some("ALL_OLD") => Ok(true),
        Some(other) => Err(AwsError::validation(format!(
            "ReturnValuesOnConditionCheckFailure must be NONE or ALL_OLD, got {other}"
        ))),
    }
}

/// A parsed condition of one request member, or `None` when the member is absent.
pub(super) fn condition(
    input: &Value,
    member: &'static str,
    refs: &mut Refs<'_>,
) -> Result<Option<Cond>, AwsError> {
    opt_str(input, member)?
        .map(|text| expr::parse_condition(text, member, refs))
        .transpose()
}
