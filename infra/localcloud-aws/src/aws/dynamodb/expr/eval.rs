//! Expressions on items: a condition's truth, an update applied, a projection cut, and AttributeValue
//! comparison and equality.

use std::cmp::Ordering;
use std::collections::BTreeSet;

use serde_json::{json, Value};

use super::super::{decode_b64, number};
use super::*;

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
                        decode_b64(s).map(|b| b.len()).unwrap_or(0)
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
            Some(json!({"N": number::add(&a, &b, !plus)?}))
        }
    })
}

/// Compares two AttributeValues of the same scalar type (`S`, `N`, `B`); `None` when they do not compare.
pub fn compare(a: &Value, b: &Value) -> Option<Ordering> {
    match (a.as_object()?.iter().next()?, b.as_object()?.iter().next()?) {
        ((ta, Value::String(x)), (tb, Value::String(y))) if ta == tb => match ta.as_str() {
            "S" => Some(x.as_bytes().cmp(y.as_bytes())),
            "N" => number::compare(x, y),
            "B" => Some(decode_b64(x).ok()?.cmp(&decode_b64(y).ok()?)),
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
                            number::compare_json(e, f)
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
                    match (decode_b64(x), decode_b64(y)) {
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
                json!({"N": number::add(a, b, false)?})
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
