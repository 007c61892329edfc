//! A batch of changes in Triplit's `DBChanges` shape: per collection, the sets (whole entities
//! for inserts, partial entities for updates, both in encoded form) and the deleted ids.

use std::collections::{BTreeMap, BTreeSet};

use serde_json::{Map, Value as Json};

use crate::error::{Error, Result};
use crate::schema::describe_json;

/// Changes to many collections, applied together.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Changes {
    pub collections: BTreeMap<String, CollectionChanges>,
}

/// The changes to one collection.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct CollectionChanges {
    /// Entity id → encoded entity (with `id`: insert or upsert) or partial (without: update).
    pub sets: BTreeMap<String, Map<String, Json>>,
    /// Ids of deleted entities; applied before the sets.
    pub deletes: BTreeSet<String>,
}

impl Changes {
    /// True when nothing is changed.
    pub fn is_empty(&self) -> bool {
        self.collections.values().all(|c| c.sets.is_empty() && c.deletes.is_empty())
    }

    /// Adds an encoded insert or update.
    pub fn set(&mut self, collection: &str, id: &str, fields: Map<String, Json>) {
        self.collections.entry(collection.to_owned()).or_default().sets.insert(id.to_owned(), fields);
    }

    /// Adds a delete.
    pub fn delete(&mut self, collection: &str, id: &str) {
        self.collections.entry(collection.to_owned()).or_default().deletes.insert(id.to_owned());
    }

    /// Parses the plain JSON form `{collection: {sets: {id: entity}, deletes: [id]}}`.
    /// `sets` may also be a list of `[id, entity]` pairs, the shape a SuperJSON map unwraps to.
    pub fn from_json(json: &Json) -> Result<Self> {
        Self::from_json_value(json.clone())
    }

    /// [`Changes::from_json`], taking the JSON: entities move into the changes instead of
    /// being copied (a server's initial sync is megabytes of them).
    pub fn from_json_value(json: Json) -> Result<Self> {
        let context = "changes";
        let Json::Object(root) = json else {
            return Err(Error::invalid_json(context, format!("expected an object, found {}", describe_json(&json))));
        };
        let mut changes = Changes::default();
        for (collection, body) in root {
            let at = |what: &str| format!("{context}.{collection}{what}");
            let Json::Object(mut body) = body else {
                return Err(Error::invalid_json(at(""), "expected {sets, deletes}"));
            };
            let mut entry = CollectionChanges::default();
            match body.remove("sets") {
                None | Some(Json::Null) => {}
                Some(Json::Object(sets)) => {
                    for (id, fields) in sets {
                        let Json::Object(fields) = fields else {
                            return Err(Error::invalid_json(at(&format!(".sets.{id}")), "expected an object"));
                        };
                        entry.sets.insert(id, fields);
                    }
                }
                Some(Json::Array(pairs)) => {
                    for pair in pairs {
                        let pair = match pair {
                            Json::Array(pair) if pair.len() == 2 => <[Json; 2]>::try_from(pair).ok(),
                            _ => None,
                        };
                        let Some([Json::String(id), Json::Object(fields)]) = pair else {
                            return Err(Error::invalid_json(at(".sets"), "expected [id, entity] pairs"));
                        };
                        entry.sets.insert(id, fields);
                    }
                }
                Some(other) => {
                    return Err(Error::invalid_json(
                        at(".sets"),
                        format!("expected an object, found {}", describe_json(&other)),
                    ));
                }
            }
            match body.remove("deletes") {
                None | Some(Json::Null) => {}
                Some(Json::Array(ids)) => {
                    for id in ids {
                        let Json::String(id) = id else {
                            return Err(Error::invalid_json(at(".deletes"), "ids must be strings"));
                        };
                        entry.deletes.insert(id);
                    }
                }
                Some(other) => {
                    return Err(Error::invalid_json(
                        at(".deletes"),
                        format!("expected an array, found {}", describe_json(&other)),
                    ));
                }
            }
            changes.collections.insert(collection, entry);
        }
        Ok(changes)
    }

    /// The plain JSON form.
    pub fn to_json(&self) -> Json {
        serde_json::to_value(self).expect("changes are JSON")
    }
}

/// The plain JSON form, written where the entities lie (the client's outbox rows).
impl serde::Serialize for Changes {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> std::result::Result<S::Ok, S::Error> {
        #[derive(serde::Serialize)]
        struct Body<'a> {
            sets: &'a BTreeMap<String, Map<String, Json>>,
            deletes: &'a BTreeSet<String>,
        }
        serializer
            .collect_map(self.collections.iter().map(|(name, c)| (name, Body { sets: &c.sets, deletes: &c.deletes })))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn parses_both_set_shapes_and_round_trips() {
        let a = Changes::from_json(&json!({"todos": {"sets": {"t1": {"id": "t1"}}, "deletes": ["t2"]}})).unwrap();
        let b = Changes::from_json(&json!({"todos": {"sets": [["t1", {"id": "t1"}]], "deletes": ["t2"]}})).unwrap();
        assert_eq!(a, b);
        assert_eq!(Changes::from_json(&a.to_json()).unwrap(), a);
    }

    #[test]
    fn names_the_broken_part() {
        let err = Changes::from_json(&json!({"todos": {"deletes": [1]}})).unwrap_err();
        assert!(err.to_string().contains("changes.todos.deletes"), "{err}");
    }
}
