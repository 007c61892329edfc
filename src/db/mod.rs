//! The public database handle: open, configure, read, write, transact.

mod fanout;
mod session;
mod transaction;

pub use session::Session;
pub use transaction::Transaction;
pub(crate) use transaction::Written;

use std::borrow::Cow;
use std::path::Path;
use std::sync::Arc;

use parking_lot::{Mutex, RwLock};
use serde_json::Value as Json;

use crate::auth::{AuthConfig, VerifiedToken, Verifier};
use crate::error::{Error, Result};
use crate::live::{
    Consumer, ExpandingSubscription, LiveQueries, LiveResult, PagedSubscription, ResultChange, Source, Subscribe,
    Subscription,
};
use crate::permissions::{Principal, default_roles, match_roles, normalize_claims};
use crate::query::{Explain, Filter, Query, Variables};
use crate::schema::{Schema, SchemaChange};
use crate::store::{
    Access, Backend, Changes, Clock, Durability, GroupCommit, HybridClock, MemoryBackend, Readers, SqliteBackend,
    Store, SystemClock, Timestamp,
};

const META_SCHEMA: &str = "schema";
const META_CLIENT_ID: &str = "client_id";
const META_CLOCK: &str = "clock";

/// An embedded triplite database. Cheap to clone: clones share one database.
///
/// Writes are serialized (one transaction at a time); every method is safe to call from
/// several threads.
#[derive(Clone)]
pub struct Database {
    shared: Arc<Shared>,
}

struct Shared {
    store: Mutex<Store>,
    /// Reader connections (a SQLite file): reads outside transactions use them, not `store`.
    readers: Option<Readers>,
    /// Commits on their way to the live queries (updated on their own thread).
    fanout: Arc<fanout::Fanout>,
    schema: RwLock<Option<Arc<Schema>>>,
    clock: HybridClock,
    verifier: Verifier,
    live: Arc<LiveQueries>,
    /// The clock when the last commit finished (its live queries updated): a checkpoint that
    /// every change a sync feed has seen is stamped at or before.
    committed: Mutex<Option<Timestamp>>,
    /// With [`Durability::Full`] on a file: commits wait here, outside the store, for the
    /// sync that makes them durable.
    group_commit: Option<GroupCommit>,
}

impl Shared {
    /// Waits, holding the store, until a commit made outside a transaction (the schema, a
    /// checkpoint) is durable; transactions wait after releasing the store instead.
    fn sync_commit(&self) -> Result<()> {
        self.group_commit.as_ref().map_or(Ok(()), GroupCommit::sync_latest)
    }

    /// Moves the sync checkpoint forward to a commit whose live queries are up to date.
    fn advance_checkpoint(&self, checkpoint: Timestamp) {
        let mut committed = self.committed.lock();
        if committed.as_ref().is_none_or(|current| *current < checkpoint) {
            *committed = Some(checkpoint);
        }
    }
}

impl Drop for Shared {
    fn drop(&mut self) {
        let fanout = self.fanout.clone();
        fanout.finish(self);
    }
}

/// Options for opening a [`Database`].
#[derive(Default)]
pub struct DatabaseBuilder {
    schema: Option<Schema>,
    client_id: Option<String>,
    clock: Option<Arc<dyn Clock>>,
    durability: Durability,
    cache_mib: Option<u32>,
    read_connections: Option<usize>,
    auth: AuthConfig,
}

impl DatabaseBuilder {
    /// The schema to use. If the database holds another schema, the change is checked for
    /// backward compatibility first, and opening fails if existing data forbids it.
    pub fn schema(mut self, schema: Schema) -> Self {
        self.schema = Some(schema);
        self
    }

    /// This writer's id in timestamps (default: a stored random id, stable across reopenings).
    pub fn client_id(mut self, client_id: impl Into<String>) -> Self {
        self.client_id = Some(client_id.into());
        self
    }

    /// The wall clock behind the hybrid logical clock (default: the system clock).
    pub fn clock(mut self, clock: Arc<dyn Clock>) -> Self {
        self.clock = Some(clock);
        self
    }

    /// `JWT_SECRET`: verifies Triplit's own tokens (service, anonymous) and, when no external
    /// key is set, every token. An HMAC secret, a PEM public key, a JWK or JWK Set, or a JWKS URL.
    pub fn jwt_secret(mut self, key: impl Into<String>) -> Self {
        self.auth.jwt_secret = Some(key.into());
        self
    }

