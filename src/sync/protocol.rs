//! Triplit 1.x's sync protocol on the wire: messages in both directions, the SuperJSON
//! envelope around changes, and Triplit's error and close payloads. Pure data and parsing, so
//! a client engine can use it as well as the server.

use serde::ser::{SerializeMap, Serializer};
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value as Json, json};

use crate::error::Error;
use crate::store::{Changes, CollectionChanges, Timestamp};

/// A message from a client.
#[derive(Debug, Clone, PartialEq)]
pub enum ClientMessage {
    /// Subscribe query `id` (the client's hash of it), resuming from `state` if given.
    ConnectQuery {
        id: String,
        params: Json,
        state: Option<Checkpoint>,
    },
    DisconnectQuery {
        id: String,
    },
    /// Writes to apply in one transaction (encoded form).
    Changes {
        changes: Changes,
    },
    /// One piece of a message too large for one frame.
    Chunk {
        data: String,
        total: usize,
        index: usize,
        id: String,
    },
    UpdateToken {
        token: String,
    },
    SchemaResponse {
        schema: Option<Json>,
    },
    Ping {
        client_timestamp: Option<Json>,
    },
}

/// A message from the server: what a client engine receives.
#[derive(Debug, Clone, PartialEq)]
pub enum ServerMessage {
    /// The connection is accepted; `client_id` names it for `POST /update-token`.
    Ready {
        client_id: String,
    },
    /// The server asks for the client's schema (its hash was not known compatible).
    SchemaRequest,
    /// Entities for the queries `for_queries` (encoded form), and the checkpoint they bring
    /// the client to.
    EntityData {
        changes: Changes,
        timestamp: Timestamp,
        for_queries: Vec<String>,
    },
    /// A `CHANGES` transaction was committed, stamped `timestamp`.
    ChangesAck {
        timestamp: Timestamp,
    },
    /// A message was refused (`message_type`: which), or a query failed.
    Error {
        message_type: Option<String>,
        error: WireError,
        metadata: Option<Json>,
    },
    /// The server ends the connection; `retry` says whether reconnecting may succeed.
    /// `close_type` is `None` for a type this version does not know.
    Close {
        close_type: Option<CloseType>,
        name: String,
        retry: bool,
        message: Option<String>,
    },
    Pong {
        client_timestamp: Option<Json>,
        server_timestamp: Option<Json>,
    },
}

impl ServerMessage {
    /// Parses one text frame from a server. Nothing in it is trusted: a wrong shape is a
    /// [`FrameError`], never a panic.
    pub fn parse(frame: &str) -> Result<ServerMessage, FrameError> {
        match parse_entity_data(frame) {
            Some(message) => Ok(message),
            None => Self::parse_any(frame),
        }
    }

    /// Any frame, through a JSON tree of it.
    fn parse_any(frame: &str) -> Result<ServerMessage, FrameError> {
        let (message_type, mut payload) = envelope(frame)?;
        // Taken out, not copied: an initial sync's changes are megabytes.
        let changes = payload.get_mut("changes").map(Json::take);
        let (message_type, payload) = (message_type.as_str(), &payload);
        let bad = |message: String| bad_payload(message_type, message);
        let text = |key: &str| payload.get(key).and_then(Json::as_str).map(str::to_owned);
        let timestamp =
            || Timestamp::from_json(payload.get("timestamp").unwrap_or(&Json::Null)).map_err(|e| bad(e.to_string()));
        Ok(match message_type {
            "READY" => ServerMessage::Ready {
                client_id: text("clientId").ok_or_else(|| bad("READY: 'clientId' must be a string".into()))?,
            },
            "SCHEMA_REQUEST" => ServerMessage::SchemaRequest,
            "ENTITY_DATA" => {
                let changes = changes.ok_or_else(|| bad("ENTITY_DATA: 'changes' is missing".into()))?;
                let for_queries = payload
                    .get("forQueries")
                    .and_then(Json::as_array)
                    .and_then(|ids| ids.iter().map(|id| id.as_str().map(str::to_owned)).collect::<Option<Vec<_>>>())
                    .ok_or_else(|| bad("ENTITY_DATA: 'forQueries' must be an array of query ids".into()))?;
                ServerMessage::EntityData {
                    changes: decode_changes(changes).map_err(|e| bad(e.to_string()))?,
                    timestamp: timestamp()?,
                    for_queries,
                }
            }
            "CHANGES_ACK" => ServerMessage::ChangesAck { timestamp: timestamp()? },
            "ERROR" => ServerMessage::Error {
                message_type: text("messageType"),
                error: WireError::from_json(payload.get("error").unwrap_or(&Json::Null))
                    .ok_or_else(|| bad("ERROR: 'error' must be an error object with a name".into()))?,
                metadata: payload.get("metadata").filter(|m| !m.is_null()).cloned(),
            },
            "CLOSE" => {
                let name = text("type").ok_or_else(|| bad("CLOSE: 'type' must be a string".into()))?;
                ServerMessage::Close {
                    close_type: CloseType::from_name(&name),
                    retry: payload.get("retry").and_then(Json::as_bool).unwrap_or(false),
                    message: text("message"),
                    name,
                }
            }
            "PONG" => ServerMessage::Pong {
                client_timestamp: payload.get("clientTimestamp").filter(|t| !t.is_null()).cloned(),
                server_timestamp: payload.get("serverTimestamp").filter(|t| !t.is_null()).cloned(),
            },
            other => return Err(FrameError::UnknownType(other.to_owned())),
        })
    }

