//! A batch of changes in Triplit's `DBChanges` shape: per collection, the sets (whole entities
//! for inserts, partial entities for updates, both in encoded form) and the deleted ids.

use std::borrow::Cow;
use std::collections::{BTreeMap, BTreeSet};

use serde_json::{Map, Value as Json};

use crate::error::{Error, Result};
use crate::schema::describe_json;

/// Changes to many collections, applied together. Entities are JSON objects; a sync server
/// sends ones it shares with its live queries (`Changes<Arc<Json>>`) without copying them.
#[derive(Debug, Clone, PartialEq)]
pub struct Changes<E = Map<String, Json>> {
    pub collections: BTreeMap<String, CollectionChanges<E>>,
}

/// The changes to one collection.
#[derive(Debug, Clone, PartialEq)]
pub struct CollectionChanges<E = Map<String, Json>> {
    /// Entity id → encoded entity (with `id`: insert or upsert) or partial (without: update).
    pub sets: BTreeMap<String, E>,
    /// Ids of deleted entities; applied before the sets.
    pub deletes: BTreeSet<String>,
}

impl<E> Default for Changes<E> {
    fn default() -> Self {
        Changes { collections: BTreeMap::new() }
    }
}

impl<E> Default for CollectionChanges<E> {
    fn default() -> Self {
        CollectionChanges { sets: BTreeMap::new(), deletes: BTreeSet::new() }
    }
}

impl<E> Changes<E> {
    /// True when nothing is changed.
    pub fn is_empty(&self) -> bool {
        self.collections.values().all(|c| c.sets.is_empty() && c.deletes.is_empty())
    }

    /// Adds an encoded insert or update.
    pub fn set(&mut self, collection: &str, id: &str, fields: E) {
        self.collection_mut(collection).sets.insert(id.to_owned(), fields);
    }

    /// Adds a delete.
    pub fn delete(&mut self, collection: &str, id: &str) {
        self.collection_mut(collection).deletes.insert(id.to_owned());
    }

    /// The changes to a collection, added if it has none yet (its name is copied only then:
    /// batches add thousands of entities to one collection).
    fn collection_mut(&mut self, collection: &str) -> &mut CollectionChanges<E> {
        if !self.collections.contains_key(collection) {
            self.collections.insert(collection.to_owned(), CollectionChanges::default());
        }
        self.collections.get_mut(collection).expect("just added")
    }
}

impl Changes {
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

/// The plain JSON form read straight into changes, both `sets` shapes, without a JSON tree
/// of the whole batch first (a sync client's initial sync is megabytes of entities).
/// [`Changes::from_json_value`] reads the same form and explains what is wrong with a bad one.
impl<'de> serde::Deserialize<'de> for Changes {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> std::result::Result<Self, D::Error> {
        #[derive(serde::Deserialize)]
        struct Body {
            #[serde(default)]
            sets: Option<Sets>,
            #[serde(default)]
            deletes: Option<BTreeSet<String>>,
        }
        struct Sets(BTreeMap<String, Map<String, Json>>);
        impl<'de> serde::Deserialize<'de> for Sets {
            fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> std::result::Result<Self, D::Error> {
                deserializer.deserialize_any(SetsVisitor)
            }
        }
        struct SetsVisitor;
        impl<'de> serde::de::Visitor<'de> for SetsVisitor {
            type Value = Sets;
            fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
                f.write_str("{id: entity} or [[id, entity]]")
            }
            fn visit_map<A: serde::de::MapAccess<'de>>(self, mut map: A) -> std::result::Result<Sets, A::Error> {
                let mut sets = BTreeMap::new();
                while let Some((id, fields)) = map.next_entry()? {
                    sets.insert(id, fields);
                }
                Ok(Sets(sets))
            }
            fn visit_seq<A: serde::de::SeqAccess<'de>>(self, mut pairs: A) -> std::result::Result<Sets, A::Error> {
                let mut sets = BTreeMap::new();
                while let Some((id, fields)) = pairs.next_element::<(String, Map<String, Json>)>()? {
                    sets.insert(id, fields);
                }
                Ok(Sets(sets))
            }
        }
        let mut changes = Changes::default();
        for (name, body) in BTreeMap::<String, Body>::deserialize(deserializer)? {
            let sets = body.sets.map(|s| s.0).unwrap_or_default();
            changes.collections.insert(name, CollectionChanges { sets, deletes: body.deletes.unwrap_or_default() });
        }
        Ok(changes)
    }
}

/// Changes a merge may take by value (moving their entities into the store) or by reference.
impl From<Changes> for Cow<'_, Changes> {
    fn from(changes: Changes) -> Self {
        Cow::Owned(changes)
    }
}

impl<'c> From<&'c Changes> for Cow<'c, Changes> {
    fn from(changes: &'c Changes) -> Self {
        Cow::Borrowed(changes)
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
