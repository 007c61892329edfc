//! Preparing a query: checking it against the schema and turning it into what the executor runs.
//!
//! - relation paths in filters (`['author.name', '=', x]`) and `exists: {_extends}` become
//!   `exists` subqueries over the related collection;
//! - operators are checked against the attribute's type; on sets they mean "some element";
//! - static variables (`$global`, `$session`/`$token`, `$role`, `$query`, `$prev`) are replaced
//!   by their values — a missing one becomes *undefined*, which matches nothing it is compared
//!   with, as in Triplit; relational variables (`$1.x`: the parent entity, `$2.x`: its parent,
//!   bare `$x` = `$1.x`) are resolved per entity while the query runs, and one whose path
//!   crosses a relation (`$1.owner.name`) becomes an `exists` over that relation with the
//!   comparison flipped;
//! - `include` shorthands and `_extends` become subqueries with a cardinality;
//! - order paths through one-relations become hops the executor follows;
//! - for a session, each collection's permission rule for the operation is added to the
//!   filters of every query over it — the root, includes, `exists`, relation paths, order hops
//!   — and the relational parts of a rule are read through the read rules of the collections
//!   they reach, except a collection whose rule is already being expanded (Triplit's cycle stop).

use std::cell::{Cell, RefCell};

use serde_json::{Map, Value as Json};

mod rules;

use super::ast::{Direction, Filter, Include, Query};
use super::error::{QueryErrorKind as Kind, query_error};
use crate::error::Result;
use crate::permissions::{Operation, SessionRole};
use crate::schema::{Cardinality, Collection, DataType, Schema};

/// A query ready to run.
#[derive(Debug, Clone)]
pub(crate) struct Prepared {
    pub collection: String,
    pub select: Option<Vec<Vec<String>>>,
    /// All must hold.
    pub filters: Vec<Condition>,
    /// How many of `filters` the query itself gave (the rest are permission rules).
    pub own_filters: usize,
    pub order: Vec<OrderKey>,
    pub limit: Option<usize>,
    pub after: Option<(Vec<Json>, bool)>,
    pub include: Vec<Included>,
}

#[derive(Debug, Clone)]
pub(crate) struct Included {
    pub alias: String,
    pub query: Prepared,
    pub cardinality: Cardinality,
}

#[derive(Debug, Clone)]
pub(crate) struct OrderKey {
    /// One-relations to follow first (each run with the previous entity as `$1`).
    pub hops: Vec<Prepared>,
    /// The attribute path in the (last related) entity.
    pub path: Vec<String>,
    pub descending: bool,
}

/// A prepared filter.
#[derive(Debug, Clone)]
pub(crate) enum Condition {
    Constant(bool),
    All(Vec<Condition>),
    Any(Vec<Condition>),
    /// `stored_as_string`: the schema types the attribute string or date, so a matching
    /// value appears in the stored JSON text as a JSON string (used to skip rows unparsed).
    Compare {
        path: Vec<String>,
        op: Op,
        operand: Operand,
        on_set: bool,
        stored_as_string: bool,
    },
    Exists(Box<Prepared>),
}

/// A filter operator.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Op {
    Eq,
    Ne,
    Lt,
    Gt,
    Le,
    Ge,
    In,
    Nin,
    Like,
    Nlike,
    Has,
    NotHas,
    IsDefined,
}

/// The right-hand side of a comparison.
#[derive(Debug, Clone)]
pub(crate) enum Operand {
    Value(Json),
    /// An unset variable: compares as no value.
    Undefined,
    /// A path in an ancestor entity: `level` 1 is the parent, 0 the entity itself.
    Relational {
        level: usize,
        path: Vec<String>,
    },
}

impl Op {
    fn parse(op: &str) -> Option<Op> {
        Some(match op {
            "=" => Op::Eq,
            "!=" => Op::Ne,
            "<" => Op::Lt,
            ">" => Op::Gt,
            "<=" => Op::Le,
            ">=" => Op::Ge,
            "in" => Op::In,
            "nin" => Op::Nin,
            "like" => Op::Like,
            "nlike" => Op::Nlike,
            "has" => Op::Has,
            "!has" => Op::NotHas,
            "isDefined" => Op::IsDefined,
            _ => return None,
        })
    }