    /// `EXTERNAL_JWT_SECRET`: verifies an identity provider's tokens (Clerk, Auth0, …). A PEM
    /// public key (also on one line), a JWK or JWK Set, a JWKS URL, or an HMAC secret.
    pub fn external_jwt_secret(mut self, key: impl Into<String>) -> Self {
        self.auth.external_jwt_secret = Some(key.into());
        self
    }

    /// `CLAIMS_PATH`: where external tokens keep their claims (`a.b.c`).
    pub fn claims_path(mut self, path: impl Into<String>) -> Self {
        self.auth.claims_path = Some(path.into());
        self
    }

    /// Seconds of clock skew allowed on a token's `exp` and `nbf` (default 0, as Triplit).
    pub fn token_leeway_seconds(mut self, seconds: u64) -> Self {
        self.auth.leeway_seconds = Some(seconds);
        self
    }

    /// Every token setting at once (issuer, audience and leeway included).
    pub fn auth(mut self, config: AuthConfig) -> Self {
        self.auth = config;
        self
    }

    /// How hard commits wait for the disk (SQLite only; default [`Durability::Normal`]).
    pub fn durability(mut self, durability: Durability) -> Self {
        self.durability = durability;
        self
    }

    /// The most memory SQLite's page cache may take, in MiB (default 32: large transactions
    /// commit without spilling to the log). A server with many entities and little memory
    /// may want less.
    pub fn cache_size_mib(mut self, mib: u32) -> Self {
        self.cache_mib = Some(mib);
        self
    }

    /// How many connections a SQLite file gets for reads beside the writer's (default 2; 0
    /// reads through the writer's connection): queries then run while a write commits, and
    /// several at once. Each takes a quarter of the page cache.
    pub fn read_connections(mut self, count: usize) -> Self {
        self.read_connections = Some(count);
        self
    }

    /// Opens (creating if needed) a SQLite database file.
    pub fn open(self, path: impl AsRef<Path>) -> Result<Database> {
        let path = path.as_ref();
        let cache_mib = self.cache_mib.unwrap_or(32);
        let backend = SqliteBackend::open(path, cache_mib)?;
        let in_memory = path.as_os_str() == ":memory:";
        let group_commit = (self.durability == Durability::Full && !in_memory).then(|| GroupCommit::new(path));
        // `:memory:` names a new, empty database on every connection: no readers there.
        let count = if in_memory { 0 } else { self.read_connections.unwrap_or(2) };
        let reader = || Ok(Store::new(Box::new(SqliteBackend::open_reader(path, (cache_mib / 4).max(1))?)));
        let readers = (0..count).map(|_| reader()).collect::<Result<Vec<Store>>>()?;
        let readers = (!readers.is_empty()).then(|| Readers::new(readers));
        let live_reader = if count > 0 { Some(reader()?) } else { None };
        self.build(Box::new(backend), readers, live_reader, group_commit)
    }

    /// Opens a database that lives in memory only.
    pub fn open_in_memory(self) -> Result<Database> {
        self.build(Box::new(MemoryBackend::default()), None, None, None)
    }

    fn build(
        self,
        mut backend: Box<dyn Backend>,
        readers: Option<Readers>,
        live_reader: Option<Store>,
        group_commit: Option<GroupCommit>,
    ) -> Result<Database> {
        let verifier = Verifier::new(&self.auth)?;
        let client_id = match self.client_id {
            Some(id) => id,
            None => match backend.read_meta(META_CLIENT_ID)? {
                Some(bytes) => {
                    String::from_utf8(bytes).map_err(|_| Error::Corrupt("stored client id is not UTF-8".into()))?
                }
                None => {
                    let id = crate::schema::nanoid();
                    backend.begin()?;
                    backend.write_meta(META_CLIENT_ID, id.as_bytes())?;
                    backend.commit()?;
                    if let Some(group) = &group_commit {
                        group.sync_latest()?;
                    }
                    id
                }
            },
        };
        let clock = HybridClock::new(client_id, self.clock.unwrap_or_else(|| Arc::new(SystemClock)));
        if let Some(bytes) = backend.read_meta(META_CLOCK)? {
            clock.observe(&Timestamp::from_sort_key(&bytes)?);
        }
        let stored_schema = match backend.read_meta(META_SCHEMA)? {
            Some(bytes) => {
                let json: Json =
                    serde_json::from_slice(&bytes).map_err(|e| Error::Corrupt(format!("stored schema: {e}")))?;
                Some(Arc::new(Schema::from_json(&json)?))
            }
            None => None,
        };
        let committed = clock.current();
        let db = Database {
            shared: Arc::new(Shared {
                store: Mutex::new(Store::new(backend)),
                readers,
                fanout: fanout::Fanout::new(live_reader),
                schema: RwLock::new(stored_schema),
                clock,
                verifier,
                live: Arc::default(),
                committed: Mutex::new(Some(committed)),
                group_commit,
            }),
        };
        if let Some(schema) = self.schema {
            if db.schema().as_deref() != Some(&schema) {
                db.set_schema(schema)?;
            }
        }
        Ok(db)
    }
}

