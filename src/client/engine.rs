//! The client's sync engine, sans-IO: frames and the time go in, frames to send and events
//! come out — the counterpart of [`crate::sync::SyncServer`]. It keeps the local database in
//! step with the server (server data folded under the outbox's optimistic writes), sends the
//! outbox, registers queries, and decides when to connect, reconnect, ping and refresh the
//! token. The transport (`super::transport`) only moves bytes and keeps time.

use std::collections::{BTreeMap, VecDeque};

use serde_json::{Value as Json, json};

use super::Committed;
use super::events::{ClientEvent, ConnectionStatus};
use super::outbox::Outbox;
use crate::db::{Database, Session, Transaction};
use crate::error::Result;
use crate::query::Query;
use crate::store::Timestamp;
use crate::sync::protocol::{Checkpoint, ClientMessage, Outgoing, ServerMessage, WireError, changes_frame};

/// The latest server timestamp the local data reflects.
const CHECKPOINT_KEY: &str = "client.checkpoint";
/// `client.query.<id>`: the server answered this query once, so a later connection may resume
/// it from the checkpoint, and `local-first` fetches read it locally.
const QUERY_PREFIX: &str = "client.query.";

/// The first reconnect delay; it doubles per failed attempt up to [`MAX_BACKOFF_MS`].
const FIRST_BACKOFF_MS: i64 = 250;
const MAX_BACKOFF_MS: i64 = 5 * 60 * 1000;
/// `@triplit/client`'s default keepalive.
const PING_INTERVAL_MS: i64 = 45_000;
/// The close reason of a disconnect the application asked for (as `@triplit/client`'s).
pub(super) const MANUAL_DISCONNECT: &str = r#"{"type":"MANUAL_DISCONNECT","retry":false}"#;
/// Frames above this are sent as `CHUNK`s, as `@triplit/client` does (0.5 MiB).
const CHUNK_BYTES: usize = 512 * 1024;

/// How the engine is tuned.
#[derive(Debug, Clone)]
pub struct EngineOptions {
    /// How many `CHANGES` may await their answer at once. The server answers a connection's
    /// messages in order, so pipelining keeps the answers matched to their transactions.
    pub max_in_flight: usize,
}

impl Default for EngineOptions {
    fn default() -> Self {
        EngineOptions { max_in_flight: 256 }
    }
}

/// Where the socket is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Phase {
    Offline,
    /// The transport is opening a socket.
    Dialing,
    /// Open; waiting for `READY`.
    Opened,
    Ready,
}

/// A query the server is (or will be, once ready) asked to keep the client in step with.
#[derive(Debug)]
struct RemoteQuery {
    query: Query,
    params: Json,
    /// Local subscriptions and fetches using it.
    users: usize,
    /// Sent on this connection.
    sent: bool,
    /// Answered on this connection.
    fulfilled: bool,
}

/// Something due now that the engine cannot do itself.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Due {
    /// Ask the application's refresh handler for a new token.
    RefreshToken,
}

/// The client sync engine; see the module documentation.
pub struct SyncEngine {
    db: Database,
    pub(super) outbox: Outbox,
    options: EngineOptions,
    server_url: Option<String>,
    token: Option<String>,
    /// The application wants a connection (connect / auto-connect); cleared by `disconnect`
    /// and by a close that says not to retry.
    wanted: bool,
    phase: Phase,
    status: ConnectionStatus,
    client_id: Option<String>,
    queries: BTreeMap<String, RemoteQuery>,
    /// Outbox entries sent and not yet answered, in the order sent.
    in_flight: VecDeque<u64>,
    /// Failed connection attempts since the last `READY`.
    attempts: u32,
    reconnect_at: Option<i64>,
    ping_at: Option<i64>,
    refresh_at: Option<i64>,
    /// The server's `CLOSE` on this socket, if it sent one.
    closed_because: Option<(String, bool, Option<String>)>,
    output: Vec<Outgoing>,
    events: Vec<ClientEvent>,
    jitter: u64,
}

impl SyncEngine {
    pub fn new(db: Database, options: EngineOptions) -> Result<SyncEngine> {
        let outbox = Outbox::load(&db)?;
        let jitter =
            std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(1, |d| d.as_nanos() as u64);
        Ok(SyncEngine {
            db,
            outbox,
            options,
            server_url: None,
            token: None,
            wanted: false,
            phase: Phase::Offline,
            status: ConnectionStatus::Uninitialized,
            client_id: None,
            queries: BTreeMap::new(),
            in_flight: VecDeque::new(),
            attempts: 0,
            reconnect_at: None,
            ping_at: None,
            refresh_at: None,
            closed_because: None,
            output: Vec::new(),
            events: Vec::new(),
            jitter: jitter | 1,
        })
    }

    pub fn status(&self) -> ConnectionStatus {
        self.status
    }