    /// Whether the operator applies to an attribute of this type (for sets: to the set itself
    /// or, meaning "some element", to its items).
    fn supported_by(self, ty: &DataType) -> bool {
        use Op::*;
        let comparison = matches!(self, Eq | Ne | Lt | Gt | Le | Ge);
        match ty {
            DataType::String { .. } => comparison || matches!(self, In | Nin | Like | Nlike | IsDefined),
            DataType::Number(_) => comparison || matches!(self, In | Nin | IsDefined),
            DataType::Boolean(_) | DataType::Date(_) => comparison || self == IsDefined,
            DataType::Record { .. } => self == IsDefined,
            DataType::Json(_) => true,
            DataType::Set { items, .. } => matches!(self, Has | NotHas | IsDefined) || self.supported_by(items),
        }
    }
}

/// Variable values by scope (`$global`, `$session`, `$role`, `$query`, `$prev`).
#[derive(Debug, Clone, Default)]
pub struct Variables {
    scopes: Map<String, Json>,
}

impl Variables {
    /// No variables.
    pub fn new() -> Self {
        Variables::default()
    }

    /// The value of one scope, if set.
    pub fn scope(&self, scope: &str) -> Option<&Json> {
        self.scopes.get(if scope == "$token" { "$session" } else { scope })
    }

    /// Sets one scope (`"$global"`, `"$session"`, `"$role"`, `"$prev"`; `$token` is `$session`).
    pub fn with_scope(mut self, scope: &str, values: Json) -> Self {
        let scope = if scope == "$token" { "$session" } else { scope };
        self.scopes.insert(scope.to_owned(), values);
        self
    }

    fn get(&self, scope: &str, path: &[String]) -> Option<&Json> {
        path.iter().try_fold(self.scopes.get(scope)?, |node, key| node.get(key))
    }
}

const STATIC_SCOPES: [&str; 6] = ["$global", "$session", "$token", "$role", "$query", "$prev"];

/// The permission rules a query is prepared under: the session's roles and the operation.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Rules<'r> {
    pub roles: &'r [SessionRole],
    pub operation: Operation,
}

/// Prepares `query` for running against `schema` (or schemaless) with `vars`, under `rules`
/// when a session's permissions apply.
pub(crate) fn prepare(
    query: &Query,
    schema: Option<&Schema>,
    vars: &Variables,
    rules: Option<Rules>,
) -> Result<Prepared> {
    let mut vars = vars.clone();
    if !query.vars.is_empty() && !vars.scopes.contains_key("$query") {
        vars.scopes.insert("$query".into(), Json::Object(query.vars.clone()));
    }
    let preparer = Preparer {
        schema,
        vars: &vars,
        scopes: RefCell::new(Vec::new()),
        rules,
        operation: Cell::new(rules.map(|r| r.operation).unwrap_or(Operation::Read)),
        expanding: RefCell::new(Vec::new()),
    };
    preparer.query(query)
}

struct Preparer<'a> {
    schema: Option<&'a Schema>,
    vars: &'a Variables,
    /// Collections of the queries being prepared, outermost first: `$N` refers to the entity
    /// of the query N levels up.
    scopes: RefCell<Vec<String>>,
    rules: Option<Rules<'a>>,
    /// The operation whose rules apply to the queries being prepared now.
    operation: Cell<Operation>,
    /// Collections whose rules are being expanded (their rules are not applied again inside).
    expanding: RefCell<Vec<String>>,
}

/// What a dotted path leads to in a collection.
enum PathTarget<'s> {
    Attribute(&'s DataType),
    /// A relation at `depth` segments, with its definition.
    Relation {
        depth: usize,
        collection: &'s str,
        query: &'s Json,
        cardinality: Cardinality,
    },
    Missing {
        at: String,
    },
}

