//! One entity's triples: every attribute path with the timestamp of the write that set it.
//!
//! The merge rule is "replay all writes in timestamp order with Triplit's semantics", computed
//! so that the order in which writes *arrive* does not matter:
//! - a path keeps the value of its latest write (last writer wins per attribute path);
//! - an object write merges key by key (records, JSON objects, and sets, which are stored as
//!   `{item: bool}` objects, so adds and removes merge per element);
//! - a non-object write at a path (a scalar, `null`, a JSON array) hides every older write
//!   below it, and a newer write below it turns the path back into an object;
//! - a delete hides every older write of the entity; the entity exists again only through a
//!   later insert, and writes between the delete and that insert are dropped (an update of a
//!   deleted entity is dropped, as Triplit drops it);
//! - an update that arrives before any insert is kept but hidden, so it shows up if an insert
//!   stamped earlier arrives later — as it would have had the writes arrived in order.
//!
//! Within one change, deletes come before sets at the same timestamp (Triplit applies a
//! batch's deletes first), so comparisons against the delete marker are inclusive.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value as Json};

use super::hlc::Timestamp;
use crate::error::{Error, Result};

/// Index into [`EntityState::stamps`]: an entity is usually written by few transactions, so
/// timestamps are stored once per entity rather than once per attribute.
type Stamp = u32;

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
enum Leaf {
    Null,
    Bool(bool),
    Number(f64),
    String(String),
    /// A JSON array (only `json` attributes), replaced as a whole; kept as JSON text.
    Array(String),
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
enum Body {
    Leaf(Leaf),
    Object(BTreeMap<String, Node>),
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
struct Node {
    /// The latest write at this path (for objects: the latest object write or child write).
    stamp: Stamp,
    /// For objects: the latest non-object write here; children older than it are hidden.
    reset: Option<Stamp>,
    body: Body,
}

/// The full merge state of one entity.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub(crate) struct EntityState {
    stamps: Vec<Timestamp>,
    /// The latest delete.
    deleted: Option<Stamp>,
    /// Inserts at or after the latest delete; the entity exists while there is one.
    created: Vec<Stamp>,
    root: BTreeMap<String, Node>,
}

/// The kind of write a set is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum SetKind {
    /// A whole entity (has an `id`): creates the entity or merges into it.
    Insert,
    /// A partial entity: merges into an existing entity, dropped otherwise.
    Update,
}

