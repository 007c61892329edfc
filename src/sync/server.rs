//! The sync server engine, free of I/O: a transport hands it each connection's frames (and the
//! time), and sends what [`Connection::drain`] returns. Writes from any source — a client's
//! `CHANGES`, the HTTP API, the embedding application — reach the connections whose queries
//! they change through the database's live queries, which route each write only to the views
//! it can affect; the transport is woken through the `notify` it gave at connect.

use std::collections::{BTreeSet, HashMap};
use std::sync::{Arc, Weak};

use parking_lot::Mutex;
use serde_json::{Value as Json, json};

use super::connection::{ChunkLimits, Chunks, Entities, QueryEntities, owed_bytes};
use super::limits::Limits;
use super::protocol::{
    Checkpoint, ClientMessage, CloseType, FrameError, Outgoing, WireError, close_frames, entity_data_frame,
    error_frame, frame,
};
use crate::db::{Database, Session};
use crate::error::Error;
use crate::live::{FeedEvent, Snapshot, Subscription};
use crate::query::Query;
use crate::schema::{Schema, SchemaChange};
use crate::store::Timestamp;

/// A Triplit-compatible sync server over one database. Cheap to clone.
#[derive(Clone)]
pub struct SyncServer {
    shared: Arc<ServerShared>,
    connections: Arc<Mutex<HashMap<String, Arc<Connection>>>>,
}

/// What connections share. They do not reach the connection list, so no cycle keeps a
/// server alive after the last handle to it is gone.
pub(crate) struct ServerShared {
    pub db: Database,
    pub limits: Limits,
    /// Client schema hashes found compatible (Triplit's compatibility list).
    compatible_schemas: Mutex<BTreeSet<String>>,
    /// Open connections per token, for `max_connections_per_token`.
    per_token: Mutex<HashMap<String, usize>>,
}

/// What a client asked for when it connected (the WebSocket URL's query parameters).
#[derive(Debug, Clone, Default)]
pub struct ConnectRequest {
    pub token: Option<String>,
    /// `?schema=<hash>`: the client's schema hash, to check compatibility first.
    pub schema_hash: Option<String>,
}

impl SyncServer {
    pub fn new(db: Database, limits: Limits) -> Self {
        SyncServer {
            shared: Arc::new(ServerShared {
                db,
                limits,
                compatible_schemas: Mutex::default(),
                per_token: Mutex::default(),
            }),
            connections: Arc::default(),
        }
    }

    pub fn database(&self) -> &Database {
        &self.shared.db
    }

    pub fn limits(&self) -> &Limits {
        &self.shared.limits
    }

    /// A session for a token, bounded by the server's query limits.
    pub(crate) fn session(&self, token: &str) -> crate::Result<Session> {
        self.shared.session(token)
    }

    /// How many clients are connected.
    pub fn connection_count(&self) -> usize {
        self.connections.lock().len()
    }

    /// Opens a connection. `notify` is called (from any thread) when data for it is waiting
    /// in [`Connection::drain`] — possibly on the database's live thread while it updates the
    /// live queries, so it must only wake the transport (never call into the database or the
    /// engine). A token that does not verify gives the frames that refuse the connection
    /// (`CLOSE UNAUTHORIZED`, socket close 1008).
    pub fn connect(
        &self,
        request: &ConnectRequest,
        notify: Arc<dyn Fn() + Send + Sync>,
    ) -> Result<Arc<Connection>, Vec<Outgoing>> {
        let (session, token) = match request.token.as_deref().map(|token| (self.session(token), token)) {
            Some((Ok(session), token)) => (session, token),
            Some((Err(e), _)) => {
                let error = WireError::from(&e);
                tracing::info!(reason = "UNAUTHORIZED", error = %error.name, detail = %error.message(), "connection refused");
                return Err(close_frames(CloseType::Unauthorized, Some(&error.message())));
            }
            None => {
                tracing::info!(reason = "UNAUTHORIZED", error = "NoTokenProvidedError", "connection refused");
                return Err(close_frames(CloseType::Unauthorized, Some("No token provided.")));
            }
        };
        if !self.shared.count_token(token) {
            let limit = self.shared.limits.max_connections_per_token;
            tracing::info!(reason = "TOO_MANY_CONNECTIONS", limit, "connection refused");
            let message = format!("At most {limit} connections may use the same token at once.");
            return Err(close_frames(CloseType::TooManyConnections, Some(&message)));
        }
        let client_id = uuid::Uuid::new_v4().to_string();
        let expires_at = session.expires_at();
        let roles: Vec<&str> = session.roles().iter().map(|r| r.name.as_str()).collect();
        tracing::info!(client_id = %client_id, roles = ?roles, service = session.is_service(), "connection opened");
        let connection = Arc::new_cyclic(|me| Connection {
            client_id: client_id.clone(),
            token: token.to_owned(),
            server: self.shared.clone(),
            me: me.clone(),
            notify,
            state: Mutex::new(State {
                session,
                expires_at,
                phase: Phase::Ready,
                outbox: Vec::new(),
                entities: Entities::default(),
                queries: HashMap::new(),
                chunks: Chunks::default(),
                generation: 0,
                schema_hash: request.schema_hash.clone(),
                fed_through: None,
                closed_because: None,
                last_stamp: None,
            }),
            subscriptions: Mutex::default(),
        });
        connection.start();
        self.connections.lock().insert(client_id, connection.clone());
        Ok(connection)
    }

