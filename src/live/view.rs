//! A view: one subscribed query and its current result, kept up to date after each commit.
//!
//! Most views update in place: a write to the root collection moves, adds or drops only the
//! entities it changed. Two shapes fall back to re-running the query:
//! - root filters or order that read other entities (`exists`, relation paths, relational
//!   permission rules, order through a relation): a write to any collection they read can
//!   change which entities match, and finding which would mean inverting the subquery;
//! - a full `limit` window that loses a member: the entity that slides in from beyond the
//!   window is not in memory.
//!
//! A write that reaches only included relations re-shapes the current rows (their includes are
//! read again) without re-running the root query.

use std::cmp::Ordering;
use std::collections::{BTreeSet, HashMap};
use std::sync::Arc;

use serde_json::Value as Json;

use crate::error::Result;
use crate::permissions::Principal;
use crate::query::{Condition, Executor, Op, Operand, OrderValues, Prepared, Query, compare_rows, exists_in};
use crate::store::SharedDoc;
use crate::value::sort_key;

use super::edits::Edits;

/// One entity a commit changed, as it was before the transaction and is after it.
pub(crate) struct Change {
    pub collection: String,
    pub id: String,
    pub before: Option<SharedDoc>,
    pub after: Option<SharedDoc>,
}

/// A result in the order the query gives: `(id, entity in API form)`. Entities are shared
/// between a view and the results it delivers, so unchanged ones are never copied.
#[derive(Debug, Default)]
pub(crate) struct Snapshot(pub Vec<(Arc<str>, Arc<Json>)>);

impl PartialEq for Snapshot {
    fn eq(&self, other: &Self) -> bool {
        self.0.len() == other.0.len()
            && self.0.iter().zip(&other.0).all(|((a, x), (b, y))| a == b && (Arc::ptr_eq(x, y) || x == y))
    }
}

/// What a subscription asked for, kept so it can be prepared again after a schema change.
#[derive(Clone)]
pub(crate) struct Source {
    pub query: Query,
    pub access: Option<Arc<Principal>>,
}

/// What a prepared query reads, for routing writes to it.
#[derive(Debug)]
pub(crate) struct Dependencies {
    pub root: String,
    /// Collections read through subqueries: `exists`, relation paths, order hops, includes.
    pub read_collections: BTreeSet<String>,
    /// Collections the root's filters and order read (a subset of `read_collections`).
    pub filter_collections: BTreeSet<String>,
    /// Top-level `attribute = constant` filters: (path, key of the constant).
    pub equalities: Vec<(Vec<String>, Vec<u8>)>,
}

impl Dependencies {
    /// Whether the root's filters and order read nothing but the entity itself.
    pub(crate) fn root_is_simple(&self) -> bool {
        self.filter_collections.is_empty()
    }

    pub(crate) fn of(query: &Prepared) -> Self {
        let mut filter_collections = BTreeSet::new();
        conditions_read(&query.filters, &mut filter_collections);
        for key in &query.order {
            for hop in &key.hops {
                query_reads(hop, &mut filter_collections);
            }
        }
        let mut read_collections = filter_collections.clone();
        for include in &query.include {
            query_reads(&include.query, &mut read_collections);
        }
        let mut equalities = Vec::new();
        equalities_of(&query.filters, &mut equalities);
        // Routes use the first: a boolean or null splits a collection's views in two at best,
        // an id or a name into as many as there are values.
        equalities.sort_by_key(|(_, value): &(Vec<String>, Json)| value.is_boolean() || value.is_null());
        let equalities = equalities.into_iter().map(|(path, value)| (path, sort_key(Some(&value)))).collect();
        Dependencies { root: query.collection.clone(), read_collections, filter_collections, equalities }
    }
}

/// Every collection a (sub)query reads, itself included.
fn query_reads(query: &Prepared, out: &mut BTreeSet<String>) {
    out.insert(query.collection.clone());
    conditions_read(&query.filters, out);
    for key in &query.order {
        for hop in &key.hops {
            query_reads(hop, out);
        }
    }
    for include in &query.include {
        query_reads(&include.query, out);
    }
}