    /// How many local transactions wait for the server.
    pub fn pending_transactions(&self) -> usize {
        self.outbox.len()
    }

    /// The id the server gave this connection in `READY` (for `POST /update-token`).
    pub fn client_id(&self) -> Option<&str> {
        self.client_id.as_deref()
    }

    pub fn token(&self) -> Option<&str> {
        self.token.as_deref()
    }

    pub fn server_url(&self) -> Option<&str> {
        self.server_url.as_deref()
    }

    pub fn set_server_url(&mut self, url: Option<String>) {
        self.server_url = url;
    }

    /// Replaces the token used by the next connection (the open one keeps its own).
    pub fn set_token(&mut self, token: Option<String>) {
        self.token = token;
    }

    pub fn set_refresh_at(&mut self, at: Option<i64>) {
        self.refresh_at = at;
    }

    /// Whether the socket is open and the server has said `READY`.
    pub fn is_ready(&self) -> bool {
        self.phase == Phase::Ready
    }

    /// Whether a connection is wanted (and possible): fetches may wait for the server.
    pub fn intends_to_connect(&self) -> bool {
        self.wanted && self.token.is_some() && self.server_url.is_some()
    }

    /// Asks for a connection: dialled at once (see [`SyncEngine::dial`]).
    pub fn connect(&mut self) {
        self.wanted = true;
        self.attempts = 0;
        self.reconnect_at = None;
    }

    /// Closes the connection and stays offline until [`SyncEngine::connect`].
    pub fn disconnect(&mut self) {
        self.wanted = false;
        self.reconnect_at = None;
        if matches!(self.phase, Phase::Opened | Phase::Ready | Phase::Dialing) {
            self.set_status(ConnectionStatus::Closing);
            self.output.push(Outgoing::Close { code: 1000, reason: MANUAL_DISCONNECT.into() });
        }
        self.went_offline();
        // A client that never connected stays UNINITIALIZED.
        if self.status != ConnectionStatus::Uninitialized {
            self.set_status(ConnectionStatus::Closed);
        }
    }

    /// Forgets everything learned from the server and every pending write (the application
    /// wipes the local data in the same step): what sign-out needs.
    pub fn forget_sync_state(&mut self) {
        self.outbox.clear();
        self.in_flight.clear();
        for query in self.queries.values_mut() {
            query.fulfilled = false;
        }
    }

    /// The URL to open now, if a socket should be opened now.
    pub fn dial(&mut self, now_ms: i64) -> Option<String> {
        if self.phase != Phase::Offline || !self.wanted || self.reconnect_at.is_some_and(|at| at > now_ms) {
            return None;
        }
        let (url, token) = (self.server_url.as_deref()?, self.token.as_deref()?);
        let url = websocket_url(url, token);
        self.phase = Phase::Dialing;
        self.reconnect_at = None;
        self.closed_because = None;
        self.set_status(ConnectionStatus::Connecting);
        Some(url)
    }

    /// The socket opened. `false`: the application disconnected while it was being opened,
    /// so the transport closes it again.
    pub fn opened(&mut self, _now_ms: i64) -> bool {
        if self.phase != Phase::Dialing {
            return false;
        }
        self.phase = Phase::Opened;
        self.set_status(ConnectionStatus::Open);
        true
    }

    /// The socket closed or could not be opened (`reason`: the close frame's reason).
    pub fn closed(&mut self, reason: Option<&str>, now_ms: i64) {
        if self.phase == Phase::Offline {
            return;
        }
        // A server that refuses the upgrade's token may say why only in the close reason.
        if self.closed_because.is_none()
            && let Some(reason) = reason.and_then(|r| serde_json::from_str::<Json>(r).ok())
            && let Some(name) = reason.get("type").and_then(Json::as_str)
        {
            let retry = reason.get("retry").and_then(Json::as_bool).unwrap_or(true);
            self.closed_because = Some((name.to_owned(), retry, None));
        }
        match self.closed_because.take() {
            Some((reason, false, message)) if reason != "MANUAL_DISCONNECT" => {
                self.wanted = false;
                self.events.push(ClientEvent::SessionError { reason, message });
            }
            _ => {}
        }
        self.went_offline();
        self.set_status(ConnectionStatus::Closed);
        if self.wanted {
            let delay = (FIRST_BACKOFF_MS << self.attempts.min(20)).min(MAX_BACKOFF_MS);
            // Equal jitter: half the delay fixed, half random, so clients a server dropped
            // together do not come back together.
            let delay = delay / 2 + (self.next_random() % (delay as u64 / 2 + 1)) as i64;
            self.attempts = self.attempts.saturating_add(1);
            self.reconnect_at = Some(now_ms + delay);
        }
    }

