//! The executor: reads candidates as planned, decides each with the evaluator, sorts, pages,
//! and shapes results (includes, select, API form).

use std::cell::Cell;
use std::cmp::Ordering;
use std::sync::Arc;

use serde_json::{Map, Value as Json};

use super::cost::{Meter, QueryLimits};
use super::filter::{compare, lookup, resolve};
use super::plan::{Plan, plan};
use super::prepare::{Condition, Op, Operand, Prepared};
use crate::error::Result;
use crate::schema::{Cardinality, Schema};
use crate::store::{Access, Backend, Document, Needle, SharedDoc};
use crate::value::compare_json;

/// What the planner chose and what it cost, for [`crate::Database::explain`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Explain {
    /// `scan`, `ids (N)` or `index (a, b, c)`.
    pub access: String,
    /// Rows read from storage for the root query (subqueries not counted).
    pub rows_read: usize,
    /// Whether the index delivered rows in the query's order (no sort needed).
    pub ordered_by_index: bool,
    /// How many results the query returned.
    pub results: usize,
}

pub(crate) struct Executor<'a> {
    pub backend: &'a dyn Backend,
    pub schema: Option<&'a Schema>,
    root_read: Cell<usize>,
    /// The cost of this evaluation so far, when it is bounded.
    meter: Option<Meter>,
}

pub(crate) type Row = (String, SharedDoc);

/// The values a row sorts by, one per order key (`None`: no value).
pub(crate) type OrderValues = Vec<Option<Json>>;

impl<'a> Executor<'a> {
    pub(crate) fn new(backend: &'a dyn Backend, schema: Option<&'a Schema>) -> Self {
        Executor { backend, schema, root_read: Cell::new(0), meter: None }
    }

