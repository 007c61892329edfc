//! The one error type of the crate.
//!
//! Every subsystem reports through [`Error`], so a caller (and later the C ABI, through one
//! status mapping) handles one type. Variants name *what* was wrong — the collection, the
//! attribute, the expected and the found type — because the person reading the message is
//! usually looking at a document or a schema file, not at our code.

use std::fmt;

/// Shorthand used throughout the crate.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Everything that can go wrong in triplite.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// Input that is not valid JSON, or JSON of the wrong overall shape.
    #[error("invalid JSON in {context}: {message}")]
    InvalidJson { context: String, message: String },

    /// A schema definition that cannot be accepted (naming rules, unknown types, bad defaults).
    #[error("invalid schema at {path}: {message}")]
    InvalidSchema { path: String, message: String },

    /// A document or change that does not fit the collection's schema.
    #[error("{collection}.{attribute}: expected {expected}, found {found}")]
    TypeMismatch { collection: String, attribute: String, expected: String, found: String },

    /// A required attribute is missing from an inserted document.
    #[error("{collection}.{attribute}: required attribute is missing")]
    MissingAttribute { collection: String, attribute: String },

    /// An attribute the collection's schema does not declare.
    #[error("{collection}.{attribute}: unknown attribute")]
    UnknownAttribute { collection: String, attribute: String },

    /// A collection the schema does not declare.
    #[error("unknown collection '{0}'")]
    UnknownCollection(String),

    /// An update or delete of an entity that does not exist (local API only; merges drop these).
    #[error("{collection}/{id}: entity not found")]
    NotFound { collection: String, id: String },

    /// A schema change that existing data or the old schema's guarantees forbid.
    #[error("schema change rejected: {0}")]
    IncompatibleSchema(Box<crate::schema::SchemaChange>),

    /// A query that cannot run: the message says which clause and path, and what was expected.
    #[error("{kind}: {message}")]
    Query { kind: crate::query::QueryErrorKind, message: String },

    /// A token that cannot be accepted, or a key configuration that cannot be used.
    #[error("{kind}: {message}")]
    Auth { kind: crate::auth::AuthErrorKind, message: String },

    /// A session's write that its roles' rules do not allow; nothing of the transaction is kept.
    #[error("WritePermissionError: {operation} of {collection}/{id} is not allowed for roles [{}]", roles.join(", "))]
    WritePermission { collection: String, id: String, operation: crate::permissions::Operation, roles: Vec<String> },

    /// An operation that is never valid, whatever the data: changing an entity's id.
    #[error("InvalidOperationError: {0}")]
    InvalidOperation(String),

    /// A request over one of the server's limits (queries per connection, …).
    #[error("LimitExceededError: {0}")]
    LimitExceeded(String),

    /// The SQLite backend failed.
    #[error("storage: {0}")]
    Storage(#[from] rusqlite::Error),

    /// Our own stored bytes could not be decoded (a damaged file, or one written by a newer version).
    #[error("corrupt storage: {0}")]
    Corrupt(String),

    /// A file or directory could not be used.
    #[error("i/o: {0}")]
    Io(#[from] std::io::Error),

    /// The sync client's session cannot take this call: Triplit's client errors
    /// (`NoActiveSessionError`, `SessionRolesMismatchError`, ...).
    #[error("{name}: {message}")]
    ClientSession { name: &'static str, message: String },

    /// The server could not be reached, or answered a client's request with a failure.
    #[error("NetworkError: {0}")]
    Network(String),
}

impl Error {
    /// The error name a Triplit server answers with (`{name, message, status}` bodies); the
    /// sync server issue checks the names that have no Triplit counterpart yet against the real
    /// server.
    pub fn name(&self) -> &'static str {
        match self {
            Error::InvalidJson { .. } => "InvalidJsonError",
            Error::InvalidSchema { .. } => "InvalidSchemaError",
            Error::TypeMismatch { .. } | Error::MissingAttribute { .. } | Error::UnknownAttribute { .. } => {
                "DBSerializationError"
            }
            Error::UnknownCollection(_) => "CollectionNotFoundError",
            Error::NotFound { .. } => "EntityNotFoundError",
            Error::IncompatibleSchema(_) => "SchemaCompatibilityError",
            Error::Query { kind, .. } => kind.name(),
            Error::Auth { kind, .. } => kind.name(),
            Error::WritePermission { .. } => "WritePermissionError",
            Error::InvalidOperation(_) => "InvalidOperationError",
            Error::LimitExceeded(_) => "LimitExceededError",
            Error::Storage(_) | Error::Corrupt(_) | Error::Io(_) => "TriplitError",
            Error::ClientSession { name, .. } => name,
            Error::Network(_) => "NetworkError",
        }
    }

    /// The HTTP status that goes with [`Error::name`].
    pub fn status(&self) -> u16 {
        match self {
            Error::Auth { kind, .. } => kind.status(),
            Error::WritePermission { .. } => 401,
            Error::NotFound { .. } => 404,
            Error::IncompatibleSchema(_) => 409,
            Error::LimitExceeded(_) => 429,
            Error::Storage(_) | Error::Corrupt(_) | Error::Io(_) => 500,
            Error::Network(_) => 503,
            _ => 400,
        }
    }

    pub(crate) fn invalid_json(context: impl Into<String>, message: impl fmt::Display) -> Self {
        Error::InvalidJson { context: context.into(), message: message.to_string() }
    }

    pub(crate) fn invalid_schema(path: impl Into<String>, message: impl Into<String>) -> Self {
        Error::InvalidSchema { path: path.into(), message: message.into() }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_and_statuses_follow_triplit() {
        let write = Error::WritePermission {
            collection: "todos".into(),
            id: "t1".into(),
            operation: crate::permissions::Operation::Insert,
            roles: vec!["user".into()],
        };
        assert_eq!((write.name(), write.status()), ("WritePermissionError", 401));
        let token = crate::auth::AuthErrorKind::InvalidPayload;
        let auth = Error::Auth { kind: token, message: String::new() };
        assert_eq!((auth.name(), auth.status()), ("InvalidTokenPayloadError", 400));
        let query = Error::Query { kind: crate::query::QueryErrorKind::InvalidOrder, message: String::new() };
        assert_eq!((query.name(), query.status()), ("InvalidOrderClauseError", 400));
        assert_eq!(Error::UnknownCollection("x".into()).status(), 400);
    }
}
