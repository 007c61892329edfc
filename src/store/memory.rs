//! The in-memory backend: ordered maps, with an undo log for transactions, and secondary
//! indexes as ordered sets of (sort keys, id) — the same keys the SQLite indexes use, so both
//! backends serve the same plans.

use std::collections::btree_map::Entry;
use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::Arc;

use super::state::EntityState;
use super::{Access, Backend, Document, IndexRange, Needle, RowWrite, SharedDoc, StateRef};
use crate::error::Result;
use crate::query::lookup_path;
use crate::value::sort_key;

/// One secondary index: entries ordered by the columns' keys, then id.
struct MemoryIndex {
    columns: Vec<Vec<String>>,
    entries: BTreeSet<(Box<[u8]>, Arc<str>)>,
}

/// Ends one column's key in a composite key. Zero bytes inside a key are escaped
/// (`ESCAPED_ZERO`), so the terminator sorts before anything that continues the key: the
/// composite's byte order is the order of its columns' keys, first column first, and one
/// allocation holds every column (a row's index entry, not one allocation per column).
const TERMINATOR: [u8; 2] = [0x00, 0x01];
const ESCAPED_ZERO: [u8; 2] = [0x00, 0xFF];

fn push_component(out: &mut Vec<u8>, key: &[u8]) {
    for &byte in key {
        match byte {
            0 => out.extend_from_slice(&ESCAPED_ZERO),
            _ => out.push(byte),
        }
    }
    out.extend_from_slice(&TERMINATOR);
}

/// The first column key in `composite` (unescaped), and what follows it.
fn split_component(composite: &[u8]) -> (Vec<u8>, &[u8]) {
    let mut key = Vec::with_capacity(composite.len());
    let mut at = 0;
    while at < composite.len() {
        match (composite[at], composite.get(at + 1)) {
            (0, Some(&0x01)) => return (key, &composite[at + 2..]),
            (0, _) => {
                key.push(0);
                at += 2;
            }
            (byte, _) => {
                key.push(byte);
                at += 1;
            }
        }
    }
    (key, &[])
}

impl MemoryIndex {
    fn key(&self, doc: &Document) -> Box<[u8]> {
        let mut key = Vec::new();
        for path in &self.columns {
            push_component(&mut key, &sort_key(lookup_path(doc, path)));
        }
        key.into_boxed_slice()
    }

    /// The ids in `range`, in index order (reversed when descending).
    fn ids(&self, range: &IndexRange) -> Vec<String> {
        let mut prefix = Vec::new();
        for key in &range.equal {
            push_component(&mut prefix, key);
        }
        let within = |rest: &[u8]| {
            if rest.is_empty() {
                return true;
            }
            let (next, _) = split_component(rest);
            let above =
                range.lower.as_ref().is_none_or(|(k, inclusive)| if *inclusive { next >= *k } else { next > *k });
            let below =
                range.upper.as_ref().is_none_or(|(k, inclusive)| if *inclusive { next <= *k } else { next < *k });
            above && below
        };
        let start = (prefix.clone().into_boxed_slice(), Arc::<str>::from(""));
        let mut ids: Vec<String> = self
            .entries
            .range(start..)
            .take_while(|(key, _)| key.starts_with(&prefix))
            .filter(|(key, _)| within(&key[prefix.len()..]))
            .map(|(_, id)| id.to_string())
            .collect();
        if range.descending {
            ids.reverse();
        }
        ids
    }
}

#[derive(Clone)]
struct Row {
    state: RowState,
    /// The document as compact JSON text ([`SharedDoc::to_text`]), parsed when read: a fifth
    /// of the parsed form's memory, for what a read costs the SQLite backend too.
    doc: Option<Box<str>>,
}

impl Row {
    /// The document, parsed (only text `SharedDoc::to_text` accepted is stored).
    fn doc(&self) -> Option<SharedDoc> {
        self.doc.as_ref().map(|text| SharedDoc::parse(text.as_bytes()).expect("stored text parses"))
    }
}

/// A row's merge state. One insert wrote everything in most rows (a bulk load, an initial
/// sync), and then the document alone rebuilds the state when a merge needs it — as the SQLite
/// backend stores such rows — so no per-path state is built or kept for them.
#[derive(Clone)]
enum RowState {
    /// Shared by the rows one commit inserted (see [`MemoryBackend::stamp`]).
    Inserted(Arc<super::Timestamp>),
    /// Boxed: most rows are `Inserted`, and a row's size counts in the table and undo log.
    Full(Box<EntityState>),
}

/// What to put back on rollback.
enum Undo {
    Row { collection: Arc<str>, id: Arc<str>, previous: Option<Row> },
    Meta { key: String, previous: Option<Vec<u8>> },
}