    /// Takes one frame from the server.
    pub fn received(&mut self, frame: &str, now_ms: i64) -> Result<()> {
        // Frames still buffered from a socket the application has disconnected (its close is
        // on its way out) belong to no connection.
        if !matches!(self.phase, Phase::Opened | Phase::Ready) {
            return Ok(());
        }
        let message = match ServerMessage::parse(frame) {
            Ok(message) => message,
            Err(error) => {
                tracing::warn!(?error, "ignored a frame from the server that is not a Triplit message");
                return Ok(());
            }
        };
        match message {
            ServerMessage::Ready { client_id } => {
                self.client_id = Some(client_id);
                self.phase = Phase::Ready;
                self.attempts = 0;
                self.ping_at = Some(now_ms + PING_INTERVAL_MS);
                self.pump_outbox();
                let ids: Vec<String> = self.queries.keys().cloned().collect();
                for id in ids {
                    self.send_connect_query(&id)?;
                }
            }
            ServerMessage::SchemaRequest => {
                let schema = self.db.schema().map(|s| s.to_json());
                self.send(ClientMessage::SchemaResponse { schema });
            }
            ServerMessage::EntityData { changes, timestamp, for_queries } => {
                self.apply_entity_data(changes, &timestamp, &for_queries)?;
            }
            ServerMessage::ChangesAck { .. } => {
                if let Some(seq) = self.in_flight.pop_front()
                    && let Some(entry) = self.outbox.acknowledge(&self.db, seq)?
                {
                    self.events.push(ClientEvent::WriteAcked { tx_id: entry.tx_id });
                }
                self.pump_outbox();
            }
            ServerMessage::Error { message_type, error, metadata } => {
                let query_id = metadata.as_ref().and_then(|m| m.get("queryKey")).and_then(Json::as_str);
                if message_type.as_deref() == Some("CHANGES") {
                    self.rejected(error)?;
                } else if let Some(query_id) = query_id {
                    self.events.push(ClientEvent::QueryFailed { query_id: query_id.to_owned(), error });
                } else {
                    tracing::warn!(name = %error.name, message = %error.message(), "the server reported an error");
                }
            }
            ServerMessage::Close { name, retry, message, .. } => {
                self.closed_because = Some((name, retry, message));
            }
            ServerMessage::Pong { .. } => {}
        }
        Ok(())
    }

    /// Runs what is due by now: a reconnect becomes dialable, a ping is sent, a token refresh
    /// is asked for.
    pub fn tick(&mut self, now_ms: i64) -> Vec<Due> {
        let mut due = Vec::new();
        if self.phase == Phase::Ready && self.ping_at.is_some_and(|at| at <= now_ms) {
            self.ping_at = Some(now_ms + PING_INTERVAL_MS);
            self.send(ClientMessage::Ping { client_timestamp: Some(json!(now_ms)) });
        }
        if self.refresh_at.is_some_and(|at| at <= now_ms) {
            self.refresh_at = None;
            due.push(Due::RefreshToken);
        }
        due
    }

    /// When [`SyncEngine::tick`] or [`SyncEngine::dial`] next has something to do.
    pub fn next_deadline(&self) -> Option<i64> {
        let ping = self.ping_at.filter(|_| self.phase == Phase::Ready);
        let reconnect = self.reconnect_at.filter(|_| self.wanted && self.phase == Phase::Offline);
        [ping, reconnect, self.refresh_at].into_iter().flatten().min()
    }

    /// Frames (and a close) to send, in order.
    pub fn take_output(&mut self) -> Vec<Outgoing> {
        std::mem::take(&mut self.output)
    }

    /// Queues an event the application decided on (delivered with the engine's own).
    pub fn report(&mut self, event: ClientEvent) {
        self.events.push(event);
    }

    pub fn take_events(&mut self) -> Vec<ClientEvent> {
        std::mem::take(&mut self.events)
    }

    /// Runs `work` as one local transaction (as `session` when given, so its rules apply)
    /// and queues what it wrote: the outbox row commits with the writes.
    pub fn commit<R>(
        &mut self,
        session: Option<&Session>,
        work: impl FnOnce(&mut Transaction) -> Result<R>,
    ) -> Result<Committed<R>> {
        let tx_id = uuid::Uuid::now_v7().to_string();
        let outbox = &self.outbox;
        let staged = |tx: &mut Transaction| {
            tx.record_writes();
            let output = work(tx)?;
            let entry = outbox.stage(tx, tx_id)?;
            Ok((output, entry))
        };
        let (output, entry) = match session {
            Some(session) => session.transact(staged)?,
            None => self.db.transact(staged)?,
        };
        let tx_id = entry.as_ref().map(|e| e.tx_id.clone());
        if let Some(entry) = entry {
            self.outbox.push(entry);
            self.pump_outbox();
        }
        Ok(Committed { output, tx_id })
    }