    /// Forgets a connection (its socket closed): its subscriptions end.
    pub fn disconnect(&self, connection: &Connection) {
        if self.connections.lock().remove(&connection.client_id).is_some() {
            self.shared.uncount_token(&connection.token);
            let reason = connection.state.lock().closed_because.map_or("SOCKET_CLOSED", CloseType::as_str);
            tracing::info!(client_id = %connection.client_id, reason, "connection closed");
        }
        connection.end();
    }

    /// `POST /update-token`: a connection's client presents a new token, which must give the
    /// same roles; otherwise the connection is closed with `ROLES_MISMATCH`.
    pub(crate) fn update_token(&self, client_id: &str, session: &Session) -> Result<(), WireError> {
        let connection = self.connections.lock().get(client_id).cloned();
        let connection =
            connection.ok_or_else(|| WireError::new("TriplitError", "No connection found for clientId", 400))?;
        connection.replace_token(session);
        connection.wake();
        Ok(())
    }
}

impl ServerShared {
    fn session(&self, token: &str) -> crate::Result<Session> {
        Ok(self.db.session(token)?.with_query_limits(self.limits.query))
    }

    /// Counts a new connection with `token`; false when the token has as many as allowed.
    fn count_token(&self, token: &str) -> bool {
        let limit = self.limits.max_connections_per_token;
        let mut counts = self.per_token.lock();
        let count = counts.entry(token.to_owned()).or_default();
        if limit != 0 && *count >= limit {
            return false;
        }
        *count += 1;
        true
    }

