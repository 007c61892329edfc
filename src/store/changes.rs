//! A batch of changes in Triplit's `DBChanges` shape: per collection, the sets (whole entities
//! for inserts, partial entities for updates, both in encoded form) and the deleted ids.

use std::collections::{BTreeMap, BTreeSet};

use serde_json::{Map, Value as Json, json};

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
        let context = "changes";
        let root = json.as_object().ok_or_else(|| {
            Error::invalid_json(context, format!("expected an object, found {}", describe_json(json)))
        })?;
        let mut changes = Changes::default();
        for (collection, body) in root {
            let at = |what: &str| format!("{context}.{collection}{what}");
            let body = body.as_object().ok_or_else(|| Error::invalid_json(at(""), "expected {sets, deletes}"))?;
            let entry = changes.collections.entry(collection.clone()).or_default();
            match body.get("sets") {
                None | Some(Json::Null) => {}
                Some(Json::Object(sets)) => {
                    for (id, fields) in sets {
                        let fields = fields
                            .as_object()
                            .ok_or_else(|| Error::invalid_json(at(&format!(".sets.{id}")), "expected an object"))?;
                        entry.sets.insert(id.clone(), fields.clone());
                    }
                }
                Some(Json::Array(pairs)) => {
                    for pair in pairs {
                        let (id, fields) = pair
                            .as_array()
                            .filter(|p| p.len() == 2)
                            .and_then(|p| Some((p[0].as_str()?, p[1].as_object()?)))
                            .ok_or_else(|| Error::invalid_json(at(".sets"), "expected [id, entity] pairs"))?;
                        entry.sets.insert(id.to_owned(), fields.clone());
                    }
                }
                Some(other) => {
                    return Err(Error::invalid_json(
                        at(".sets"),
                        format!("expected an object, found {}", describe_json(other)),
                    ));
                }
            }
            match body.get("deletes") {
                None | Some(Json::Null) => {}
                Some(Json::Array(ids)) => {
                    for id in ids {
                        let id =
                            id.as_str().ok_or_else(|| Error::invalid_json(at(".deletes"), "ids must be strings"))?;
                        entry.deletes.insert(id.to_owned());
                    }
                }
                Some(other) => {
                    return Err(Error::invalid_json(
                        at(".deletes"),
                        format!("expected an array, found {}", describe_json(other)),
                    ));
                }
            }
        }
        Ok(changes)
    }

    /// The plain JSON form.
    pub fn to_json(&self) -> Json {
        let collections: Map<String, Json> = self
            .collections
            .iter()
            .map(|(name, c)| {
                let sets: Map<String, Json> =
                    c.sets.iter().map(|(id, f)| (id.clone(), Json::Object(f.clone()))).collect();
                (name.clone(), json!({"sets": sets, "deletes": c.deletes}))
            })
            .collect();
        Json::Object(collections)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

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