    /// The message as a frame (what the server sends).
    pub fn to_frame(&self) -> String {
        let (message_type, payload) = match self {
            ServerMessage::Ready { client_id } => ("READY", json!({"clientId": client_id})),
            ServerMessage::SchemaRequest => ("SCHEMA_REQUEST", json!({})),
            ServerMessage::EntityData { changes, timestamp, for_queries } => {
                return entity_data_frame(changes, timestamp, for_queries);
            }
            ServerMessage::ChangesAck { timestamp } => ("CHANGES_ACK", json!({"timestamp": timestamp.to_json()})),
            ServerMessage::Error { message_type, error, metadata } => {
                let mut payload = Map::new();
                if let Some(message_type) = message_type {
                    payload.insert("messageType".into(), json!(message_type));
                }
                payload.insert("error".into(), error.to_json());
                if let Some(metadata) = metadata {
                    payload.insert("metadata".into(), metadata.clone());
                }
                ("ERROR", Json::Object(payload))
            }
            ServerMessage::Close { name, retry, message, .. } => {
                let mut payload = json!({"type": name, "retry": retry});
                if let Some(message) = message {
                    payload["message"] = json!(message);
                }
                ("CLOSE", payload)
            }
            ServerMessage::Pong { client_timestamp, server_timestamp } => {
                let mut payload = Map::new();
                for (key, value) in [("clientTimestamp", client_timestamp), ("serverTimestamp", server_timestamp)] {
                    if let Some(value) = value {
                        payload.insert(key.into(), value.clone());
                    }
                }
                ("PONG", Json::Object(payload))
            }
        };
        frame(message_type, payload)
    }
}

/// Where a client's cache stands for one query: the server timestamp of the last data it
/// received, and the ids it holds.
#[derive(Debug, Clone, PartialEq)]
pub struct Checkpoint {
    pub timestamp: Timestamp,
    pub entity_ids: Vec<(String, Vec<String>)>,
}

/// Why a frame could not be taken as a message.
#[derive(Debug, Clone, PartialEq)]
pub enum FrameError {
    /// Not JSON, or not `{type, payload}`: Triplit's `MalformedMessagePayloadError`.
    Malformed,
    /// A type Triplit does not know.
    UnknownType(String),
    /// A known type whose payload is wrong.
    BadPayload { message_type: String, error: WireError },
}

impl ClientMessage {
    /// Parses one text frame.
    pub fn parse(frame: &str) -> Result<ClientMessage, FrameError> {
        match parse_changes(frame) {
            Some(changes) => Ok(ClientMessage::Changes { changes }),
            None => Self::parse_any(frame),
        }
    }

