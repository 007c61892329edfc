//! Roles and permission rules.
//!
//! A session's roles are the schema's roles whose `match` pattern its claims satisfy (with the
//! `$name` captures exposed as `$role.name`); without roles in the schema, Triplit's defaults
//! (`anonymous`, `authenticated`) apply. Rules are per collection, role and operation; the query
//! preparer folds them into every query it prepares for the session (see
//! [`crate::query`]), and transactions check their writes with them before committing.

use std::fmt;

use serde_json::{Map, Value as Json, json};

/// The operations a rule can govern.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Operation {
    Read,
    Insert,
    Update,
    /// Checked on the updated entity, with `$prev` bound to the entity before the update.
    PostUpdate,
    Delete,
}

impl Operation {
    /// The key in a schema's `permissions`.
    pub fn name(self) -> &'static str {
        match self {
            Operation::Read => "read",
            Operation::Insert => "insert",
            Operation::Update => "update",
            Operation::PostUpdate => "postUpdate",
            Operation::Delete => "delete",
        }
    }
}

impl fmt::Display for Operation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// A role a session holds, with the values its pattern captured.
#[derive(Debug, Clone, PartialEq)]
pub struct SessionRole {
    pub name: String,
    pub vars: Map<String, Json>,
}

/// Who a session acts for: its claims, roles, and whether rules apply at all.
#[derive(Debug, Clone)]
pub(crate) struct Principal {
    pub claims: Map<String, Json>,
    pub roles: Vec<SessionRole>,
    /// Service tokens, and databases without a schema, skip every rule.
    pub bypass: bool,
    /// A verified service (`secret`) token: only verification sets this, never a claim.
    pub service: bool,
    /// What one of this principal's queries may cost (none: unbounded).
    pub limits: Option<crate::query::QueryLimits>,
}

/// Triplit's roles for schemas that define none.
pub(crate) fn default_roles() -> Map<String, Json> {
    json!({
        "anonymous": {"match": {"x-triplit-token-type": "anon"}},
        "authenticated": {"match": {"sub": "$sub"}}
    })
    .as_object()
    .cloned()
    .expect("an object")
}

/// The roles whose patterns the claims match, in the schema's order.
pub(crate) fn match_roles(roles: &Map<String, Json>, claims: &Map<String, Json>) -> Vec<SessionRole> {
    roles
        .iter()
        .filter_map(|(name, role)| {
            let pattern = role.get("match")?.as_object()?;
            let mut vars = Map::new();
            matches(pattern, claims, &mut vars).then(|| SessionRole { name: name.clone(), vars })
        })
        .collect()
}

/// Triplit's `matchPattern`: every key present; nested objects recurse; `$name` captures the
/// claim; anything else must be equal.
fn matches(pattern: &Map<String, Json>, claims: &Map<String, Json>, vars: &mut Map<String, Json>) -> bool {
    pattern.iter().all(|(key, matcher)| {
        let Some(value) = claims.get(key) else { return false };
        match matcher {
            Json::Object(nested) => value.as_object().is_some_and(|inner| matches(nested, inner, vars)),
            Json::String(s) if s.starts_with('$') => {
                vars.insert(s[1..].to_owned(), value.clone());
                true
            }
            _ => matcher == value,
        }
    })
}

/// Claims as Triplit normalizes them: a space-separated `scope` string is also offered as the
/// `_scope` array.
pub(crate) fn normalize_claims(mut claims: Map<String, Json>) -> Map<String, Json> {
    if let Some(Json::String(scope)) = claims.get("scope") {
        let scopes: Vec<Json> = scope.split_whitespace().map(|s| Json::String(s.to_owned())).collect();
        claims.insert("_scope".into(), Json::Array(scopes));
    }
    claims
}

#[cfg(test)]
mod tests {
    use super::*;

    fn obj(v: Json) -> Map<String, Json> {
        v.as_object().unwrap().clone()
    }

    #[test]
    fn roles_match_capture_and_nest() {
        let roles = obj(json!({
            "user": {"match": {"sub": "$userId"}},
            "admin": {"match": {"app_meta": {"role": "admin"}, "sub": "$id"}},
            "anon": {"match": {"x-triplit-token-type": "anon"}}
        }));
        let carol = match_roles(&roles, &obj(json!({"sub": "carol", "app_meta": {"role": "admin"}})));
        assert_eq!(carol.iter().map(|r| r.name.as_str()).collect::<Vec<_>>(), vec!["admin", "user"]);
        assert_eq!(carol[1].vars["userId"], json!("carol"));
        assert!(match_roles(&roles, &obj(json!({"app_meta": {"role": "user"}}))).is_empty());
        assert_eq!(match_roles(&default_roles(), &obj(json!({"x-triplit-token-type": "anon"})))[0].name, "anonymous");
    }
}
