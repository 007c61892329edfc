//! Paged and growing live queries, as Triplit's `subscribeWithPagination` and
//! `subscribeWithExpand`: each page is a live subscription of its own, over-fetched by one
//! entity to tell whether more lie beyond it, moved with an `after` cursor on the last (or
//! first) entity shown. Orders end with `id` so every cursor is unique, and a `select` gains
//! the order attributes (cursors are read from the results).

use std::sync::Arc;
use std::time::Duration;

use serde_json::Value as Json;

use super::{LiveResult, ResultChange, Subscription, delivery};
use crate::error::{Error, Result};
use crate::query::{Direction, Query};

/// A source of subscriptions: a database, or a session.
pub(crate) trait Subscribe: Send {
    fn subscribe_query(&self, query: &Query) -> Result<Subscription>;
}

/// One page of a paged (or growing) live query.
#[derive(Debug, Clone, PartialEq)]
pub struct Page {
    /// The page's entities, in the query's order.
    pub results: Vec<Arc<Json>>,
    pub has_next_page: bool,
    pub has_previous_page: bool,
    /// The net change from the last page this consumer received (after a page move: the new
    /// page's entities as `added`, the old ones as `removed`).
    pub change: ResultChange,
}

/// Where the current page starts.
#[derive(Clone)]
enum Anchor {
    /// The first page.
    Start,
    /// After this entity's order values, reading forwards.
    After(Vec<Json>),
    /// Before this entity's order values: read backwards, then reversed.
    Before(Vec<Json>),
}

/// The subscription behind a paged or growing query, replaced when the window moves.
struct Window {
    source: Box<dyn Subscribe>,
    /// The query, ordered by `id` last.
    query: Query,
    inner: Subscription,
    current: Option<Page>,
}

impl Window {
    fn new(source: Box<dyn Subscribe>, query: &Query, page_size: usize) -> Result<Self> {
        let query = with_id_order(query, page_size)?;
        let inner = source.subscribe_query(&query.clone().limit(page_size + 1))?;
        Ok(Window { source, query, inner, current: None })
    }

    fn resubscribe(&mut self, query: &Query) -> Result<()> {
        self.inner = self.source.subscribe_query(query)?;
        Ok(())
    }

    /// Waits (at most `timeout`, if given) for the next result and makes it a page: `cut`
    /// trims the over-fetched results and says whether pages lie after and before.
    fn recv(
        &mut self,
        timeout: Option<Duration>,
        cut: impl FnOnce(&mut Vec<Arc<Json>>) -> (bool, bool),
    ) -> Option<Page> {
        let result = match timeout {
            Some(timeout) => self.inner.recv_timeout(timeout)?,
            None => self.inner.recv()?,
        };
        let LiveResult { mut results, change } = result;
        let (has_next_page, has_previous_page) = cut(&mut results);
        let change = match &self.current {
            Some(previous) => net_change(&previous.results, &results),
            None => change,
        };
        let page = Page { results, has_next_page, has_previous_page, change };
        self.current = Some(page.clone());
        Some(page)
    }
}

/// A live query shown one page at a time; see [`crate::Database::subscribe_paged`].
pub struct PagedSubscription {
    window: Window,
    page_size: usize,
    anchor: Anchor,
}

impl PagedSubscription {
    pub(crate) fn new(source: Box<dyn Subscribe>, query: &Query, page_size: usize) -> Result<Self> {
        let window = Window::new(source, query, page_size)?;
        Ok(PagedSubscription { window, page_size, anchor: Anchor::Start })
    }

    /// Waits for the current page's next result (the first one after a move is the new page).
    pub fn recv(&mut self) -> Option<Page> {
        self.window.recv(None, cut_page(&self.anchor, self.page_size))
    }

    /// Waits at most `timeout`.
    pub fn recv_timeout(&mut self, timeout: Duration) -> Option<Page> {
        self.window.recv(Some(timeout), cut_page(&self.anchor, self.page_size))
    }

    /// The page last received, if any.
    pub fn current(&self) -> Option<&Page> {
        self.window.current.as_ref()
    }

    /// Moves to the page after the one last received. Does nothing when there is none.
    pub fn next_page(&mut self) -> Result<()> {
        let Some(page) = &self.window.current else { return Ok(()) };
        let (true, Some(last)) = (page.has_next_page, page.results.last()) else { return Ok(()) };
        self.move_to(Anchor::After(cursor(&self.window.query, last)))
    }