fn resolve_path<'s>(collection: &'s Collection, path: &[&str]) -> PathTarget<'s> {
    let (head, rest) = path.split_first().expect("paths are never empty");
    if let Some(rel) = collection.relationships.get(*head) {
        return PathTarget::Relation {
            depth: 1,
            collection: &rel.collection,
            query: &rel.query,
            cardinality: rel.cardinality,
        };
    }
    let Some(mut ty) = collection.attributes.get(*head) else { return PathTarget::Missing { at: (*head).to_owned() } };
    for (i, segment) in rest.iter().enumerate() {
        ty = match ty {
            DataType::Record { properties, .. } => match properties.get(*segment) {
                Some(next) => next,
                None => return PathTarget::Missing { at: path[..i + 2].join(".") },
            },
            DataType::Json(_) => return PathTarget::Attribute(ty),
            _ => return PathTarget::Missing { at: path[..i + 2].join(".") },
        };
    }
    PathTarget::Attribute(ty)
}

fn split(path: &str) -> Vec<String> {
    path.split('.').map(str::to_owned).collect()
}

impl Preparer<'_> {
    fn collection(&self, name: &str) -> Result<Option<&Collection>> {
        match self.schema {
            None => Ok(None),
            Some(schema) => schema.collections().get(name).map(Some).ok_or_else(|| {
                query_error(Kind::InvalidCollectionName, format!("Collection '{name}' does not exist in the schema"))
            }),
        }
    }

    /// A relation's stored query, parsed.
    fn relation_query(query: &Json) -> Result<Query> {
        Query::from_json(query)
    }

    fn query(&self, query: &Query) -> Result<Prepared> {
        self.scopes.borrow_mut().push(query.collection.clone());
        let prepared = self.query_in_scope(query);
        self.scopes.borrow_mut().pop();
        prepared
    }

    fn query_in_scope(&self, query: &Query) -> Result<Prepared> {
        let collection = self.collection(&query.collection)?;
        let select = query.select.as_ref().map(|paths| self.select(collection, paths)).transpose()?;
        let mut filters = query.filters.iter().map(|f| self.filter(collection, f)).collect::<Result<Vec<_>>>()?;
        let own_filters = filters.len();
        if let Some(rule) = self.permission(&query.collection, collection)? {
            filters.push(rule);
        }
        let order =
            query.order.iter().map(|(path, dir)| self.order_key(collection, path, *dir)).collect::<Result<Vec<_>>>()?;
        let after = query.after.as_ref().map(|after| self.after(collection, query, after)).transpose()?;
        let include = query
            .include
            .iter()
            .map(|(alias, inc)| self.include(&query.collection, collection, alias, inc))
            .collect::<Result<Vec<_>>>()?;
        Ok(Prepared {
            collection: query.collection.clone(),
            select,
            filters,
            own_filters,
            order,
            limit: query.limit,
            after,
            include,
        })
    }

    fn select(&self, collection: Option<&Collection>, paths: &[String]) -> Result<Vec<Vec<String>>> {
        paths
            .iter()
            .map(|path| {
                if let Some(c) = collection {
                    let segments: Vec<&str> = path.split('.').collect();
                    match resolve_path(c, &segments) {
                        PathTarget::Attribute(_) => {}
                        PathTarget::Relation { .. } => {
                            return Err(query_error(Kind::InvalidSelect, format!("Select field '{path}' is not valid: Cannot select into relationships, please use 'include' instead")));
                        }
                        PathTarget::Missing { at } => {
                            return Err(query_error(Kind::InvalidSelect, format!("Select field '{path}' is not valid: Path not found at path '{at}'")));
                        }
                    }
                }
                Ok(split(path))
            })
            .collect()
    }

    fn include(&self, name: &str, collection: Option<&Collection>, alias: &str, include: &Include) -> Result<Included> {
        match include {
            Include::Subquery { query, cardinality } => {
                Ok(Included { alias: alias.to_owned(), query: self.query(query)?, cardinality: *cardinality })
            }
            Include::Relation { relation, extension } => {
                let Some(c) = collection else {
                    return Err(query_error(
                        Kind::InvalidInclusion,
                        format!("include '{alias}' names a relation, which needs a schema"),
                    ));
                };
                let segments: Vec<&str> = relation.split('.').collect();
                let (query, cardinality) = match resolve_path(c, &segments) {
                    PathTarget::Relation { depth, query, cardinality, .. } if depth == segments.len() => {
                        (query, cardinality)
                    }
                    PathTarget::Missing { .. } => {
                        return Err(query_error(
                            Kind::RelationDoesNotExist,
                            format!(
                                "Your attempt to load '{relation}' at alias '{alias}' failed because '{relation}' does not exist in the schema for the collection '{name}'."
                            ),
                        ));
                    }
                    _ => {
                        return Err(query_error(
                            Kind::IncludedNonRelation,
                            format!("'{relation}' (alias '{alias}') in '{name}' is not a relation"),
                        ));
                    }
                };
                let mut merged = Self::relation_query(query)?;
                if let Some(ext) = extension {
                    merged.filters.extend(ext.filters.iter().cloned());
                    if let Some(select) = &ext.select {
                        merged.select.get_or_insert_with(Vec::new).extend(select.iter().cloned());
                    }
                    if !ext.order.is_empty() {
                        merged.order = ext.order.clone();
                    }
                    if ext.limit.is_some() {
                        merged.limit = ext.limit;
                    }
                    if ext.after.is_some() {
                        merged.after = ext.after.clone();
                    }
                    if !ext.include.is_empty() {
                        merged.include = ext.include.clone();
                    }
                }
                Ok(Included { alias: alias.to_owned(), query: self.query(&merged)?, cardinality })
            }
        }
    }

    fn order_key(&self, collection: Option<&Collection>, path: &str, direction: Direction) -> Result<OrderKey> {
        let descending = direction == Direction::Desc;
        let Some(mut current) = collection else {
            return Ok(OrderKey { hops: Vec::new(), path: split(path), descending });
        };
        let invalid = |reason: &str, at: &str| {
            query_error(Kind::InvalidOrder, format!("Order by field '{path}' is not valid: {reason} at path '{at}'"))
        };
        let segments: Vec<&str> = path.split('.').collect();
        let mut hops = Vec::new();
        let mut offset = 0;
        loop {
            let rest = &segments[offset..];
            match resolve_path(current, rest) {
                PathTarget::Missing { .. } => return Err(invalid("Path not found", path)),
                PathTarget::Attribute(DataType::Set { .. } | DataType::Record { .. }) => {
                    return Err(invalid("Order by field is not sortable", path));
                }
                PathTarget::Attribute(_) => break,
                PathTarget::Relation { depth, collection: target, query, cardinality } => {
                    if depth == rest.len() {
                        return Err(invalid("Order by field is not sortable", path));
                    }
                    if cardinality != Cardinality::One {
                        return Err(invalid("Order by field is a query with cardinality not equal to one", path));
                    }
                    hops.push(self.query(&Self::relation_query(query)?)?);
                    offset += depth;
                    current = self.collection(target)?.expect("schema present");
                }
            }
        }
        Ok(OrderKey { hops, path: segments[offset..].iter().map(|s| (*s).to_owned()).collect(), descending })
    }

    fn after(
        &self,
        collection: Option<&Collection>,
        query: &Query,
        (cursor, inclusive): &(Vec<Json>, bool),
    ) -> Result<(Vec<Json>, bool)> {
        if query.order.is_empty() {
            return Err(query_error(Kind::InvalidAfter, "After clause requires an order by clause to be provided"));
        }
        if cursor.len() != query.order.len() {
            return Err(query_error(
                Kind::InvalidAfter,
                "After clause cursor must match the elements in the order by clause",
            ));
        }
        let mut converted = Vec::with_capacity(cursor.len());
        for ((path, _), value) in query.order.iter().zip(cursor) {
            let Some(c) = collection else {
                converted.push(value.clone());
                continue;
            };
            let segments: Vec<&str> = path.split('.').collect();
            match resolve_path(c, &segments) {
                PathTarget::Relation { .. } => {
                    return Err(query_error(
                        Kind::InvalidAfter,
                        format!("Attribute {path} is not allowed in after clause because it is relational"),
                    ));
                }
                PathTarget::Attribute(ty) => {
                    let encoded = ty.to_encoded_json(value).map_err(|e| {
                        query_error(
                            Kind::InvalidAfter,
                            format!("Error converting cursor value for attribute {path}: {e}"),
                        )
                    })?;
                    converted.push(encoded);
                }
                PathTarget::Missing { .. } => {
                    return Err(query_error(Kind::InvalidAfter, format!("Attribute {path} not found in schema")));
                }
            }
        }
        Ok((converted, *inclusive))
    }

    fn filter(&self, collection: Option<&Collection>, filter: &Filter) -> Result<Condition> {
        match filter {
            Filter::Constant(b) => Ok(Condition::Constant(*b)),
            Filter::Group { or, filters } => {
                let inner = filters.iter().map(|f| self.filter(collection, f)).collect::<Result<Vec<_>>>()?;
                Ok(if *or { Condition::Any(inner) } else { Condition::All(inner) })
            }
            Filter::Exists(query) => {
                // Only the collection and the filters of an exists subquery count.
                let mut sub = Query::new(query.collection.clone());
                sub.filters = query.filters.clone();
                Ok(Condition::Exists(Box::new(self.query(&sub)?)))
            }
            Filter::ExistsRelation { relation, filters } => {
                let Some(c) = collection else {
                    return Err(query_error(Kind::InvalidFilter, "A schema is required to execute an exists filter"));
                };
                let segments: Vec<&str> = relation.split('.').collect();
                match resolve_path(c, &segments) {
                    PathTarget::Relation { depth, query, .. } => {
                        let mut sub = Self::relation_query(query)?;
                        if depth < segments.len() {
                            let nested = segments[depth..].join(".");
                            sub.filters.push(Filter::ExistsRelation { relation: nested, filters: filters.clone() });
                        } else {
                            sub.filters.extend(filters.iter().cloned());
                        }
                        Ok(Condition::Exists(Box::new(self.query(&Query { select: None, ..sub })?)))
                    }
                    PathTarget::Missing { .. } => Err(query_error(
                        Kind::InvalidFilter,
                        format!("Could not find property '{relation}' in the schema"),
                    )),
                    PathTarget::Attribute(_) => Err(query_error(
                        Kind::InvalidFilter,
                        "Cannot execute an exists filter on a non-relation property",
                    )),
                }
            }
            Filter::Statement { path, op, value } => self.statement(collection, path, op, value),
        }
    }

    fn statement(&self, collection: Option<&Collection>, path: &str, op_text: &str, value: &Json) -> Result<Condition> {
        let op = Op::parse(op_text)
            .ok_or_else(|| query_error(Kind::InvalidFilter, format!("The operator {op_text} is not recognized.")))?;
        let mut on_set = false;
        let mut stored_as_string = false;
        if let Some(c) = collection {
            let segments: Vec<&str> = path.split('.').collect();
            match resolve_path(c, &segments) {
                PathTarget::Relation { depth, query, .. } => {
                    if depth == segments.len() {
                        return Err(query_error(
                            Kind::InvalidFilter,
                            format!("Cannot filter on the relation '{path}' itself; filter on one of its attributes"),
                        ));
                    }
                    // A path through a relation: some related entity must satisfy the rest.
                    let mut sub = Self::relation_query(query)?;
                    let inner_value = increment_relational(value);
                    sub.filters.push(Filter::Statement {
                        path: segments[depth..].join("."),
                        op: op_text.to_owned(),
                        value: inner_value,
                    });
                    return Ok(Condition::Exists(Box::new(self.query(&sub)?)));
                }
                PathTarget::Missing { .. } => {
                    return Err(query_error(
                        Kind::InvalidFilter,
                        format!("Could not find property '{path}' in the schema"),
                    ));
                }
                PathTarget::Attribute(ty) => {
                    if !op.supported_by(ty) {
                        return Err(query_error(
                            Kind::InvalidFilter,
                            format!(
                                "Operator '{op_text}' is not valid for property '{path}' of type '{}'",
                                ty.type_name()
                            ),
                        ));
                    }
                    on_set = matches!(ty, DataType::Set { .. });
                    stored_as_string = matches!(ty, DataType::String { .. } | DataType::Date(_));
                }
            }
        }
        let operand = self.operand(value);
        if let Operand::Relational { level, path: var_path } = &operand {
            if let Some(exists) = self.relational_variable_through_relation(*level, var_path, path, op_text)? {
                return Ok(exists);
            }
        }
        Ok(Condition::Compare { path: split(path), op, operand, on_set, stored_as_string })
    }

    /// `[prop, op, '$N.rel.attr']` where `rel` is a relation of the entity N levels up: some
    /// entity of that relation must satisfy `[attr, flipped op, $1.prop]`.
    fn relational_variable_through_relation(
        &self,
        level: usize,
        var_path: &[String],
        prop: &str,
        op: &str,
    ) -> Result<Option<Condition>> {
        let scope = {
            let scopes = self.scopes.borrow();
            match scopes.len().checked_sub(level + 1) {
                Some(i) if level > 0 => scopes[i].clone(),
                _ => return Ok(None),
            }
        };
        let Some(collection) = self.collection(&scope)? else { return Ok(None) };
        let segments: Vec<&str> = var_path.iter().map(String::as_str).collect();
        let PathTarget::Relation { depth, query, .. } = resolve_path(collection, &segments) else { return Ok(None) };
        if depth == segments.len() {
            return Ok(None);
        }
        let flipped = match op {
            "=" | "!=" => op,
            "<" => ">",
            ">" => "<",
            "<=" => ">=",
            ">=" => "<=",
            other => {
                return Err(query_error(
                    Kind::InvalidFilter,
                    format!("Cannot flip operator {other} for a variable path through a relation"),
                ));
            }
        };
        let mut sub = Self::relation_query(query)?;
        // The relation's `$N` counted from the referenced entity, which is now `level` further up.
        sub.filters = sub.filters.iter().map(|f| shift_relational(f, level)).collect();
        sub.filters.push(Filter::Statement {
            path: segments[depth..].join("."),
            op: flipped.to_owned(),
            value: Json::String(format!("$1.{prop}")),
        });
        Ok(Some(Condition::Exists(Box::new(self.query(&sub)?))))
    }

    fn operand(&self, value: &Json) -> Operand {
        let Some(text) = value.as_str().filter(|s| s.starts_with('$')) else { return Operand::Value(value.clone()) };
        let components: Vec<&str> = text.split('.').collect();
        let scope = components[0];
        if STATIC_SCOPES.contains(&scope) && components.len() > 1 {
            let scope = if scope == "$token" { "$session" } else { scope };
            let path: Vec<String> = components[1..].iter().map(|s| (*s).to_owned()).collect();
            return match self.vars.get(scope, &path) {
                Some(v) => Operand::Value(v.clone()),
                None => Operand::Undefined,
            };
        }
        if let Ok(level) = scope[1..].parse::<usize>() {
            if components.len() > 1 {
                return Operand::Relational { level, path: components[1..].iter().map(|s| (*s).to_owned()).collect() };
            }
        }
        // An unscoped variable (`$x`, `$x.y`) refers to the parent entity.
        let mut path: Vec<String> = components.iter().map(|s| (*s).to_owned()).collect();
        path[0] = path[0][1..].to_owned();
        Operand::Relational { level: 1, path }
    }
}