/// Keeps everything in memory; nothing survives the process.
///
/// A row's id is one allocation shared by its table entry, its index entries and its undo
/// step, and the rows a commit inserts share one timestamp: an initial sync writes 100,000
/// rows in one transaction, and each allocation saved per row counts.
#[derive(Default)]
pub(crate) struct MemoryBackend {
    tables: HashMap<Arc<str>, BTreeMap<Arc<str>, Row>>,
    indexes: HashMap<String, Vec<MemoryIndex>>,
    meta: BTreeMap<String, Vec<u8>>,
    undo: Option<Vec<Undo>>,
    /// The timestamp the last inserted row was written at.
    last_stamp: Option<Arc<super::Timestamp>>,
}

impl MemoryBackend {
    /// Writes a row (only if there is none yet when `only_new`); returns whether it did.
    fn put(&mut self, collection: &str, id: &str, row: &RowWrite, only_new: bool) -> Result<bool> {
        // The merge state carries the latest timestamp (`RowWrite::changed`) already.
        let state = match &row.state {
            StateRef::Inserted(ts) if row.doc.is_some() => RowState::Inserted(self.stamp(ts)),
            state => RowState::Full(Box::new(state.to_state(row.doc.map(|doc| &**doc)))),
        };
        let text = row.doc.map(SharedDoc::to_text).transpose()?;
        let stored = Row { state, doc: text.map(String::into_boxed_str) };
        Ok(self.replace(collection, id, Some(stored), only_new, row.doc))
    }

    /// `ts`, shared with the previous row when it was written at the same time.
    fn stamp(&mut self, ts: &super::Timestamp) -> Arc<super::Timestamp> {
        match &self.last_stamp {
            Some(last) if **last == *ts => last.clone(),
            _ => self.last_stamp.insert(Arc::new(ts.clone())).clone(),
        }
    }

    /// Sets (or removes) a row — unless `only_new` and it exists: then returns false — keeping
    /// the collection's indexes in step, and records what to put back on rollback. One search
    /// of the table per write; the index keys come from `parsed`, the row's document parsed
    /// when the caller has it (else it is parsed here, as the previous row's is).
    fn replace(
        &mut self,
        collection: &str,
        id: &str,
        row: Option<Row>,
        only_new: bool,
        parsed: Option<&SharedDoc>,
    ) -> bool {
        if !self.tables.contains_key(collection) {
            self.tables.insert(collection.into(), BTreeMap::new());
        }
        let (name, _) = self.tables.get_key_value(collection).expect("just ensured");
        let name = name.clone();
        let table = self.tables.get_mut(collection).expect("just ensured");
        let indexed = self.indexes.get(collection).is_some_and(|list| !list.is_empty());
        let doc = match parsed {
            Some(doc) => Some(doc.clone()),
            None if indexed => row.as_ref().and_then(Row::doc),
            None => None,
        };
        let (id, previous) = match table.entry(Arc::from(id)) {
            Entry::Occupied(_) if only_new => return false,
            Entry::Occupied(mut entry) => {
                let id = entry.key().clone();
                let previous = match row {
                    Some(row) => entry.insert(row),
                    None => entry.remove(),
                };
                (id, Some(previous))
            }
            Entry::Vacant(entry) => {
                let id = entry.key().clone();
                if let Some(row) = row {
                    entry.insert(row);
                }
                (id, None)
            }
        };
        let previous_doc = previous.as_ref().filter(|_| indexed).and_then(Row::doc);
        for index in self.indexes.get_mut(collection).into_iter().flatten() {
            if let Some(previous) = &previous_doc {
                index.entries.remove(&(index.key(previous), id.clone()));
            }
            if let Some(doc) = &doc {
                index.entries.insert((index.key(doc), id.clone()));
            }
        }
        if let Some(undo) = &mut self.undo {
            undo.push(Undo::Row { collection: name, id, previous });
        }
        true
    }
}

impl Backend for MemoryBackend {
    fn begin(&mut self) -> Result<()> {
        self.undo = Some(Vec::new());
        Ok(())
    }

    fn commit(&mut self) -> Result<()> {
        self.undo = None;
        Ok(())
    }

    fn rollback(&mut self) {
        for step in self.undo.take().unwrap_or_default().into_iter().rev() {
            match step {
                // The log is taken: putting a row back records nothing.
                Undo::Row { collection, id, previous } => {
                    self.replace(&collection, &id, previous, false, None);
                }
                Undo::Meta { key, previous } => {
                    match previous {
                        Some(value) => self.meta.insert(key, value),
                        None => self.meta.remove(&key),
                    };
                }
            }
        }
    }

    fn read_state(&self, collection: &str, id: &str) -> Result<Option<EntityState>> {
        Ok(self.tables.get(collection).and_then(|t| t.get(id)).map(|row| match &row.state {
            RowState::Inserted(ts) => {
                row.doc().map_or_else(EntityState::default, |doc| EntityState::inserted(&doc, ts))
            }
            RowState::Full(state) => (**state).clone(),
        }))
    }

    fn read_doc(&self, collection: &str, id: &str) -> Result<Option<SharedDoc>> {
        Ok(self.tables.get(collection).and_then(|t| t.get(id)).and_then(Row::doc))
    }

    fn insert_row(&mut self, collection: &str, id: &str, row: &RowWrite) -> Result<bool> {
        self.put(collection, id, row, true)
    }