    /// A fresh executor over the same storage whose evaluations stop with
    /// `QueryTooExpensiveError` past `limits` (none: unbounded).
    pub(crate) fn metered(&self, limits: Option<QueryLimits>) -> Executor<'a> {
        Executor { meter: limits.map(Meter::new), ..Executor::new(self.backend, self.schema) }
    }

    /// Runs a query and returns its results in API form.
    pub(crate) fn fetch(&self, query: &Prepared) -> Result<Vec<Json>> {
        let (rows, _) = self.rows(query, &[], true, query.limit)?;
        rows.into_iter().map(|(_, doc)| self.shape(query, doc, &[])).collect()
    }

    /// Whether one document satisfies a prepared query's filters (a permission check).
    pub(crate) fn satisfies(&self, query: &Prepared, doc: &Document) -> Result<bool> {
        self.matches(&query.filters, doc, &[])
    }

    /// The rows a query selects (filters, `after`, order, limit), before shaping.
    pub(crate) fn root_rows(&self, query: &Prepared) -> Result<Vec<Row>> {
        Ok(self.rows(query, &[], true, query.limit)?.0)
    }

    /// Whether a document belongs to a query's results, the limit aside.
    pub(crate) fn accepts(&self, query: &Prepared, doc: &Document) -> Result<bool> {
        Ok(self.matches(&query.filters, doc, &[])? && self.after_ok(query, doc))
    }

    /// One root row in API form (selected attributes, included relations): the stored
    /// document itself, shared, when it is all of the row and in API form already.
    pub(crate) fn shape_row(&self, query: &Prepared, doc: SharedDoc) -> Result<Arc<Json>> {
        if query.include.is_empty() && query.select.is_none() && self.in_api_form(&query.collection, &doc) {
            return Ok(doc.as_json().clone());
        }
        self.shape(query, doc, &[]).map(Arc::new)
    }

    /// Whether a stored document reads the same in API form (no sets, nulls or numbers to
    /// convert).
    fn in_api_form(&self, collection: &str, doc: &Document) -> bool {
        match self.schema.and_then(|s| s.collections().get(collection)) {
            Some(collection) => collection.is_api_form(doc),
            None => doc.values().all(|v| !v.is_null()),
        }
    }

    /// The values a root row sorts by, for [`compare_rows`].
    pub(crate) fn order_values(&self, query: &Prepared, doc: &Document) -> Result<OrderValues> {
        query.order.iter().map(|key| self.order_value(&key.hops, &key.path, doc, &[])).collect()
    }

    /// The entities a client needs, beside a root row, to evaluate the query itself (what the
    /// sync server ships): included relations, the entities the query's own `exists` filters
    /// and relation paths match, and those its order reads through relations — each with
    /// what it needs in turn. Permission rules filter them all, but the entities behind a
    /// rule's own conditions are not shipped.
    pub(crate) fn related(&self, query: &Prepared, doc: &Document, out: &mut Vec<(String, Row)>) -> Result<()> {
        self.related_in(query, doc, &[], out)
    }

    fn related_in(
        &self,
        query: &Prepared,
        doc: &Document,
        ancestors: &[&Document],
        out: &mut Vec<(String, Row)>,
    ) -> Result<()> {
        let mut chain: Vec<&Document> = ancestors.to_vec();
        chain.push(doc);
        // Exactly what a client needs to answer the query itself: a one-relation's first row
        // (whatever its own limit), and one match per `exists`.
        let included = query.include.iter().map(|i| {
            let limit = match i.cardinality {
                Cardinality::One => Some(i.query.limit.map_or(1, |limit| limit.min(1))),
                Cardinality::Many => i.query.limit,
            };
            (&i.query, limit)
        });
        let mut subqueries: Vec<(&Prepared, Option<usize>)> = included.collect();
        subqueries.extend(exists_in(&query.filters[..query.own_filters]).into_iter().map(|sub| (sub, Some(1))));
        for (sub, limit) in subqueries {
            for (id, related) in self.rows(sub, &chain, false, limit)?.0 {
                self.related_in(sub, &related, &chain, out)?;
                out.push((sub.collection.clone(), (id, related)));
            }
        }
        for key in &query.order {
            let mut hop_chain = chain.clone();
            let mut owned: Vec<SharedDoc> = Vec::new();
            for hop in &key.hops {
                let Some((id, next)) = self.rows(hop, &hop_chain, false, hop.limit)?.0.into_iter().next() else {
                    break;
                };
                out.push((hop.collection.clone(), (id, next.clone())));
                owned.push(next);
                hop_chain = chain.clone();
                hop_chain.extend(owned.iter().map(|doc| &**doc));
            }
        }
        Ok(())
    }

    /// Runs a query and reports how it ran.
    pub(crate) fn explain(&self, query: &Prepared) -> Result<Explain> {
        let (rows, plan) = self.rows(query, &[], true, query.limit)?;
        let access = match &plan.access {
            Access::Scan => "scan".to_owned(),
            Access::Ids(ids) => format!("ids ({})", ids.len()),
            Access::Index(range) => format!("index ({})", range.columns.join(", ")),
        };
        Ok(Explain {
            access,
            rows_read: self.root_read.get(),
            ordered_by_index: plan.ordered && !query.order.is_empty(),
            results: rows.len(),
        })
    }

    /// The entities matching `query`, in order, cut to `limit` (the query's own, or 1 for an
    /// `exists` probe).
    fn rows(
        &self,
        query: &Prepared,
        ancestors: &[&Document],
        root: bool,
        limit: Option<usize>,
    ) -> Result<(Vec<Row>, Plan)> {
        let resolver = |operand: &Operand| -> Option<Json> {
            match operand {
                Operand::Value(v) => Some(v.clone()),
                Operand::Undefined => None,
                Operand::Relational { level: 0, .. } => None,
                Operand::Relational { level, path } => {
                    let parent = ancestors.get(ancestors.len().checked_sub(*level)?)?;
                    lookup(parent, path).cloned()
                }
            }
        };
        let plan = plan(query, &self.backend.indexes(&query.collection), &resolver);
        let arrives_sorted = plan.ordered || (query.order.is_empty() && plan.access == Access::Scan);
        let stop_at = limit.filter(|_| arrives_sorted);
        let mut rows = Vec::new();
        let mut failure = None;
        let needles = needles(&query.filters);
        let mut visited = 0;
        let read = self.backend.scan(&query.collection, &plan.access, &needles, &mut |id, doc| {
            visited += 1;
            let decided = self.meter(|m| m.examined(1)).and_then(|()| {
                // Preparation refuses cursors on relational order keys, so `after` needs only
                // the entity itself.
                if self.matches(&query.filters, doc, ancestors)? && self.after_ok(query, doc) {
                    self.meter(|m| m.holds(doc))?;
                    rows.push((id.to_owned(), doc.clone()));
                }
                Ok(())
            });
            if let Err(e) = decided {
                failure = Some(e);
                return Ok(false);
            }
            Ok(stop_at.is_none_or(|limit| rows.len() < limit))
        })?;
        if let Some(e) = failure {
            return Err(e);
        }
        // Rows the scan skipped unparsed cost too.
        self.meter(|m| m.examined(read.saturating_sub(visited)))?;
        if root {
            self.root_read.set(read);
        }
        if !arrives_sorted {
            self.sort(query, &mut rows, ancestors)?;
        }
        if let Some(limit) = limit {
            rows.truncate(limit);
        }
        Ok((rows, plan))
    }

    fn meter(&self, charge: impl FnOnce(&Meter) -> Result<()>) -> Result<()> {
        self.meter.as_ref().map_or(Ok(()), charge)
    }

    /// Whether any entity matches (an `exists` subquery: only its filters count).
    fn any(&self, query: &Prepared, ancestors: &[&Document]) -> Result<bool> {
        Ok(!self.rows(query, ancestors, false, Some(1))?.0.is_empty())
    }

    fn matches(&self, conditions: &[Condition], doc: &Document, ancestors: &[&Document]) -> Result<bool> {
        for condition in conditions {
            if !self.holds(condition, doc, ancestors)? {
                return Ok(false);
            }
        }
        Ok(true)
    }

    fn holds(&self, condition: &Condition, doc: &Document, ancestors: &[&Document]) -> Result<bool> {
        Ok(match condition {
            Condition::Constant(b) => *b,
            Condition::All(inner) => self.matches(inner, doc, ancestors)?,
            Condition::Any(inner) => {
                for c in inner {
                    if self.holds(c, doc, ancestors)? {
                        return Ok(true);
                    }
                }
                false
            }
            Condition::Compare { path, op, operand, on_set, .. } => {
                compare(lookup(doc, path), *op, resolve(operand, doc, ancestors), *on_set)
            }
            Condition::Exists(sub) => {
                let mut chain: Vec<&Document> = ancestors.to_vec();
                chain.push(doc);
                self.any(sub, &chain)?
            }
        })
    }

    /// Triplit's `satisfiesAfter`: past the cursor in the query's order. An entity's missing or
    /// null value is lowest, below even a `null` in the cursor (Triplit compares `value ?? MIN`
    /// with the cursor value as given).
    fn after_ok(&self, query: &Prepared, doc: &Document) -> bool {
        let Some((cursor, inclusive)) = &query.after else { return true };
        for (i, (key, value)) in query.order.iter().zip(cursor).enumerate() {
            let mut order = match lookup(doc, &key.path).filter(|v| !v.is_null()) {
                None => Ordering::Less,
                Some(entity_value) => compare_json(entity_value, value),
            };
            if key.descending {
                order = order.reverse();
            }
            match order {
                Ordering::Less => return false,
                Ordering::Greater => return true,
                Ordering::Equal if i == cursor.len() - 1 => return *inclusive,
                Ordering::Equal => {}
            }
        }
        true
    }

    fn sort(&self, query: &Prepared, rows: &mut Vec<Row>, ancestors: &[&Document]) -> Result<()> {
        let mut keyed: Vec<(OrderValues, Row)> = Vec::with_capacity(rows.len());
        for row in rows.drain(..) {
            let mut keys = Vec::with_capacity(query.order.len());
            for key in &query.order {
                keys.push(self.order_value(&key.hops, &key.path, &row.1, ancestors)?);
            }
            keyed.push((keys, row));
        }
        keyed.sort_by(|(ka, ra), (kb, rb)| compare_rows(query, (ka, &ra.0), (kb, &rb.0)));
        rows.extend(keyed.into_iter().map(|(_, row)| row));
        Ok(())
    }

    /// The value an order key sees: through one-relations first, then the attribute path.
    fn order_value(
        &self,
        hops: &[Prepared],
        path: &[String],
        doc: &Document,
        ancestors: &[&Document],
    ) -> Result<Option<Json>> {
        let Some((first, rest)) = hops.split_first() else { return Ok(lookup(doc, path).cloned()) };
        let mut chain: Vec<&Document> = ancestors.to_vec();
        chain.push(doc);
        let (related, _) = self.rows(first, &chain, false, first.limit)?;
        match related.first() {
            Some((_, next)) => self.order_value(rest, path, next, &chain),
            None => Ok(None),
        }
    }

    /// One result in API form: selected attributes, then included relations. Takes the
    /// document by value so attributes move into the result instead of being copied.
    fn shape(&self, query: &Prepared, doc: SharedDoc, ancestors: &[&Document]) -> Result<Json> {
        let mut included = Vec::with_capacity(query.include.len());
        if !query.include.is_empty() {
            let mut chain: Vec<&Document> = ancestors.to_vec();
            chain.push(&doc);
            for include in &query.include {
                let (rows, _) = self.rows(&include.query, &chain, false, include.query.limit)?;
                let value = match include.cardinality {
                    Cardinality::One => match rows.into_iter().next() {
                        Some((_, related)) => self.shape(&include.query, related, &chain)?,
                        None => Json::Null,
                    },
                    Cardinality::Many => Json::Array(
                        rows.into_iter()
                            .map(|(_, related)| self.shape(&include.query, related, &chain))
                            .collect::<Result<Vec<_>>>()?,
                    ),
                };
                included.push((include.alias.clone(), value));
            }
        }
        let picked = match &query.select {
            None => doc.into_doc(),
            Some(paths) => {
                let mut out = Map::new();
                for path in paths {
                    select_path(&mut out, &doc, path);
                }
                out
            }
        };
        let mut shaped = match self.schema.and_then(|s| s.collections().get(&query.collection)) {
            Some(collection) => collection.into_api(picked),
            None => picked.into_iter().filter(|(_, v)| !v.is_null()).collect(),
        };
        shaped.extend(included);
        Ok(Json::Object(shaped))
    }
}