fn conditions_read(conditions: &[Condition], out: &mut BTreeSet<String>) {
    for sub in exists_in(conditions) {
        query_reads(sub, out);
    }
}

fn equalities_of(conditions: &[Condition], out: &mut Vec<(Vec<String>, Json)>) {
    for condition in conditions {
        match condition {
            // A permission rule is an `or` of its roles' filters: with one role, they must hold.
            Condition::All(inner) => equalities_of(inner, out),
            Condition::Any(inner) if inner.len() == 1 => equalities_of(inner, out),
            Condition::Compare { path, op: Op::Eq, operand: Operand::Value(value), on_set: false, .. }
                if !value.is_object() && !value.is_array() =>
            {
                out.push((path.clone(), value.clone()));
            }
            _ => {}
        }
    }
}

/// What a view delivers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Output {
    /// Results in API form, as a fetch returns them, keyed by id.
    Results,
    /// Every entity a client needs to evaluate the query itself, in stored (encoded) form,
    /// keyed by [`entity_key`]: what the sync server ships.
    Entities,
}

/// The key of an entity among several collections' entities.
pub(crate) fn entity_key(collection: &str, id: &str) -> Arc<str> {
    format!("{collection}\u{1f}{id}").into()
}

/// The collection and id in an [`entity_key`].
pub(crate) fn split_entity_key(key: &str) -> (&str, &str) {
    key.split_once('\u{1f}').expect("entity keys hold a separator")
}

struct LiveRow {
    id: Arc<str>,
    /// Empty unless the root is simple (only then are rows placed incrementally).
    order: OrderValues,
    doc: SharedDoc,
    /// What the row contributes to the snapshot.
    out: Vec<(Arc<str>, Arc<Json>)>,
}

/// Below this many changes to its root collection, a commit is placed in a view row by row.
const BATCH_RERUN_MIN: usize = 64;

pub(crate) struct View {
    pub source: Source,
    pub query: Prepared,
    pub deps: Dependencies,
    output: Output,
    rows: Vec<LiveRow>,
    /// The row changes not yet taken, for a consumer that keeps its own copy of the result
    /// (`Output::Results` only); `None` when nobody asked.
    edits: Option<Edits>,
}

impl View {
    /// Prepares the view and reads its first result. With `track_edits`, the view records
    /// each row it changes (see [`View::take_edits`]); the first result is all added.
    pub(crate) fn new(
        source: Source,
        query: Prepared,
        output: Output,
        track_edits: bool,
        exec: &Executor,
    ) -> Result<Self> {
        let deps = Dependencies::of(&query);
        let edits = (track_edits && output == Output::Results).then(Edits::default);
        let mut view = View { source, query, deps, output, rows: Vec::new(), edits };
        view.rerun(&view.metered(exec))?;
        Ok(view)
    }

    /// Takes the view to a new preparation of its query (after a schema change) and reads it
    /// again; tracked edits then lead from the old result to the new one.
    pub(crate) fn prepared_again(&mut self, query: Prepared, exec: &Executor) -> Result<()> {
        self.deps = Dependencies::of(&query);
        self.query = query;
        self.rerun(&self.metered(exec))
    }

    /// The row changes since the last call (empty unless the view tracks them).
    pub(crate) fn take_edits(&mut self) -> Edits {
        self.edits.as_mut().map(std::mem::take).unwrap_or_default()
    }

