//! The sync client: an offline-first local [`Database`] that syncs with a triplite or Triplit
//! server — what a mobile app embeds.
//!
//! A [`Client`] is a local database (a SQLite file or memory, with the app's schema), the
//! sans-IO [`SyncEngine`], and a WebSocket transport on an I/O thread of
//! its own. Writes are optimistic: they apply locally at once and wait in a durable outbox (in
//! the same SQLite transaction) until the server acknowledges them. A transaction the server
//! rejects is reported with its id, rolled back locally, and does not hold up the ones after
//! it. Reads see the pending writes. Subscriptions deliver local results at once and again as
//! the server's data arrives, `fulfilled` once the server has answered.
//!
//! ```no_run
//! use triplite::client::{Client, ClientOptions, FetchPolicy};
//! use triplite::Query;
//! # fn main() -> triplite::Result<()> {
//! let client = Client::open(ClientOptions {
//!     server_url: Some("http://localhost:6543".into()),
//!     token: Some(std::env::var("TOKEN").unwrap()),
//!     path: Some("app.db".into()),
//!     ..ClientOptions::default()
//! })?;
//! let written = client.insert("todos", serde_json::json!({"text": "Buy milk"}))?;
//! println!("pending as {:?}", written.tx_id);
//! let todos = client.fetch(&Query::new("todos"), FetchPolicy::LocalFirst)?;
//! let _live = client.subscribe(&Query::new("todos"), |result| {
//!     println!("{} todos (server answered: {})", result.results.len(), result.fulfilled);
//! })?;
//! # Ok(()) }
//! ```

mod engine;
mod events;
mod io;
mod outbox;
mod session;
mod transport;

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Weak};
use std::thread::JoinHandle;
use std::time::Duration;

use crossbeam_channel::Sender;
use parking_lot::{Condvar, Mutex};
use serde_json::{Value as Json, json};

pub use engine::{Due, EngineOptions, SyncEngine, query_id};
pub use events::{ClientEvent, ConnectionStatus};
pub use outbox::PendingTransaction;

use self::io::Job;
use self::transport::Trust;
use crate::db::{Database, Session, Transaction};
use crate::error::{Error, Result};
use crate::live::{LiveResult, ResultChange, Subscription};
use crate::query::Query;
use crate::schema::Schema;

/// How a client opens.
#[derive(Debug, Clone, Default)]
pub struct ClientOptions {
    /// `http(s)://host[:port][/path]` of the sync server.
    pub server_url: Option<String>,
    /// The user's token; with it and a server URL the client connects (see `auto_connect`).
    pub token: Option<String>,
    pub schema: Option<Schema>,
    /// The local database file; `None` keeps it in memory.
    pub path: Option<PathBuf>,
    /// Connect at once when there is a token (default: yes; `None` reads as yes).
    pub auto_connect: Option<bool>,
    /// PEM certificates of the only authorities trusted for `https://` servers (a private
    /// CA); `None` trusts Mozilla's, as a browser does.
    pub ca_certificates: Option<String>,
    pub engine: EngineOptions,
}

impl ClientOptions {
    /// Reads `{"serverUrl", "token", "schema", "path" (":memory:" or a file), "autoConnect",
    /// "caCertificates" (PEM)}`.
    pub fn from_json(json: &Json) -> Result<ClientOptions> {
        let object = json.as_object().ok_or_else(|| Error::invalid_json("options", "expected an object"))?;
        let text = |key: &str| -> Result<Option<String>> {
            match object.get(key) {
                None | Some(Json::Null) => Ok(None),
                Some(Json::String(s)) => Ok(Some(s.clone())),
                Some(_) => Err(Error::invalid_json(format!("options.{key}"), "expected a string")),
            }
        };
        let schema = match object.get("schema") {
            None | Some(Json::Null) => None,
            Some(schema) => Some(Schema::from_json(schema)?),
        };
        let auto_connect = match object.get("autoConnect") {
            None | Some(Json::Null) => None,
            Some(Json::Bool(b)) => Some(*b),
            Some(_) => return Err(Error::invalid_json("options.autoConnect", "expected a boolean")),
        };
        let path = text("path")?.filter(|p| p != ":memory:").map(PathBuf::from);
        Ok(ClientOptions {
            server_url: text("serverUrl")?,
            token: text("token")?,
            schema,
            path,
            auto_connect,
            ca_certificates: text("caCertificates")?,
            engine: EngineOptions::default(),
        })
    }
}