    /// A new outbox entry was committed: send it if the window allows.
    pub fn pump_outbox(&mut self) {
        if self.phase != Phase::Ready {
            return;
        }
        while self.in_flight.len() < self.options.max_in_flight {
            let after = self.in_flight.back().copied();
            let Some(next) = self.outbox.iter().find(|p| after.is_none_or(|a| p.seq > a)) else { break };
            let (seq, frame) = (next.seq, changes_frame(&next.changes));
            self.in_flight.push_back(seq);
            self.send_frame(frame);
        }
    }

    /// One more user of query `id`: registered with the server the first time.
    pub fn add_query_user(&mut self, id: &str, query: &Query) -> Result<()> {
        if let Some(remote) = self.queries.get_mut(id) {
            remote.users += 1;
            return Ok(());
        }
        let remote =
            RemoteQuery { query: query.clone(), params: query.to_json(), users: 1, sent: false, fulfilled: false };
        self.queries.insert(id.to_owned(), remote);
        if self.phase == Phase::Ready {
            self.send_connect_query(id)?;
        }
        Ok(())
    }

    /// One user fewer: the server stops sending it after the last.
    pub fn remove_query_user(&mut self, id: &str) {
        let Some(remote) = self.queries.get_mut(id) else { return };
        remote.users -= 1;
        if remote.users > 0 {
            return;
        }
        let remote = self.queries.remove(id).expect("found above");
        if remote.sent && self.phase == Phase::Ready {
            self.send(ClientMessage::DisconnectQuery { id: id.to_owned() });
        }
    }

    /// Whether the server answered query `id` on this connection.
    pub fn is_fulfilled(&self, id: &str) -> bool {
        self.queries.get(id).is_some_and(|q| q.fulfilled)
    }

    /// Whether the server ever answered query `id` for this local database.
    pub fn was_ever_fulfilled(&self, id: &str) -> Result<bool> {
        let key = format!("{QUERY_PREFIX}{id}");
        Ok(self.db.read_meta(&key)?.is_some())
    }

    fn send_connect_query(&mut self, id: &str) -> Result<()> {
        let state = self.resume_point(id)?;
        let Some(remote) = self.queries.get_mut(id) else { return Ok(()) };
        remote.sent = true;
        let message = ClientMessage::ConnectQuery { id: id.to_owned(), params: remote.params.clone(), state };
        self.send(message);
        Ok(())
    }

    /// Where query `id` resumes: the checkpoint and the confirmed entities held for it — only
    /// for a query the server answered before, so a new one gets everything.
    fn resume_point(&self, id: &str) -> Result<Option<Checkpoint>> {
        let Some(remote) = self.queries.get(id) else { return Ok(None) };
        let checkpoint = self.db.read_meta(CHECKPOINT_KEY)?;
        let Some(timestamp) = checkpoint.and_then(|bytes| Timestamp::from_sort_key(&bytes).ok()) else {
            return Ok(None);
        };
        if !self.was_ever_fulfilled(id)? {
            return Ok(None);
        }
        // What the server would ship for the query now, decided as the server decides it.
        let entity_ids = self
            .db
            .query_entities(&remote.query)?
            .into_iter()
            .map(|(collection, ids)| {
                let ids = ids.into_iter().filter(|id| !self.outbox.is_pending(&collection, id)).collect();
                (collection, ids)
            })
            .collect();
        Ok(Some(Checkpoint { timestamp, entity_ids }))
    }

    fn apply_entity_data(
        &mut self,
        changes: crate::Changes,
        timestamp: &Timestamp,
        for_queries: &[String],
    ) -> Result<()> {
        let outbox = &self.outbox;
        self.db.transact(|tx| {
            outbox.fold_server_changes(tx, changes)?;
            tx.write_meta(CHECKPOINT_KEY, &timestamp.sort_key())?;
            for id in for_queries {
                tx.write_meta(&format!("{QUERY_PREFIX}{id}"), b"1")?;
            }
            Ok(())
        })?;
        for id in for_queries {
            if let Some(remote) = self.queries.get_mut(id)
                && !remote.fulfilled
            {
                remote.fulfilled = true;
                self.events.push(ClientEvent::QueryFulfilled { query_id: id.clone() });
            }
        }
        Ok(())
    }

    /// The oldest transaction in flight was refused: roll it back, report it, go on.
    fn rejected(&mut self, error: WireError) -> Result<()> {
        if let Some(seq) = self.in_flight.pop_front()
            && let Some(entry) = self.outbox.reject(&self.db, seq)?
        {
            self.events.push(ClientEvent::WriteRejected { tx_id: entry.tx_id, error });
        }
        self.pump_outbox();
        Ok(())
    }

    fn went_offline(&mut self) {
        self.phase = Phase::Offline;
        self.client_id = None;
        self.ping_at = None;
        // Unanswered writes go again on the next connection, and every query is re-sent.
        self.in_flight.clear();
        for query in self.queries.values_mut() {
            query.sent = false;
            query.fulfilled = false;
        }
    }