    /// Any frame, through a JSON tree of it.
    fn parse_any(frame: &str) -> Result<ClientMessage, FrameError> {
        let (message_type, mut payload) = envelope(frame)?;
        let changes = payload.get_mut("changes").map(Json::take);
        let (message_type, payload) = (message_type.as_str(), &payload);
        let bad = |message: String| bad_payload(message_type, message);
        let text = |key: &str| -> Result<String, FrameError> {
            payload
                .get(key)
                .and_then(Json::as_str)
                .map(str::to_owned)
                .ok_or_else(|| bad(format!("{message_type}: '{key}' must be a string")))
        };
        Ok(match message_type {
            "CONNECT_QUERY" => {
                let params = payload.get("params").filter(|p| p.is_object()).cloned();
                let params = params.ok_or_else(|| bad("CONNECT_QUERY: 'params' must be a query object".into()))?;
                let state = match payload.get("state") {
                    None | Some(Json::Null) => None,
                    Some(state) => Some(Checkpoint::from_json(state).map_err(|e| bad(e.to_string()))?),
                };
                ClientMessage::ConnectQuery { id: text("id")?, params, state }
            }
            "DISCONNECT_QUERY" => ClientMessage::DisconnectQuery { id: text("id")? },
            "CHANGES" => {
                let changes = changes.ok_or_else(|| bad("CHANGES: 'changes' is missing".into()))?;
                ClientMessage::Changes { changes: decode_changes(changes).map_err(|e| bad(e.to_string()))? }
            }
            "CHUNK" => {
                let count = |key: &str| {
                    payload
                        .get(key)
                        .and_then(Json::as_u64)
                        .map(|n| n as usize)
                        .ok_or_else(|| bad(format!("CHUNK: '{key}' must be a non-negative integer")))
                };
                ClientMessage::Chunk {
                    data: text("data")?,
                    total: count("total")?,
                    index: count("index")?,
                    id: text("id")?,
                }
            }
            "UPDATE_TOKEN" => ClientMessage::UpdateToken { token: text("token")? },
            "SCHEMA_RESPONSE" => {
                ClientMessage::SchemaResponse { schema: payload.get("schema").filter(|s| !s.is_null()).cloned() }
            }
            "PING" => ClientMessage::Ping { client_timestamp: payload.get("clientTimestamp").cloned() },
            other => return Err(FrameError::UnknownType(other.to_owned())),
        })
    }

    /// The message as a frame (what a client sends).
    pub fn to_frame(&self) -> String {
        let (message_type, payload) = match self {
            ClientMessage::ConnectQuery { id, params, state } => {
                let mut payload = json!({"id": id, "params": params});
                if let Some(state) = state {
                    payload["state"] = state.to_json();
                }
                ("CONNECT_QUERY", payload)
            }
            ClientMessage::DisconnectQuery { id } => ("DISCONNECT_QUERY", json!({"id": id})),
            ClientMessage::Changes { changes } => return changes_frame(changes),
            ClientMessage::Chunk { data, total, index, id } => {
                ("CHUNK", json!({"data": data, "total": total, "index": index, "id": id}))
            }
            ClientMessage::UpdateToken { token } => ("UPDATE_TOKEN", json!({"token": token})),
            ClientMessage::SchemaResponse { schema } => ("SCHEMA_RESPONSE", json!({"schema": schema})),
            ClientMessage::Ping { client_timestamp } => ("PING", json!({"clientTimestamp": client_timestamp})),
        };
        frame(message_type, payload)
    }
}

impl Checkpoint {
    fn from_json(json: &Json) -> crate::Result<Self> {
        let timestamp = Timestamp::from_json(json.get("timestamp").unwrap_or(&Json::Null))?;
        let mut entity_ids = Vec::new();
        if let Some(collections) = json.get("entityIds").and_then(Json::as_object) {
            for (collection, ids) in collections {
                let ids = ids
                    .as_array()
                    .and_then(|ids| ids.iter().map(|id| id.as_str().map(str::to_owned)).collect::<Option<Vec<_>>>())
                    .ok_or_else(|| Error::invalid_json("state.entityIds", "expected arrays of ids"))?;
                entity_ids.push((collection.clone(), ids));
            }
        }
        Ok(Checkpoint { timestamp, entity_ids })
    }

    fn to_json(&self) -> Json {
        let ids: Map<String, Json> = self.entity_ids.iter().map(|(c, ids)| (c.clone(), json!(ids))).collect();
        json!({"timestamp": self.timestamp.to_json(), "entityIds": ids})
    }
}

/// A frame's `{type, payload}` (a missing payload reads as `{}`).
/// The frames that carry changes, in the form clients and servers send them (the SuperJSON
/// envelope), are read straight into their changes: they are megabytes (an initial sync, a
/// large transaction), and a JSON tree of all of it first cost a third of the time and
/// memory. Anything else, or anything read differently here, is `None`, left to the general
/// parser (which also explains what is wrong with a bad frame).
#[derive(Deserialize)]
struct ChangesFrame<P> {
    #[serde(rename = "type")]
    message_type: String,
    payload: P,
}

