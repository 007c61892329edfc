//! A session: the database seen through one token.

use std::sync::Arc;

use serde_json::Value as Json;

use super::{Database, Subscriber, Transaction};
use crate::error::Result;
use crate::live::{Consumer, ExpandingSubscription, LiveResult, PagedSubscription, ResultChange, Subscription};
use crate::permissions::{Principal, SessionRole};
use crate::query::{Explain, Query, QueryLimits, Variables};

/// The database as one token's holder sees it: reads return only what the schema's read rules
/// let its roles see (in includes, `exists` and relation paths too), and writes commit only if
/// the rules allow every one of them. Cheap to clone.
#[derive(Clone)]
pub struct Session {
    db: Database,
    access: Arc<Principal>,
    expires_at: Option<i64>,
}

impl Session {
    pub(super) fn new(db: Database, access: Arc<Principal>, expires_at: Option<i64>) -> Self {
        Session { db, access, expires_at }
    }

    /// The token's claims (what `$token.*` reads).
    pub fn claims(&self) -> &serde_json::Map<String, Json> {
        &self.access.claims
    }

    /// The roles the claims matched.
    pub fn roles(&self) -> &[SessionRole] {
        &self.access.roles
    }

    /// Whether rules are skipped (a verified service token, or a schemaless database).
    pub fn bypasses_rules(&self) -> bool {
        self.access.bypass
    }

    /// Whether the session comes from a verified service (`secret`) token — decided by
    /// verification alone: claims that merely say so (in a provider's token, or at its
    /// claims path) never make a service session.
    pub fn is_service(&self) -> bool {
        self.access.service
    }

    /// The same session with every query it runs bounded by `limits` (reads, live queries and
    /// the sync server's feeds): one over them fails with `QueryTooExpensiveError`.
    pub fn with_query_limits(&self, limits: QueryLimits) -> Session {
        let principal = Principal { limits: Some(limits), ..(*self.access).clone() };
        Session { db: self.db.clone(), access: Arc::new(principal), expires_at: self.expires_at }
    }

    /// When the token stops being accepted (seconds since the Unix epoch): its `exp`, plus
    /// the configured leeway for a verified token.
    pub fn expires_at(&self) -> Option<i64> {
        self.expires_at
    }

    /// Runs `work` in one transaction whose writes are checked against the rules before commit.
    pub fn transact<R>(&self, work: impl FnOnce(&mut Transaction) -> Result<R>) -> Result<R> {
        self.db.transact_as(Some(self.access.clone()), work)
    }

    pub fn insert(&self, collection: &str, doc: Json) -> Result<Json> {
        self.transact(|tx| tx.insert(collection, doc))
    }

    pub fn update(&self, collection: &str, id: &str, patch: Json) -> Result<()> {
        self.transact(|tx| tx.update(collection, id, patch))
    }

    pub fn delete(&self, collection: &str, id: &str) -> Result<()> {
        self.transact(|tx| tx.delete(collection, id))
    }

    /// Stamps changes (encoded form) with the database's clock and merges them in one
    /// transaction checked against the rules — what the sync server does with a client's
    /// `CHANGES`. Returns the stamp.
    pub fn commit_changes<'c>(
        &self,
        changes: impl Into<std::borrow::Cow<'c, crate::Changes>>,
    ) -> Result<crate::Timestamp> {
        self.transact(|tx| tx.commit_changes(changes))
    }

    /// The database behind the session.
    pub fn database(&self) -> &Database {
        &self.db
    }

    pub(crate) fn principal(&self) -> &Arc<Principal> {
        &self.access
    }

    /// A query, through the read rules.
    pub fn fetch(&self, query: &Query) -> Result<Vec<Json>> {
        self.db.read_as(Some(self.access.clone()), |tx| tx.fetch(query))
    }

    /// A query with variables, through the read rules (`$token`/`$session` are the claims).
    pub fn fetch_with(&self, query: &Query, vars: &Variables) -> Result<Vec<Json>> {
        self.db.read_as(Some(self.access.clone()), |tx| tx.fetch_with(query, vars))
    }

    /// The entity with this id, if it exists and the session may read it.
    pub fn fetch_by_id(&self, collection: &str, id: &str) -> Result<Option<Json>> {
        self.db.read_as(Some(self.access.clone()), |tx| tx.fetch_by_id(collection, id))
    }

    /// How a query runs through the read rules.
    pub fn explain(&self, query: &Query) -> Result<Explain> {
        self.db.read_as(Some(self.access.clone()), |tx| tx.explain(query))
    }

    /// A live query through the read rules: an entity that stops being readable leaves the
    /// result. See [`Database::subscribe`].
    pub fn subscribe(&self, query: &Query) -> Result<Subscription> {
        self.db.subscribe_as(Some(self.access.clone()), query, Consumer::Channel)
    }

    /// [`Session::subscribe`] with a callback; see [`Database::subscribe_with`].
    pub fn subscribe_with(
        &self,
        query: &Query,
        callback: impl FnMut(LiveResult) + Send + 'static,
    ) -> Result<Subscription> {
        self.db.subscribe_as(Some(self.access.clone()), query, Consumer::Callback(Box::new(callback)))
    }

    /// [`Session::subscribe`] with a callback that receives only what changed; see
    /// [`Database::subscribe_changes`].
    pub fn subscribe_changes(
        &self,
        query: &Query,
        callback: impl FnMut(ResultChange) + Send + 'static,
    ) -> Result<Subscription> {
        self.db.subscribe_as(Some(self.access.clone()), query, Consumer::Changes(Box::new(callback)))
    }

    /// A paged live query through the read rules; see [`Database::subscribe_paged`].
    pub fn subscribe_paged(&self, query: &Query, page_size: usize) -> Result<PagedSubscription> {
        PagedSubscription::new(Box::new(self.subscriber()), query, page_size)
    }

    /// A growing live query through the read rules; see [`Database::subscribe_expanding`].
    pub fn subscribe_expanding(&self, query: &Query, page_size: usize) -> Result<ExpandingSubscription> {
        ExpandingSubscription::new(Box::new(self.subscriber()), query, page_size)
    }

    fn subscriber(&self) -> Subscriber {
        Subscriber { db: self.db.clone(), access: Some(self.access.clone()) }
    }
}