/// Shifts the relational variables of a filter's statements `by` levels (nested `exists`
/// subqueries keep theirs: they count from their own parent).
fn shift_relational(filter: &Filter, by: usize) -> Filter {
    match filter {
        Filter::Statement { path, op, value } => {
            let mut shifted = value.clone();
            for _ in 0..by {
                shifted = increment_relational(&shifted);
            }
            Filter::Statement { path: path.clone(), op: op.clone(), value: shifted }
        }
        Filter::Group { or, filters } => {
            Filter::Group { or: *or, filters: filters.iter().map(|f| shift_relational(f, by)).collect() }
        }
        other => other.clone(),
    }
}

/// `$N.path` → `$N+1.path`, for a value moved one subquery deeper.
fn increment_relational(value: &Json) -> Json {
    let Some(text) = value.as_str().filter(|s| s.starts_with('$')) else { return value.clone() };
    let components: Vec<&str> = text.split('.').collect();
    if STATIC_SCOPES.contains(&components[0]) {
        return value.clone();
    }
    match components[0][1..].parse::<usize>() {
        Ok(level) if components.len() > 1 => Json::String(format!("${}.{}", level + 1, components[1..].join("."))),
        // Unscoped `$x` means `$1.x`; one level deeper it is `$2.x`.
        _ => Json::String(format!("$2.{}", text[1..].to_owned())),
    }
}
