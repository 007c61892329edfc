//! Folding permission rules into prepared queries: for the operation being prepared, each
//! collection's rule, OR-ed over the session's roles, joins the query's filters. A rule's
//! relational parts are read through the read rules of the collections they reach, except a
//! collection whose rule is being expanded already (Triplit's cycle stop).

use std::cell::{Cell, RefCell};

use serde_json::Value as Json;

use super::{Condition, Preparer, STATIC_SCOPES};
use crate::error::Result;
use crate::permissions::Operation;
use crate::query::ast::Filter;
use crate::query::error::{QueryErrorKind as Kind, query_error};
use crate::schema::Collection;

impl Preparer<'_> {
    /// The rule for the current operation on `name`, OR-ed over the session's roles; `None`
    /// when the collection is open (no `permissions`), or when no role has a `postUpdate`
    /// rule (that one is optional). No matching rule otherwise denies, and so does `[]`.
    pub(super) fn permission(&self, name: &str, collection: Option<&Collection>) -> Result<Option<Condition>> {
        let (Some(rules), Some(collection)) = (self.rules, collection) else { return Ok(None) };
        let Some(permissions) = &collection.permissions else { return Ok(None) };
        if self.expanding.borrow().iter().any(|c| c == name) {
            return Ok(None);
        }
        let operation = self.operation.get();
        let mut alternatives = Vec::new();
        for role in rules.roles {
            let Some(filter) =
                permissions.get(&role.name).and_then(|r| r.get(operation.name())).and_then(|r| r.get("filter"))
            else {
                continue;
            };
            let filters = filter
                .as_array()
                .ok_or_else(|| query_error(Kind::InvalidFilter, "Invalid permission filter format, expected array"))?;
            if filters.is_empty() {
                alternatives.push(Condition::Constant(false));
                continue;
            }
            let vars = self.vars.clone().with_scope("$role", Json::Object(role.vars.clone()));
            let expander = Preparer {
                schema: self.schema,
                vars: &vars,
                scopes: RefCell::new(self.scopes.borrow().clone()),
                rules: self.rules,
                operation: Cell::new(Operation::Read),
                expanding: RefCell::new(self.expanding.borrow().iter().cloned().chain([name.to_owned()]).collect()),
            };
            let mut conditions = Vec::with_capacity(filters.len());
            for json in filters {
                let filter = Filter::from_json(json)?;
                conditions.push(expander.filter(Some(collection), &scope_to_entity(&filter))?);
            }
            alternatives.push(Condition::All(conditions));
        }
        if alternatives.is_empty() {
            return Ok((operation != Operation::PostUpdate).then_some(Condition::Constant(false)));
        }
        Ok(Some(Condition::Any(alternatives)))
    }
}

/// In permission filters an unscoped variable (`$owner`) means the entity itself (`$0.owner`),
/// where in queries it means the parent; only the rule's own statements are rewritten.
fn scope_to_entity(filter: &Filter) -> Filter {
    match filter {
        Filter::Statement { path, op, value } => {
            let value = match value.as_str().filter(|v| v.starts_with('$')) {
                Some(text) => {
                    let head = text.split('.').next().unwrap_or(text);
                    let scoped = STATIC_SCOPES.contains(&head) || head[1..].parse::<usize>().is_ok();
                    if scoped { value.clone() } else { Json::String(format!("$0.{}", &text[1..])) }
                }
                None => value.clone(),
            };
            Filter::Statement { path: path.clone(), op: op.clone(), value }
        }
        Filter::Group { or, filters } => {
            Filter::Group { or: *or, filters: filters.iter().map(scope_to_entity).collect() }
        }
        other => other.clone(),
    }
}