impl Database {
    /// Options for opening a database.
    pub fn builder() -> DatabaseBuilder {
        DatabaseBuilder::default()
    }

    /// Opens (creating if needed) a SQLite database file, schemaless unless it holds a schema.
    pub fn open(path: impl AsRef<Path>) -> Result<Database> {
        Self::builder().open(path)
    }

    /// A database in memory, schemaless.
    pub fn in_memory() -> Result<Database> {
        Self::builder().open_in_memory()
    }

    /// The current schema, or `None` for a schemaless database.
    pub fn schema(&self) -> Option<Arc<Schema>> {
        self.shared.schema.read().clone()
    }

    /// Verifies a token with the configured keys and returns its claims.
    pub fn verify_token(&self, token: &str) -> Result<VerifiedToken> {
        self.shared.verifier.verify(token)
    }

    /// This database's writer id.
    pub fn client_id(&self) -> &str {
        self.shared.clock.client_id()
    }

    /// Replaces the schema after checking that the change is backward compatible with the old
    /// schema and the stored data. On success returns the change (Triplit's `SchemaChange`);
    /// otherwise [`Error::IncompatibleSchema`] carries it, and nothing changes.
    pub fn set_schema(&self, schema: Schema) -> Result<SchemaChange> {
        // Live queries catch up with the old schema first, and stay still until they have the new one.
        let (_updates, mut store) = self.shared.fanout.hold_caught_up(&self.shared);
        let mut schema_slot = self.shared.schema.write();
        let backend = store.backend();
        let change = SchemaChange::evaluate(schema_slot.as_deref(), &schema, &mut |collection, visit| {
            backend.scan(collection, &Access::Scan, &[], &mut |_, doc| Ok(visit(doc.as_json()))).map(drop)
        })?;
        if !change.successful {
            return Err(Error::IncompatibleSchema(Box::new(change)));
        }
        let bytes = serde_json::to_vec(&schema.to_json()).expect("schemas always serialize");
        backend.begin()?;
        let written = backend.write_meta(META_SCHEMA, &bytes).and_then(|_| {
            for (collection, indexes) in wanted_indexes(&schema) {
                backend.set_indexes(&collection, &indexes)?;
            }
            backend.commit()
        });
        if let Err(e) = written {
            backend.rollback();
            return Err(e);
        }
        self.shared.sync_commit()?;
        let schema = Arc::new(schema);
        *schema_slot = Some(schema.clone());
        drop(schema_slot);
        self.views_follow_schema(store.backend(), Some(&schema));
        Ok(change)
    }

    /// Prepares every live view again for a new schema (the caller holds the update lock and
    /// the store lock); a view whose query the schema rejects ends.
    fn views_follow_schema(&self, backend: &dyn Backend, schema: Option<&Schema>) {
        self.shared.live.schema_changed(backend, schema, &|source: &Source| {
            transaction::prepare_read(&source.query, schema, source.access.as_deref(), &Variables::new())
        });
    }

    /// Deletes every entity in one transaction, in every collection stored — also those the
    /// schema no longer declares; the schema stays. Subscriptions and sync clients see the
    /// deletes.
    pub fn clear(&self) -> Result<()> {
        self.transact(|tx| tx.delete_every_entity())
    }

    /// [`Database::clear`], then forgets the schema too: the database is schemaless after.
    pub fn clear_with_schema(&self) -> Result<()> {
        self.clear()?;
        let (_updates, mut store) = self.shared.fanout.hold_caught_up(&self.shared);
        let backend = store.backend();
        backend.begin()?;
        if let Err(e) = backend.delete_meta(META_SCHEMA).and_then(|_| backend.commit()) {
            backend.rollback();
            return Err(e);
        }
        self.shared.sync_commit()?;
        *self.shared.schema.write() = None;
        self.views_follow_schema(store.backend(), None);
        Ok(())
    }