    /// Moves to the page before the one last received. Does nothing when there is none.
    pub fn prev_page(&mut self) -> Result<()> {
        let Some(page) = &self.window.current else { return Ok(()) };
        let (true, Some(first)) = (page.has_previous_page, page.results.first()) else { return Ok(()) };
        self.move_to(Anchor::Before(cursor(&self.window.query, first)))
    }

    fn move_to(&mut self, anchor: Anchor) -> Result<()> {
        self.window.resubscribe(&page_query(&self.window.query, &anchor, self.page_size))?;
        self.anchor = anchor;
        Ok(())
    }
}

/// Trims a page's over-fetched results (reversing a backward read) and tells which pages
/// lie around it.
fn cut_page(anchor: &Anchor, page_size: usize) -> impl FnOnce(&mut Vec<Arc<Json>>) -> (bool, bool) + '_ {
    move |results| {
        let more = results.len() > page_size;
        results.truncate(page_size);
        match anchor {
            Anchor::Start => (more, false),
            Anchor::After(_) => (more, true),
            Anchor::Before(_) => {
                results.reverse();
                (true, more)
            }
        }
    }
}

/// A live query that grows by a page at a time (an infinite list); see
/// [`crate::Database::subscribe_expanding`].
pub struct ExpandingSubscription {
    window: Window,
    limit: usize,
}

impl ExpandingSubscription {
    pub(crate) fn new(source: Box<dyn Subscribe>, query: &Query, page_size: usize) -> Result<Self> {
        Ok(ExpandingSubscription { window: Window::new(source, query, page_size)?, limit: page_size })
    }

    /// Waits for the next result: every entity loaded so far.
    pub fn recv(&mut self) -> Option<Page> {
        self.window.recv(None, cut_list(self.limit))
    }

    /// Waits at most `timeout`.
    pub fn recv_timeout(&mut self, timeout: Duration) -> Option<Page> {
        self.window.recv(Some(timeout), cut_list(self.limit))
    }

    /// Loads `count` more entities (Triplit's `loadMore(pageSize)`).
    pub fn load_more(&mut self, count: usize) -> Result<()> {
        let limit = self.limit + count;
        self.window.resubscribe(&self.window.query.clone().limit(limit + 1))?;
        self.limit = limit;
        Ok(())
    }
}

fn cut_list(limit: usize) -> impl FnOnce(&mut Vec<Arc<Json>>) -> (bool, bool) {
    move |results| {
        let more = results.len() > limit;
        results.truncate(limit);
        (more, false)
    }
}

fn with_id_order(query: &Query, page_size: usize) -> Result<Query> {
    if page_size == 0 {
        return Err(Error::invalid_json("page size", "must be at least 1"));
    }
    let mut query = query.clone();
    if !query.order.iter().any(|(path, _)| path == "id") {
        query.order.push(("id".into(), Direction::Asc));
    }
    query.after = None;
    // Cursors are read from the results: they need every order attribute, `id` included.
    if let Some(select) = &mut query.select {
        for (path, _) in &query.order {
            if !select.contains(path) {
                select.push(path.clone());
            }
        }
    }
    Ok(query)
}

fn page_query(query: &Query, anchor: &Anchor, page_size: usize) -> Query {
    let query = query.clone().limit(page_size + 1);
    match anchor {
        Anchor::Start => query,
        Anchor::After(cursor) => query.after(cursor.clone(), false),
        Anchor::Before(cursor) => {
            let mut reversed = query.after(cursor.clone(), false);
            for (_, direction) in &mut reversed.order {
                *direction = match direction {
                    Direction::Asc => Direction::Desc,
                    Direction::Desc => Direction::Asc,
                };
            }
            reversed
        }
    }
}

/// An entity's values for the query's order keys (`null` where it has none).
fn cursor(query: &Query, entity: &Json) -> Vec<Json> {
    query
        .order
        .iter()
        .map(|(path, _)| path.split('.').try_fold(entity, |node, key| node.get(key)).cloned().unwrap_or(Json::Null))
        .collect()
}

fn net_change(old: &[Arc<Json>], new: &[Arc<Json>]) -> ResultChange {
    fn with_id(entity: &Arc<Json>) -> (&str, &Arc<Json>) {
        (entity.get("id").and_then(Json::as_str).unwrap_or_default(), entity)
    }
    delivery::net_change(old.iter().map(with_id), new.iter().map(with_id))
}
