//! The triple store: per-entity merge state on a pluggable backend (SQLite or memory).
//!
//! Each entity is one row: its merge state (every attribute path with the timestamp that set
//! it — the triples, packed) and its materialized document (what reads and indexes use), kept
//! in step in the same transaction. Merging happens here, above the backend, so both backends
//! behave identically.

mod changes;
mod document;
mod group_commit;
mod hlc;
mod memory;
mod readers;
mod sqlite;
mod state;

pub use changes::{Changes, CollectionChanges};
pub(crate) use group_commit::GroupCommit;
pub use hlc::{Clock, HybridClock, SystemClock, Timestamp};
pub use sqlite::Durability;

pub(crate) use document::{Document, SharedDoc};
pub(crate) use memory::MemoryBackend;
pub(crate) use readers::{Readers, Reading};
pub(crate) use sqlite::SqliteBackend;
pub(crate) use state::SetKind;

use crate::error::Result;
use state::EntityState;

/// An entity's merge state as handed to a backend.
pub(crate) enum StateRef<'a> {
    /// Any state.
    Full(&'a EntityState),
    /// A new entity written by one insert at this timestamp: the document holds everything,
    /// so no per-path state needs building (the common case of bulk inserts).
    Inserted(&'a Timestamp),
}

impl StateRef<'_> {
    /// The stored bytes.
    pub(crate) fn to_bytes(&self) -> Vec<u8> {
        match self {
            StateRef::Full(state) => state.to_bytes(),
            StateRef::Inserted(ts) => EntityState::inserted_bytes(ts),
        }
    }

    /// The state itself (built from the document for an insert).
    pub(crate) fn to_state(&self, doc: Option<&Document>) -> EntityState {
        match (self, doc) {
            (StateRef::Full(state), _) => (*state).clone(),
            (StateRef::Inserted(ts), Some(doc)) => EntityState::inserted(doc, ts),
            (StateRef::Inserted(_), None) => EntityState::default(),
        }
    }
}

/// What a backend is asked to write for one entity.
pub(crate) struct RowWrite<'a> {
    pub state: StateRef<'a>,
    /// The visible document, or `None` for a deleted (or never created) entity.
    pub doc: Option<&'a SharedDoc>,
    /// The entity's latest timestamp, for sync checkpoints.
    pub changed: &'a Timestamp,
}

/// How to find a query's candidate rows. Indexes only narrow: the evaluator decides.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Access {
    /// Every visible row, in id order.
    Scan,
    /// These ids (in the order given).
    Ids(Vec<String>),
    /// A range of a secondary index.
    Index(IndexRange),
}

/// A range over one secondary index, in sort-key terms (see [`crate::value::sort_key`]).
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct IndexRange {
    /// The index's attribute paths (dotted), which name it.
    pub columns: Vec<String>,
    /// Keys the leading columns must equal.
    pub equal: Vec<Vec<u8>>,
    /// Bounds on the next column: (key, inclusive).
    pub lower: Option<(Vec<u8>, bool)>,
    pub upper: Option<(Vec<u8>, bool)>,
    /// Walk the index backwards (rows come in descending key order, ties by descending id).
    pub descending: bool,
}

/// A substring that every matching row's stored JSON text must contain: a scan skips rows
/// without it before parsing them. Derived from filters as a necessary condition only — the
/// evaluator still decides every row that passes.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Needle {
    pub bytes: Vec<u8>,
    /// Match ASCII letters in either case (the needle is stored lowercase).
    pub ignore_ascii_case: bool,
    /// Look only inside the JSON string values of keys with this name (any depth): a key can
    /// only appear unescaped as a key, so this never misses a match, and it skips rows where
    /// the text occurs only in other attributes.
    pub within_key: Option<Vec<u8>>,
}