    /// Runs `work` in one transaction: everything it writes commits together, or — if it
    /// returns an error or panics — nothing does.
    pub fn transact<R>(&self, work: impl FnOnce(&mut Transaction) -> Result<R>) -> Result<R> {
        self.transact_as(None, work)
    }

    /// [`Database::transact`] for a session: its writes are checked against its rules before
    /// the commit, and a denied write rolls everything back.
    pub(crate) fn transact_as<R>(
        &self,
        access: Option<Arc<Principal>>,
        work: impl FnOnce(&mut Transaction) -> Result<R>,
    ) -> Result<R> {
        let mut store = self.shared.store.lock();
        // Read under the store lock: `set_schema` replaces the schema while holding it.
        let schema = self.schema();
        store.backend().begin()?;
        // Rolls back if `work` panics, so the next transaction starts clean.
        let mut guard = RollbackOnDrop { store: &mut store, armed: true };
        let mut tx = Transaction::new(&mut *guard.store, schema.clone(), &self.shared.clock, access);
        // Subscriptions open under the store lock, so none opens during the transaction; one
        // that closes meanwhile only makes the capture unneeded.
        let capture = self.shared.live.is_active();
        tx.capture = capture;
        let output = work(&mut tx)?;
        tx.check_writes()?;
        let touched = std::mem::take(&mut tx.touched);
        if let Some(latest) = tx.latest.take() {
            guard.store.backend().write_meta(META_CLOCK, &latest.sort_key())?;
        }
        guard.store.backend().commit()?;
        let ticket = self.shared.group_commit.as_ref().map(GroupCommit::committed);
        guard.armed = false;
        drop(guard);
        // Every write committed so far is stamped at or before this, and no other is (the
        // next transaction starts only once the store is free).
        let checkpoint = self.shared.clock.current();
        let touched = if capture { touched } else { Vec::new() };
        // Handed to the live queries under the store lock, so they get commits in order.
        self.shared.fanout.committed(&self.shared, touched, checkpoint);
        drop(store);
        // Acknowledged once durable; the store is free meanwhile, so the commits made while
        // this sync runs share the next one.
        if let (Some(group), Some(ticket)) = (&self.shared.group_commit, ticket) {
            group.wait(ticket)?;
        }
        Ok(output)
    }

    /// Inserts one document; see [`Transaction::insert`].
    pub fn insert(&self, collection: &str, doc: Json) -> Result<Json> {
        self.transact(|tx| tx.insert(collection, doc))
    }

    /// Patches one entity; see [`Transaction::update`].
    pub fn update(&self, collection: &str, id: &str, patch: Json) -> Result<()> {
        self.transact(|tx| tx.update(collection, id, patch))
    }

    /// Deletes one entity; see [`Transaction::delete`].
    pub fn delete(&self, collection: &str, id: &str) -> Result<()> {
        self.transact(|tx| tx.delete(collection, id))
    }

    /// The entity with this id (API form), or `None`.
    pub fn fetch_by_id(&self, collection: &str, id: &str) -> Result<Option<Json>> {
        self.read(|tx| tx.fetch_by_id(collection, id))
    }

    /// Every entity of a collection (API form), in id order.
    pub fn fetch_all(&self, collection: &str) -> Result<Vec<Json>> {
        self.read(|tx| tx.fetch_all(collection))
    }

    /// Runs a query; results in API form (sets as arrays, dates as ISO strings, includes nested).
    pub fn fetch(&self, query: &Query) -> Result<Vec<Json>> {
        self.read(|tx| tx.fetch(query))
    }

    /// Runs a query with variables (`$global`, `$session`/`$token`, `$role`, …).
    pub fn fetch_with(&self, query: &Query, vars: &Variables) -> Result<Vec<Json>> {
        self.read(|tx| tx.fetch_with(query, vars))
    }

    /// Runs a query and reports which access path the planner chose and how many rows it read.
    pub fn explain(&self, query: &Query) -> Result<Explain> {
        self.read(|tx| tx.explain(query))
    }

    /// Names of the collections that hold (or held) entities.
    pub fn collection_names(&self) -> Result<Vec<String>> {
        self.shared.store.lock().backend().collection_names()
    }

