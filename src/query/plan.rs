//! The planner: picks how to find a query's candidates — an id lookup, a range of a secondary
//! index, or a scan — from the query's top-level conditions and its order.
//!
//! Index keys order values exactly as Triplit does, so an equality or range on a key is exact;
//! still, an index only narrows: every candidate goes through the evaluator. An index serves
//! `order` when the order keys are exactly the index columns after its equality prefix, all in
//! one direction; rows then arrive in final order (ties by id in that direction) and a limited
//! query stops reading once it has its rows.

use serde_json::Value as Json;

use super::prepare::{Condition, Op, Operand, Prepared};
use crate::store::{Access, IndexRange};
use crate::value::sort_key;

/// How a query's candidates are read.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Plan {
    pub access: Access,
    /// Rows arrive in the query's final order.
    pub ordered: bool,
}

/// A usable comparison: `path op literal`.
struct Bound<'q> {
    path: String,
    op: Op,
    value: Json,
    _condition: &'q Condition,
}

fn bounds<'q>(conditions: &'q [Condition], resolve: &dyn Fn(&Operand) -> Option<Json>, out: &mut Vec<Bound<'q>>) {
    for condition in conditions {
        match condition {
            // A permission rule is an `or` of the session's roles' filters: with one role, its
            // filter must hold, so its conditions narrow the candidates like the query's own.
            Condition::All(inner) => bounds(inner, resolve, out),
            Condition::Any(inner) if inner.len() == 1 => bounds(inner, resolve, out),
            Condition::Compare { path, op, operand, on_set: false, .. } => {
                if let Some(value) = resolve(operand) {
                    out.push(Bound { path: path.join("."), op: *op, value, _condition: condition });
                }
            }
            _ => {}
        }
    }
}

fn is_scalar(value: &Json) -> bool {
    matches!(value, Json::String(_) | Json::Number(_) | Json::Bool(_))
}

/// Plans `query`; `resolve` turns operands into values where it can (literals, and relational
/// operands once the ancestors are known).
pub(crate) fn plan(query: &Prepared, indexes: &[Vec<String>], resolve: &dyn Fn(&Operand) -> Option<Json>) -> Plan {
    let mut found = Vec::new();
    bounds(&query.filters, resolve, &mut found);
    let scan_order = query.order.is_empty();

    // An id lookup beats everything.
    for bound in found.iter().filter(|b| b.path == "id") {
        let ids: Option<Vec<String>> = match (&bound.op, &bound.value) {
            (Op::Eq, Json::String(id)) => Some(vec![id.clone()]),
            (Op::In, Json::Array(items)) => {
                let mut ids: Vec<String> = items.iter().filter_map(|i| i.as_str().map(str::to_owned)).collect();
                ids.sort();
                ids.dedup();
                Some(ids)
            }
            _ => None,
        };
        if let Some(ids) = ids {
            return Plan { access: Access::Ids(ids), ordered: false };
        }
    }

    let order_paths: Vec<String> = query.order.iter().map(|k| k.path.join(".")).collect();
    let order_plain = query.order.iter().all(|k| k.hops.is_empty());
    let descending = query.order.first().is_some_and(|k| k.descending);
    let one_direction = query.order.iter().all(|k| k.descending == descending);

    let mut best: Option<(u32, Plan)> = None;
    for columns in indexes {
        let mut equal = Vec::new();
        for column in columns {
            let eq = found.iter().find(|b| &b.path == column && b.op == Op::Eq && is_scalar(&b.value));
            match eq {
                Some(bound) => equal.push(sort_key(Some(&bound.value))),
                None => break,
            }
        }
        let rest = &columns[equal.len()..];
        let (mut lower, mut upper) = (None, None);
        if let Some(next) = rest.first() {
            for bound in found.iter().filter(|b| &b.path == next && is_scalar(&b.value)) {
                let key = sort_key(Some(&bound.value));
                match bound.op {
                    Op::Gt => lower = Some((key, false)),
                    Op::Ge => lower = Some((key, true)),
                    Op::Lt => upper = Some((key, false)),
                    Op::Le => upper = Some((key, true)),
                    _ => {}
                }
            }
        }
        let serves_order = !scan_order && order_plain && one_direction && rest == order_paths.as_slice();
        let score =
            equal.len() as u32 * 4 + u32::from(lower.is_some() || upper.is_some()) * 2 + u32::from(serves_order) * 3;
        if score == 0 {
            continue;
        }
        let plan = Plan {
            access: Access::Index(IndexRange {
                columns: columns.clone(),
                equal,
                lower,
                upper,
                descending: serves_order && descending,
            }),
            ordered: serves_order,
        };
        if best.as_ref().is_none_or(|(s, _)| score > *s) {
            best = Some((score, plan));
        }
    }
    best.map(|(_, plan)| plan).unwrap_or(Plan { access: Access::Scan, ordered: scan_order })
}
