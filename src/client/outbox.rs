//! The durable outbox: local transactions the server has not acknowledged yet.
//!
//! Each entry is a row of the local database's metadata, written in the same SQLite
//! transaction as the optimistic write it describes, so the two commit (and survive a crash)
//! together. The local store holds what reads see: server-confirmed data with the pending
//! writes applied. For every entity with pending writes the outbox also keeps its *confirmed*
//! document — as the server last sent it — so that server data arriving meanwhile, or a
//! transaction the server rejects, can be folded in: the entity is rebuilt as its confirmed
//! document plus the writes still pending, in commit order. One rejected transaction is rolled
//! back this way and leaves the outbox; the ones after it still go out.

use std::collections::{BTreeSet, HashMap, VecDeque};

use serde_json::{Map, Value as Json, json};

use crate::db::{Database, Transaction, Written};
use crate::error::{Error, Result};
use crate::store::{Changes, Document, SharedDoc};

/// Outbox rows: `client.outbox.<sequence, zero-padded>` → `{"txId", "changes"}`.
const PENDING_PREFIX: &str = "client.outbox.";
/// Confirmed documents of entities with pending writes: `client.confirmed.<collection>/<id>`
/// → the document, or `null` when the server holds none.
const CONFIRMED_PREFIX: &str = "client.confirmed.";

/// A local transaction waiting for the server.
#[derive(Debug, Clone, PartialEq)]
pub struct PendingTransaction {
    /// Its place in commit order.
    pub seq: u64,
    /// The id events about it carry.
    pub tx_id: String,
    /// Its writes, in the encoded form `CHANGES` sends: whole entities for inserts, the
    /// attributes that changed for updates.
    pub changes: Changes,
}

impl PendingTransaction {
    /// What this transaction does to one entity: whether it deletes it, then what it sets.
    fn change_to(&self, collection: &str, id: &str) -> Option<(bool, Option<&Map<String, Json>>)> {
        let batch = self.changes.collections.get(collection)?;
        let deleted = batch.deletes.contains(id);
        let set = batch.sets.get(id);
        (deleted || set.is_some()).then_some((deleted, set))
    }

    fn entities(&self) -> impl Iterator<Item = (&str, &str)> {
        self.changes.collections.iter().flat_map(|(collection, batch)| {
            batch.deletes.iter().chain(batch.sets.keys()).map(move |id| (collection.as_str(), id.as_str()))
        })
    }
}

/// The outbox, mirrored in memory (the rows are read once, when the client opens).
#[derive(Debug, Default)]
pub(crate) struct Outbox {
    pending: VecDeque<PendingTransaction>,
    /// Collection → entity → how many pending transactions write it (nested, so a lookup
    /// needs no key of its own: every entity of every server message is looked up).
    writers: HashMap<String, HashMap<String, usize>>,
    next_seq: u64,
}

impl Outbox {
    /// Reads the outbox a previous run left.
    pub fn load(db: &Database) -> Result<Outbox> {
        let rows = db.scan_meta(PENDING_PREFIX)?;
        let mut outbox = Outbox::default();
        for (key, value) in rows {
            let corrupt = |what: &str| Error::Corrupt(format!("outbox row {key}: {what}"));
            let seq: u64 = key[PENDING_PREFIX.len()..].parse().map_err(|_| corrupt("bad sequence"))?;
            let row: Json = serde_json::from_slice(&value).map_err(|_| corrupt("not JSON"))?;
            let tx_id = row.get("txId").and_then(Json::as_str).ok_or_else(|| corrupt("no txId"))?.to_owned();
            let changes = Changes::from_json(row.get("changes").unwrap_or(&Json::Null))?;
            outbox.next_seq = seq + 1;
            outbox.push(PendingTransaction { seq, tx_id, changes });
        }
        Ok(outbox)
    }

    pub fn len(&self) -> usize {
        self.pending.len()
    }

    /// Pending transactions in commit order.
    pub fn iter(&self) -> impl Iterator<Item = &PendingTransaction> {
        self.pending.iter()
    }