/// Exactly `{json}` or `{json, meta}`: what `decode_changes` reads as an envelope too.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Enveloped {
    json: Changes,
    #[serde(default, rename = "meta")]
    _meta: Option<serde::de::IgnoredAny>,
}

/// A frame of `message_type` read straight into `P` (see [`ChangesFrame`]).
fn parse_straight<P: serde::de::DeserializeOwned>(frame: &str, message_type: &str) -> Option<P> {
    // Cheap to rule out, and most frames are something else.
    if !frame.contains(&format!("\"{message_type}\"")) {
        return None;
    }
    let parsed: ChangesFrame<P> = serde_json::from_str(frame).ok()?;
    (parsed.message_type == message_type).then_some(parsed.payload)
}

fn parse_entity_data(frame: &str) -> Option<ServerMessage> {
    #[derive(Deserialize)]
    #[serde(rename_all = "camelCase")]
    struct Payload {
        changes: Enveloped,
        timestamp: Json,
        for_queries: Vec<String>,
    }
    let payload: Payload = parse_straight(frame, "ENTITY_DATA")?;
    Some(ServerMessage::EntityData {
        changes: payload.changes.json,
        timestamp: Timestamp::from_json(&payload.timestamp).ok()?,
        for_queries: payload.for_queries,
    })
}

fn parse_changes(frame: &str) -> Option<Changes> {
    #[derive(Deserialize)]
    struct Payload {
        changes: Enveloped,
    }
    parse_straight::<Payload>(frame, "CHANGES").map(|payload| payload.changes.json)
}

fn envelope(frame: &str) -> Result<(String, Json), FrameError> {
    let mut json: Json = serde_json::from_str(frame).map_err(|_| FrameError::Malformed)?;
    let message_type = json.get("type").and_then(Json::as_str).ok_or(FrameError::Malformed)?.to_owned();
    let payload = json.get_mut("payload").map(Json::take).unwrap_or_else(|| Json::Object(Map::new()));
    Ok((message_type, payload))
}

/// Triplit's answer to a known message type with a wrong payload.
fn bad_payload(message_type: &str, problem: String) -> FrameError {
    FrameError::BadPayload {
        message_type: message_type.to_owned(),
        error: WireError::new("MalformedMessagePayloadError", "Messages payloads must be valid JSON.", 400)
            .with_context(problem),
    }
}

/// `{type, payload}` as text.
pub fn frame(message_type: &str, payload: Json) -> String {
    frame_of(message_type, &payload)
}

/// `{type, payload}` as text, the payload serialized where it lies.
fn frame_of(message_type: &str, payload: &impl Serialize) -> String {
    #[derive(Serialize)]
    struct Frame<'a, P> {
        #[serde(rename = "type")]
        message_type: &'a str,
        payload: &'a P,
    }
    serde_json::to_string(&Frame { message_type, payload }).expect("frames are JSON")
}

/// An `ENTITY_DATA` frame, written straight from the entities (see [`SuperJson`]): a server
/// sends the ones its live queries hold, shared, without a copy.
pub(crate) fn entity_data_frame<E: Serialize>(
    changes: &Changes<E>,
    timestamp: &Timestamp,
    for_queries: &[String],
) -> String {
    #[derive(Serialize)]
    #[serde(rename_all = "camelCase")]
    struct Payload<'a, E> {
        changes: SuperJson<'a, E>,
        timestamp: Json,
        for_queries: &'a [String],
    }
    let payload = Payload { changes: SuperJson(changes), timestamp: timestamp.to_json(), for_queries };
    frame_of("ENTITY_DATA", &payload)
}

/// A client's `CHANGES` frame, written from the changes without copying them (the client's
/// outbox sends its entries by reference).
pub fn changes_frame(changes: &Changes) -> String {
    #[derive(Serialize)]
    struct Payload<'a> {
        changes: SuperJson<'a>,
    }
    frame_of("CHANGES", &Payload { changes: SuperJson(changes) })
}