/// Where a fetch reads from, as `@triplit/client`'s policies.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum FetchPolicy {
    /// Local data; the first fetch of a query waits for the server to answer it once.
    #[default]
    LocalFirst,
    LocalOnly,
    /// Waits for the server's answer (when connecting), then reads locally.
    RemoteFirst,
    /// Asks the server over HTTP (`POST /fetch`); nothing is cached.
    RemoteOnly,
    /// Waits for the server's answer up to the timeout, then reads locally.
    LocalAndRemote {
        timeout: Duration,
    },
}

impl FetchPolicy {
    /// Reads `{"policy": "local-first" | ..., "timeout": ms}` (NULL or `{}`: local-first).
    pub fn from_json(json: &Json) -> Result<FetchPolicy> {
        let name = json.get("policy").and_then(Json::as_str).unwrap_or("local-first");
        let timeout = Duration::from_millis(json.get("timeout").and_then(Json::as_u64).unwrap_or(0));
        Ok(match name {
            "local-first" => FetchPolicy::LocalFirst,
            "local-only" => FetchPolicy::LocalOnly,
            "remote-first" => FetchPolicy::RemoteFirst,
            "remote-only" => FetchPolicy::RemoteOnly,
            "local-and-remote" => FetchPolicy::LocalAndRemote { timeout },
            other => {
                return Err(Error::invalid_json("options.policy", format!("unknown fetch policy '{other}'")));
            }
        })
    }
}

/// What a write returned, and the id of the transaction events about it will carry (`None`
/// when it changed nothing, so nothing waits for the server).
#[derive(Debug, Clone, PartialEq)]
pub struct Committed<T> {
    pub output: T,
    pub tx_id: Option<String>,
}

/// One result of a client subscription.
#[derive(Debug, Clone)]
pub struct ClientResult {
    pub results: Vec<Arc<Json>>,
    pub change: ResultChange,
    /// The server has answered the query (on this or an earlier result).
    pub fulfilled: bool,
}

/// The client's state for `triplite_client_status`.
#[derive(Debug, Clone, PartialEq)]
pub struct ClientStatus {
    pub connection: ConnectionStatus,
    pub pending_transactions: usize,
    pub client_id: Option<String>,
    /// Why the last attempt to connect failed, or the last connection was lost (a refused
    /// certificate, an unreachable host…), until a connection opens.
    pub last_error: Option<String>,
}

impl ClientStatus {
    pub fn to_json(&self) -> Json {
        json!({
            "connection": self.connection.as_str(),
            "pendingTransactions": self.pending_transactions,
            "clientId": self.client_id,
            "lastError": self.last_error,
        })
    }
}

/// Gives a new token before the current one expires (`None`: none now; asked again later).
pub type RefreshHandler = Box<dyn FnMut() -> Option<String> + Send>;
type Listener = Box<dyn FnMut(&ClientEvent) + Send>;

/// An offline-first database that syncs with a server; see the module documentation.
pub struct Client {
    shared: Arc<Shared>,
    io: Option<JoinHandle<()>>,
    delivery: Option<JoinHandle<()>>,
}

/// What the client's threads share.
pub(crate) struct Shared {
    db: Database,
    engine: Mutex<SyncEngine>,
    /// Signalled when the engine's state changed (a query answered, the socket closed).
    changed: Condvar,
    waker: mio::Waker,
    stopping: AtomicBool,
    jobs: Sender<Job>,
    listeners: Mutex<Vec<Listener>>,
    subscriptions: Mutex<HashMap<String, Vec<Weak<SubscriptionCell>>>>,
    /// The session the local permission checks use (from the token's claims).
    local_session: Mutex<Option<Session>>,
    refresh: Mutex<Option<RefreshHandler>>,
    /// The refresh handler had no token, so the connection was closed until it gives one.
    paused_for_refresh: AtomicBool,
    http: ureq::Agent,
    trust: Trust,
    /// Why the last attempt to connect failed or the last connection was lost (for status).
    last_error: Mutex<Option<String>>,
}