    fn write_row(&mut self, collection: &str, id: &str, row: &RowWrite) -> Result<()> {
        self.put(collection, id, row, false).map(drop)
    }

    fn scan(
        &self,
        collection: &str,
        access: &Access,
        needles: &[Needle],
        visit: &mut dyn FnMut(&str, &SharedDoc) -> Result<bool>,
    ) -> Result<usize> {
        let Some(table) = self.tables.get(collection) else { return Ok(0) };
        let mut read = 0;
        let from_index;
        let ids = match access {
            Access::Ids(ids) => Some(ids),
            Access::Index(range) => {
                let index = self.indexes.get(collection).and_then(|list| {
                    list.iter().find(|i| i.columns.iter().map(|c| c.join(".")).eq(range.columns.iter().cloned()))
                });
                // An index this backend does not have (never planned, but cheap to guard): scan.
                from_index = index.map(|i| i.ids(range));
                from_index.as_ref()
            }
            Access::Scan => None,
        };
        // As in the SQLite backend, a row whose text lacks a needle is not parsed.
        let mut offer = |id: &str, row: &Row| -> Result<bool> {
            let Some(text) = &row.doc else { return Ok(true) };
            read += 1;
            if !needles.iter().all(|n| n.found_in(text.as_bytes())) {
                return Ok(true);
            }
            visit(id, &SharedDoc::parse(text.as_bytes())?)
        };
        if let Some(ids) = ids {
            for id in ids {
                if let Some(row) = table.get(id.as_str())
                    && !offer(id, row)?
                {
                    break;
                }
            }
        } else {
            for (id, row) in table {
                if !offer(id, row)? {
                    break;
                }
            }
        }
        Ok(read)
    }

    fn indexes(&self, collection: &str) -> Vec<Vec<String>> {
        self.indexes
            .get(collection)
            .map(|list| list.iter().map(|i| i.columns.iter().map(|c| c.join(".")).collect()).collect())
            .unwrap_or_default()
    }

    fn set_indexes(&mut self, collection: &str, wanted: &[Vec<String>]) -> Result<()> {
        let mut built = Vec::new();
        for columns in wanted {
            let mut index = MemoryIndex {
                columns: columns.iter().map(|c| c.split('.').map(str::to_owned).collect()).collect(),
                entries: BTreeSet::new(),
            };
            for (id, row) in self.tables.get(collection).into_iter().flatten() {
                if let Some(doc) = row.doc() {
                    index.entries.insert((index.key(&doc), id.clone()));
                }
            }
            built.push(index);
        }
        self.indexes.insert(collection.to_owned(), built);
        Ok(())
    }

    fn collection_names(&self) -> Result<Vec<String>> {
        let mut names: Vec<String> =
            self.tables.iter().filter(|(_, t)| !t.is_empty()).map(|(n, _)| n.to_string()).collect();
        names.sort();
        Ok(names)
    }

    fn read_meta(&self, key: &str) -> Result<Option<Vec<u8>>> {
        Ok(self.meta.get(key).cloned())
    }

    fn write_meta(&mut self, key: &str, value: &[u8]) -> Result<()> {
        if let Some(undo) = &mut self.undo {
            undo.push(Undo::Meta { key: key.to_owned(), previous: self.meta.get(key).cloned() });
        }
        self.meta.insert(key.to_owned(), value.to_vec());
        Ok(())
    }

    fn delete_meta(&mut self, key: &str) -> Result<()> {
        let previous = self.meta.remove(key);
        if let Some(undo) = &mut self.undo {
            undo.push(Undo::Meta { key: key.to_owned(), previous });
        }
        Ok(())
    }

    fn scan_meta(&self, prefix: &str) -> Result<Vec<(String, Vec<u8>)>> {
        let entries = self.meta.range(prefix.to_owned()..).take_while(|(key, _)| key.starts_with(prefix));
        Ok(entries.map(|(key, value)| (key.clone(), value.clone())).collect())
    }
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;

    fn composite(keys: &[Vec<u8>]) -> Vec<u8> {
        let mut out = Vec::new();
        for key in keys {
            push_component(&mut out, key);
        }
        out
    }

    proptest! {
        /// Byte order of composite keys is the order of their column keys (zero bytes and
        /// keys that are prefixes of others included), and each column reads back.
        #[test]
        fn composite_keys_order_as_their_columns(
            a in prop::collection::vec(prop::collection::vec(prop::sample::select(vec![0u8, 1, 2, 0xFF]), 0..4), 2),
            b in prop::collection::vec(prop::collection::vec(prop::sample::select(vec![0u8, 1, 2, 0xFF]), 0..4), 2),
        ) {
            prop_assert_eq!(composite(&a).cmp(&composite(&b)), a.cmp(&b));
            let encoded = composite(&a);
            let (first, rest) = split_component(&encoded);
            prop_assert_eq!(&first, &a[0]);
            prop_assert_eq!(split_component(rest).0, a[1].clone());
        }
    }
}