/// The `exists` subqueries among `conditions`, at any depth of `and`/`or`.
pub(crate) fn exists_in(conditions: &[Condition]) -> Vec<&Prepared> {
    let mut out = Vec::new();
    collect_exists(conditions, &mut out);
    out
}

fn collect_exists<'q>(conditions: &'q [Condition], out: &mut Vec<&'q Prepared>) {
    for condition in conditions {
        match condition {
            Condition::All(inner) | Condition::Any(inner) => collect_exists(inner, out),
            Condition::Exists(sub) => out.push(sub),
            Condition::Constant(_) | Condition::Compare { .. } => {}
        }
    }
}

/// Substrings the stored JSON text of any row matching `conditions` must contain: the literal
/// segments of a top-level `like` pattern (ASCII, any case) and the JSON text of a string a
/// top-level `=` requires, on attributes stored as JSON strings. Only conditions that must all
/// hold (top level, `and`) qualify.
fn needles(conditions: &[Condition]) -> Vec<Needle> {
    let mut out = Vec::new();
    for condition in conditions {
        match condition {
            Condition::All(inner) => out.extend(needles(inner)),
            Condition::Compare {
                path,
                op: Op::Like,
                operand: Operand::Value(Json::String(pattern)),
                stored_as_string: true,
                ..
            } => {
                let key = path.last().expect("paths are never empty");
                for segment in pattern.split(['%', '_']) {
                    // Letters outside ASCII fold in ways a byte search cannot follow, and
                    // characters JSON escapes are stored differently.
                    let plain =
                        segment.bytes().all(|b| b.is_ascii() && !b.is_ascii_control() && b != b'"' && b != b'\\');
                    if plain && !segment.is_empty() {
                        out.push(Needle::new(segment.as_bytes(), true).within(key));
                    }
                }
            }
            Condition::Compare {
                op: Op::Eq,
                operand: Operand::Value(value @ Json::String(_)),
                stored_as_string: true,
                ..
            } => {
                out.push(Needle::new(value.to_string().as_bytes(), false));
            }
            _ => {}
        }
    }
    out
}