/// Every key the client keeps in the local database's metadata (outbox, confirmed documents,
/// checkpoints) starts with this, so sign-out can wipe them together.
pub(crate) const META_PREFIX: &str = "client.";

impl Client {
    /// Opens the local database and starts syncing (when there is a token and a server URL
    /// and `auto_connect` is not false).
    pub fn open(options: ClientOptions) -> Result<Client> {
        let trust = match &options.ca_certificates {
            Some(pem) => Trust::from_pem(pem)?,
            None => Trust::mozilla(),
        };
        let mut builder = Database::builder();
        if let Some(schema) = options.schema.clone() {
            builder = builder.schema(schema);
        }
        let db = match &options.path {
            Some(path) => builder.open(path)?,
            None => builder.open_in_memory()?,
        };
        let mut engine = SyncEngine::new(db.clone(), options.engine.clone())?;
        engine.set_server_url(options.server_url.clone());
        let poll = mio::Poll::new()?;
        let waker = mio::Waker::new(poll.registry(), io::WAKER)?;
        let (jobs, job_queue) = crossbeam_channel::unbounded();
        let http = ureq::Agent::config_builder()
            .timeout_global(Some(Duration::from_secs(30)))
            .tls_config(ureq::tls::TlsConfig::builder().root_certs(trust.http.clone()).build())
            .build()
            .into();
        let shared = Arc::new(Shared {
            db,
            engine: Mutex::new(engine),
            changed: Condvar::new(),
            waker,
            stopping: AtomicBool::new(false),
            jobs,
            listeners: Mutex::new(Vec::new()),
            subscriptions: Mutex::new(HashMap::new()),
            local_session: Mutex::new(None),
            refresh: Mutex::new(None),
            paused_for_refresh: AtomicBool::new(false),
            http,
            trust,
            last_error: Mutex::new(None),
        });
        let io = {
            let shared = shared.clone();
            std::thread::Builder::new().name("triplite-sync".into()).spawn(move || io::run_io(shared, poll))?
        };
        let delivery = {
            let shared = shared.clone();
            std::thread::Builder::new()
                .name("triplite-client-events".into())
                .spawn(move || io::run_delivery(shared, job_queue))?
        };
        let client = Client { shared, io: Some(io), delivery: Some(delivery) };
        if let Some(token) = options.token {
            client.start_session(&token, options.auto_connect.unwrap_or(true), None)?;
        }
        Ok(client)
    }

    /// The local database (reads through it see pending writes; write through the client so
    /// writes sync).
    pub fn database(&self) -> &Database {
        &self.shared.db
    }

    /// Runs `work` as one local transaction and queues what it wrote for the server. With a
    /// token, the schema's rules for its claims are checked first: a write they deny fails at
    /// once (`WritePermissionError`) instead of after a round trip. The server stays the
    /// authority.
    pub fn transact<R>(&self, work: impl FnOnce(&mut Transaction) -> Result<R>) -> Result<Committed<R>> {
        let shared = &self.shared;
        let session = shared.local_session.lock().clone();
        let committed = shared.with_engine(|engine| engine.commit(session.as_ref(), work));
        shared.wake();
        committed
    }

    /// Inserts a document (API form); returns the stored entity.
    pub fn insert(&self, collection: &str, doc: Json) -> Result<Committed<Json>> {
        self.transact(|tx| tx.insert(collection, doc))
    }

    /// Merges a patch (API form) into an entity.
    pub fn update(&self, collection: &str, id: &str, patch: Json) -> Result<Committed<()>> {
        self.transact(|tx| tx.update(collection, id, patch))
    }

    pub fn delete(&self, collection: &str, id: &str) -> Result<Committed<()>> {
        self.transact(|tx| tx.delete(collection, id))
    }