    /// Whether an entity has writes the server has not confirmed.
    pub fn is_pending(&self, collection: &str, id: &str) -> bool {
        self.writers.get(collection).is_some_and(|ids| ids.contains_key(id))
    }

    /// Inside the local write's transaction: turns what it wrote into an outbox row (and keeps
    /// the confirmed document of each entity it is the first pending writer of). The entry is
    /// [`Outbox::push`]ed once the transaction commits; `None` when nothing changed.
    pub fn stage(&self, tx: &mut Transaction, tx_id: String) -> Result<Option<PendingTransaction>> {
        let mut changes = Changes::default();
        for Written { collection, id, before, after } in tx.written()? {
            let change_made = match (&before, &after) {
                (Some(old), Some(new)) => old != new,
                (None, None) => false,
                _ => true,
            };
            if !change_made {
                continue;
            }
            if !self.is_pending(&collection, &id) {
                write_confirmed(tx, &collection, &id, before.as_deref())?;
            }
            match (before, after) {
                (_, None) => changes.delete(&collection, &id),
                (None, Some(doc)) => changes.set(&collection, &id, doc.into_doc()),
                (Some(old), Some(new)) => changes.set(&collection, &id, diff(&old, &new)),
            }
        }
        if changes.is_empty() {
            return Ok(None);
        }
        let entry = PendingTransaction { seq: self.next_seq, tx_id, changes };
        #[derive(serde::Serialize)]
        #[serde(rename_all = "camelCase")]
        struct Row<'a> {
            tx_id: &'a str,
            changes: &'a Changes,
        }
        let row = serde_json::to_vec(&Row { tx_id: &entry.tx_id, changes: &entry.changes }).expect("changes are JSON");
        tx.write_meta(&pending_key(entry.seq), &row)?;
        Ok(Some(entry))
    }

    /// Takes a committed entry from [`Outbox::stage`].
    pub fn push(&mut self, entry: PendingTransaction) {
        for (collection, id) in entry.entities() {
            let ids = match self.writers.get_mut(collection) {
                Some(ids) => ids,
                None => self.writers.entry(collection.to_owned()).or_default(),
            };
            match ids.get_mut(id) {
                Some(count) => *count += 1,
                None => {
                    ids.insert(id.to_owned(), 1);
                }
            }
        }
        self.next_seq = self.next_seq.max(entry.seq + 1);
        self.pending.push_back(entry);
    }

    /// The server applied `seq`: it leaves the outbox, and what it wrote is now confirmed.
    /// Reads already show it, so no entity is rewritten.
    pub fn acknowledge(&mut self, db: &Database, seq: u64) -> Result<Option<PendingTransaction>> {
        self.settle(db, seq, |outbox, tx, entry, collection, id| {
            if outbox.writers_after(entry, collection, id) == 0 {
                return delete_confirmed(tx, collection, id);
            }
            let confirmed = fold(read_confirmed(tx, collection, id)?, entry.change_to(collection, id));
            write_confirmed(tx, collection, id, confirmed.as_ref())
        })
    }

    /// The server refused `seq`: it leaves the outbox, and each entity it wrote is rebuilt from
    /// its confirmed document and the writes still pending.
    pub fn reject(&mut self, db: &Database, seq: u64) -> Result<Option<PendingTransaction>> {
        self.settle(db, seq, |outbox, tx, entry, collection, id| {
            let confirmed = read_confirmed(tx, collection, id)?;
            let rebuilt = outbox.replay(confirmed.clone(), collection, id, Some(entry.seq));
            rewrite(tx, collection, id, rebuilt.as_ref())?;
            if outbox.writers_after(entry, collection, id) == 0 {
                delete_confirmed(tx, collection, id)
            } else {
                write_confirmed(tx, collection, id, confirmed.as_ref())
            }
        })
    }

    /// Inside the transaction that applies server data: entities without pending writes take
    /// it as it is; the others fold it into their confirmed document and are rebuilt on top of
    /// it, so the optimistic state still shows until the server answers.
    pub fn fold_server_changes(&self, tx: &mut Transaction, changes: Changes) -> Result<()> {
        let mut direct = Changes::default();
        for (collection, mut batch) in changes.collections {
            let pending: BTreeSet<String> = batch
                .deletes
                .iter()
                .chain(batch.sets.keys())
                .filter(|id| self.is_pending(&collection, id))
                .cloned()
                .collect();
            for id in pending {
                let deleted = batch.deletes.remove(&id);
                let set = batch.sets.remove(&id);
                let confirmed = fold(read_confirmed(tx, &collection, &id)?, Some((deleted, set.as_ref())));
                write_confirmed(tx, &collection, &id, confirmed.as_ref())?;
                let rebuilt = self.replay(confirmed, &collection, &id, None);
                rewrite(tx, &collection, &id, rebuilt.as_ref())?;
            }
            direct.collections.insert(collection, batch);
        }
        if !direct.is_empty() {
            tx.commit_changes(direct)?;
        }
        Ok(())
    }

    /// Forgets every pending transaction (the rows go with the rest of the local data).
    pub fn clear(&mut self) {
        *self = Outbox { next_seq: self.next_seq, ..Outbox::default() };
    }

    /// Removes `seq` in one transaction that runs `settle_entity` for each entity it wrote,
    /// then updates the mirror once that committed.
    fn settle(
        &mut self,
        db: &Database,
        seq: u64,
        settle_entity: impl Fn(&Outbox, &mut Transaction, &PendingTransaction, &str, &str) -> Result<()>,
    ) -> Result<Option<PendingTransaction>> {
        let Some(position) = self.pending.iter().position(|p| p.seq == seq) else { return Ok(None) };
        let entry = &self.pending[position];
        db.transact(|tx| {
            tx.delete_meta(&pending_key(seq))?;
            for (collection, id) in entry.entities() {
                settle_entity(self, tx, entry, collection, id)?;
            }
            Ok(())
        })?;
        let entry = self.pending.remove(position).expect("found above");
        for (collection, id) in entry.entities() {
            let Some(ids) = self.writers.get_mut(collection) else { continue };
            if let Some(count) = ids.get_mut(id) {
                *count -= 1;
                if *count == 0 {
                    ids.remove(id);
                }
            }
            if ids.is_empty() {
                self.writers.remove(collection);
            }
        }
        Ok(Some(entry))
    }

    /// How many pending transactions other than `entry` write the entity.
    fn writers_after(&self, entry: &PendingTransaction, collection: &str, id: &str) -> usize {
        let count = self.writers.get(collection).and_then(|ids| ids.get(id)).copied().unwrap_or(0);
        count.saturating_sub(usize::from(entry.change_to(collection, id).is_some()))
    }

    /// `confirmed` with every pending write to the entity applied in order (except `skip`).
    fn replay(&self, confirmed: Option<Document>, collection: &str, id: &str, skip: Option<u64>) -> Option<Document> {
        self.pending
            .iter()
            .filter(|p| Some(p.seq) != skip)
            .fold(confirmed, |doc, pending| fold(doc, pending.change_to(collection, id)))
    }
}

