//! What one query may cost: its shape is checked before it is prepared (how many filter
//! terms, how deep its includes and subqueries nest), and its work is metered while it runs
//! (rows examined, bytes of documents it holds). A query over the limits fails with
//! `QueryTooExpensiveError` instead of stalling the server or exhausting its memory.
//!
//! Limits apply to sessions that carry them (the sync server gives every session it opens
//! its configured limits); an embedding application's own reads are never metered.

use std::cell::Cell;

use serde_json::Value as Json;

use super::ast::{Filter, Include, Query};
use super::error::{QueryErrorKind, query_error};
use crate::error::Result;
use crate::store::Document;

/// Bounds on one query's shape and work.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct QueryLimits {
    /// Filter statements, groups and subqueries, counted through every nested query.
    pub max_filter_terms: usize,
    /// How deep includes and `exists` subqueries may nest (a query with one level of
    /// includes has depth 1).
    pub max_include_depth: usize,
    /// Rows read from storage in one evaluation, subqueries and includes included.
    pub max_rows_examined: usize,
    /// Memory the documents of one evaluation may take (results, included rows, rows waiting
    /// to be sorted), estimated from their parsed size.
    pub max_result_bytes: usize,
}

impl Default for QueryLimits {
    /// Generous for an application's real queries, small enough that a hostile one returns
    /// an error in about a second.
    fn default() -> Self {
        QueryLimits {
            max_filter_terms: 1_000,
            max_include_depth: 4,
            max_rows_examined: 1_000_000,
            max_result_bytes: 64 * 1024 * 1024,
        }
    }
}

impl QueryLimits {
    /// Checks a query's shape: filter terms and nesting depth.
    pub fn check_shape(&self, query: &Query) -> Result<()> {
        let mut terms = 0;
        let depth = shape(query, &mut terms);
        if terms > self.max_filter_terms {
            return Err(too_expensive(format!(
                "the query has {terms} filter terms; at most {} are allowed",
                self.max_filter_terms
            )));
        }
        if depth > self.max_include_depth {
            return Err(too_expensive(format!(
                "includes and subqueries nest {depth} levels deep; at most {} are allowed",
                self.max_include_depth
            )));
        }
        Ok(())
    }
}

fn too_expensive(message: String) -> crate::Error {
    query_error(QueryErrorKind::TooExpensive, message)
}

/// Counts the filter terms of `query` and its nested queries into `terms`; returns how deep
/// its includes and subqueries nest.
fn shape(query: &Query, terms: &mut usize) -> usize {
    let mut depth = 0;
    for filter in &query.filters {
        depth = depth.max(filter_shape(filter, terms));
    }
    for include in query.include.values() {
        let nested = match include {
            Include::Relation { extension: Some(extension), .. } => shape(extension, terms),
            Include::Relation { extension: None, .. } => 0,
            Include::Subquery { query, .. } => shape(query, terms),
        };
        depth = depth.max(nested + 1);
    }
    depth
}

fn filter_shape(filter: &Filter, terms: &mut usize) -> usize {
    *terms += 1;
    match filter {
        Filter::Statement { path, .. } => {
            // A relation path (`author.team.name`) is a chain of subqueries; an attribute
            // path into a record counts the same, which errs on the safe side.
            path.matches('.').count()
        }
        Filter::Constant(_) => 0,
        Filter::Group { filters, .. } => filters.iter().map(|f| filter_shape(f, terms)).max().unwrap_or(0),
        Filter::Exists(sub) => shape(sub, terms) + 1,
        Filter::ExistsRelation { relation, filters } => {
            let inner = filters.iter().map(|f| filter_shape(f, terms)).max().unwrap_or(0);
            inner + relation.matches('.').count() + 1
        }
    }
}

/// The running cost of one evaluation.
pub(crate) struct Meter {
    limits: QueryLimits,
    rows: Cell<usize>,
    bytes: Cell<usize>,
}

impl Meter {
    pub(crate) fn new(limits: QueryLimits) -> Self {
        Meter { limits, rows: Cell::new(0), bytes: Cell::new(0) }
    }

    /// Counts rows read from storage.
    pub(crate) fn examined(&self, rows: usize) -> Result<()> {
        let total = self.rows.get().saturating_add(rows);
        self.rows.set(total);
        if total > self.limits.max_rows_examined {
            return Err(too_expensive(format!("the query examined more than {} rows", self.limits.max_rows_examined)));
        }
        Ok(())
    }

    /// Counts a document the evaluation keeps.
    pub(crate) fn holds(&self, doc: &Document) -> Result<()> {
        let total = self.bytes.get().saturating_add(object_size(doc));
        self.bytes.set(total);
        if total > self.limits.max_result_bytes {
            return Err(too_expensive(format!("the query's results exceed {} bytes", self.limits.max_result_bytes)));
        }
        Ok(())
    }
}

/// About how much memory a parsed document takes: its text plus what each map entry, string
/// and array costs on the heap (serde_json values are 32 bytes, map entries sit in B-tree
/// nodes). Measured in memory, not as text, so a limit bounds what the server holds.
fn object_size(doc: &Document) -> usize {
    doc.iter().map(|(key, value)| key.len() + 40 + json_size(value)).sum::<usize>() + 48
}

/// About how much memory a parsed JSON value takes (see `object_size`).
pub(crate) fn json_size(value: &Json) -> usize {
    const VALUE: usize = 32;
    const HEAP: usize = 16;
    match value {
        Json::Null | Json::Bool(_) | Json::Number(_) => VALUE,
        Json::String(s) => VALUE + s.len() + HEAP,
        Json::Array(items) => VALUE + HEAP + items.iter().map(json_size).sum::<usize>(),
        Json::Object(map) => VALUE + object_size(map),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn shapes_count_terms_and_depth_through_nested_queries() {
        let limits = QueryLimits { max_filter_terms: 3, max_include_depth: 2, ..QueryLimits::default() };
        let flat = Query::from_json(&json!({"collectionName": "a", "where": [["x", "=", 1], ["y", "=", 2]]})).unwrap();
        assert!(limits.check_shape(&flat).is_ok());
        let wide = Query::from_json(&json!({"collectionName": "a", "where": [
            {"mod": "or", "filters": [["x", "=", 1], ["x", "=", 2], ["x", "=", 3]]}
        ]}))
        .unwrap();
        let error = limits.check_shape(&wide).unwrap_err();
        assert_eq!(error.name(), "QueryTooExpensiveError");
        let deep = Query::from_json(&json!({"collectionName": "a", "include": {"b": {"subquery": {
            "collectionName": "b", "include": {"c": {"subquery": {"collectionName": "c",
                "include": {"d": {"subquery": {"collectionName": "d"}, "cardinality": "many"}}}, "cardinality": "many"}}
        }, "cardinality": "many"}}}))
        .unwrap();
        assert!(limits.check_shape(&deep).unwrap_err().to_string().contains("3 levels"));
        let path = Query::from_json(&json!({"collectionName": "a", "where": [["b.c.d", "=", 1]]})).unwrap();
        assert!(limits.check_shape(&path).is_ok(), "two hops is depth 2");
    }

    #[test]
    fn meters_stop_at_their_limits() {
        let meter = Meter::new(QueryLimits { max_rows_examined: 10, max_result_bytes: 300, ..QueryLimits::default() });
        assert!(meter.examined(10).is_ok());
        assert!(meter.examined(1).is_err());
        let doc = json!({"text": "x".repeat(60)}).as_object().unwrap().clone();
        assert!(meter.holds(&doc).is_ok());
        assert!(meter.holds(&doc).is_err());
    }
}