impl Needle {
    /// A needle for `segment`; case-insensitive for ASCII letters when `ignore_case`.
    pub(crate) fn new(segment: &[u8], ignore_case: bool) -> Self {
        let ignore_ascii_case = ignore_case && segment.iter().any(u8::is_ascii_alphabetic);
        let bytes = if ignore_ascii_case { segment.to_ascii_lowercase() } else { segment.to_vec() };
        Needle { bytes, ignore_ascii_case, within_key: None }
    }

    /// The same needle, looked for only in string values of the key `name`.
    pub(crate) fn within(mut self, name: &str) -> Self {
        let mut key = serde_json::to_string(name).expect("strings serialize").into_bytes();
        key.extend_from_slice(b":\"");
        self.within_key = Some(key);
        self
    }

    /// Whether `text` contains the needle (within a value of the key, when scoped).
    pub(crate) fn found_in(&self, text: &[u8]) -> bool {
        let Some(key) = &self.within_key else { return self.found_in_span(text) };
        let finder = memchr::memmem::Finder::new(key);
        let mut from = 0;
        while let Some(offset) = finder.find(&text[from..]) {
            let start = from + offset + key.len();
            let end = string_end(text, start);
            if self.found_in_span(&text[start..end]) {
                return true;
            }
            from = end;
        }
        false
    }

    fn found_in_span(&self, text: &[u8]) -> bool {
        let n = self.bytes.as_slice();
        let Some(&first) = n.first() else { return true };
        if !self.ignore_ascii_case {
            return memchr::memmem::find(text, n).is_some();
        }
        let upper = first.to_ascii_uppercase();
        let mut from = 0;
        while let Some(offset) = memchr::memchr2(first, upper, &text[from..]) {
            let at = from + offset;
            if text.len() - at >= n.len() && text[at..at + n.len()].eq_ignore_ascii_case(n) {
                return true;
            }
            from = at + 1;
        }
        false
    }
}

/// Where the JSON string starting at `start` (just after its opening quote) ends.
fn string_end(text: &[u8], start: usize) -> usize {
    let mut i = start;
    while i < text.len() {
        match text[i] {
            b'\\' => i += 2,
            b'"' => return i,
            _ => i += 1,
        }
    }
    text.len()
}

/// Storage of entity rows and metadata, with one transaction at a time.
///
/// All writes happen between `begin` and `commit`/`rollback`; reads may happen anywhere and see
/// the open transaction's writes. Reads take `&self` so a query can run subqueries while one of
/// its scans is open.
pub(crate) trait Backend: Send {
    fn begin(&mut self) -> Result<()>;
    fn commit(&mut self) -> Result<()>;
    fn rollback(&mut self);

    /// Starts a read that sees one committed state from its first statement to
    /// [`Backend::end_read`] (a reader connection; the writer's reads need none).
    fn begin_read(&mut self) -> Result<()> {
        Ok(())
    }
    fn end_read(&mut self) {}

    fn read_state(&self, collection: &str, id: &str) -> Result<Option<EntityState>>;
    fn read_doc(&self, collection: &str, id: &str) -> Result<Option<SharedDoc>>;
    /// Writes a row that does not exist yet; returns `false`, writing nothing, when it does.
    fn insert_row(&mut self, collection: &str, id: &str, row: &RowWrite) -> Result<bool>;
    /// Writes a row, replacing any existing one.
    fn write_row(&mut self, collection: &str, id: &str, row: &RowWrite) -> Result<()>;
    /// Visits candidate documents until `visit` returns false; returns how many rows it read.
    /// Rows whose stored text lacks one of `needles` may be skipped unvisited.
    fn scan(
        &self,
        collection: &str,
        access: &Access,
        needles: &[Needle],
        visit: &mut dyn FnMut(&str, &SharedDoc) -> Result<bool>,
    ) -> Result<usize>;
    /// Names of collections that have rows.
    fn collection_names(&self) -> Result<Vec<String>>;