    /// Reads a query by a fetch policy.
    pub fn fetch(&self, query: &Query, policy: FetchPolicy) -> Result<Vec<Json>> {
        let id = query_id(query);
        let intends = self.shared.with_engine(|engine| engine.intends_to_connect());
        match policy {
            FetchPolicy::LocalOnly => {}
            FetchPolicy::LocalFirst => {
                let known = self.shared.with_engine(|engine| engine.was_ever_fulfilled(&id))?;
                if intends && !known {
                    self.sync_query(&id, query, SYNC_WAIT)?;
                }
            }
            FetchPolicy::RemoteFirst => {
                if intends {
                    self.sync_query(&id, query, SYNC_WAIT)?;
                }
            }
            FetchPolicy::LocalAndRemote { timeout } => {
                if intends {
                    self.sync_query(&id, query, timeout)?;
                }
            }
            FetchPolicy::RemoteOnly => return self.fetch_remote(query),
        }
        self.shared.db.fetch(query)
    }

    /// The first result of a query (`limit: 1`), by a fetch policy.
    pub fn fetch_one(&self, query: &Query, policy: FetchPolicy) -> Result<Option<Json>> {
        let query = query.clone().limit(1);
        Ok(self.fetch(&query, policy)?.into_iter().next())
    }

    pub fn fetch_by_id(&self, collection: &str, id: &str, policy: FetchPolicy) -> Result<Option<Json>> {
        self.fetch_one(&Query::new(collection).filter("id", "=", id), policy)
    }

    /// Subscribes to a query: the local result at once, then again after every change — local
    /// writes and the server's data — with `fulfilled` once the server has answered. The query
    /// is registered with the server while the subscription lives (the same query subscribed
    /// twice shares one registration). The callback runs on a library thread.
    pub fn subscribe(
        &self,
        query: &Query,
        callback: impl FnMut(ClientResult) + Send + 'static,
    ) -> Result<ClientSubscription> {
        let id = query_id(query);
        let fulfilled = self.shared.with_engine(|engine| engine.is_fulfilled(&id));
        let state = Arc::new(SubscriptionCell {
            closed: AtomicBool::new(false),
            state: Mutex::new(SubscriptionState {
                query: query.clone(),
                callback: Box::new(callback),
                last: None,
                fulfilled,
            }),
        });
        let feed = Arc::downgrade(&state);
        let local = self.shared.db.subscribe_with(query, move |live: LiveResult| {
            if let Some(cell) = feed.upgrade() {
                cell.run(|state| state.deliver(live.results, live.change));
            }
        })?;
        self.shared.subscriptions.lock().entry(id.clone()).or_default().push(Arc::downgrade(&state));
        self.shared.with_engine(|engine| engine.add_query_user(&id, query))?;
        self.shared.wake();
        Ok(ClientSubscription { shared: self.shared.clone(), query_id: id, state, _local: local })
    }

    /// Calls `listener` with every event (connection status, session errors, transactions
    /// acknowledged and rejected), on the client's delivery thread.
    pub fn on_event(&self, listener: impl FnMut(&ClientEvent) + Send + 'static) {
        self.shared.listeners.lock().push(Box::new(listener));
    }

    pub fn status(&self) -> ClientStatus {
        let last_error = self.shared.last_error.lock().clone();
        self.shared.with_engine(|engine| ClientStatus {
            connection: engine.status(),
            pending_transactions: engine.pending_transactions(),
            client_id: engine.client_id().map(str::to_owned),
            last_error,
        })
    }

    /// The transactions waiting for the server, oldest first.
    pub fn pending_transactions(&self) -> Vec<PendingTransaction> {
        self.shared.with_engine(|engine| engine.outbox.iter().cloned().collect())
    }

    /// Blocks until every pending transaction is answered, or the timeout passes; returns
    /// whether the outbox is empty.
    pub fn wait_for_outbox(&self, timeout: Duration) -> bool {
        self.shared.wait_until(timeout, |engine| engine.pending_transactions() == 0)
    }

    /// Blocks until the connection is ready (`READY` received), or the timeout passes.
    pub fn wait_until_ready(&self, timeout: Duration) -> bool {
        self.shared.wait_until(timeout, SyncEngine::is_ready)
    }

