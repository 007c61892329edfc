//! Every bound the sync server puts on what one client can make it hold or do, with defaults
//! a public server can run with. The engine enforces them; the transport only reports bytes.

use crate::query::QueryLimits;

const MB: usize = 1024 * 1024;

/// Limits the server enforces.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Limits {
    /// The largest message (a frame, or chunks reassembled) and HTTP body, in bytes.
    pub max_message_bytes: usize,
    /// How many pieces one chunked message may declare.
    pub max_chunks_per_message: usize,
    /// How many chunked messages one connection may have in progress at once.
    pub max_chunked_messages: usize,
    /// How many queries one connection may have subscribed at once.
    pub max_queries_per_connection: usize,
    /// How many connections may be open with the same token at once (0: no limit). Apps that
    /// give every anonymous user one shared token should raise it.
    pub max_connections_per_token: usize,
    /// Data a connection owes its client (answers as text, pending entities as the memory
    /// they take) before a client that does not read is closed.
    pub max_pending_output_bytes: usize,
    /// What one query may cost, over HTTP and sync alike.
    pub query: QueryLimits,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            // Triplit's default `MAX_BODY_SIZE`.
            max_message_bytes: 100 * MB,
            max_chunks_per_message: 1_000,
            max_chunked_messages: 4,
            max_queries_per_connection: 500,
            max_connections_per_token: 1_000,
            max_pending_output_bytes: 64 * MB,
            query: QueryLimits::default(),
        }
    }
}

/// One configurable limit: its environment variable (also the name `--limit NAME=VALUE`
/// takes), its unit, and where it lives in [`Limits`].
pub struct Setting {
    pub name: &'static str,
    /// `MB` (values are whole megabytes) or `count`.
    pub unit: &'static str,
    pub about: &'static str,
    field: fn(&mut Limits) -> &mut usize,
}

impl Setting {
    /// The setting's value in `limits`, in its unit.
    pub fn value(&self, limits: &Limits) -> usize {
        let value = *(self.field)(&mut limits.clone());
        if self.unit == "MB" { value / MB } else { value }
    }
}

/// Every limit, by name.
pub const SETTINGS: &[Setting] = &[
    Setting {
        name: "MAX_BODY_SIZE",
        unit: "MB",
        about: "largest WebSocket message (chunks reassembled) or HTTP body",
        field: |l| &mut l.max_message_bytes,
    },
    Setting {
        name: "MAX_CHUNKS_PER_MESSAGE",
        unit: "count",
        about: "pieces one chunked message may declare",
        field: |l| &mut l.max_chunks_per_message,
    },
    Setting {
        name: "MAX_CHUNKED_MESSAGES",
        unit: "count",
        about: "chunked messages in progress per connection",
        field: |l| &mut l.max_chunked_messages,
    },
    Setting {
        name: "MAX_QUERIES_PER_CONNECTION",
        unit: "count",
        about: "queries one connection may subscribe",
        field: |l| &mut l.max_queries_per_connection,
    },
    Setting {
        name: "MAX_CONNECTIONS_PER_TOKEN",
        unit: "count",
        about: "open connections with the same token (0: unlimited)",
        field: |l| &mut l.max_connections_per_token,
    },
    Setting {
        name: "MAX_PENDING_OUTPUT",
        unit: "MB",
        about: "data owed to a client before one that does not read is closed",
        field: |l| &mut l.max_pending_output_bytes,
    },
    Setting {
        name: "MAX_FILTER_TERMS",
        unit: "count",
        about: "filter statements, groups and subqueries in one query",
        field: |l| &mut l.query.max_filter_terms,
    },
    Setting {
        name: "MAX_INCLUDE_DEPTH",
        unit: "count",
        about: "nesting of includes and subqueries in one query",
        field: |l| &mut l.query.max_include_depth,
    },
    Setting {
        name: "MAX_ROWS_EXAMINED",
        unit: "count",
        about: "rows one query evaluation may read",
        field: |l| &mut l.query.max_rows_examined,
    },
    Setting {
        name: "MAX_RESULT_SIZE",
        unit: "MB",
        about: "memory the documents of one query evaluation may take",
        field: |l| &mut l.query.max_result_bytes,
    },
];

impl Limits {
    /// Sets the limit called `name` (see [`SETTINGS`]) from its text value.
    pub fn set(&mut self, name: &str, value: &str) -> Result<(), String> {
        let setting = SETTINGS.iter().find(|s| s.name == name).ok_or_else(|| {
            let names: Vec<&str> = SETTINGS.iter().map(|s| s.name).collect();
            format!("unknown limit {name:?}; the limits are {}", names.join(", "))
        })?;
        let number: usize = value
            .trim()
            .parse()
            .map_err(|_| format!("{name} must be a whole number ({}), not {value:?}", setting.unit))?;
        let scaled = if setting.unit == "MB" { number.checked_mul(MB) } else { Some(number) };
        *(setting.field)(self) = scaled.ok_or_else(|| format!("{name} is too large: {value}"))?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn limits_are_set_by_name_in_their_units() {
        let mut limits = Limits::default();
        limits.set("MAX_BODY_SIZE", "2").unwrap();
        assert_eq!(limits.max_message_bytes, 2 * MB);
        limits.set("MAX_ROWS_EXAMINED", " 10 ").unwrap();
        assert_eq!(limits.query.max_rows_examined, 10);
        assert_eq!(SETTINGS.iter().find(|s| s.name == "MAX_BODY_SIZE").unwrap().value(&limits), 2);
        assert!(limits.set("MAX_NOTHING", "1").unwrap_err().contains("MAX_QUERIES_PER_CONNECTION"));
        assert!(limits.set("MAX_INCLUDE_DEPTH", "-1").is_err());
        assert!(limits.set("MAX_RESULT_SIZE", &usize::MAX.to_string()).is_err());
    }
}