/// The stored form. Most entities are written once, by one insert: every path then carries the
/// same timestamp and the state is fully determined by the document, so only the timestamp is
/// stored instead of repeating every value.
#[derive(Serialize)]
enum PackedRef<'a> {
    Uniform(&'a Timestamp),
    Full(&'a EntityState),
}

/// The owned twin of [`PackedRef`] (same variant order, so the same bytes).
#[derive(Deserialize)]
enum Packed {
    Uniform(Timestamp),
    Full(EntityState),
}

impl EntityState {
    /// Decodes the stored bytes; `doc` is the row's stored document.
    pub(crate) fn from_bytes(bytes: &[u8], doc: Option<&Map<String, Json>>) -> Result<Self> {
        match bincode::deserialize(bytes).map_err(|e| Error::Corrupt(format!("entity state: {e}")))? {
            Packed::Full(state) => Ok(state),
            Packed::Uniform(ts) => {
                let doc = doc.ok_or_else(|| Error::Corrupt("single-write entity without a document".into()))?;
                Ok(EntityState::inserted(doc, &ts))
            }
        }
    }

    /// The stored bytes.
    pub(crate) fn to_bytes(&self) -> Vec<u8> {
        let packed = if self.is_single_insert() { PackedRef::Uniform(&self.stamps[0]) } else { PackedRef::Full(self) };
        bincode::serialize(&packed).expect("entity state always serializes")
    }

    /// The stored bytes of a new entity written by one insert at `ts`.
    pub(crate) fn inserted_bytes(ts: &Timestamp) -> Vec<u8> {
        bincode::serialize(&PackedRef::Uniform(ts)).expect("timestamps always serialize")
    }

    /// The state of a new entity written by one insert of `doc` at `ts`.
    pub(crate) fn inserted(doc: &Map<String, Json>, ts: &Timestamp) -> Self {
        let mut state = EntityState::default();
        state.apply_set(doc, ts, SetKind::Insert);
        state
    }

    /// True when one insert wrote everything: the document alone then rebuilds the state.
    fn is_single_insert(&self) -> bool {
        fn no_resets(map: &BTreeMap<String, Node>) -> bool {
            map.values().all(|n| {
                n.reset.is_none()
                    && match &n.body {
                        Body::Object(children) => no_resets(children),
                        Body::Leaf(_) => true,
                    }
            })
        }
        self.stamps.len() == 1 && self.deleted.is_none() && self.created == [0] && no_resets(&self.root)
    }

    /// The latest timestamp of any write this entity has seen.
    pub(crate) fn latest(&self) -> Option<&Timestamp> {
        self.stamps.iter().max()
    }

    fn intern(&mut self, ts: &Timestamp) -> Stamp {
        if let Some(i) = self.stamps.iter().position(|s| s == ts) {
            return i as Stamp;
        }
        self.stamps.push(ts.clone());
        (self.stamps.len() - 1) as Stamp
    }

    fn ts(&self, stamp: Stamp) -> &Timestamp {
        &self.stamps[stamp as usize]
    }

    /// Merges a set (an encoded entity or partial) written at `ts`.
    pub(crate) fn apply_set(&mut self, fields: &Map<String, Json>, ts: &Timestamp, kind: SetKind) {
        if self.deleted.is_some_and(|d| ts < self.ts(d)) {
            return; // Older than the latest delete: the delete already erased it.
        }
        let stamp = self.intern(ts);
        if kind == SetKind::Insert && !self.created.contains(&stamp) {
            self.created.push(stamp);
        }
        let stamps = &self.stamps;
        for (key, value) in fields {
            merge_into(&mut self.root, key, value, stamp, stamps);
        }
    }

    /// Merges a delete written at `ts`.
    pub(crate) fn apply_delete(&mut self, ts: &Timestamp) {
        if self.deleted.is_some_and(|d| ts <= self.ts(d)) {
            return;
        }
        let stamp = self.intern(ts);
        self.deleted = Some(stamp);
        let stamps = &self.stamps;
        self.created.retain(|c| stamps[*c as usize] >= *ts);
        prune_older(&mut self.root, ts, stamps);
        self.compact();
    }

    /// Drops timestamps no longer referenced, so the table does not grow with every delete.
    fn compact(&mut self) {
        let mut used = vec![false; self.stamps.len()];
        let mark = |s: Stamp, used: &mut Vec<bool>| used[s as usize] = true;
        self.deleted.iter().for_each(|s| mark(*s, &mut used));
        self.created.iter().for_each(|s| mark(*s, &mut used));
        visit_stamps(&self.root, &mut |s| mark(s, &mut used));
        if used.iter().all(|u| *u) {
            return;
        }
        let mut remap = vec![0; self.stamps.len()];
        let mut kept = Vec::new();
        for (i, ts) in self.stamps.iter().enumerate() {
            if used[i] {
                remap[i] = kept.len() as Stamp;
                kept.push(ts.clone());
            }
        }
        self.stamps = kept;
        self.deleted = self.deleted.map(|s| remap[s as usize]);
        self.created.iter_mut().for_each(|s| *s = remap[*s as usize]);
        remap_stamps(&mut self.root, &remap);
    }

    /// The visible entity in encoded form, or `None` when it does not exist.
    pub(crate) fn materialize(&self) -> Option<Map<String, Json>> {
        let floor = self.created.iter().map(|c| self.ts(*c)).min()?;
        Some(visible_fields(&self.root, floor, &self.stamps))
    }
}

fn newest_in(node: &Node, stamps: &[Timestamp]) -> Stamp {
    let mut newest = node.stamp;
    if let Body::Object(children) = &node.body {
        for child in children.values() {
            let candidate = newest_in(child, stamps);
            if stamps[candidate as usize] > stamps[newest as usize] {
                newest = candidate;
            }
        }
    }
    newest
}

fn leaf_of(value: &Json) -> Leaf {
    match value {
        Json::Null => Leaf::Null,
        Json::Bool(b) => Leaf::Bool(*b),
        Json::Number(n) => Leaf::Number(n.as_f64().unwrap_or(f64::NAN)),
        Json::String(s) => Leaf::String(s.clone()),
        Json::Array(_) | Json::Object(_) => Leaf::Array(value.to_string()),
    }
}

fn merge_into(map: &mut BTreeMap<String, Node>, key: &str, value: &Json, stamp: Stamp, stamps: &[Timestamp]) {
    let ts = &stamps[stamp as usize];
    match (map.get_mut(key), value) {
        (None, Json::Object(fields)) => {
            let mut children = BTreeMap::new();
            for (k, v) in fields {
                merge_into(&mut children, k, v, stamp, stamps);
            }
            map.insert(key.to_owned(), Node { stamp, reset: None, body: Body::Object(children) });
        }
        (None, leaf) => {
            map.insert(key.to_owned(), Node { stamp, reset: None, body: Body::Leaf(leaf_of(leaf)) });
        }
        (Some(node), Json::Object(fields)) => {
            match &node.body {
                Body::Leaf(_) if ts < &stamps[node.stamp as usize] => return, // Overwritten later by a scalar.
                Body::Leaf(_) => {
                    *node = Node { stamp, reset: Some(node.stamp), body: Body::Object(BTreeMap::new()) };
                }
                Body::Object(_) => {
                    if node.reset.is_some_and(|r| ts <= &stamps[r as usize]) {
                        return; // Written before a scalar replaced this object.
                    }
                    if ts > &stamps[node.stamp as usize] {
                        node.stamp = stamp;
                    }
                }
            }
            if let Body::Object(children) = &mut node.body {
                for (k, v) in fields {
                    merge_into(children, k, v, stamp, stamps);
                }
            }
        }
        (Some(node), leaf) => {
            // A scalar replaces the node when it is newer than everything written at or below it.
            if ts >= &stamps[newest_in(node, stamps) as usize] {
                *node = Node { stamp, reset: None, body: Body::Leaf(leaf_of(leaf)) };
            } else if let Body::Object(children) = &mut node.body {
                {
                    // Newer writes below survive; older ones are erased by this scalar for good.
                    prune_older(children, ts, stamps);
                    if node.reset.is_none_or(|r| ts > &stamps[r as usize]) {
                        node.reset = Some(stamp);
                    }
                }
            }
        }
    }
}

/// Removes every write older than `ts` (leaves, and objects left with nothing newer).
fn prune_older(map: &mut BTreeMap<String, Node>, ts: &Timestamp, stamps: &[Timestamp]) {
    map.retain(|_, node| {
        let own_newer = &stamps[node.stamp as usize] >= ts;
        match &mut node.body {
            Body::Leaf(_) => own_newer,
            Body::Object(children) => {
                prune_older(children, ts, stamps);
                if node.reset.is_some_and(|r| &stamps[r as usize] < ts) {
                    node.reset = None;
                }
                own_newer || !children.is_empty()
            }
        }
    });
}

fn visit_stamps(map: &BTreeMap<String, Node>, mark: &mut impl FnMut(Stamp)) {
    for node in map.values() {
        mark(node.stamp);
        if let Some(r) = node.reset {
            mark(r);
        }
        if let Body::Object(children) = &node.body {
            visit_stamps(children, mark);
        }
    }
}

fn remap_stamps(map: &mut BTreeMap<String, Node>, remap: &[Stamp]) {
    for node in map.values_mut() {
        node.stamp = remap[node.stamp as usize];
        node.reset = node.reset.map(|r| remap[r as usize]);
        if let Body::Object(children) = &mut node.body {
            remap_stamps(children, remap);
        }
    }
}

fn visible_fields(map: &BTreeMap<String, Node>, floor: &Timestamp, stamps: &[Timestamp]) -> Map<String, Json> {
    let mut out = Map::new();
    for (key, node) in map {
        let own_visible = &stamps[node.stamp as usize] >= floor;
        match &node.body {
            Body::Leaf(leaf) if own_visible => {
                out.insert(key.clone(), leaf_to_json(leaf));
            }
            Body::Leaf(_) => {}
            Body::Object(children) => {
                let fields = visible_fields(children, floor, stamps);
                if own_visible || !fields.is_empty() {
                    out.insert(key.clone(), Json::Object(fields));
                }
            }
        }
    }
    out
}

fn leaf_to_json(leaf: &Leaf) -> Json {
    match leaf {
        Leaf::Null => Json::Null,
        Leaf::Bool(b) => Json::Bool(*b),
        Leaf::Number(n) => crate::value::number_to_json(*n),
        Leaf::String(s) => Json::String(s.clone()),
        Leaf::Array(text) => serde_json::from_str(text).unwrap_or(Json::Null),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn ts(n: u64) -> Timestamp {
        Timestamp::new(n, 0, "c")
    }

    fn fields(v: Json) -> Map<String, Json> {
        v.as_object().unwrap().clone()
    }

    #[test]
    fn scalar_then_newer_child_makes_an_object_of_only_the_newer_children() {
        let mut s = EntityState::default();
        s.apply_set(&fields(json!({"id": "1", "a": {"x": 1, "y": 2}})), &ts(1), SetKind::Insert);
        s.apply_set(&fields(json!({"a": null})), &ts(2), SetKind::Update);
        s.apply_set(&fields(json!({"a": {"x": 3}})), &ts(3), SetKind::Update);
        assert_eq!(s.materialize().unwrap(), fields(json!({"id": "1", "a": {"x": 3}})));
    }

    #[test]
    fn late_scalar_hides_only_older_children() {
        let mut s = EntityState::default();
        s.apply_set(&fields(json!({"id": "1", "a": {"x": 1}})), &ts(1), SetKind::Insert);
        s.apply_set(&fields(json!({"a": {"y": 3}})), &ts(3), SetKind::Update);
        s.apply_set(&fields(json!({"a": null})), &ts(2), SetKind::Update);
        assert_eq!(s.materialize().unwrap(), fields(json!({"id": "1", "a": {"y": 3}})));
    }

    #[test]
    fn state_survives_bytes() {
        let mut s = EntityState::default();
        s.apply_set(&fields(json!({"id": "1", "tags": {"a": true}, "n": 1.5})), &ts(1), SetKind::Insert);
        s.apply_delete(&ts(2));
        s.apply_set(&fields(json!({"id": "1"})), &ts(3), SetKind::Insert);
        assert_eq!(EntityState::from_bytes(&s.to_bytes(), None).unwrap(), s);
        assert_eq!(s.stamps.len(), 2, "the first insert's stamp was compacted away");
    }

    #[test]
    fn a_single_insert_is_stored_as_its_timestamp_and_rebuilt_from_the_document() {
        let mut s = EntityState::default();
        s.apply_set(&fields(json!({"id": "1", "a": {"x": null}, "t": {"k": false}})), &ts(1), SetKind::Insert);
        let bytes = s.to_bytes();
        assert!(bytes.len() < 32, "{} bytes", bytes.len());
        let doc = s.materialize().unwrap();
        assert_eq!(EntityState::from_bytes(&bytes, Some(&doc)).unwrap(), s);
        assert_eq!(EntityState::inserted_bytes(&ts(1)), bytes, "the direct form writes the same bytes");
    }
}