    fn set_status(&mut self, status: ConnectionStatus) {
        if self.status != status {
            self.status = status;
            self.events.push(ClientEvent::Connection(status));
        }
    }

    fn send(&mut self, message: ClientMessage) {
        self.send_frame(message.to_frame());
    }

    /// Sends a frame, in `CHUNK`s when it is large.
    fn send_frame(&mut self, frame: String) {
        if frame.len() <= CHUNK_BYTES {
            self.output.push(Outgoing::Text(frame));
            return;
        }
        let pieces = split_at_char_boundaries(&frame, CHUNK_BYTES);
        let id = uuid::Uuid::new_v4().to_string();
        let total = pieces.len();
        for (index, data) in pieces.into_iter().enumerate() {
            let chunk = ClientMessage::Chunk { data: data.to_owned(), total, index, id: id.clone() };
            self.output.push(Outgoing::Text(chunk.to_frame()));
        }
    }

    /// xorshift64: jitter needs no more than this.
    fn next_random(&mut self) -> u64 {
        let mut x = self.jitter;
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        self.jitter = x;
        x
    }
}

/// `ws(s)://host/path?sync-schema=false&token=…` for a server URL (`http(s)://…`).
pub(crate) fn websocket_url(server_url: &str, token: &str) -> String {
    let trimmed = server_url.trim_end_matches('/');
    let (scheme, rest) = match trimmed.split_once("://") {
        Some(("https" | "wss", rest)) => ("wss", rest),
        Some((_, rest)) => ("ws", rest),
        None => ("ws", trimmed),
    };
    let mut encoded = String::with_capacity(token.len());
    for byte in token.bytes() {
        match byte {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => encoded.push(byte as char),
            other => encoded.push_str(&format!("%{other:02X}")),
        }
    }
    // The root path when the URL has none (`host:port?...` is not a valid request target).
    let slash = if rest.contains('/') { "" } else { "/" };
    format!("{scheme}://{rest}{slash}?sync-schema=false&token={encoded}")
}

fn split_at_char_boundaries(text: &str, max: usize) -> Vec<&str> {
    let mut pieces = Vec::new();
    let mut rest = text;
    while !rest.is_empty() {
        let mut end = rest.len().min(max);
        while !rest.is_char_boundary(end) {
            end -= 1;
        }
        let (piece, tail) = rest.split_at(end);
        pieces.push(piece);
        rest = tail;
    }
    pieces
}