    /// The secondary indexes of a collection (attribute paths), if the backend has any.
    fn indexes(&self, collection: &str) -> Vec<Vec<String>>;
    /// Makes a collection's secondary indexes exactly these (creating and dropping as needed).
    fn set_indexes(&mut self, collection: &str, indexes: &[Vec<String>]) -> Result<()>;

    fn read_meta(&self, key: &str) -> Result<Option<Vec<u8>>>;
    fn write_meta(&mut self, key: &str, value: &[u8]) -> Result<()>;
    fn delete_meta(&mut self, key: &str) -> Result<()>;
    /// Every metadata entry whose key starts with `prefix`, in key order (the sync client keeps
    /// its outbox and checkpoints under prefixes of its own).
    fn scan_meta(&self, prefix: &str) -> Result<Vec<(String, Vec<u8>)>>;
}

/// Merges writes into entity rows.
pub(crate) struct Store {
    backend: Box<dyn Backend>,
}

impl Store {
    pub(crate) fn new(backend: Box<dyn Backend>) -> Self {
        Store { backend }
    }

    pub(crate) fn backend(&mut self) -> &mut dyn Backend {
        self.backend.as_mut()
    }

    /// Merges an encoded set (insert or partial update) stamped `ts`. A new entity's document
    /// is `fields` itself, shared.
    pub(crate) fn apply_set(
        &mut self,
        collection: &str,
        id: &str,
        fields: &SharedDoc,
        ts: &Timestamp,
        kind: SetKind,
    ) -> Result<()> {
        if kind == SetKind::Insert {
            // Fast path: most inserts create a new entity, which needs no read, and whose
            // document is exactly what was inserted.
            let row = RowWrite { state: StateRef::Inserted(ts), doc: Some(fields), changed: ts };
            if self.backend.insert_row(collection, id, &row)? {
                return Ok(());
            }
        }
        let mut state = self.backend.read_state(collection, id)?.unwrap_or_default();
        state.apply_set(fields, ts, kind);
        self.write(collection, id, &state)
    }

    /// Merges a delete stamped `ts`.
    pub(crate) fn apply_delete(&mut self, collection: &str, id: &str, ts: &Timestamp) -> Result<()> {
        let mut state = self.backend.read_state(collection, id)?.unwrap_or_default();
        state.apply_delete(ts);
        self.write(collection, id, &state)
    }

    fn write(&mut self, collection: &str, id: &str, state: &EntityState) -> Result<()> {
        let doc = state.materialize().map(SharedDoc::new);
        let changed = state.latest().cloned().unwrap_or_else(|| Timestamp::new(0, 0, ""));
        self.backend.write_row(
            collection,
            id,
            &RowWrite { state: StateRef::Full(state), doc: doc.as_ref(), changed: &changed },
        )
    }
}

#[cfg(test)]
mod tests {
    use super::Needle;

    #[test]
    fn needles_find_substrings_exactly_or_in_any_ascii_case() {
        let exact = Needle::new(b"\"apple\"", false);
        assert!(exact.found_in(br#"{"s":"apple"}"#));
        assert!(!exact.found_in(br#"{"s":"Apple"}"#));
        let any_case = Needle::new(b"aN", true);
        assert!(any_case.found_in(b"BANANA"));
        assert!(!any_case.found_in(b"b"));
        assert!(any_case.found_in(b"xxa\nban"));
        assert!(!Needle::new(b"99", true).ignore_ascii_case, "no letters: an exact search");
        assert!(Needle::new(b"", true).found_in(b""));
        let scoped = Needle::new(b"99", true).within("text");
        assert!(scoped.found_in(br#"{"id":"x","text":"no 99 here"}"#));
        assert!(!scoped.found_in(br#"{"id":"id-99","text":"none"}"#), "only the text value counts");
        assert!(scoped.found_in(br#"{"a":{"text":"x"},"text":"a\"99"}"#), "every occurrence, escapes skipped");
    }
}