    /// Waits for the server to answer `query` once (registering it meanwhile), up to `timeout`.
    fn sync_query(&self, id: &str, query: &Query, timeout: Duration) -> Result<()> {
        self.shared.with_engine(|engine| engine.add_query_user(id, query))?;
        self.shared.wake();
        self.shared.wait_until(timeout, |engine| engine.is_fulfilled(id) || !engine.intends_to_connect());
        self.shared.with_engine(|engine| engine.remove_query_user(id));
        self.shared.wake();
        Ok(())
    }

    /// `remote-only`: the server's HTTP `/fetch`, nothing cached.
    fn fetch_remote(&self, query: &Query) -> Result<Vec<Json>> {
        match self.shared.post_http("/fetch", None, &json!({"query": query.to_json()}))? {
            Json::Array(results) => Ok(results),
            other => Err(Error::Network(format!("POST /fetch: expected an array of entities, got {other}"))),
        }
    }
}

/// How long a fetch waits for the server to answer a query before reading what it has.
const SYNC_WAIT: Duration = Duration::from_secs(10);

impl Drop for Client {
    fn drop(&mut self) {
        self.shared.stopping.store(true, Ordering::Release);
        // Directly: `wake` is quiet once the client is stopping.
        let _ = self.shared.waker.wake();
        if let Some(io) = self.io.take() {
            let _ = io.join();
        }
        let _ = self.shared.jobs.send(Job::Stop);
        if let Some(delivery) = self.delivery.take()
            && delivery.thread().id() != std::thread::current().id()
        {
            let _ = delivery.join();
        }
    }
}

/// A live client subscription; dropping it ends it (and the server query, after its last
/// user).
pub struct ClientSubscription {
    shared: Arc<Shared>,
    query_id: String,
    state: Arc<SubscriptionCell>,
    _local: Subscription,
}

impl ClientSubscription {
    /// The id the query is registered under with the server.
    pub fn query_id(&self) -> &str {
        &self.query_id
    }
}

impl Drop for ClientSubscription {
    fn drop(&mut self) {
        self.shared.with_engine(|engine| engine.remove_query_user(&self.query_id));
        self.shared.wake();
        let mut subscriptions = self.shared.subscriptions.lock();
        if let Some(states) = subscriptions.get_mut(&self.query_id) {
            states.retain(|state| state.strong_count() > 0 && !std::ptr::eq(state.as_ptr(), Arc::as_ptr(&self.state)));
            if states.is_empty() {
                subscriptions.remove(&self.query_id);
            }
        }
        drop(subscriptions);
        // No callback starts after this (`fulfil` runs on the client's delivery thread, apart
        // from the database's, and may have picked this subscription already); one under way
        // is waited for — unless it is this thread's own, which is dropping its subscription.
        self.state.closed.store(true, Ordering::Release);
        if IN_CALLBACK.get() != self.state.id() {
            drop(self.state.state.lock());
        }
    }
}

thread_local! {
    /// The subscription (its [`SubscriptionCell::id`]) whose callback this thread is running.
    static IN_CALLBACK: std::cell::Cell<usize> = const { std::cell::Cell::new(0) };
}

/// A subscription's state, and whether it ended: callbacks come from two threads (the
/// database's results, the client's `fulfilled`), and neither may start one once it has.
struct SubscriptionCell {
    closed: AtomicBool,
    state: Mutex<SubscriptionState>,
}

impl SubscriptionCell {
    fn id(&self) -> usize {
        self as *const Self as usize
    }

    /// `work` on the state, unless the subscription has ended, marked as this subscription's
    /// callback on this thread.
    fn run(&self, work: impl FnOnce(&mut SubscriptionState)) {
        let mut state = self.state.lock();
        if self.closed.load(Ordering::Acquire) {
            return;
        }
        struct Restore(usize);
        impl Drop for Restore {
            fn drop(&mut self) {
                IN_CALLBACK.set(self.0);
            }
        }
        let _restore = Restore(IN_CALLBACK.replace(self.id()));
        work(&mut state);
    }
}

/// One subscription's callback and what it last delivered (to deliver again as `fulfilled`).
struct SubscriptionState {
    query: Query,
    callback: Box<dyn FnMut(ClientResult) + Send>,
    last: Option<Vec<Arc<Json>>>,
    fulfilled: bool,
}