    /// Merges changes stamped elsewhere (encoded form) in one transaction; see
    /// [`Transaction::apply_changes`].
    pub fn apply_changes<'c>(&self, changes: impl Into<Cow<'c, Changes>>, timestamp: &Timestamp) -> Result<()> {
        self.transact(|tx| tx.apply_changes(changes, timestamp))
    }

    /// Stamps changes with this database's clock and merges them in one transaction — what a
    /// server does with a client's writes, which carry no timestamps. Returns the stamp.
    pub fn commit_changes<'c>(&self, changes: impl Into<Cow<'c, Changes>>) -> Result<Timestamp> {
        self.transact(|tx| tx.commit_changes(changes))
    }

    /// Subscribes to a query: the first result, then a new one after every commit that changes
    /// it (local writes and merged changes alike), over the returned subscription's channel.
    /// A commit returns before its subscriptions update (on this database's live thread, in
    /// commit order); see [`Database::flush_subscriptions`].
    pub fn subscribe(&self, query: &Query) -> Result<Subscription> {
        self.subscribe_as(None, query, Consumer::Channel)
    }

    /// Subscribes with a callback instead of a channel. Callbacks run one at a time on this
    /// database's delivery thread, in commit order, never on the writing thread; a callback may
    /// read, write and unsubscribe (its own writes are delivered after it returns). A slow
    /// callback delays only deliveries: results that pile up meanwhile arrive as one.
    pub fn subscribe_with(
        &self,
        query: &Query,
        callback: impl FnMut(LiveResult) + Send + 'static,
    ) -> Result<Subscription> {
        self.subscribe_as(None, query, Consumer::Callback(Box::new(callback)))
    }

    /// Subscribes with a callback that keeps its own copy of the result: it receives only what
    /// changed — the first call's `added` is the whole first result, later calls come only
    /// when something did change — so a commit costs what it changed, whatever the size of the
    /// result, for results updated in place (most: see the live-query docs; one that is read
    /// again after a commit is compared with the last by id). Entities enter and change in the order their rows changed; a consumer that
    /// shows them in the query's order places them itself. Callbacks run as with
    /// [`Database::subscribe_with`]; a slow one receives the net change since its last call.
    pub fn subscribe_changes(
        &self,
        query: &Query,
        callback: impl FnMut(ResultChange) + Send + 'static,
    ) -> Result<Subscription> {
        self.subscribe_as(None, query, Consumer::Changes(Box::new(callback)))
    }

    /// A live query shown `page_size` entities at a time, with `next_page` / `prev_page`.
    pub fn subscribe_paged(&self, query: &Query, page_size: usize) -> Result<PagedSubscription> {
        PagedSubscription::new(Box::new(Subscriber { db: self.clone(), access: None }), query, page_size)
    }

    /// A live query that starts with `page_size` entities and grows with `load_more`.
    pub fn subscribe_expanding(&self, query: &Query, page_size: usize) -> Result<ExpandingSubscription> {
        ExpandingSubscription::new(Box::new(Subscriber { db: self.clone(), access: None }), query, page_size)
    }

    pub(crate) fn subscribe_as(
        &self,
        access: Option<Arc<Principal>>,
        query: &Query,
        consumer: Consumer,
    ) -> Result<Subscription> {
        // The view opens on the state every commit so far left, once their updates are done
        // and before any later one starts; a schema change waits meanwhile, so `schema` is
        // the one the view needs. Commits from now on record their changes for it.
        let _opening = self.shared.live.opening();
        self.shared.fanout.catch_up(&self.shared, |backend, schema| {
            let prepared = transaction::prepare_read(query, schema, access.as_deref(), &Variables::new())?;
            let source = Source { query: query.clone(), access };
            self.shared.live.subscribe(backend, schema, source, prepared, consumer)
        })
    }

    /// Waits until every commit made so far has reached the subscriptions: channels hold
    /// their results, sync feeds have them, callbacks are queued. Commits return before their
    /// live queries update (on the database's live thread, in commit order); a caller that
    /// must see a write's result right after it calls this.
    pub fn flush_subscriptions(&self) {
        self.shared.fanout.catch_up(&self.shared, |_, _| ());
    }

    /// A sync feed: every entity a client needs for `query` (encoded form), after each commit
    /// that changes it; see `Consumer::SyncFeed`.
    pub(crate) fn subscribe_feed(
        &self,
        access: Option<Arc<Principal>>,
        query: &Query,
        feed: crate::live::SyncFeed,
    ) -> Result<Subscription> {
        self.subscribe_as(access, query, Consumer::SyncFeed(feed))
    }

    #[cfg(test)]
    pub(crate) fn live_queries(&self) -> &Arc<LiveQueries> {
        &self.shared.live
    }

    /// The clock as of the last finished commit: every change committed (and delivered to live
    /// queries) so far is stamped at or before it — a sync checkpoint.
    pub fn latest_timestamp(&self) -> Timestamp {
        self.shared.committed.lock().clone().expect("set at open")
    }

    /// A checkpoint later than `after` (and than the zero timestamp) once no commit is under
    /// way: the current one if it is, else one tick of the clock — persisted, so a reopened
    /// database never stamps a write at or before it — which then is the checkpoint, so the
    /// many connections that ask at once share it. `None` while a commit's live update is
    /// under way or waiting; `wake` is called once it is done (ask again then). Waits for the
    /// store: call it off the async workers.
    pub(crate) fn fresh_checkpoint(
        &self,
        after: Option<&Timestamp>,
        wake: Arc<dyn Fn() + Send + Sync>,
    ) -> Option<Timestamp> {
        let mut store = self.shared.store.lock();
        if !self.shared.fanout.idle_or_wake_later(wake) {
            return None;
        }
        let current = self.latest_timestamp();
        if current.physical > 0 && after.is_none_or(|after| current > *after) {
            return Some(current);
        }
        let checkpoint = self.shared.clock.next();
        let backend = store.backend();
        backend.begin().ok()?;
        if backend.write_meta(META_CLOCK, &checkpoint.sort_key()).and_then(|_| backend.commit()).is_err() {
            backend.rollback();
            return None;
        }
        // No write may ever be stamped at or before a checkpoint handed out: it must survive.
        self.shared.sync_commit().ok()?;
        self.shared.advance_checkpoint(checkpoint.clone());
        Some(checkpoint)
    }

    /// When an entity (or its deletion) was last written, if it ever was.
    pub(crate) fn entity_timestamp(&self, collection: &str, id: &str) -> Result<Option<Timestamp>> {
        let mut store = self.shared.store.lock();
        Ok(store.backend().read_state(collection, id)?.and_then(|state| state.latest().cloned()))
    }

    /// The entities with these ids that `access` may read, in stored (encoded) form.
    pub(crate) fn read_encoded_as(
        &self,
        access: Option<&Principal>,
        collection: &str,
        ids: &[String],
    ) -> Result<Vec<(String, crate::store::SharedDoc)>> {
        let schema = self.schema();
        let query = Query::new(collection).filter("id", "in", Json::from(ids.to_vec()));
        let prepared = transaction::prepare_read(&query, schema.as_deref(), access, &Variables::new())?;
        let mut store = self.shared.store.lock();
        let limits = access.and_then(|a| a.limits);
        crate::query::Executor::new(store.backend(), schema.as_deref()).metered(limits).root_rows(&prepared)
    }

    /// The entities a query's results hold, by collection: its rows and what the executor
    /// relates to them (includes, the entities its `exists` filters and relation paths match)
    /// — what a sync server ships for the query, so what a resuming client says it has.
    pub(crate) fn query_entities(
        &self,
        query: &Query,
    ) -> Result<std::collections::BTreeMap<String, std::collections::BTreeSet<String>>> {
        let schema = self.schema();
        let prepared = transaction::prepare_read(query, schema.as_deref(), None, &Variables::new())?;
        let mut store = self.shared.store.lock();
        let exec = crate::query::Executor::new(store.backend(), schema.as_deref());
        let mut held: std::collections::BTreeMap<String, std::collections::BTreeSet<String>> = Default::default();
        for (id, doc) in exec.root_rows(&prepared)? {
            let mut related = Vec::new();
            exec.related(&prepared, &doc, &mut related)?;
            for (collection, (id, _)) in related {
                held.entry(collection).or_default().insert(id);
            }
            held.entry(prepared.collection.clone()).or_default().insert(id);
        }
        Ok(held)
    }

    /// The database's own metadata under `key` (the sync client's checkpoints), read without
    /// a write transaction.
    pub(crate) fn read_meta(&self, key: &str) -> Result<Option<Vec<u8>>> {
        self.read(|tx| tx.read_meta(key))
    }

    /// Every metadata entry under `prefix`, in key order, read without a write transaction.
    pub(crate) fn scan_meta(&self, prefix: &str) -> Result<Vec<(String, Vec<u8>)>> {
        self.read(|tx| tx.scan_meta(prefix))
    }

    /// Runs a read without opening a write transaction.
    fn read<R>(&self, work: impl FnOnce(&mut Transaction) -> Result<R>) -> Result<R> {
        self.read_as(None, work)
    }

    pub(crate) fn read_as<R>(
        &self,
        access: Option<Arc<Principal>>,
        work: impl FnOnce(&mut Transaction) -> Result<R>,
    ) -> Result<R> {
        let schema = self.schema();
        let read = |store: &mut Store| work(&mut Transaction::new(store, schema, &self.shared.clock, access));
        match &self.shared.readers {
            Some(readers) => readers.read(read),
            None => read(&mut self.shared.store.lock()),
        }
    }

    /// The database seen through a verified token: every read and write is checked against the
    /// schema's permission rules for the token's roles (a service token bypasses them).
    pub fn session(&self, token: &str) -> Result<Session> {
        let verified = self.verify_token(token)?;
        let service = verified.is_service();
        Ok(self.session_for(verified.claims, service, verified.expires_at))
    }

    /// A session from claims the application vouches for — an embedded client holding its
    /// user's token without the provider's key — so the same rules run locally. Claims that
    /// say `x-triplit-token-type: secret` get no bypass here: only a verified service token does.
    pub fn session_from_claims(&self, claims: Json) -> Result<Session> {
        let Json::Object(claims) = claims else {
            return Err(Error::invalid_json(
                "claims",
                format!("expected an object, found {}", crate::schema::describe_json(&claims)),
            ));
        };
        let expires_at = claims.get("exp").and_then(Json::as_i64);
        Ok(self.session_for(claims, false, expires_at))
    }

    fn session_for(&self, claims: serde_json::Map<String, Json>, service: bool, expires_at: Option<i64>) -> Session {
        let claims = normalize_claims(claims);
        let schema = self.schema();
        let roles = match &schema {
            Some(schema) => match_roles(schema.roles().unwrap_or(&default_roles()), &claims),
            None => Vec::new(),
        };
        // Without a schema there are no rules (as in Triplit).
        let bypass = service || schema.is_none();
        let principal = Principal { claims, roles, bypass, service, limits: None };
        Session::new(self.clone(), Arc::new(principal), expires_at)
    }
}