    /// Each evaluation is bounded by the subscriber's query limits, if it has any.
    fn metered<'a>(&self, exec: &Executor<'a>) -> Executor<'a> {
        exec.metered(self.source.access.as_ref().and_then(|a| a.limits))
    }

    pub(crate) fn snapshot(&self) -> Snapshot {
        let entries = self.rows.iter().flat_map(|r| r.out.iter().cloned());
        match self.output {
            Output::Results => Snapshot(entries.collect()),
            // Rows without related entities are distinct entities already.
            Output::Entities if self.rows.iter().all(|r| r.out.len() == 1) => Snapshot(entries.collect()),
            Output::Entities => {
                // An entity related to several rows is shipped once.
                let mut seen = std::collections::HashSet::new();
                Snapshot(entries.filter(|(key, _)| seen.insert(key.clone())).collect())
            }
        }
    }

    /// What one row contributes: its result, or itself and the entities related to it.
    fn row_output(&self, exec: &Executor, id: &str, doc: &SharedDoc) -> Result<Vec<(Arc<str>, Arc<Json>)>> {
        match self.output {
            Output::Results => Ok(vec![(id.into(), exec.shape_row(&self.query, doc.clone())?)]),
            Output::Entities => {
                let mut related = Vec::new();
                exec.related(&self.query, doc, &mut related)?;
                let mut out = Vec::with_capacity(related.len() + 1);
                out.push((entity_key(&self.query.collection, id), doc.as_json().clone()));
                for (collection, (id, doc)) in related {
                    out.push((entity_key(&collection, &id), doc.as_json().clone()));
                }
                Ok(out)
            }
        }
    }

    /// Brings the result up to date with one commit's changes (those routed here). Returns
    /// whether the result may have changed.
    pub(crate) fn apply(&mut self, exec: &Executor, changes: &[&Change]) -> Result<bool> {
        let exec = &self.metered(exec);
        let root_changes: Vec<&Change> = changes.iter().copied().filter(|c| c.collection == self.deps.root).collect();
        let others_changed = changes.iter().any(|c| c.collection != self.deps.root);
        let filters_read_changed = changes.iter().any(|c| self.deps.filter_collections.contains(&c.collection));
        if !self.deps.root_is_simple() && (filters_read_changed || !root_changes.is_empty()) {
            self.rerun(exec)?;
            return Ok(true);
        }
        // Placing a change looks its row up and moves the rows after it; for a batch of the
        // result's size (an initial sync, a bulk insert) that is quadratic, and reading the
        // result again is not.
        if root_changes.len() > BATCH_RERUN_MIN && root_changes.len() * 8 >= self.rows.len() {
            self.rerun(exec)?;
            return Ok(true);
        }
        let mut placed = false;
        if !root_changes.is_empty() && !self.place(exec, &root_changes, &mut placed)? {
            self.rerun(exec)?;
            return Ok(true);
        }
        // Placed rows have their output; a change elsewhere may change any row's includes.
        let includes_changed = others_changed || self.deps.read_collections.contains(&self.deps.root);
        if includes_changed {
            for at in 0..self.rows.len() {
                let row = &self.rows[at];
                let out = self.row_output(exec, &row.id, &row.doc)?;
                let row = &mut self.rows[at];
                let previous = std::mem::replace(&mut row.out, out);
                if self.edits.is_some() && previous != row.out {
                    record(&mut self.edits, &row.id, Some(&previous), Some(&row.out));
                }
            }
        }
        Ok(includes_changed || placed)
    }

    /// Where the row of entity `id` is, if it is a member: found by the order of its version
    /// before the change (which the row holds), not by reading every row.
    fn position(&self, exec: &Executor, id: &str, before: Option<&SharedDoc>) -> Result<Option<usize>> {
        // An entity that did not exist is no member.
        let Some(before) = before else { return Ok(None) };
        let order = exec.order_values(&self.query, before)?;
        let at =
            self.rows.partition_point(|r| compare_rows(&self.query, (&r.order, &r.id), (&order, id)) == Ordering::Less);
        if self.rows.get(at).is_some_and(|r| *r.id == *id) {
            return Ok(Some(at));
        }
        // Rows an index served come in its key order, where keys only tag records and arrays:
        // those may not be sorted by their full values.
        Ok(self.rows.iter().position(|r| *r.id == *id))
    }

    /// Places changed root entities in the result. Returns `false` when the window cannot be
    /// completed from memory (a member of a full `limit` window left it).
    fn place(&mut self, exec: &Executor, changes: &[&Change], placed: &mut bool) -> Result<bool> {
        let limit = self.query.limit;
        // When the window is full, everything outside it sorts after its last row: an entity
        // that now sorts after that boundary stays out, and a member that moves there leaves.
        let boundary = match limit {
            Some(limit) if self.rows.len() >= limit => Some(self.rows.last().map(|r| (r.order.clone(), r.id.clone()))),
            _ => None,
        };
        for change in changes {
            let member = self.position(exec, &change.id, change.before.as_ref())?;
            if let Some(at) = member {
                let row = self.rows.remove(at);
                record(&mut self.edits, &row.id, Some(&row.out), None);
                *placed = true;
            }
            let accepted = match &change.after {
                Some(doc) if exec.accepts(&self.query, doc)? => Some(doc),
                _ => None,
            };
            let Some(doc) = accepted else {
                if member.is_some() && boundary.is_some() {
                    return Ok(false);
                }
                continue;
            };
            let order = exec.order_values(&self.query, doc)?;
            let beyond = |(keys, id): &(OrderValues, Arc<str>)| {
                compare_rows(&self.query, (&order, &change.id), (keys, id)) == Ordering::Greater
            };
            match &boundary {
                Some(None) => continue, // a `limit 0` window holds nothing
                Some(Some(edge)) if beyond(edge) => {
                    if member.is_some() {
                        return Ok(false);
                    }
                    continue;
                }
                _ => {}
            }
            let at = self.rows.partition_point(|r| {
                compare_rows(&self.query, (&r.order, &r.id), (&order, &change.id)) == Ordering::Less
            });
            let out = self.row_output(exec, &change.id, doc)?;
            let row = LiveRow { id: change.id.as_str().into(), order, doc: doc.clone(), out };
            record(&mut self.edits, &row.id, None, Some(&row.out));
            self.rows.insert(at, row);
            *placed = true;
        }
        if let Some(limit) = limit.filter(|&limit| self.rows.len() > limit) {
            for row in self.rows.split_off(limit) {
                record(&mut self.edits, &row.id, Some(&row.out), None);
            }
        }
        Ok(true)
    }

    /// Reads the whole result again.
    pub(crate) fn rerun(&mut self, exec: &Executor) -> Result<()> {
        let simple = self.deps.root_is_simple();
        let mut rows = Vec::new();
        for (id, doc) in exec.root_rows(&self.query)? {
            let order = if simple { exec.order_values(&self.query, &doc)? } else { Vec::new() };
            let out = self.row_output(exec, &id, &doc)?;
            rows.push(LiveRow { id: id.into(), order, doc, out });
        }
        let previous = std::mem::replace(&mut self.rows, rows);
        record_rerun(&mut self.edits, previous, &self.rows);
        Ok(())
    }
}

/// What a row contributes to its view's result.
type RowOutput = [(Arc<str>, Arc<Json>)];

/// Records that a row's output went from `before` to `after` (`None`: not in the result), if
/// the view tracks edits. A result row's output is its one entity.
fn record(edits: &mut Option<Edits>, id: &Arc<str>, before: Option<&RowOutput>, after: Option<&RowOutput>) {
    if let Some(edits) = edits {
        let entity = |out: &RowOutput| out.first().map(|(_, entity)| entity.clone());
        edits.record(id, before.and_then(entity), after.and_then(entity));
    }
}

/// Records how a re-read result differs from the one before it, rows matched by id.
fn record_rerun(edits: &mut Option<Edits>, previous: Vec<LiveRow>, rows: &[LiveRow]) {
    if edits.is_none() {
        return;
    }
    let mut before: HashMap<Arc<str>, LiveRow> = previous.into_iter().map(|row| (row.id.clone(), row)).collect();
    for row in rows {
        match before.remove(&row.id) {
            Some(was) if was.out == row.out => {}
            was => record(edits, &row.id, was.as_ref().map(|was| &was.out[..]), Some(&row.out)),
        }
    }
    for (id, row) in before {
        record(edits, &id, Some(&row.out), None);
    }
}
