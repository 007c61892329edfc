//! The query as written: Triplit's query JSON, typed, and a builder for Rust callers.
//!
//! Parsing checks shape only (which clause, what JSON type); meaning is checked against the
//! schema when the query is prepared.

use std::collections::BTreeMap;

use serde_json::{Map, Value as Json, json};

use super::error::{QueryErrorKind as Kind, query_error};
use crate::error::Result;
use crate::schema::{Cardinality, describe_json};

/// A query over one collection.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Query {
    pub collection: String,
    /// Attribute paths to return (dot paths into records); `None` returns everything.
    pub select: Option<Vec<String>>,
    /// Filters, all of which must hold.
    pub filters: Vec<Filter>,
    /// Sort keys, most significant first.
    pub order: Vec<(String, Direction)>,
    pub limit: Option<usize>,
    /// Start after (or at, when inclusive) this cursor: one value per order key.
    pub after: Option<(Vec<Json>, bool)>,
    /// Related entities to return with each result, by alias.
    pub include: BTreeMap<String, Include>,
    /// Values for `$query.*` variables.
    pub vars: Map<String, Json>,
}

/// Sort direction.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Direction {
    Asc,
    Desc,
}

/// One `where` filter.
#[derive(Debug, Clone, PartialEq)]
pub enum Filter {
    /// `[path, op, value]`
    Statement { path: String, op: String, value: Json },
    /// `{mod: "and" | "or", filters}`
    Group { or: bool, filters: Vec<Filter> },
    /// `true` (no-op) or `false` (matches nothing).
    Constant(bool),
    /// `{exists: query}`: a correlated subquery (only its collection and filters count).
    Exists(Box<Query>),
    /// `{exists: {_extends: "relation(.nested)", where?}}`
    ExistsRelation { relation: String, filters: Vec<Filter> },
}

/// One `include` entry.
#[derive(Debug, Clone, PartialEq)]
pub enum Include {
    /// `true`, `null`, or `{_extends: relation, where?, order?, limit?, select?, include?}`:
    /// a schema relation, optionally narrowed (`extension` holds the extra clauses).
    Relation { relation: String, extension: Option<Box<Query>> },
    /// `{subquery, cardinality}`
    Subquery { query: Box<Query>, cardinality: Cardinality },
}

impl Query {
    /// A query over all entities of a collection.
    pub fn new(collection: impl Into<String>) -> Self {
        Query { collection: collection.into(), ..Query::default() }
    }

    /// Adds a `[path, op, value]` filter.
    pub fn filter(mut self, path: impl Into<String>, op: impl Into<String>, value: impl Into<Json>) -> Self {
        self.filters.push(Filter::Statement { path: path.into(), op: op.into(), value: value.into() });
        self
    }

    /// Adds any filter (groups, `exists`, constants).
    pub fn where_(mut self, filter: Filter) -> Self {
        self.filters.push(filter);
        self
    }

    /// Adds a sort key.
    pub fn order(mut self, path: impl Into<String>, direction: Direction) -> Self {
        self.order.push((path.into(), direction));
        self
    }

    pub fn limit(mut self, limit: usize) -> Self {
        self.limit = Some(limit);
        self
    }

    /// Starts after (or at, if `inclusive`) the cursor.
    pub fn after(mut self, cursor: Vec<Json>, inclusive: bool) -> Self {
        self.after = Some((cursor, inclusive));
        self
    }

    pub fn select<S: Into<String>>(mut self, paths: impl IntoIterator<Item = S>) -> Self {
        self.select = Some(paths.into_iter().map(Into::into).collect());
        self
    }

    /// Includes a schema relation under its own name.
    pub fn include(mut self, relation: impl Into<String>) -> Self {
        let relation = relation.into();
        self.include.insert(relation.clone(), Include::Relation { relation, extension: None });
        self
    }

    /// Includes a schema relation under an alias, narrowed by `extension`'s clauses.
    pub fn include_with(mut self, alias: impl Into<String>, relation: impl Into<String>, extension: Query) -> Self {
        self.include.insert(
            alias.into(),
            Include::Relation { relation: relation.into(), extension: Some(Box::new(extension)) },
        );
        self
    }

    /// Sets a `$query.*` variable.
    pub fn var(mut self, name: impl Into<String>, value: impl Into<Json>) -> Self {
        self.vars.insert(name.into(), value.into());
        self
    }

    /// Parses Triplit's query JSON text.
    pub fn from_json_str(text: &str) -> Result<Self> {
        let json: Json = serde_json::from_str(text).map_err(|e| crate::Error::invalid_json("query", e))?;
        Self::from_json(&json)
    }

    /// Parses Triplit's query JSON. Keys the client adds for its own use (`traceId`, …) are ignored.
    pub fn from_json(json: &Json) -> Result<Self> {
        parse_query(json, true)
    }