fn pending_key(seq: u64) -> String {
    format!("{PENDING_PREFIX}{seq:020}")
}

fn confirmed_key(collection: &str, id: &str) -> String {
    format!("{CONFIRMED_PREFIX}{collection}/{id}")
}

fn write_confirmed(tx: &mut Transaction, collection: &str, id: &str, doc: Option<&Document>) -> Result<()> {
    let value = doc.map_or(Json::Null, |doc| Json::Object(doc.clone()));
    tx.write_meta(&confirmed_key(collection, id), value.to_string().as_bytes())
}

fn read_confirmed(tx: &mut Transaction, collection: &str, id: &str) -> Result<Option<Document>> {
    let Some(bytes) = tx.read_meta(&confirmed_key(collection, id))? else {
        // Not recorded (an entity a pending write left unchanged): the store holds it.
        return Ok(tx.read_encoded(collection, id)?.map(SharedDoc::into_doc));
    };
    match serde_json::from_slice(&bytes) {
        Ok(Json::Object(doc)) => Ok(Some(doc)),
        Ok(Json::Null) => Ok(None),
        _ => Err(Error::Corrupt(format!("confirmed document of {collection}/{id} is not an object"))),
    }
}

fn delete_confirmed(tx: &mut Transaction, collection: &str, id: &str) -> Result<()> {
    tx.delete_meta(&confirmed_key(collection, id))
}

