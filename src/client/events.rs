//! What a client tells its application: the connection's status and events about the session
//! and about its transactions.

use serde_json::{Value as Json, json};

use crate::sync::protocol::WireError;

/// The connection's state, as `@triplit/client` names it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ConnectionStatus {
    /// No connection was attempted yet.
    Uninitialized,
    Connecting,
    Open,
    Closing,
    Closed,
}

impl ConnectionStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            ConnectionStatus::Uninitialized => "UNINITIALIZED",
            ConnectionStatus::Connecting => "CONNECTING",
            ConnectionStatus::Open => "OPEN",
            ConnectionStatus::Closing => "CLOSING",
            ConnectionStatus::Closed => "CLOSED",
        }
    }
}

/// One event, in the order it happened.
#[derive(Debug, Clone, PartialEq)]
pub enum ClientEvent {
    /// The connection's status changed.
    Connection(ConnectionStatus),
    /// The server ended the session for a reason reconnecting cannot fix (`UNAUTHORIZED`,
    /// `TOKEN_EXPIRED`, `ROLES_MISMATCH`, `SCHEMA_MISMATCH`, ...): the client stays
    /// disconnected until the application gives it a new token or connects again.
    SessionError { reason: String, message: Option<String> },
    /// The server refused a transaction; it was rolled back locally and left the outbox.
    WriteRejected { tx_id: String, error: WireError },
    /// The server committed a transaction.
    WriteAcked { tx_id: String },
    /// The server answered a subscribed query for the first time on this connection.
    QueryFulfilled { query_id: String },
    /// The server refused a subscribed query.
    QueryFailed { query_id: String, error: WireError },
}

impl ClientEvent {
    /// The JSON form the C ABI delivers: `{"type": "connection", "status": "OPEN"}`, ...
    pub fn to_json(&self) -> Json {
        match self {
            ClientEvent::Connection(status) => json!({"type": "connection", "status": status.as_str()}),
            ClientEvent::SessionError { reason, message } => {
                json!({"type": "session_error", "reason": reason, "message": message})
            }
            ClientEvent::WriteRejected { tx_id, error } => json!({
                "type": "write_rejected",
                "txId": tx_id,
                "error": {"name": error.name, "message": error.message(), "status": error.status},
            }),
            ClientEvent::WriteAcked { tx_id } => json!({"type": "write_acked", "txId": tx_id}),
            ClientEvent::QueryFulfilled { query_id } => json!({"type": "query_fulfilled", "queryId": query_id}),
            ClientEvent::QueryFailed { query_id, error } => json!({
                "type": "query_failed",
                "queryId": query_id,
                "error": {"name": error.name, "message": error.message(), "status": error.status},
            }),
        }
    }
}