    /// Triplit's query JSON.
    pub fn to_json(&self) -> Json {
        let mut out = Map::new();
        out.insert("collectionName".into(), json!(self.collection));
        if let Some(select) = &self.select {
            out.insert("select".into(), json!(select));
        }
        if !self.filters.is_empty() {
            out.insert("where".into(), Json::Array(self.filters.iter().map(Filter::to_json).collect()));
        }
        if !self.order.is_empty() {
            let order: Vec<Json> = self.order.iter().map(|(p, d)| json!([p, d.as_str()])).collect();
            out.insert("order".into(), Json::Array(order));
        }
        if let Some(limit) = self.limit {
            out.insert("limit".into(), json!(limit));
        }
        if let Some((cursor, inclusive)) = &self.after {
            out.insert("after".into(), json!([cursor, inclusive]));
        }
        if !self.include.is_empty() {
            let include: Map<String, Json> = self.include.iter().map(|(k, v)| (k.clone(), v.to_json())).collect();
            out.insert("include".into(), Json::Object(include));
        }
        if !self.vars.is_empty() {
            out.insert("vars".into(), Json::Object(self.vars.clone()));
        }
        Json::Object(out)
    }
}

impl Direction {
    pub fn as_str(self) -> &'static str {
        match self {
            Direction::Asc => "ASC",
            Direction::Desc => "DESC",
        }
    }
}

impl Filter {
    /// `{mod: "or", filters}`
    pub fn or(filters: Vec<Filter>) -> Self {
        Filter::Group { or: true, filters }
    }

    /// `{mod: "and", filters}`
    pub fn and(filters: Vec<Filter>) -> Self {
        Filter::Group { or: false, filters }
    }

    /// `[path, op, value]`
    pub fn statement(path: impl Into<String>, op: impl Into<String>, value: impl Into<Json>) -> Self {
        Filter::Statement { path: path.into(), op: op.into(), value: value.into() }
    }

    /// Parses one filter from Triplit's JSON form.
    pub fn from_json(json: &Json) -> Result<Self> {
        parse_filter(json)
    }

    /// Triplit's JSON form.
    pub fn to_json(&self) -> Json {
        match self {
            Filter::Statement { path, op, value } => json!([path, op, value]),
            Filter::Group { or, filters } => {
                json!({"mod": if *or { "or" } else { "and" }, "filters": filters.iter().map(Filter::to_json).collect::<Vec<_>>()})
            }
            Filter::Constant(b) => json!(b),
            Filter::Exists(query) => json!({"exists": query.to_json()}),
            Filter::ExistsRelation { relation, filters } => {
                let mut inner = Map::new();
                inner.insert("_extends".into(), json!(relation));
                if !filters.is_empty() {
                    inner.insert("where".into(), Json::Array(filters.iter().map(Filter::to_json).collect()));
                }
                json!({ "exists": inner })
            }
        }
    }
}

impl Include {
    fn to_json(&self) -> Json {
        match self {
            // The shorthand: Triplit's client writes `null` so the key survives JSON.
            Include::Relation { extension: None, .. } => Json::Null,
            Include::Relation { relation, extension: Some(ext) } => {
                let mut out = ext.to_json().as_object().cloned().unwrap_or_default();
                out.remove("collectionName");
                out.insert("_extends".into(), json!(relation));
                Json::Object(out)
            }
            Include::Subquery { query, cardinality } => json!({
                "subquery": query.to_json(),
                "cardinality": match cardinality { Cardinality::One => "one", Cardinality::Many => "many" },
            }),
        }
    }
}

