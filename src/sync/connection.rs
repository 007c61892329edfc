//! One client's view of the server: which entities it holds for which queries, what is to be
//! sent next, and the pieces of chunked messages.
//!
//! A connection's queries overlap; an entity is sent once, and sent as a delete ("evict it")
//! only when it leaves every query of the connection. Data to send accumulates into one
//! pending `ENTITY_DATA` until the transport takes it, so a client that reads slowly gets one
//! message with the net change rather than a queue.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::Arc;

use serde_json::Value as Json;

use crate::live::{Snapshot, split_entity_key};
use crate::query::json_size;
use crate::store::Changes;

/// The entities of one subscribed query.
#[derive(Default)]
pub(crate) struct QueryEntities {
    /// The feed's generation: a query id subscribed again ignores its older feed.
    pub generation: u64,
    /// Whether the first answer was sent (until then, results wait for the checkpoint logic).
    pub answered: bool,
    /// The latest entity set from the feed.
    pub latest: Option<Arc<Snapshot>>,
    /// The entity set last accounted for in `Entities`.
    pub applied: HashMap<Arc<str>, Arc<Json>>,
}

/// What a connection holds and owes.
#[derive(Default)]
pub(crate) struct Entities {
    /// How many of the connection's queries hold each entity.
    refs: HashMap<Arc<str>, usize>,
    /// The version of each entity the client was last sent (or already had).
    sent: HashMap<Arc<str>, Arc<Json>>,
    pending_sets: BTreeMap<Arc<str>, Arc<Json>>,
    /// About how many bytes `pending_sets` will take on the wire.
    pending_bytes: usize,
    pending_deletes: BTreeSet<Arc<str>>,
    /// Collections an empty first answer must name.
    pending_collections: BTreeSet<String>,
    pub for_queries: BTreeSet<String>,
}

impl Entities {
    /// Moves query `id` from the entities it held to `next`; `known` are entities the client
    /// already holds in their current version (a checkpoint said so), which are not sent.
    /// Returns whether the query's entities changed (it is then listed in `forQueries`).
    pub(crate) fn update(
        &mut self,
        id: &str,
        query: &mut QueryEntities,
        next: &Snapshot,
        known: &BTreeSet<Arc<str>>,
    ) -> bool {
        let mut changed = false;
        let mut now: HashMap<Arc<str>, Arc<Json>> = HashMap::with_capacity(next.0.len());
        let added = next.0.len().saturating_sub(query.applied.len());
        self.refs.reserve(added);
        self.sent.reserve(added);
        let same = |a: &Arc<Json>, b: &Arc<Json>| Arc::ptr_eq(a, b) || a == b;
        for (key, doc) in &next.0 {
            now.insert(key.clone(), doc.clone());
            match query.applied.get(key) {
                None => {
                    *self.refs.entry(key.clone()).or_default() += 1;
                    changed = true;
                }
                Some(before) if !same(before, doc) => changed = true,
                Some(_) => {}
            }
            // Held again: a delete another query left pending must not evict it.
            self.pending_deletes.remove(key);
            // Another query may have sent this version already.
            if self.sent.get(key).is_none_or(|sent| !same(sent, doc)) {
                self.sent.insert(key.clone(), doc.clone());
                if !known.contains(key) {
                    self.stage(key.clone(), doc.clone());
                }
            }
        }
        for key in query.applied.keys() {
            if !now.contains_key(key) {
                self.release(key);
                changed = true;
            }
        }
        query.applied = now;
        if changed {
            self.for_queries.insert(id.to_owned());
        }
        changed
    }

    /// Marks a query answered even if nothing changed: the client learns it is fulfilled.
    pub(crate) fn answered(&mut self, id: &str, collection: &str) {
        self.for_queries.insert(id.to_owned());
        self.pending_collections.insert(collection.to_owned());
    }

    /// An entity the client holds but no query of this connection returns any more.
    fn release(&mut self, key: &Arc<str>) {
        if self.unref(key) {
            self.unstage(key);
            self.pending_deletes.insert(key.clone());
        }
    }

    /// Forgets a query the client disconnected (no deletes: it keeps its cache).
    pub(crate) fn forget(&mut self, query: &QueryEntities) {
        for key in query.applied.keys() {
            self.unref(key);
        }
    }

    /// Drops one query's hold on an entity; true when no query holds it any more.
    fn unref(&mut self, key: &Arc<str>) -> bool {
        let Some(count) = self.refs.get_mut(key) else { return false };
        *count -= 1;
        if *count > 0 {
            return false;
        }
        self.refs.remove(key);
        self.sent.remove(key);
        true
    }

    /// Sends an entity outside the queries' accounting (a checkpoint's refreshed entity).
    pub(crate) fn send_once(&mut self, key: Arc<str>, doc: Option<Arc<Json>>) {
        match doc {
            Some(doc) => {
                self.pending_deletes.remove(&key);
                self.stage(key, doc);
            }
            None => {
                self.unstage(&key);
                self.pending_deletes.insert(key);
            }
        }
    }

    fn stage(&mut self, key: Arc<str>, doc: Arc<Json>) {
        self.pending_bytes += owed_bytes(&key, &doc);
        if let Some(replaced) = self.pending_sets.insert(key, doc) {
            self.pending_bytes = self.pending_bytes.saturating_sub(json_size(&replaced));
        }
    }

