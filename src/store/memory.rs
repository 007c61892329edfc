//! The in-memory backend: ordered maps, with an undo log for transactions.

use std::collections::{BTreeMap, HashMap};

use super::state::EntityState;
use super::{Backend, Document, RowWrite, Timestamp};
use crate::error::Result;

#[derive(Clone)]
struct Row {
    state: EntityState,
    doc: Option<Document>,
    #[allow(dead_code)]
    // Read by sync checkpoints (server issue); stored now so rows are complete.
    changed: Timestamp,
}

/// What to put back on rollback.
enum Undo {
    Row { collection: String, id: String, previous: Option<Row> },
    Meta { key: String, previous: Option<Vec<u8>> },
}

/// Keeps everything in memory; nothing survives the process.
#[derive(Default)]
pub(crate) struct MemoryBackend {
    tables: HashMap<String, BTreeMap<String, Row>>,
    meta: HashMap<String, Vec<u8>>,
    undo: Option<Vec<Undo>>,
}

impl MemoryBackend {
    fn remember_row(&mut self, collection: &str, id: &str) {
        if let Some(undo) = &mut self.undo {
            let previous = self.tables.get(collection).and_then(|t| t.get(id)).cloned();
            undo.push(Undo::Row { collection: collection.to_owned(), id: id.to_owned(), previous });
        }
    }

    fn put(&mut self, collection: &str, id: &str, row: &RowWrite) {
        self.remember_row(collection, id);
        let stored = Row { state: row.state.clone(), doc: row.doc.cloned(), changed: row.changed.clone() };
        self.tables.entry(collection.to_owned()).or_default().insert(id.to_owned(), stored);
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
                Undo::Row { collection, id, previous } => {
                    let table = self.tables.entry(collection).or_default();
                    match previous {
                        Some(row) => table.insert(id, row),
                        None => table.remove(&id),
                    };
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

    fn read_state(&mut self, collection: &str, id: &str) -> Result<Option<EntityState>> {
        Ok(self.tables.get(collection).and_then(|t| t.get(id)).map(|r| r.state.clone()))
    }

    fn read_doc(&mut self, collection: &str, id: &str) -> Result<Option<Document>> {
        Ok(self.tables.get(collection).and_then(|t| t.get(id)).and_then(|r| r.doc.clone()))
    }

    fn insert_row(&mut self, collection: &str, id: &str, row: &RowWrite) -> Result<bool> {
        if self.tables.get(collection).is_some_and(|t| t.contains_key(id)) {
            return Ok(false);
        }
        self.put(collection, id, row);
        Ok(true)
    }

    fn write_row(&mut self, collection: &str, id: &str, row: &RowWrite) -> Result<()> {
        self.put(collection, id, row);
        Ok(())
    }

    fn scan_docs(&mut self, collection: &str, visit: &mut dyn FnMut(&str, Document) -> bool) -> Result<()> {
        if let Some(table) = self.tables.get(collection) {
            for (id, row) in table {
                if let Some(doc) = &row.doc {
                    if !visit(id, doc.clone()) {
                        break;
                    }
                }
            }
        }
        Ok(())
    }

    fn collection_names(&mut self) -> Result<Vec<String>> {
        let mut names: Vec<String> =
            self.tables.iter().filter(|(_, t)| !t.is_empty()).map(|(n, _)| n.clone()).collect();
        names.sort();
        Ok(names)
    }

    fn read_meta(&mut self, key: &str) -> Result<Option<Vec<u8>>> {
        Ok(self.meta.get(key).cloned())
    }

    fn write_meta(&mut self, key: &str, value: &[u8]) -> Result<()> {
        if let Some(undo) = &mut self.undo {
            undo.push(Undo::Meta { key: key.to_owned(), previous: self.meta.get(key).cloned() });
        }
        self.meta.insert(key.to_owned(), value.to_vec());
        Ok(())
    }
}