fn parse_query(json: &Json, needs_collection: bool) -> Result<Query> {
    let obj = json.as_object().ok_or_else(|| {
        query_error(Kind::InvalidQuery, format!("a query must be an object, found {}", describe_json(json)))
    })?;
    let collection = match obj.get("collectionName") {
        Some(Json::String(name)) if !name.is_empty() => name.clone(),
        None | Some(Json::Null) if !needs_collection => String::new(),
        None | Some(Json::Null) => {
            return Err(query_error(Kind::InvalidCollectionName, "collectionName must be provided"));
        }
        Some(other) => {
            return Err(query_error(
                Kind::InvalidCollectionName,
                format!("collectionName must be a non-empty string, found {}", describe_json(other)),
            ));
        }
    };
    let select = match obj.get("select") {
        None | Some(Json::Null) => None,
        Some(Json::Array(items)) => Some(
            items
                .iter()
                .map(|i| {
                    i.as_str().map(str::to_owned).ok_or_else(|| {
                        query_error(Kind::InvalidSelect, format!("select field {} is not a string", describe_json(i)))
                    })
                })
                .collect::<Result<Vec<_>>>()?,
        ),
        Some(other) => {
            return Err(query_error(
                Kind::InvalidSelect,
                format!("select must be an array, found {}", describe_json(other)),
            ));
        }
    };
    let filters = match obj.get("where") {
        None | Some(Json::Null) => Vec::new(),
        Some(Json::Array(items)) => items.iter().map(parse_filter).collect::<Result<Vec<_>>>()?,
        Some(other) => {
            return Err(query_error(
                Kind::InvalidWhere,
                format!("where must be an array, found {}", describe_json(other)),
            ));
        }
    };
    let order = match obj.get("order") {
        None | Some(Json::Null) => Vec::new(),
        Some(Json::Array(items)) => items.iter().map(parse_order).collect::<Result<Vec<_>>>()?,
        Some(other) => {
            return Err(query_error(
                Kind::InvalidOrder,
                format!("order must be an array, found {}", describe_json(other)),
            ));
        }
    };
    let limit = match obj.get("limit") {
        None | Some(Json::Null) => None,
        Some(Json::Number(n)) => match n.as_f64() {
            Some(f) if f < 0.0 => return Err(query_error(Kind::InvalidLimit, "Limit must be a positive number")),
            Some(f) if f.fract() != 0.0 => {
                return Err(query_error(Kind::InvalidLimit, format!("limit must be a whole number, found {f}")));
            }
            Some(f) => Some(f as usize),
            None => return Err(query_error(Kind::InvalidLimit, "Limit must be a number")),
        },
        Some(other) => {
            return Err(query_error(
                Kind::InvalidLimit,
                format!("Limit must be a number, found {}", describe_json(other)),
            ));
        }
    };
    let after = match obj.get("after") {
        None | Some(Json::Null) => None,
        Some(Json::Array(parts)) => {
            if parts.len() != 2 {
                return Err(query_error(Kind::InvalidAfter, "after must be [cursor, inclusive]"));
            }
            let cursor = parts[0]
                .as_array()
                .ok_or_else(|| query_error(Kind::InvalidAfter, "After clause cursor must be an array"))?;
            let inclusive = parts[1]
                .as_bool()
                .ok_or_else(|| query_error(Kind::InvalidAfter, "After clause inclusive flag must be a boolean"))?;
            Some((cursor.clone(), inclusive))
        }
        Some(other) => {
            return Err(query_error(
                Kind::InvalidAfter,
                format!("After clause must be an array, found {}", describe_json(other)),
            ));
        }
    };
    let mut include = BTreeMap::new();
    match obj.get("include") {
        None | Some(Json::Null) => {}
        Some(Json::Object(entries)) => {
            for (alias, entry) in entries {
                include.insert(alias.clone(), parse_include(alias, entry)?);
            }
        }
        Some(other) => {
            return Err(query_error(
                Kind::InvalidInclusion,
                format!("include must be an object, found {}", describe_json(other)),
            ));
        }
    }
    let vars = match obj.get("vars") {
        None | Some(Json::Null) => Map::new(),
        Some(Json::Object(vars)) => vars.clone(),
        Some(other) => {
            return Err(query_error(
                Kind::InvalidQuery,
                format!("vars must be an object, found {}", describe_json(other)),
            ));
        }
    };
    Ok(Query { collection, select, filters, order, limit, after, include, vars })
}

fn parse_order(json: &Json) -> Result<(String, Direction)> {
    let parts = json.as_array().filter(|p| p.len() >= 2).ok_or_else(|| {
        query_error(Kind::InvalidOrder, format!("an order clause is [path, direction], found {json}"))
    })?;
    let path = parts[0].as_str().ok_or_else(|| {
        query_error(Kind::InvalidOrder, format!("order path must be a string, found {}", describe_json(&parts[0])))
    })?;
    let direction = match parts[1].as_str() {
        Some("ASC") => Direction::Asc,
        Some("DESC") => Direction::Desc,
        _ => {
            return Err(query_error(
                Kind::InvalidOrder,
                format!("Invalid order direction '{}'", parts[1].as_str().unwrap_or(&parts[1].to_string())),
            ));
        }
    };
    Ok((path.to_owned(), direction))
}