    fn unstage(&mut self, key: &Arc<str>) {
        if let Some(removed) = self.pending_sets.remove(key) {
            self.pending_bytes = self.pending_bytes.saturating_sub(owed_bytes(key, &removed));
        }
    }

    pub(crate) fn has_pending(&self) -> bool {
        !self.for_queries.is_empty()
    }

    /// About how many bytes the pending `ENTITY_DATA` will take.
    pub(crate) fn pending_bytes(&self) -> usize {
        self.pending_bytes + self.pending_deletes.iter().map(|key| key.len() + 3).sum::<usize>()
    }

    /// Takes what is pending: the changes (naming every answered query's collection, even
    /// without a change: an empty first answer still names it) and the query ids.
    pub(crate) fn take(&mut self) -> (Changes<Arc<Json>>, Vec<String>) {
        let mut changes = Changes::default();
        self.pending_bytes = 0;
        for (key, doc) in std::mem::take(&mut self.pending_sets) {
            let (collection, id) = split_entity_key(&key);
            changes.set(collection, id, doc);
        }
        for key in std::mem::take(&mut self.pending_deletes) {
            let (collection, id) = split_entity_key(&key);
            changes.delete(collection, id);
        }
        for collection in std::mem::take(&mut self.pending_collections) {
            changes.collections.entry(collection).or_default();
        }
        let queries = std::mem::take(&mut self.for_queries).into_iter().collect();
        (changes, queries)
    }
}

/// What one entity sent to a client counts against its backlog: its key and the memory its
/// document takes.
pub(crate) fn owed_bytes(key: &str, doc: &Json) -> usize {
    key.len() + json_size(doc)
}

/// Reassembles `CHUNK` messages. Pieces are kept as they arrive (never a slot per declared
/// piece), so what a message claims about itself costs nothing until its data arrives.
#[derive(Default)]
pub(crate) struct Chunks {
    messages: HashMap<String, Pieces>,
    /// Bytes of data held across every message in progress.
    bytes: usize,
}

struct Pieces {
    total: usize,
    data: BTreeMap<usize, String>,
}

/// What one connection's chunked messages may take.
pub(crate) struct ChunkLimits {
    /// Bytes held at once, across the messages in progress.
    pub bytes: usize,
    pub pieces_per_message: usize,
    pub messages: usize,
}

impl Chunks {
    /// Adds a piece. Returns the whole message once every piece is in; an error when the
    /// pieces disagree or a limit is passed (the partial message is dropped).
    pub(crate) fn add(
        &mut self,
        id: &str,
        index: usize,
        total: usize,
        data: String,
        limits: &ChunkLimits,
    ) -> Result<Option<String>, String> {
        if total == 0 || index >= total {
            self.drop_message(id);
            return Err(format!("chunk {index} of {total} is out of range"));
        }
        if total > limits.pieces_per_message {
            self.drop_message(id);
            return Err(format!("a chunked message may have at most {} pieces", limits.pieces_per_message));
        }
        if !self.messages.contains_key(id) && self.messages.len() >= limits.messages {
            return Err(format!("at most {} chunked messages may be in progress at once", limits.messages));
        }
        if self.bytes + data.len() > limits.bytes {
            self.drop_message(id);
            return Err(format!("chunked messages exceed {} bytes", limits.bytes));
        }
        let pieces = self.messages.entry(id.to_owned()).or_insert_with(|| Pieces { total, data: BTreeMap::new() });
        if pieces.total != total {
            self.drop_message(id);
            return Err(format!("chunks of message '{id}' disagree on their total"));
        }
        self.bytes += data.len();
        if let Some(replaced) = pieces.data.insert(index, data) {
            self.bytes -= replaced.len();
        }
        if pieces.data.len() == total {
            let pieces = self.messages.remove(id).expect("present");
            let message: String = pieces.data.into_values().collect();
            self.bytes = self.bytes.saturating_sub(message.len());
            return Ok(Some(message));
        }
        Ok(None)
    }

    fn drop_message(&mut self, id: &str) {
        if let Some(pieces) = self.messages.remove(id) {
            let size: usize = pieces.data.values().map(String::len).sum();
            self.bytes = self.bytes.saturating_sub(size);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_huge_declared_total_costs_nothing_and_is_refused() {
        let limits = ChunkLimits { bytes: 1024, pieces_per_message: 10, messages: 2 };
        let mut chunks = Chunks::default();
        assert!(chunks.add("m", 0, usize::MAX, "x".into(), &limits).is_err());
        assert!(chunks.add("m", 3, 10, "d".into(), &limits).unwrap().is_none());
        assert!(chunks.add("n", 0, 2, "a".into(), &limits).unwrap().is_none());
        assert!(chunks.add("o", 0, 2, "a".into(), &limits).unwrap_err().contains("at most 2"));
        assert_eq!(chunks.add("n", 1, 2, "b".into(), &limits).unwrap().as_deref(), Some("ab"));
        assert!(chunks.add("o", 0, 2, "a".repeat(2000), &limits).unwrap_err().contains("exceed"));
    }
}