/// The secondary indexes each collection should have: those its schema declares, plus one on
/// every attribute another collection's relation looks entities up by (`[attr, '=', '$1.x']`),
/// so includes and `exists` read only the related rows. (`id` is the primary key already.)
fn wanted_indexes(schema: &Schema) -> Vec<(String, Vec<Vec<String>>)> {
    let mut wanted: std::collections::BTreeMap<String, Vec<Vec<String>>> =
        schema.collections().iter().map(|(name, c)| (name.clone(), c.indexes.clone())).collect();
    for collection in schema.collections().values() {
        for relation in collection.relationships.values() {
            let Ok(query) = Query::from_json(&relation.query) else { continue };
            for filter in &query.filters {
                if let Filter::Statement { path, op, value } = filter {
                    let relational = value.as_str().is_some_and(|v| v.starts_with('$'));
                    if op == "=" && relational && path != "id" {
                        let list = wanted.entry(relation.collection.clone()).or_default();
                        let columns = vec![path.clone()];
                        if !list.contains(&columns) {
                            list.push(columns);
                        }
                    }
                }
            }
        }
    }
    wanted.into_iter().collect()
}

/// Subscribes for the paged helpers: as the database itself, or through a session.
pub(crate) struct Subscriber {
    pub db: Database,
    pub access: Option<Arc<Principal>>,
}

impl Subscribe for Subscriber {
    fn subscribe_query(&self, query: &Query) -> Result<Subscription> {
        self.db.subscribe_as(self.access.clone(), query, Consumer::Channel)
    }
}

struct RollbackOnDrop<'a> {
    store: &'a mut Store,
    armed: bool,
}

impl Drop for RollbackOnDrop<'_> {
    fn drop(&mut self) {
        if self.armed {
            self.store.backend().rollback();
        }
    }
}