    fn uncount_token(&self, token: &str) {
        let mut counts = self.per_token.lock();
        if let Some(count) = counts.get_mut(token) {
            *count -= 1;
            if *count == 0 {
                counts.remove(token);
            }
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Phase {
    /// Waiting for the client's schema (`SCHEMA_REQUEST` sent).
    AwaitingSchema,
    Ready,
    Closed,
}

struct State {
    session: Session,
    expires_at: Option<i64>,
    phase: Phase,
    /// Frames to send before any entity data.
    outbox: Vec<Outgoing>,
    entities: Entities,
    queries: HashMap<String, QueryEntities>,
    chunks: Chunks,
    generation: u64,
    schema_hash: Option<String>,
    /// The checkpoint of the latest commit whose update this connection was fed.
    fed_through: Option<Timestamp>,
    /// Why the server closed the connection, if it did (for the log).
    closed_because: Option<CloseType>,
    /// The timestamp of the last `ENTITY_DATA` sent: the next must be later, or the client
    /// ignores it (an eviction would leave the row it evicts in the client's cache).
    last_stamp: Option<Timestamp>,
}

impl State {
    fn send(&mut self, message_type: &str, payload: Json) {
        self.outbox.push(Outgoing::Text(frame(message_type, payload)));
    }

    fn error(&mut self, message_type: Option<&str>, error: &WireError, metadata: Option<Json>) {
        self.outbox.push(Outgoing::Text(error_frame(message_type, error, metadata)));
    }

    fn close(&mut self, close: CloseType, message: Option<&str>) {
        if self.phase != Phase::Closed {
            self.phase = Phase::Closed;
            self.closed_because = Some(close);
            self.outbox.extend(close_frames(close, message));
        }
    }

    /// Closes a connection that owes its client more than `limit` bytes: a client that does
    /// not read must not make the server hold an ever-growing backlog. What it was owed is
    /// dropped; it resumes from its checkpoints when it reconnects.
    fn check_backlog(&mut self, limit: usize) {
        // The outbox is drained at every send, so summing it here stays cheap.
        let answers: usize =
            self.outbox.iter().map(|o| if let Outgoing::Text(text) = o { text.len() } else { 0 }).sum();
        if self.phase != Phase::Closed && answers + self.entities.pending_bytes() > limit {
            self.entities = Entities::default();
            self.outbox.clear();
            let message = format!("The client did not read {limit} bytes of pending data; reconnect to resume.");
            self.close(CloseType::Backlog, Some(&message));
        }
    }

    /// Triplit's `QuerySyncError` for query `id`, with the error inside as metadata.
    fn query_error(&mut self, id: &str, error: &Error) {
        let inner = WireError::from(error);
        let wrapper = WireError::new(
            "QuerySyncError",
            format!("An error occurred while syncing your query: {}", json!({"queryKey": id})),
            inner.status,
        )
        .with_context(inner.message());
        let metadata = json!({"queryKey": id, "innerError": inner.to_json()});
        self.error(Some("CONNECT_QUERY"), &wrapper, Some(metadata));
    }

    /// Triplit checks expiry as messages pass, in both directions (it keeps no timer).
    fn expired(&mut self, now_ms: i64) -> bool {
        if self.phase != Phase::Closed && self.expires_at.is_some_and(|exp| exp * 1000 < now_ms) {
            self.close(CloseType::TokenExpired, None);
        }
        self.phase == Phase::Closed
    }
}

/// One connected client.
pub struct Connection {
    client_id: String,
    /// The token it connected with (what `max_connections_per_token` counts).
    token: String,
    server: Arc<ServerShared>,
    me: Weak<Connection>,
    notify: Arc<dyn Fn() + Send + Sync>,
    state: Mutex<State>,
    /// Kept apart from `state`: ending a subscription takes the live-query registry's lock,
    /// which feeds hold while they take `state`.
    subscriptions: Mutex<HashMap<String, Subscription>>,
}

impl Connection {
    /// The id sent in `READY` (what `POST /update-token` names).
    pub fn client_id(&self) -> &str {
        &self.client_id
    }

    /// Whether the connection was closed (the transport should close the socket once it has
    /// sent what [`Connection::drain`] returned).
    pub fn is_closed(&self) -> bool {
        self.state.lock().phase == Phase::Closed
    }

    fn wake(&self) {
        (self.notify)();
    }

    fn start(&self) {
        let db = &self.server.db;
        let mut state = self.state.lock();
        let Some(hash) = state.schema_hash.clone() else {
            state.send("READY", json!({"clientId": self.client_id}));
            return;
        };
        if db.schema().is_none() {
            state.close(CloseType::SchemaMismatch, Some("The server does not have a schema, but the connecting client does. The server may send un-handleable data and break the client application."));
        } else if self.server.compatible_schemas.lock().contains(&hash) {
            state.send("READY", json!({"clientId": self.client_id}));
        } else {
            state.phase = Phase::AwaitingSchema;
            state.send("SCHEMA_REQUEST", json!({}));
        }
    }

    /// Takes what is to be sent: answers and errors first, then one `ENTITY_DATA` with
    /// everything pending. An expired token turns it into `CLOSE TOKEN_EXPIRED`. May wait for
    /// the store (a message that needs a fresh checkpoint): call it off the async workers.
    pub fn drain(&self, now_ms: i64) -> Vec<Outgoing> {
        self.take_outgoing(now_ms, true).expect("allowed to wait")
    }

    /// [`Connection::drain`] without waiting: `None` (nothing taken) when what is owed needs a
    /// fresh checkpoint, which may wait for the store; then call `drain` off the async workers.
    pub fn try_drain(&self, now_ms: i64) -> Option<Vec<Outgoing>> {
        self.take_outgoing(now_ms, false)
    }

    fn take_outgoing(&self, now_ms: i64, may_wait: bool) -> Option<Vec<Outgoing>> {
        let out = self.stamp_and_take(now_ms, may_wait)?;
        if tracing::enabled!(tracing::Level::DEBUG) {
            for frame in &out {
                if let Outgoing::Text(text) = frame {
                    tracing::debug!(client_id = %self.client_id, frame = preview(text), "sending");
                }
            }
        }
        Some(out)
    }

    fn stamp_and_take(&self, now_ms: i64, may_wait: bool) -> Option<Vec<Outgoing>> {
        let mut state = self.state.lock();
        if state.expired(now_ms) {
            return Some(std::mem::take(&mut state.outbox));
        }
        if !state.entities.has_pending() {
            return Some(std::mem::take(&mut state.outbox));
        }
        let mut timestamp = self.stamp(&state);
        let needs_fresh = state.last_stamp.as_ref().is_some_and(|last| timestamp <= *last) || timestamp.physical == 0;
        if needs_fresh && !may_wait {
            return None;
        }
        let mut out = std::mem::take(&mut state.outbox);
        if needs_fresh {
            // Nothing was committed since the last message (or ever): this one needs a
            // checkpoint of its own. Asked for without the connection's lock, which commits'
            // updates take; if a commit's update is under way, the wake comes once it is done.
            let last = state.last_stamp.clone();
            drop(state);
            let fresh = self.server.db.fresh_checkpoint(last.as_ref(), self.notify.clone());
            state = self.state.lock();
            out.append(&mut state.outbox);
            match fresh {
                Some(fresh) => timestamp = fresh.max(self.stamp(&state)),
                None => return Some(out),
            }
            if state.phase == Phase::Closed || !state.entities.has_pending() {
                return Some(out);
            }
        }
        let (changes, for_queries) = state.entities.take();
        state.last_stamp = Some(timestamp.clone());
        out.push(Outgoing::Text(entity_data_frame(&changes, &timestamp, &for_queries)));
        Some(out)
    }

    /// Every change this connection was fed is at or before both: the last finished commit,
    /// and the commit whose update it was fed last (which may still be reaching other
    /// connections, so is not yet the database's checkpoint).
    fn stamp(&self, state: &State) -> Timestamp {
        let committed = self.server.db.latest_timestamp();
        match &state.fed_through {
            Some(fed) if *fed > committed => fed.clone(),
            _ => committed,
        }
    }

    /// Handles one text frame from the client; answers wait in [`Connection::drain`].
    pub fn receive(&self, text: &str, now_ms: i64) {
        tracing::debug!(client_id = %self.client_id, frame = preview(text), "received");
        self.handle(text, now_ms);
        let limit = self.server.limits.max_pending_output_bytes;
        self.state.lock().check_backlog(limit);
    }

    fn handle(&self, text: &str, now_ms: i64) {
        {
            let mut state = self.state.lock();
            if state.expired(now_ms) {
                return;
            }
            if text.len() > self.server.limits.max_message_bytes {
                let limit = self.server.limits.max_message_bytes;
                let error =
                    WireError::new("TriplitError", format!("Message too large, max size is {limit} bytes"), 413);
                state.error(None, &error, None);
                return;
            }
        }
        match ClientMessage::parse(text) {
            Ok(message) => self.dispatch(message, now_ms),
            Err(FrameError::Malformed) => {
                let error =
                    WireError::new("MalformedMessagePayloadError", "Messages payloads must be valid JSON.", 400);
                let preview: String = text.chars().take(1024).collect();
                self.state.lock().error(None, &error, Some(json!({"message": preview})));
            }
            Err(FrameError::UnknownType(message_type)) => {
                let mut state = self.state.lock();
                if state.phase != Phase::Ready {
                    state.error(Some(&message_type), &not_ready(), None);
                } else {
                    let base = format!("Unrecognized message type: {message_type}.");
                    state.error(Some(&message_type), &WireError::new("UnrecognizedMessageTypeError", base, 400), None);
                }
            }
            Err(FrameError::BadPayload { message_type, error }) => {
                self.state.lock().error(Some(&message_type), &error, None);
            }
        }
    }

    fn dispatch(&self, message: ClientMessage, now_ms: i64) {
        match message {
            ClientMessage::UpdateToken { token } => match self.server.session(&token) {
                Ok(session) => self.replace_token(&session),
                Err(e) => self.state.lock().close(CloseType::Unauthorized, Some(&WireError::from(&e).message())),
            },
            ClientMessage::SchemaResponse { schema } => self.schema_response(schema),
            message => {
                let ready = self.state.lock().phase == Phase::Ready;
                if !ready {
                    self.state.lock().error(Some(message_type(&message)), &not_ready(), None);
                    return;
                }
                match message {
                    ClientMessage::ConnectQuery { id, params, state } => self.connect_query(id, &params, state),
                    ClientMessage::DisconnectQuery { id } => self.disconnect_query(&id),
                    ClientMessage::Changes { changes } => self.changes(changes),
                    ClientMessage::Chunk { data, total, index, id } => self.chunk(&id, index, total, data, now_ms),
                    ClientMessage::Ping { client_timestamp } => {
                        let payload = json!({"clientTimestamp": client_timestamp, "serverTimestamp": now_ms});
                        self.state.lock().send("PONG", payload);
                    }
                    ClientMessage::UpdateToken { .. } | ClientMessage::SchemaResponse { .. } => {
                        unreachable!("handled above")
                    }
                }
            }
        }
    }

    /// A new token for the connection: its roles must match the current ones (Triplit keeps
    /// the connection's claims and takes only the new expiry).
    fn replace_token(&self, session: &Session) {
        let mut state = self.state.lock();
        if state.session.roles() != session.roles() {
            state.close(CloseType::RolesMismatch, Some("Roles for new token don't match the old token."));
        } else {
            state.expires_at = session.expires_at();
        }
    }

    fn schema_response(&self, schema: Option<Json>) {
        let server_schema = self.server.db.schema();
        let mut state = self.state.lock();
        if state.phase != Phase::AwaitingSchema {
            return;
        }
        let incompatible = "The client schema is not backwards compatible with the server schema.";
        let Some(client) = schema else {
            state.phase = Phase::Ready;
            state.send("READY", json!({"clientId": self.client_id}));
            return;
        };
        let Some(server_schema) = server_schema else {
            return state.close(CloseType::SchemaMismatch, Some(incompatible));
        };
        let compatible = Schema::from_json(&client).ok().is_some_and(|client| {
            client == *server_schema
                || SchemaChange::evaluate(Some(&client), &server_schema, &mut |_, _| Ok(()))
                    // Data-independent, as Triplit's check: any backwards-incompatible edit counts.
                    .is_ok_and(|change| change.successful && change.issues.is_empty())
        });
        if !compatible {
            return state.close(CloseType::SchemaMismatch, Some(incompatible));
        }
        if let Some(hash) = state.schema_hash.clone() {
            self.server.compatible_schemas.lock().insert(hash);
        }
        state.phase = Phase::Ready;
        state.send("READY", json!({"clientId": self.client_id}));
    }

    fn connect_query(&self, id: String, params: &Json, checkpoint: Option<Checkpoint>) {
        let query_error = |connection: &Connection, error: &Error| {
            connection.state.lock().query_error(&id, error);
        };
        let query = match Query::from_json(params) {
            Ok(query) => query,
            Err(e) => return query_error(self, &e),
        };
        let (generation, principal) = {
            let mut state = self.state.lock();
            let limit = self.server.limits.max_queries_per_connection;
            if state.queries.len() >= limit && !state.queries.contains_key(&id) {
                drop(state);
                let message = format!("a connection may subscribe at most {limit} queries at once");
                return query_error(self, &Error::LimitExceeded(message));
            }
            state.generation += 1;
            let generation = state.generation;
            let entry = QueryEntities { generation, ..QueryEntities::default() };
            if let Some(old) = state.queries.insert(id.clone(), entry) {
                state.entities.forget(&old);
            }
            (generation, state.session.principal().clone())
        };
        let me = self.me.clone();
        let feed_id = id.clone();
        let feed = Box::new(move |event: FeedEvent| {
            if let Some(connection) = me.upgrade() {
                match event {
                    FeedEvent::Entities(snapshot, commit) => connection.feed(&feed_id, generation, snapshot, commit),
                    FeedEvent::Ended(error) => connection.feed_ended(&feed_id, generation, error),
                }
            }
        });
        match self.server.db.subscribe_feed(Some(principal), &query, feed) {
            Ok(subscription) => {
                let replaced = self.subscriptions.lock().insert(id.clone(), subscription);
                drop(replaced);
                if let Err(e) = self.answer_first(&id, generation, &query.collection, checkpoint) {
                    query_error(self, &e);
                }
            }
            Err(e) => {
                self.state.lock().queries.remove(&id);
                query_error(self, &e);
            }
        }
    }

    /// The first answer to a query. With a checkpoint, entities the client holds unchanged
    /// since it are left out, and the ones it holds that left the results are sent again if
    /// it may still read them (its cache updates) or as deletes if not (deleted meanwhile, or
    /// no longer readable).
    fn answer_first(
        &self,
        id: &str,
        generation: u64,
        collection: &str,
        checkpoint: Option<Checkpoint>,
    ) -> crate::Result<()> {
        let (snapshot, principal) = {
            let state = self.state.lock();
            let Some(query) = state.queries.get(id).filter(|q| q.generation == generation) else { return Ok(()) };
            (query.latest.clone().unwrap_or_default(), state.session.principal().clone())
        };
        let db = &self.server.db;
        let mut known = BTreeSet::new();
        let mut refreshed = Vec::new();
        if let Some(checkpoint) = &checkpoint {
            let in_results: std::collections::HashSet<&str> = snapshot.0.iter().map(|(k, _)| &**k).collect();
            for (held_collection, ids) in &checkpoint.entity_ids {
                let mut gone = Vec::new();
                for held in ids {
                    let key = crate::live::entity_key(held_collection, held);
                    if !in_results.contains(&*key) {
                        gone.push(held.clone());
                        continue;
                    }
                    let changed = db.entity_timestamp(held_collection, held)?;
                    if changed.is_some_and(|ts| ts < checkpoint.timestamp) {
                        known.insert(key);
                    }
                }
                if !gone.is_empty() {
                    let readable = db.read_encoded_as(Some(&principal), held_collection, &gone)?;
                    let mut readable: HashMap<String, _> = readable.into_iter().collect();
                    for held in gone {
                        let doc = readable.remove(&held).map(|doc| doc.as_json().clone());
                        refreshed.push((crate::live::entity_key(held_collection, &held), doc));
                    }
                }
            }
        }
        let limit = self.server.limits.max_pending_output_bytes;
        if answer_exceeds(&snapshot, &known, limit) {
            // Closing for the backlog would not help: the client would reconnect, ask again
            // and be closed again. The query is refused instead; the connection stays.
            self.subscriptions.lock().remove(id);
            let mut state = self.state.lock();
            if state.queries.get(id).is_some_and(|q| q.generation == generation) {
                state.queries.remove(id);
            }
            let message =
                format!("the query's first answer is larger than the {limit} bytes a connection may owe its client");
            return Err(Error::LimitExceeded(message));
        }
        {
            let mut state = self.state.lock();
            let state = &mut *state;
            let Some(query) = state.queries.get_mut(id).filter(|q| q.generation == generation) else { return Ok(()) };
            state.entities.update(id, query, &snapshot, &known);
            for (key, doc) in refreshed {
                state.entities.send_once(key, doc);
            }
            state.entities.answered(id, collection);
            query.answered = true;
            // Commits between the feed's first result and now.
            if let Some(latest) = query.latest.clone().filter(|latest| !Arc::ptr_eq(latest, &snapshot)) {
                state.entities.update(id, query, &latest, &BTreeSet::new());
            }
        }
        self.wake();
        Ok(())
    }

    /// A query's entities after a commit (called on the database's live thread).
    fn feed(&self, id: &str, generation: u64, snapshot: &Arc<Snapshot>, commit: Option<&Timestamp>) {
        let changed = {
            let mut state = self.state.lock();
            let state = &mut *state;
            if let Some(commit) = commit.filter(|c| state.fed_through.as_ref().is_none_or(|fed| fed < *c)) {
                state.fed_through = Some(commit.clone());
            }
            if state.phase == Phase::Closed {
                return;
            }
            let Some(query) = state.queries.get_mut(id).filter(|q| q.generation == generation) else { return };
            query.latest = Some(snapshot.clone());
            let changed = query.answered && state.entities.update(id, query, snapshot, &BTreeSet::new());
            state.check_backlog(self.server.limits.max_pending_output_bytes);
            changed
        };
        if changed {
            self.wake();
        }
    }

    /// A query's view ended (its query no longer prepares against a new schema, or storage
    /// failed): the client is told, as when the query is refused.
    fn feed_ended(&self, id: &str, generation: u64, error: &Error) {
        {
            let mut state = self.state.lock();
            let state = &mut *state;
            if state.queries.get(id).is_none_or(|q| q.generation != generation) {
                return;
            }
            if let Some(query) = state.queries.remove(id) {
                state.entities.forget(&query);
            }
            state.query_error(id, error);
        }
        self.wake();
    }

    fn disconnect_query(&self, id: &str) {
        let subscription = self.subscriptions.lock().remove(id);
        drop(subscription);
        let mut state = self.state.lock();
        if let Some(query) = state.queries.remove(id) {
            state.entities.forget(&query);
        }
    }

    fn changes(&self, changes: crate::Changes) {
        let session = self.state.lock().session.clone();
        let collections: Vec<String> = changes.collections.keys().cloned().collect();
        match session.commit_changes(changes) {
            Ok(timestamp) => self.state.lock().send("CHANGES_ACK", json!({"timestamp": timestamp.to_json()})),
            Err(e) => {
                let error = WireError::from(&e);
                tracing::info!(client_id = %self.client_id, error = %error.name, detail = %error.message(), "write rejected");
                let tx_id = self.server.db.latest_timestamp().to_json().to_string();
                let failures: Vec<Json> = collections
                    .iter()
                    .map(|collection| json!({"txId": tx_id, "collection": collection, "error": error.to_json()}))
                    .collect();
                self.state.lock().error(Some("CHANGES"), &error, Some(json!({"failures": failures})));
            }
        }
    }

    fn chunk(&self, id: &str, index: usize, total: usize, data: String, now_ms: i64) {
        let limits = &self.server.limits;
        let chunk_limits = ChunkLimits {
            bytes: limits.max_message_bytes,
            pieces_per_message: limits.max_chunks_per_message,
            messages: limits.max_chunked_messages,
        };
        let whole = self.state.lock().chunks.add(id, index, total, data, &chunk_limits);
        match whole {
            Ok(Some(message)) => self.handle(&message, now_ms),
            Ok(None) => {}
            Err(problem) => {
                let error =
                    WireError::new("MalformedMessagePayloadError", "Messages payloads must be valid JSON.", 400)
                        .with_context(problem);
                self.state.lock().error(Some("CHUNK"), &error, None);
            }
        }
    }

    /// Ends every subscription (the connection is gone).
    fn end(&self) {
        let subscriptions = std::mem::take(&mut *self.subscriptions.lock());
        drop(subscriptions);
        let mut state = self.state.lock();
        state.phase = Phase::Closed;
        state.queries.clear();
    }
}

/// Whether a query's first answer alone (what `known` does not cover) is more than `limit`
/// bytes, counted as [`Entities`] counts what is owed ([`owed_bytes`]).
fn answer_exceeds(snapshot: &Snapshot, known: &BTreeSet<Arc<str>>, limit: usize) -> bool {
    let mut owed = 0usize;
    for (key, doc) in &snapshot.0 {
        if !known.contains(key) {
            owed += owed_bytes(key, doc);
            if owed > limit {
                return true;
            }
        }
    }
    false
}

fn not_ready() -> WireError {
    WireError::triplit("Server not ready for messages")
}

fn message_type(message: &ClientMessage) -> &'static str {
    match message {
        ClientMessage::ConnectQuery { .. } => "CONNECT_QUERY",
        ClientMessage::DisconnectQuery { .. } => "DISCONNECT_QUERY",
        ClientMessage::Changes { .. } => "CHANGES",
        ClientMessage::Chunk { .. } => "CHUNK",
        ClientMessage::UpdateToken { .. } => "UPDATE_TOKEN",
        ClientMessage::SchemaResponse { .. } => "SCHEMA_RESPONSE",
        ClientMessage::Ping { .. } => "PING",
    }
}

/// What a debug log shows of a frame: its start, but only the type and size of one that
/// carries a token or a user's data.
fn preview(text: &str) -> String {
    let message_type = serde_json::from_str::<Json>(text)
        .ok()
        .and_then(|frame| frame.get("type").and_then(Json::as_str).map(str::to_owned));
    match message_type.as_deref() {
        Some(private @ ("UPDATE_TOKEN" | "CHANGES" | "ENTITY_DATA" | "CHUNK")) => {
            format!("{private} ({} bytes)", text.len())
        }
        _ => {
            let mut end = text.len().min(300);
            while !text.is_char_boundary(end) {
                end -= 1;
            }
            text[..end].to_owned()
        }
    }
}