/// Changes in the SuperJSON envelope Triplit sends (`sets` as a Map of `[id, entity]` pairs,
/// `deletes` as a Set); a collection without changes is named with empty lists.
pub fn encode_changes(changes: &Changes) -> Json {
    serde_json::to_value(SuperJson(changes)).expect("changes are JSON")
}

/// [`encode_changes`] as a serializer writes it: straight from the entities, without a copy
/// of them (a server's initial sync is megabytes of entities).
pub struct SuperJson<'a, E = Map<String, Json>>(pub &'a Changes<E>);

impl<E: Serialize> Serialize for SuperJson<'_, E> {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        struct Collections<'a, E>(&'a Changes<E>);
        struct Body<'a, E>(&'a CollectionChanges<E>);
        struct Pairs<'a, E>(&'a CollectionChanges<E>);
        struct Meta<'a, E>(&'a Changes<E>);
        impl<E: Serialize> Serialize for Collections<'_, E> {
            fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
                serializer.collect_map(self.0.collections.iter().map(|(name, batch)| (name, Body(batch))))
            }
        }
        impl<E: Serialize> Serialize for Body<'_, E> {
            fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
                let mut body = serializer.serialize_map(Some(2))?;
                body.serialize_entry("sets", &Pairs(self.0))?;
                body.serialize_entry("deletes", &self.0.deletes)?;
                body.end()
            }
        }
        impl<E: Serialize> Serialize for Pairs<'_, E> {
            fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
                serializer.collect_seq(self.0.sets.iter())
            }
        }
        impl<E> Serialize for Meta<'_, E> {
            fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
                let paths = self.0.collections.keys().flat_map(|name| {
                    let path = superjson_escape(name);
                    [(format!("{path}.sets"), ["map"]), (format!("{path}.deletes"), ["set"])]
                });
                let mut meta = serializer.serialize_map(Some(2))?;
                meta.serialize_entry("values", &paths.collect::<std::collections::BTreeMap<_, _>>())?;
                meta.serialize_entry("v", &1)?;
                meta.end()
            }
        }
        let mut envelope = serializer.serialize_map(Some(2))?;
        envelope.serialize_entry("json", &Collections(self.0))?;
        envelope.serialize_entry("meta", &Meta(self.0))?;
        envelope.end()
    }
}

/// Reads changes from the SuperJSON envelope (or plain JSON, as the HTTP API also accepts).
pub fn decode_changes(mut json: Json) -> crate::Result<Changes> {
    let enveloped =
        json.get("json").is_some() && (json.get("meta").is_some() || json.as_object().is_some_and(|o| o.len() == 1));
    let plain = if enveloped { json["json"].take() } else { json };
    Changes::from_json_value(plain)
}

/// SuperJSON paths separate keys with `.`, so dots inside a key are escaped.
fn superjson_escape(key: &str) -> String {
    key.replace('\\', "\\\\").replace('.', "\\.")
}

/// Triplit's error payload: `{name, message, baseMessage, status, contextMessage}`.
#[derive(Debug, Clone, PartialEq)]
pub struct WireError {
    pub name: String,
    pub base_message: String,
    pub context: Option<String>,
    pub status: u16,
}

impl WireError {
    pub fn new(name: &str, base_message: impl Into<String>, status: u16) -> Self {
        WireError { name: name.to_owned(), base_message: base_message.into(), context: None, status }
    }

    pub fn with_context(mut self, context: impl Into<String>) -> Self {
        self.context = Some(context.into());
        self
    }

    pub fn with_status(mut self, status: u16) -> Self {
        self.status = status;
        self
    }

    /// Triplit's catch-all `TriplitError` with a context message.
    pub fn triplit(context: impl Into<String>) -> Self {
        WireError::new("TriplitError", "Triplit Error", 500).with_context(context)
    }

    /// An error payload as a server sends it (`{name, baseMessage?, message?, status?,
    /// contextMessage?}`); `None` without a name.
    pub fn from_json(json: &Json) -> Option<WireError> {
        let name = json.get("name")?.as_str()?;
        let text = |key: &str| json.get(key).and_then(Json::as_str).map(str::to_owned);
        let base = text("baseMessage").or_else(|| text("message")).unwrap_or_default();
        let status = json.get("status").and_then(Json::as_u64).and_then(|s| u16::try_from(s).ok()).unwrap_or(500);
        let error = WireError::new(name, base, status);
        Some(match text("contextMessage") {
            Some(context) => error.with_context(context),
            None => error,
        })
    }