/// Makes the stored entity exactly `doc` (or absent): a delete, then an insert one tick later.
fn rewrite(tx: &mut Transaction, collection: &str, id: &str, doc: Option<&Document>) -> Result<()> {
    let mut delete = Changes::default();
    delete.delete(collection, id);
    tx.commit_changes(delete)?;
    if let Some(doc) = doc {
        let mut insert = Changes::default();
        let mut doc = doc.clone();
        doc.insert("id".into(), json!(id));
        insert.set(collection, id, doc);
        tx.commit_changes(insert)?;
    }
    Ok(())
}

/// A document after one transaction's change to it, merged as the store merges: a delete
/// first, then a set — an insert (with `id`) creates or merges, an update merges into an
/// existing document only; objects merge key by key, anything else replaces.
pub(crate) fn fold(doc: Option<Document>, change: Option<(bool, Option<&Map<String, Json>>)>) -> Option<Document> {
    let Some((deleted, set)) = change else { return doc };
    let mut doc = if deleted { None } else { doc };
    match (&mut doc, set) {
        (Some(doc), Some(fields)) => merge_fields(doc, fields),
        (None, Some(fields)) if fields.contains_key("id") => doc = Some(fields.clone()),
        _ => {}
    }
    doc
}

fn merge_fields(target: &mut Map<String, Json>, fields: &Map<String, Json>) {
    for (key, value) in fields {
        match (target.get_mut(key), value) {
            (Some(Json::Object(inner)), Json::Object(patch)) => merge_fields(inner, patch),
            _ => {
                target.insert(key.clone(), value.clone());
            }
        }
    }
}

/// The encoded patch that takes `old` to `new`: changed attributes, records and sets diffed
/// key by key, removed keys as `null` (as Triplit marks them).
fn diff(old: &Map<String, Json>, new: &Map<String, Json>) -> Map<String, Json> {
    let mut patch = Map::new();
    for (key, value) in new {
        match (old.get(key), value) {
            (Some(before), _) if before == value => {}
            (Some(Json::Object(before)), Json::Object(after)) => {
                let inner = diff(before, after);
                if !inner.is_empty() {
                    patch.insert(key.clone(), Json::Object(inner));
                }
            }
            _ => {
                patch.insert(key.clone(), value.clone());
            }
        }
    }
    for key in old.keys().filter(|key| !new.contains_key(*key)) {
        patch.insert(key.clone(), Json::Null);
    }
    patch
}

#[cfg(test)]
mod tests {
    use super::*;

    fn doc(value: Json) -> Document {
        value.as_object().unwrap().clone()
    }

    #[test]
    fn a_patch_names_only_what_changed_and_nulls_removed_keys() {
        let old = doc(json!({"id": "a", "title": "x", "tags": {"home": true}, "meta": {"n": 1, "gone": 2}}));
        let new = doc(json!({"id": "a", "title": "y", "tags": {"home": true, "work": true}, "meta": {"n": 1}}));
        assert_eq!(
            Json::Object(diff(&old, &new)),
            json!({"title": "y", "tags": {"work": true}, "meta": {"gone": null}})
        );
        assert!(diff(&old, &old).is_empty());
    }

    #[test]
    fn folding_follows_the_store_merge() {
        let base = Some(doc(json!({"id": "a", "n": 1, "r": {"x": 1}})));
        let update = doc(json!({"r": {"y": 2}}));
        assert_eq!(
            fold(base.clone(), Some((false, Some(&update)))),
            Some(doc(json!({"id": "a", "n": 1, "r": {"x": 1, "y": 2}})))
        );
        // An update of a deleted entity is dropped; an insert re-creates it.
        assert_eq!(fold(base.clone(), Some((true, Some(&update)))), None);
        let insert = doc(json!({"id": "a", "n": 5}));
        assert_eq!(fold(None, Some((false, Some(&insert)))), Some(insert.clone()));
        assert_eq!(fold(base.clone(), None), base);
    }
}
