//! The one filter evaluator: queries, permission checks and live queries all decide with it.
//!
//! Semantics follow Triplit's `evaluateFilterStatement`: "no value" is null or missing; values
//! compare in the codec's cross-type order; `in`/`nin` test strict membership; set operators
//! look at the items present (`true`) and hold when some item satisfies the operator, with the
//! item's key read back as the filter value's type.

use serde_json::Value as Json;

use super::like::like;
use super::prepare::{Op, Operand};
use crate::value::{compare_json, js_number_to_string};

/// Whether `value` (the entity's, `None` when missing) satisfies `op` against `operand`.
pub(crate) fn compare(value: Option<&Json>, op: Op, operand: Option<&Json>, on_set: bool) -> bool {
    if on_set {
        return compare_set(value, op, operand);
    }
    let empty = |v: Option<&Json>| v.is_none_or(Json::is_null);
    let (value_empty, operand_empty) = (empty(value), empty(operand));
    let order = || compare_json(value.unwrap_or(&Json::Null), operand.unwrap_or(&Json::Null));
    match op {
        // "No value" on either side first (Triplit: null is less than everything), then order.
        Op::Eq => (value_empty && operand_empty) || order().is_eq(),
        Op::Ne => !(value_empty && operand_empty) && order().is_ne(),
        Op::Gt | Op::Ge | Op::Lt | Op::Le => match (value_empty, operand_empty) {
            (true, true) => matches!(op, Op::Ge | Op::Le),
            (true, false) => matches!(op, Op::Lt | Op::Le),
            (false, true) => matches!(op, Op::Gt | Op::Ge),
            (false, false) => match op {
                Op::Gt => order().is_gt(),
                Op::Ge => order().is_ge(),
                Op::Lt => order().is_lt(),
                _ => order().is_le(),
            },
        },
        Op::Like | Op::Nlike => {
            let matched = match (value, operand) {
                (Some(v), Some(p)) if !value_empty && !operand_empty => like(&js_string(v), &js_string(p)),
                _ => false,
            };
            if op == Op::Like { matched } else { value_empty || operand_empty || !matched }
        }
        Op::In | Op::Nin => {
            if value_empty || operand_empty {
                return op == Op::Nin;
            }
            let value = value.expect("not empty");
            match operand.expect("not empty") {
                Json::Array(items) => (op == Op::In) == items.iter().any(|item| strictly_equal(value, item)),
                Json::Object(keys) => (op == Op::In) == keys.get(&js_string(value)).is_some_and(truthy),
                // Triplit logs "Invalid filter value" and answers false for both.
                _ => false,
            }
        }
        Op::IsDefined => operand.is_some_and(truthy) != value_empty,
        // Triplit has no `has` for non-set values (its evaluator rejects it); on JSON arrays
        // it is membership, which is what a `json` attribute's `has` can only mean.
        Op::Has | Op::NotHas => {
            let found = match value {
                Some(Json::Array(items)) => operand.is_some_and(|o| items.iter().any(|i| strictly_equal(i, o))),
                _ => false,
            };
            (op == Op::Has) == found
        }
    }
}

/// Set operators: over the items present, each read back as the operand's type.
fn compare_set(value: Option<&Json>, op: Op, operand: Option<&Json>) -> bool {
    let items: Vec<Json> = match value {
        Some(Json::Object(entries)) => {
            entries.iter().filter(|(_, present)| truthy(present)).map(|(key, _)| infer_item(key, operand)).collect()
        }
        _ => {
            return match op {
                Op::NotHas => true,
                Op::IsDefined => !operand.is_some_and(truthy),
                _ => false,
            };
        }
    };
    match op {
        Op::Has => items.iter().any(|i| operand.is_some_and(|o| strictly_equal(i, o))),
        Op::NotHas => !items.iter().any(|i| operand.is_some_and(|o| strictly_equal(i, o))),
        Op::IsDefined => operand.is_some_and(truthy),
        _ => items.iter().any(|item| compare(Some(item), op, operand, false)),
    }
}

/// Triplit's `inferSetValue`: a set key read as the filter value's type.
fn infer_item(key: &str, operand: Option<&Json>) -> Json {
    match operand {
        Some(Json::Bool(_)) => Json::Bool(key == "true"),
        Some(Json::Number(_)) => {
            key.parse::<f64>().ok().and_then(serde_json::Number::from_f64).map(Json::Number).unwrap_or(Json::Null)
        }
        _ => Json::String(key.to_owned()),
    }
}

/// JavaScript's `===` (SameValueZero, as `Set.has`) on JSON: objects and arrays never match.
fn strictly_equal(a: &Json, b: &Json) -> bool {
    match (a, b) {
        (Json::Number(x), Json::Number(y)) => x.as_f64() == y.as_f64(),
        (Json::String(x), Json::String(y)) => x == y,
        (Json::Bool(x), Json::Bool(y)) => x == y,
        (Json::Null, Json::Null) => true,
        _ => false,
    }
}

fn truthy(value: &Json) -> bool {
    match value {
        Json::Null => false,
        Json::Bool(b) => *b,
        Json::Number(n) => n.as_f64().is_some_and(|f| f != 0.0),
        Json::String(s) => !s.is_empty(),
        Json::Array(_) | Json::Object(_) => true,
    }
}

/// JavaScript's `String(value)` for the primitives `like` may meet.
fn js_string(value: &Json) -> String {
    match value {
        Json::String(s) => s.clone(),
        Json::Number(n) => js_number_to_string(n.as_f64().unwrap_or(f64::NAN)),
        Json::Bool(b) => b.to_string(),
        Json::Null => "null".into(),
        // Array.prototype.join writes null (and undefined) items as empty strings.
        Json::Array(items) => {
            items.iter().map(|i| if i.is_null() { String::new() } else { js_string(i) }).collect::<Vec<_>>().join(",")
        }
        Json::Object(_) => "[object Object]".into(),
    }
}

/// The value at a path in a document (`None` when missing).
pub(crate) fn lookup<'d>(doc: &'d serde_json::Map<String, Json>, path: &[String]) -> Option<&'d Json> {
    let (head, rest) = path.split_first()?;
    rest.iter().try_fold(doc.get(head)?, |node, key| node.get(key))
}

/// Resolves an operand against the ancestors (`ancestors.last()` is the parent, `$1`).
pub(crate) fn resolve<'a>(
    operand: &'a Operand,
    entity: &'a serde_json::Map<String, Json>,
    ancestors: &[&'a serde_json::Map<String, Json>],
) -> Option<&'a Json> {
    match operand {
        Operand::Value(v) => Some(v),
        Operand::Undefined => None,
        Operand::Relational { level: 0, path } => lookup(entity, path),
        Operand::Relational { level, path } => {
            let index = ancestors.len().checked_sub(*level)?;
            lookup(ancestors[index], path)
        }
    }
}