    /// Triplit's `message`: the base message, and the context after ` | Context: `.
    pub fn message(&self) -> String {
        match &self.context {
            Some(context) => format!("{} | Context: {context}", self.base_message),
            None => self.base_message.clone(),
        }
    }

    pub fn to_json(&self) -> Json {
        let mut out = json!({
            "name": self.name, "message": self.message(), "baseMessage": self.base_message, "status": self.status
        });
        if let Some(context) = &self.context {
            out["contextMessage"] = json!(context);
        }
        out
    }
}

/// The fixed `baseMessage` Triplit gives an error name, for the names whose message never
/// varies: what was wrong in particular goes in `contextMessage`, as there.
fn triplit_base_message(name: &str) -> Option<&'static str> {
    Some(match name {
        "NoTokenProvidedError" => "No token provided.",
        "InvalidAuthenticationSchemeError" => "Must use Bearer authentication scheme.",
        "InvalidTokenSignatureError" => "The signature on your token could not be verified successfully.",
        "InvalidTokenPayloadError" => "The token payload is invalid.",
        "ServiceKeyRequiredError" => "Service token required.",
        "TokenVerificationError" => "Error verifying token.",
        "InvalidOperationError" => "You are attempting to perform an operation that is not valid.",
        "InvalidFilterError" => "Your query passed a filter that is invalid.",
        "InvalidOrderClauseError" => "An order clause has been determined to be invalid.",
        "InvalidWhereClauseError" => "A where clause has been determined to be invalid.",
        "InvalidSelectClauseError" => "The select clause of this query has been determined to be invalid.",
        "AfterClauseWithNoOrderError" => "The 'after' clause must be used after an 'order' clause.",
        _ => return None,
    })
}

impl From<&Error> for WireError {
    fn from(error: &Error) -> Self {
        let base = match error {
            Error::WritePermission { collection, id, operation, roles } => {
                let (verb, noun) = match operation.name() {
                    "insert" => ("insert", "insertion"),
                    "delete" => ("delete", "deletion"),
                    other => (other, "update"),
                };
                format!(
                    "'{verb}' permission for the collection '{collection}' prevented the {noun} of the entity with id '{id}'. The provided session roles were [{}].",
                    roles.join(", ")
                )
            }
            other => {
                // Our messages start with the error's name; Triplit's do not repeat it.
                let text = other.to_string();
                let name = other.name();
                text.strip_prefix(name).map(|rest| rest.trim_start_matches(':').trim().to_owned()).unwrap_or(text)
            }
        };
        match triplit_base_message(error.name()) {
            Some(fixed) if fixed != base => WireError::new(error.name(), fixed, error.status()).with_context(base),
            _ => WireError::new(error.name(), base, error.status()),
        }
    }
}

/// Why the server ends a connection (`CLOSE` then a socket close).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CloseType {
    Unauthorized,
    TokenExpired,
    RolesMismatch,
    SchemaMismatch,
    InternalError,
    /// Beyond Triplit: the token has as many connections open as the server allows.
    TooManyConnections,
    /// Beyond Triplit: the client did not read what it was sent (the backlog passed its limit).
    Backlog,
}

impl CloseType {
    const ALL: [CloseType; 7] = [
        CloseType::Unauthorized,
        CloseType::TokenExpired,
        CloseType::RolesMismatch,
        CloseType::SchemaMismatch,
        CloseType::InternalError,
        CloseType::TooManyConnections,
        CloseType::Backlog,
    ];

    /// The type a `CLOSE` names, if it is one this version knows.
    pub fn from_name(name: &str) -> Option<CloseType> {
        Self::ALL.into_iter().find(|close| close.as_str() == name)
    }

    pub fn as_str(self) -> &'static str {
        match self {
            CloseType::Unauthorized => "UNAUTHORIZED",
            CloseType::TokenExpired => "TOKEN_EXPIRED",
            CloseType::RolesMismatch => "ROLES_MISMATCH",
            CloseType::SchemaMismatch => "SCHEMA_MISMATCH",
            CloseType::InternalError => "INTERNAL_ERROR",
            CloseType::TooManyConnections => "TOO_MANY_CONNECTIONS",
            CloseType::Backlog => "BACKLOG_LIMIT",
        }
    }

    /// Whether the client should reconnect: not for Triplit's own reasons (the token or the
    /// schema must change first), but after a limit that a later attempt may be within.
    pub fn retry(self) -> bool {
        matches!(self, CloseType::TooManyConnections | CloseType::Backlog)
    }

    /// The WebSocket close code: 1011 for the server's own failures, 1008 (policy) otherwise.
    pub fn code(self) -> u16 {
        if self == CloseType::InternalError { 1011 } else { 1008 }
    }
}