fn parse_filter(json: &Json) -> Result<Filter> {
    match json {
        Json::Bool(b) => Ok(Filter::Constant(*b)),
        Json::Array(parts) if parts.len() == 3 && parts[0].is_string() && parts[1].is_string() => {
            Ok(Filter::Statement {
                path: parts[0].as_str().expect("checked").to_owned(),
                op: parts[1].as_str().expect("checked").to_owned(),
                value: parts[2].clone(),
            })
        }
        Json::Object(obj) if obj.contains_key("mod") => {
            let or = match obj["mod"].as_str() {
                Some("and") => false,
                Some("or") => true,
                _ => return Err(query_error(Kind::InvalidFilter, format!("Invalid filter group mod {}", obj["mod"]))),
            };
            let filters = obj
                .get("filters")
                .and_then(Json::as_array)
                .ok_or_else(|| query_error(Kind::InvalidFilter, "a filter group needs a \"filters\" array"))?;
            Ok(Filter::Group { or, filters: filters.iter().map(parse_filter).collect::<Result<Vec<_>>>()? })
        }
        Json::Object(obj) if obj.contains_key("exists") => {
            let inner = &obj["exists"];
            match inner.get("_extends") {
                Some(Json::String(relation)) => {
                    let filters = match inner.get("where") {
                        None | Some(Json::Null) => Vec::new(),
                        Some(Json::Array(items)) => items.iter().map(parse_filter).collect::<Result<Vec<_>>>()?,
                        Some(other) => {
                            return Err(query_error(
                                Kind::InvalidFilter,
                                format!("exists where must be an array, found {}", describe_json(other)),
                            ));
                        }
                    };
                    Ok(Filter::ExistsRelation { relation: relation.clone(), filters })
                }
                Some(other) => Err(query_error(
                    Kind::InvalidFilter,
                    format!("exists _extends must be a relation name, found {}", describe_json(other)),
                )),
                None => Ok(Filter::Exists(Box::new(parse_query(inner, true)?))),
            }
        }
        other => Err(query_error(Kind::InvalidFilter, format!("Filter is not valid format: {other}"))),
    }
}

fn parse_include(alias: &str, json: &Json) -> Result<Include> {
    match json {
        Json::Null | Json::Bool(true) => Ok(Include::Relation { relation: alias.to_owned(), extension: None }),
        Json::Object(obj) if obj.contains_key("subquery") => {
            let query = parse_query(&obj["subquery"], true)?;
            let cardinality = match obj.get("cardinality").and_then(Json::as_str) {
                Some("one") => Cardinality::One,
                Some("many") => Cardinality::Many,
                other => {
                    return Err(query_error(
                        Kind::InvalidCardinality,
                        format!("cardinality must be \"one\" or \"many\", found {other:?}"),
                    ));
                }
            };
            Ok(Include::Subquery { query: Box::new(query), cardinality })
        }
        Json::Object(obj) if obj.contains_key("_extends") => {
            let relation = obj["_extends"]
                .as_str()
                .ok_or_else(|| query_error(Kind::InvalidInclusion, "_extends must be a relation name"))?;
            let extension = parse_query(json, false)?;
            Ok(Include::Relation { relation: relation.to_owned(), extension: Some(Box::new(extension)) })
        }
        other => Err(query_error(
            Kind::InvalidInclusion,
            format!("include '{alias}' must be true, null, {{_extends}} or {{subquery, cardinality}}, found {other}"),
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accepts_what_the_client_sends() {
        let json = json!({
            "collectionName": "todos", "traceId": "abc",
            "where": [["owner", "=", "$token.sub"], {"mod": "or", "filters": [true, ["n", ">", 1]]},
                      {"exists": {"_extends": "tags", "where": [["name", "=", "x"]]}},
                      {"exists": {"collectionName": "users", "where": [["id", "=", "$1.owner"]]}}],
            "order": [["created_at", "DESC"]], "limit": 20, "after": [["2024-01-01", "id1"], false],
            "include": {"a": null, "b": true, "c": {"_extends": "tags", "limit": 2},
                        "d": {"subquery": {"collectionName": "users"}, "cardinality": "one"}},
            "vars": {"x": 1}
        });
        let query = Query::from_json(&json).unwrap();
        assert_eq!(query.filters.len(), 4);
        assert_eq!(query.include.len(), 4);
        assert!(matches!(&query.include["c"], Include::Relation { extension: Some(ext), .. } if ext.limit == Some(2)));
        assert_eq!(Query::from_json(&query.to_json()).unwrap(), query);
    }

    #[test]
    fn malformed_clauses_are_named() {
        let cases = [
            (json!({"collectionName": "t", "limit": -1}), "InvalidQueryLimitError"),
            (json!({"collectionName": "t", "order": [["a", "SIDEWAYS"]]}), "InvalidOrderClauseError"),
            (json!({"collectionName": "t", "where": "x"}), "InvalidQueryWhereError"),
            (json!({"collectionName": "t", "where": [["a", "="]]}), "InvalidFilterError"),
            (json!({"collectionName": "t", "after": ["x", true]}), "InvalidQueryAfterError"),
            (json!({"where": []}), "InvalidCollectionNameError"),
            (json!({"collectionName": "t", "include": {"a": 5}}), "InvalidQueryInclusionError"),
        ];
        for (json, name) in cases {
            match Query::from_json(&json) {
                Err(crate::Error::Query { kind, .. }) => assert_eq!(kind.name(), name, "{json}"),
                other => panic!("{json}: {other:?}"),
            }
        }
    }
}