impl SubscriptionState {
    fn deliver(&mut self, results: Vec<Arc<Json>>, change: ResultChange) {
        self.last = Some(results.clone());
        (self.callback)(ClientResult { results, change, fulfilled: self.fulfilled });
    }

    /// The server answered, and its data is applied. If the last result delivered is still
    /// the current one, it is delivered again as `fulfilled`; otherwise a newer result is
    /// queued behind this lock, and it carries the flag.
    fn fulfil(&mut self, db: &Database) {
        if self.fulfilled {
            return;
        }
        self.fulfilled = true;
        let Some(last) = self.last.clone() else { return };
        match db.fetch(&self.query) {
            Ok(current) if current.len() == last.len() && current.iter().zip(&last).all(|(c, l)| c == &**l) => {
                (self.callback)(ClientResult { results: last, change: ResultChange::default(), fulfilled: true });
            }
            Ok(_) => {}
            Err(error) => tracing::warn!(%error, "a fulfilled subscription could not be read"),
        }
    }
}

impl Shared {
    /// Runs `work` on the engine, then hands its events to the delivery thread and wakes
    /// whoever waits on the engine's state.
    fn with_engine<R>(&self, work: impl FnOnce(&mut SyncEngine) -> R) -> R {
        let mut engine = self.engine.lock();
        let output = work(&mut engine);
        let events = engine.take_events();
        drop(engine);
        if !events.is_empty() {
            self.post(Job::Events(events));
        }
        self.changed.notify_all();
        output
    }

    fn wait_until(&self, timeout: Duration, done: impl Fn(&SyncEngine) -> bool) -> bool {
        let deadline = std::time::Instant::now() + timeout;
        let mut engine = self.engine.lock();
        while !done(&engine) {
            if self.changed.wait_until(&mut engine, deadline).timed_out() {
                return done(&engine);
            }
        }
        true
    }

    fn post(&self, job: Job) {
        let _ = self.jobs.send(job);
    }

    fn wake(&self) {
        // A subscription may outlive its client: nothing is listening then.
        if self.stopping.load(Ordering::Acquire) {
            return;
        }
        if let Err(error) = self.waker.wake() {
            tracing::error!(%error, "could not wake the sync client's I/O thread");
        }
    }

    /// The server answered a query: the local data it sent is applied, so its subscriptions
    /// see it; then each says `fulfilled`.
    fn fulfil_subscriptions(&self, query_id: &str) {
        let states: Vec<_> =
            self.subscriptions.lock().get(query_id).into_iter().flatten().filter_map(Weak::upgrade).collect();
        if states.is_empty() {
            return;
        }
        // Every commit so far has its results queued for the callbacks (see `fulfil`).
        self.db.flush_subscriptions();
        for cell in states {
            cell.run(|state| state.fulfil(&self.db));
        }
    }

    /// `POST {serverUrl}{path}` with the session's token (or `token`), JSON both ways.
    fn post_http(&self, path: &str, token: Option<&str>, body: &Json) -> Result<Json> {
        let (url, current) =
            self.with_engine(|engine| (engine.server_url().map(str::to_owned), engine.token().map(str::to_owned)));
        let url = url.ok_or_else(|| Error::Network("the client has no server URL".into()))?;
        let token = token.map(str::to_owned).or(current).ok_or_else(|| no_session("the client has no token"))?;
        let url = format!("{}{path}", url.trim_end_matches('/'));
        let mut response = self
            .http
            .post(&url)
            .header("Authorization", &format!("Bearer {token}"))
            .content_type("application/json")
            .send(body.to_string())
            .map_err(|e| Error::Network(format!("POST {path}: {e}")))?;
        let text = response.body_mut().read_to_string().map_err(|e| Error::Network(format!("POST {path}: {e}")))?;
        if text.trim().is_empty() {
            return Ok(Json::Null);
        }
        serde_json::from_str(&text).map_err(|e| Error::Network(format!("POST {path}: the answer is not JSON: {e}")))
    }
}

fn no_session(message: &str) -> Error {
    Error::ClientSession { name: "NoActiveSessionError", message: message.to_owned() }
}

pub(crate) fn now_ms() -> i64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_millis() as i64)
}