/// The order of two rows in a query's results: by the order keys, ties by id (descending when
/// the last key is).
pub(crate) fn compare_rows(
    query: &Prepared,
    (ka, ida): (&OrderValues, &str),
    (kb, idb): (&OrderValues, &str),
) -> Ordering {
    for (key, (a, b)) in query.order.iter().zip(ka.iter().zip(kb)) {
        let order = compare_no_value_lowest(a.as_ref(), b.as_ref());
        if order != Ordering::Equal {
            return if key.descending { order.reverse() } else { order };
        }
    }
    let by_id = ida.cmp(idb);
    if query.order.last().is_some_and(|k| k.descending) { by_id.reverse() } else { by_id }
}

/// Triplit's sort order: `value ?? MIN`, so missing and `null` tie below everything.
fn compare_no_value_lowest(a: Option<&Json>, b: Option<&Json>) -> Ordering {
    match (a.filter(|v| !v.is_null()), b.filter(|v| !v.is_null())) {
        (None, None) => Ordering::Equal,
        (None, Some(_)) => Ordering::Less,
        (Some(_), None) => Ordering::Greater,
        (Some(a), Some(b)) => compare_json(a, b),
    }
}

/// Copies `path` from `doc` into `out`. Like Triplit, the records along the path are kept even
/// when the selected leaf is missing (`profile.bio` on a profile without a bio gives
/// `{"profile": {}}`).
fn select_path(out: &mut Map<String, Json>, doc: &Map<String, Json>, path: &[String]) {
    let (head, rest) = path.split_first().expect("paths are never empty");
    let Some(value) = doc.get(head) else { return };
    if rest.is_empty() {
        out.insert(head.clone(), value.clone());
        return;
    }
    let Json::Object(inner) = value else { return };
    let child = out.entry(head.clone()).or_insert_with(|| Json::Object(Map::new()));
    if let Json::Object(map) = child {
        select_path(map, inner, rest);
    }
}