/// The id a query is registered under: FNV-1a (64-bit) of its JSON with sorted keys, so the
/// same query gets the same id in every client and run.
pub fn query_id(query: &Query) -> String {
    let text = query.to_json().to_string();
    let hash = text
        .bytes()
        .fold(0xcbf2_9ce4_8422_2325_u64, |hash, byte| (hash ^ u64::from(byte)).wrapping_mul(0x0000_0100_0000_01b3));
    format!("{hash:016x}")
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sync::protocol::CloseType;

    const NOW: i64 = 1_700_000_000_000;

    fn engine() -> SyncEngine {
        let mut engine = SyncEngine::new(Database::in_memory().unwrap(), EngineOptions::default()).unwrap();
        engine.set_server_url(Some("http://127.0.0.1:1".into()));
        engine.set_token(Some("token".into()));
        engine.connect();
        engine
    }

    fn ready(engine: &mut SyncEngine) {
        assert!(engine.dial(NOW).is_some());
        engine.opened(NOW);
        engine.received(&ServerMessage::Ready { client_id: "c1".into() }.to_frame(), NOW).unwrap();
    }

    /// The messages the engine sent since last asked.
    fn sent(engine: &mut SyncEngine) -> Vec<ClientMessage> {
        let frames = engine.take_output().into_iter().filter_map(|out| match out {
            Outgoing::Text(text) => Some(ClientMessage::parse(&text).unwrap()),
            Outgoing::Close { .. } => None,
        });
        frames.collect()
    }

    fn ack(engine: &mut SyncEngine) {
        let ack = ServerMessage::ChangesAck { timestamp: Timestamp::new(1, 0, "server") };
        engine.received(&ack.to_frame(), NOW).unwrap();
    }

    fn reject(engine: &mut SyncEngine) {
        let error = WireError::new("WritePermissionError", "denied", 401);
        let frame = ServerMessage::Error { message_type: Some("CHANGES".into()), error, metadata: None };
        engine.received(&frame.to_frame(), NOW).unwrap();
    }

    fn insert(engine: &mut SyncEngine, doc: Json) -> String {
        engine.commit(None, |tx| tx.insert("todos", doc)).unwrap().tx_id.unwrap()
    }

    fn update(engine: &mut SyncEngine, id: &str, patch: Json) -> String {
        engine.commit(None, |tx| tx.update("todos", id, patch)).unwrap().tx_id.unwrap()
    }

    fn todo(engine: &SyncEngine, id: &str) -> Option<Json> {
        engine.db.fetch_by_id("todos", id).unwrap()
    }

    fn entity_data(engine: &mut SyncEngine, sets: Json, deletes: Json) {
        let changes = crate::Changes::from_json(&json!({"todos": {"sets": sets, "deletes": deletes}})).unwrap();
        let frame =
            ServerMessage::EntityData { changes, timestamp: Timestamp::new(5, 0, "server"), for_queries: vec![] };
        engine.received(&frame.to_frame(), NOW).unwrap();
    }

    #[test]
    fn writes_made_offline_go_out_in_commit_order_once_ready() {
        let mut engine = engine();
        let first = insert(&mut engine, json!({"id": "a", "text": "one"}));
        update(&mut engine, "a", json!({"text": "two"}));
        assert!(sent(&mut engine).is_empty(), "nothing goes out before READY");
        ready(&mut engine);
        let changes: Vec<Json> = sent(&mut engine)
            .into_iter()
            .map(|m| match m {
                ClientMessage::Changes { changes } => changes.to_json(),
                other => panic!("expected CHANGES, got {other:?}"),
            })
            .collect();
        assert_eq!(
            changes,
            vec![
                json!({"todos": {"sets": {"a": {"id": "a", "text": "one"}}, "deletes": []}}),
                json!({"todos": {"sets": {"a": {"text": "two"}}, "deletes": []}}),
            ]
        );
        ack(&mut engine);
        assert_eq!(engine.outbox.len(), 1);
        assert!(engine.take_events().contains(&ClientEvent::WriteAcked { tx_id: first }));
    }

    #[test]
    fn a_rejected_transaction_is_rolled_back_and_the_next_still_lands() {
        let mut engine = engine();
        ready(&mut engine);
        insert(&mut engine, json!({"id": "a", "text": "one"}));
        let denied = update(&mut engine, "a", json!({"text": "denied"}));
        insert(&mut engine, json!({"id": "b", "text": "later"}));
        assert_eq!(sent(&mut engine).len(), 3, "transactions are pipelined");
        ack(&mut engine);
        reject(&mut engine);
        assert_eq!(todo(&engine, "a").unwrap()["text"], "one", "the refused update is rolled back");
        assert!(engine.take_events().iter().any(|e| matches!(e,
            ClientEvent::WriteRejected { tx_id, error } if *tx_id == denied && error.name == "WritePermissionError")));
        ack(&mut engine);
        assert_eq!(engine.outbox.len(), 0);
        assert_eq!(todo(&engine, "b").unwrap()["text"], "later");
    }

    #[test]
    fn a_rejected_insert_disappears_and_later_edits_of_others_stay() {
        let mut engine = engine();
        ready(&mut engine);
        entity_data(&mut engine, json!([["a", {"id": "a", "text": "server", "n": 1}]]), json!([]));
        update(&mut engine, "a", json!({"text": "mine"}));
        insert(&mut engine, json!({"id": "b", "text": "new"}));
        update(&mut engine, "a", json!({"n": 2}));
        sent(&mut engine);
        reject(&mut engine); // the first update of a
        reject(&mut engine); // the insert of b
        assert_eq!(todo(&engine, "a").unwrap(), json!({"id": "a", "text": "server", "n": 2}));
        assert_eq!(todo(&engine, "b"), None);
    }

    #[test]
    fn server_data_under_a_pending_write_keeps_the_optimistic_state() {
        let mut engine = engine();
        ready(&mut engine);
        entity_data(&mut engine, json!([["a", {"id": "a", "text": "server", "n": 1}]]), json!([]));
        update(&mut engine, "a", json!({"text": "mine"}));
        entity_data(&mut engine, json!([["a", {"id": "a", "text": "theirs", "n": 2}]]), json!([]));
        assert_eq!(todo(&engine, "a").unwrap(), json!({"id": "a", "text": "mine", "n": 2}));
        // A delete from the server under a pending update: the update finds nothing to update.
        entity_data(&mut engine, json!([]), json!(["a"]));
        assert_eq!(todo(&engine, "a"), None);
        ack(&mut engine);
        entity_data(&mut engine, json!([["a", {"id": "a", "text": "back", "n": 3}]]), json!([]));
        assert_eq!(todo(&engine, "a").unwrap()["text"], "back", "with nothing pending the server's data shows");
    }

    #[test]
    fn the_outbox_survives_reopening_the_database() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("client.db");
        {
            let db = Database::open(&path).unwrap();
            let mut engine = SyncEngine::new(db, EngineOptions::default()).unwrap();
            insert(&mut engine, json!({"id": "a", "text": "kept"}));
        }
        let mut engine = SyncEngine::new(Database::open(&path).unwrap(), EngineOptions::default()).unwrap();
        assert_eq!(engine.outbox.len(), 1);
        engine.set_server_url(Some("http://127.0.0.1:1".into()));
        engine.set_token(Some("token".into()));
        engine.connect();
        ready(&mut engine);
        assert!(matches!(&sent(&mut engine)[..], [ClientMessage::Changes { .. }]));
    }

    #[test]
    fn a_close_that_says_not_to_retry_is_one_session_error_and_no_redial() {
        let mut engine = engine();
        ready(&mut engine);
        let close = ServerMessage::Close {
            close_type: Some(CloseType::TokenExpired),
            name: "TOKEN_EXPIRED".into(),
            retry: false,
            message: None,
        };
        engine.received(&close.to_frame(), NOW).unwrap();
        engine.closed(Some(r#"{"type":"TOKEN_EXPIRED","retry":false}"#), NOW);
        let errors: Vec<_> =
            engine.take_events().into_iter().filter(|e| matches!(e, ClientEvent::SessionError { .. })).collect();
        assert_eq!(errors, vec![ClientEvent::SessionError { reason: "TOKEN_EXPIRED".into(), message: None }]);
        assert_eq!(engine.dial(NOW + 3_600_000), None);
        assert_eq!(engine.next_deadline(), None);
    }

    #[test]
    fn a_ready_connection_pings_every_45_seconds() {
        let mut engine = engine();
        ready(&mut engine);
        sent(&mut engine);
        assert_eq!(engine.next_deadline(), Some(NOW + PING_INTERVAL_MS));
        assert!(engine.tick(NOW + PING_INTERVAL_MS - 1).is_empty());
        assert!(sent(&mut engine).is_empty(), "not before the interval");
        engine.tick(NOW + PING_INTERVAL_MS);
        assert!(matches!(&sent(&mut engine)[..], [ClientMessage::Ping { .. }]));
        assert_eq!(engine.next_deadline(), Some(NOW + 2 * PING_INTERVAL_MS));
        engine.closed(None, NOW + PING_INTERVAL_MS);
        engine.tick(NOW + 10 * PING_INTERVAL_MS);
        assert!(sent(&mut engine).is_empty(), "no pings without a connection");
    }

    #[test]
    fn a_refresh_is_asked_for_when_due() {
        let mut engine = engine();
        engine.set_refresh_at(Some(NOW + 1000));
        assert_eq!(engine.tick(NOW + 999), vec![]);
        assert_eq!(engine.tick(NOW + 1000), vec![Due::RefreshToken]);
        assert_eq!(engine.tick(NOW + 5000), vec![], "once");
    }

    #[test]
    fn frames_from_a_socket_disconnected_meanwhile_are_ignored() {
        let mut engine = engine();
        assert!(engine.dial(NOW).is_some());
        engine.disconnect(); // while the socket was being opened
        assert!(!engine.opened(NOW), "the transport closes it");
        engine.received(&ServerMessage::Ready { client_id: "late".into() }.to_frame(), NOW).unwrap();
        assert!(!engine.is_ready() && engine.client_id().is_none());
        engine.connect();
        assert!(engine.dial(NOW).is_some(), "a new connection can be dialled");
    }

    #[test]
    fn reconnects_back_off_with_jitter_up_to_five_minutes() {
        let mut engine = engine();
        let mut now = NOW;
        let mut delays = Vec::new();
        for _ in 0..15 {
            assert!(engine.dial(now).is_some());
            engine.closed(None, now);
            let at = engine.next_deadline().unwrap();
            assert_eq!(engine.dial(at - 1), None, "no dial before the backoff ends");
            delays.push(at - now);
            now = at;
        }
        assert!((125..=250).contains(&delays[0]), "{delays:?}");
        assert!((250..=500).contains(&delays[1]), "{delays:?}");
        assert!(delays.iter().all(|d| *d <= MAX_BACKOFF_MS), "{delays:?}");
        assert!(delays[14] >= MAX_BACKOFF_MS / 2, "{delays:?}");
        ready_after(&mut engine, now);
        engine.closed(None, now);
        assert!(engine.next_deadline().unwrap() - now <= FIRST_BACKOFF_MS, "READY resets the backoff");
    }

    fn ready_after(engine: &mut SyncEngine, now: i64) {
        assert!(engine.dial(now).is_some());
        engine.opened(now);
        engine.received(&ServerMessage::Ready { client_id: "c2".into() }.to_frame(), now).unwrap();
    }

    #[test]
    fn a_query_is_registered_once_for_all_its_users_and_resumes_from_its_checkpoint() {
        let mut engine = engine();
        let query = Query::new("todos");
        let id = query_id(&query);
        engine.add_query_user(&id, &query).unwrap();
        engine.add_query_user(&id, &query).unwrap();
        ready(&mut engine);
        assert!(matches!(&sent(&mut engine)[..], [ClientMessage::ConnectQuery { state: None, .. }]));
        let changes = crate::Changes::from_json(&json!({"todos": {"sets": [["a", {"id": "a"}]]}})).unwrap();
        let data = ServerMessage::EntityData {
            changes,
            timestamp: Timestamp::new(9, 0, "server"),
            for_queries: vec![id.clone()],
        };
        engine.received(&data.to_frame(), NOW).unwrap();
        assert!(engine.is_fulfilled(&id));
        engine.remove_query_user(&id);
        assert!(sent(&mut engine).is_empty(), "one user is left");
        engine.closed(None, NOW);
        ready_after(&mut engine, NOW + 1000);
        match &sent(&mut engine)[..] {
            [ClientMessage::ConnectQuery { state: Some(state), .. }] => {
                assert_eq!(state.timestamp, Timestamp::new(9, 0, "server"));
                assert_eq!(state.entity_ids, vec![("todos".to_owned(), vec!["a".to_owned()])]);
            }
            other => panic!("expected a resuming CONNECT_QUERY, got {other:?}"),
        }
        engine.remove_query_user(&id);
        assert!(matches!(&sent(&mut engine)[..], [ClientMessage::DisconnectQuery { .. }]));
    }

    #[test]
    fn a_resuming_query_names_the_included_entities_it_holds_too() {
        // The server reports an included project deleted meanwhile only if it is named.
        let include = json!({"collectionName": "todos", "include": {"project": null}});
        // So is a project the query's own `exists` filter matched.
        let exists = json!({"collectionName": "todos", "where": [{"exists": {"collectionName": "projects", "where": [["id", "=", "$1.project_id"]]}}]});
        for query in [include, exists] {
            a_resuming_query_names(Query::from_json(&query).unwrap());
        }
    }

    fn a_resuming_query_names(query: Query) {
        let schema = crate::Schema::from_json(&json!({"collections": {
            "todos": {"schema": {"type": "record", "properties": {"id": {"type": "string"}, "project_id": {"type": "string"}}},
                      "relationships": {"project": {"cardinality": "one",
                          "query": {"collectionName": "projects", "where": [["id", "=", "$1.project_id"]]}}}},
            "projects": {"schema": {"type": "record", "properties": {"id": {"type": "string"}}}}
        }}))
        .unwrap();
        let db = Database::builder().schema(schema).open_in_memory().unwrap();
        let mut engine = SyncEngine::new(db, EngineOptions::default()).unwrap();
        engine.set_server_url(Some("http://127.0.0.1:1".into()));
        engine.set_token(Some("token".into()));
        engine.connect();
        let id = query_id(&query);
        engine.add_query_user(&id, &query).unwrap();
        ready(&mut engine);
        sent(&mut engine);
        let changes = crate::Changes::from_json(&json!({
            "todos": {"sets": [["t1", {"id": "t1", "project_id": "p1"}], ["t2", {"id": "t2", "project_id": "p1"}]]},
            "projects": {"sets": [["p1", {"id": "p1"}]]}
        }))
        .unwrap();
        let data = ServerMessage::EntityData { changes, timestamp: Timestamp::new(9, 0, "s"), for_queries: vec![id] };
        engine.received(&data.to_frame(), NOW).unwrap();
        engine.closed(None, NOW);
        ready_after(&mut engine, NOW + 1000);
        match &sent(&mut engine)[..] {
            [ClientMessage::ConnectQuery { state: Some(state), .. }] => {
                let expected = vec![
                    ("projects".to_owned(), vec!["p1".to_owned()]),
                    ("todos".to_owned(), vec!["t1".to_owned(), "t2".to_owned()]),
                ];
                assert_eq!(state.entity_ids, expected);
            }
            other => panic!("expected a resuming CONNECT_QUERY of {query:?}, got {other:?}"),
        }
    }

    #[test]
    fn server_urls_become_websocket_urls() {
        assert_eq!(
            websocket_url("http://127.0.0.1:6543", "a.b-c"),
            "ws://127.0.0.1:6543/?sync-schema=false&token=a.b-c"
        );
        assert_eq!(
            websocket_url("https://db.example.com/sync/", "t"),
            "wss://db.example.com/sync?sync-schema=false&token=t"
        );
        assert_eq!(websocket_url("h:1", "a+b"), "ws://h:1/?sync-schema=false&token=a%2Bb");
    }

    #[test]
    fn long_frames_split_on_character_boundaries() {
        let text = "aé".repeat(10);
        let pieces = split_at_char_boundaries(&text, 4);
        assert_eq!(pieces.concat(), text);
        assert!(pieces.iter().all(|p| p.len() <= 4));
    }

    #[test]
    fn query_ids_are_stable_and_differ_by_query() {
        let a = Query::new("todos").filter("done", "=", false);
        assert_eq!(query_id(&a), query_id(&a.clone()));
        assert_ne!(query_id(&a), query_id(&Query::new("todos")));
    }
}