/// What the engine hands the transport to send.
#[derive(Debug, Clone, PartialEq)]
pub enum Outgoing {
    Text(String),
    /// Close the socket (after the `CLOSE` message before it).
    Close {
        code: u16,
        reason: String,
    },
}

/// `CLOSE {type, retry, message}` and the socket close that follows it; the reason is
/// `{"type", "retry"}`, well under WebSocket's 123-byte limit.
pub fn close_frames(close: CloseType, message: Option<&str>) -> Vec<Outgoing> {
    let name = close.as_str().to_owned();
    let message = message.map(str::to_owned);
    let frame = ServerMessage::Close { close_type: Some(close), name, retry: close.retry(), message }.to_frame();
    let reason = json!({"type": close.as_str(), "retry": close.retry()}).to_string();
    vec![Outgoing::Text(frame), Outgoing::Close { code: close.code(), reason }]
}

/// `ERROR {messageType, error, metadata}`.
pub fn error_frame(message_type: Option<&str>, error: &WireError, metadata: Option<Json>) -> String {
    ServerMessage::Error { message_type: message_type.map(str::to_owned), error: error.clone(), metadata }.to_frame()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_the_frames_of_the_published_client() {
        let frame = r#"{"type":"CHANGES","payload":{"changes":{"json":{"todos":{"sets":[["a",{"id":"a","text":"x"}],["b",{"text":"y"}]],"deletes":["c"]}},"meta":{"values":{"todos.sets":["map"],"todos.deletes":["set"]},"v":1}}}}"#;
        let ClientMessage::Changes { changes } = ClientMessage::parse(frame).unwrap() else { panic!() };
        let todos = &changes.collections["todos"];
        assert_eq!(todos.sets["a"]["text"], "x");
        assert!(!todos.sets["b"].contains_key("id"), "an update is a partial");
        assert!(todos.deletes.contains("c"));
        let query = r#"{"type":"CONNECT_QUERY","payload":{"id":"q","params":{"collectionName":"todos"},"state":{"timestamp":[5,0,"server"],"entityIds":{"todos":["a"]}}}}"#;
        let ClientMessage::ConnectQuery { state: Some(state), .. } = ClientMessage::parse(query).unwrap() else {
            panic!()
        };
        assert_eq!(state.entity_ids, vec![("todos".to_owned(), vec!["a".to_owned()])]);
        assert_eq!(ClientMessage::parse("not json"), Err(FrameError::Malformed));
        assert_eq!(ClientMessage::parse(r#"{"type":"FOO","payload":{}}"#), Err(FrameError::UnknownType("FOO".into())));
    }

    #[test]
    fn entity_data_read_straight_reads_as_through_a_json_tree() {
        let entity = r#"{"id":"a","n":1.5,"big":12345678901234567890,"s":"\u00e9\n","o":{"x":null}}"#;
        let stamp = r#""timestamp":[5,0,"server"],"forQueries":["q"]"#;
        let frames = [
            format!(
                r#"{{"type":"ENTITY_DATA","payload":{{"changes":{{"json":{{"todos":{{"sets":[["a",{entity}]],"deletes":["c"]}}}},"meta":{{"v":1}}}},{stamp}}}}}"#
            ),
            format!(
                r#"{{"type":"ENTITY_DATA","payload":{{"changes":{{"json":{{"todos":{{"sets":{{"a":{entity}}}}}}}}},{stamp}}}}}"#
            ),
            // A collection named `json`, and an empty answer.
            format!(
                r#"{{"payload":{{"changes":{{"json":{{"json":{{"sets":[],"deletes":[]}}}},"meta":{{}}}},{stamp}}},"type":"ENTITY_DATA"}}"#
            ),
            format!(r#"{{"type":"ENTITY_DATA","payload":{{"changes":{{"json":{{}}}},{stamp}}}}}"#),
        ];
        for frame in &frames {
            let straight = parse_entity_data(frame).unwrap_or_else(|| panic!("read straight: {frame}"));
            assert_eq!(Ok(straight), ServerMessage::parse_any(frame), "{frame}");
        }
        // What the straight reader leaves to the general one: plain changes beside `json`,
        // other shapes, other types, broken entities.
        let left = [
            format!(r#"{{"type":"ENTITY_DATA","payload":{{"changes":{{"json":{{}},"todos":{{}}}},{stamp}}}}}"#),
            format!(
                r#"{{"type":"ENTITY_DATA","payload":{{"changes":{{"todos":{{"sets":[["a",{entity}]]}}}},{stamp}}}}}"#
            ),
            format!(
                r#"{{"type":"ENTITY_DATA","payload":{{"changes":{{"json":{{"todos":{{"sets":[["a",1]]}}}}}},{stamp}}}}}"#
            ),
            format!(
                r#"{{"type":"ENTITY_DATA","payload":{{"changes":{{"json":{{"todos":{{"sets":[["a",{{}},3]]}}}}}},{stamp}}}}}"#
            ),
            r#"{"type":"READY","payload":{"clientId":"ENTITY_DATA"}}"#.to_owned(),
        ];
        for frame in &left {
            assert!(parse_entity_data(frame).is_none(), "{frame}");
        }
        assert!(matches!(ServerMessage::parse(&left[0]), Ok(ServerMessage::EntityData { .. })), "plain changes");
        assert!(ServerMessage::parse(&left[2]).is_err(), "an entity must be an object");
    }

    #[test]
    fn changes_read_straight_read_as_through_a_json_tree() {
        let sets = r#"[["a",{"id":"a","n":2,"tags":{"x":true}}],["b",{"text":"y"}]]"#;
        let frames = [
            format!(
                r#"{{"type":"CHANGES","payload":{{"changes":{{"json":{{"todos":{{"sets":{sets},"deletes":["c"]}}}},"meta":{{}}}}}}}}"#
            ),
            format!(r#"{{"type":"CHANGES","payload":{{"changes":{{"json":{{"todos":{{"sets":{sets}}}}}}}}}}}"#),
        ];
        for frame in &frames {
            let straight = parse_changes(frame).unwrap_or_else(|| panic!("read straight: {frame}"));
            assert_eq!(Ok(ClientMessage::Changes { changes: straight }), ClientMessage::parse_any(frame), "{frame}");
        }
        let left = [
            format!(r#"{{"type":"CHANGES","payload":{{"changes":{{"todos":{{"sets":{sets}}}}}}}}}"#),
            r#"{"type":"CHANGES","payload":{"changes":{"json":{"todos":{"deletes":[1]}}}}}"#.to_owned(),
            r#"{"type":"CHANGES_ACK","payload":{"changes":{"json":{}}}}"#.to_owned(),
        ];
        for frame in &left {
            assert!(parse_changes(frame).is_none(), "{frame}");
        }
        assert!(matches!(ClientMessage::parse(&left[0]), Ok(ClientMessage::Changes { .. })), "plain changes");
        assert!(ClientMessage::parse(&left[1]).is_err(), "ids must be strings");
    }

    #[test]
    fn encodes_changes_as_superjson_and_back() {
        let mut changes = Changes::default();
        changes.set("todos", "a", json!({"id": "a"}).as_object().unwrap().clone());
        changes.delete("todos", "b");
        changes.collections.entry("notes".into()).or_default();
        let encoded = encode_changes(&changes);
        assert_eq!(encoded["meta"]["values"]["todos.sets"], json!(["map"]));
        assert_eq!(encoded["json"]["notes"], json!({"sets": [], "deletes": []}));
        assert_eq!(encoded["json"]["todos"]["sets"], json!([["a", {"id": "a"}]]));
        let decoded = decode_changes(encoded.clone()).unwrap();
        assert_eq!(decoded.collections["todos"], changes.collections["todos"]);
    }

    #[test]
    fn write_permission_errors_read_as_triplit_writes_them() {
        let error = Error::WritePermission {
            collection: "todos".into(),
            id: "x".into(),
            operation: crate::permissions::Operation::Insert,
            roles: vec!["user".into()],
        };
        let wire = WireError::from(&error);
        assert_eq!(
            wire.message(),
            "'insert' permission for the collection 'todos' prevented the insertion of the entity with id 'x'. The provided session roles were [user]."
        );
        assert_eq!(wire.status, 401);
    }
}
