//! Triplit's JSON schema: collections (attributes, relationships, permissions, indexes) and roles.
//!
//! The schema JSON is Triplit's own serialized form (`{collections, roles}`), so a schema pushed
//! with `triplit schema push` means the same thing here. Relationship queries and permission
//! filters are kept as JSON and checked for shape; the query and permission layers interpret
//! them.

mod compat;
mod defaults;
mod types;

pub use compat::{SchemaChange, SchemaChangeCode, SchemaIssue};
pub use defaults::DefaultValue;
pub use types::{DataType, TypeOptions};

pub(crate) use defaults::nanoid;
pub(crate) use types::{Site, describe_json, encode_record};

use std::collections::BTreeMap;

use serde_json::{Map, Value as Json};

use crate::error::{Error, Result};

/// A parsed, validated schema.
#[derive(Debug, Clone, PartialEq)]
pub struct Schema {
    collections: BTreeMap<String, Collection>,
    roles: Option<Map<String, Json>>,
    /// The JSON it was parsed from, given back by [`Schema::to_json`]: rebuilding it from the
    /// parsed options would drop what they make implicit (an explicit `nullable: false`).
    source: Json,
}

/// One collection of a schema.
#[derive(Debug, Clone, PartialEq)]
pub struct Collection {
    /// The root record type; always has a string `id`.
    pub attributes: BTreeMap<String, DataType>,
    /// Named relations to other collections.
    pub relationships: BTreeMap<String, Relationship>,
    /// Permission rules by role, as Triplit writes them; `None` means the collection is open.
    pub permissions: Option<Map<String, Json>>,
    /// Secondary indexes (attribute paths), a triplite extension Triplit ignores.
    pub indexes: Vec<Vec<String>>,
}

/// A relation from one collection to another.
#[derive(Debug, Clone, PartialEq)]
pub struct Relationship {
    /// The related collection.
    pub collection: String,
    /// `one` gives an entity or null, `many` a list.
    pub cardinality: Cardinality,
    /// The relation's query (`{collectionName, where, order?, limit?}`), as written.
    pub query: Json,
}

/// Whether a relation yields one entity or many.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Cardinality {
    One,
    Many,
}

const OPERATIONS: [&str; 5] = ["read", "insert", "update", "postUpdate", "delete"];

impl Schema {
    /// Parses and validates a schema from its JSON text.
    pub fn from_json_str(text: &str) -> Result<Self> {
        let json: Json = serde_json::from_str(text).map_err(|e| Error::invalid_json("schema", e))?;
        Self::from_json(&json)
    }

    /// Parses and validates a schema from Triplit's JSON form.
    pub fn from_json(json: &Json) -> Result<Self> {
        let root = json
            .as_object()
            .ok_or_else(|| Error::invalid_schema("", format!("expected an object, found {}", describe_json(json))))?;
        let collections_json = match root.get("collections") {
            Some(Json::Object(c)) => c,
            Some(other) => {
                return Err(Error::invalid_schema(
                    "collections",
                    format!("expected an object, found {}", describe_json(other)),
                ));
            }
            None => return Err(Error::invalid_schema("", "missing \"collections\"")),
        };
        let mut collections = BTreeMap::new();
        for (name, definition) in collections_json {
            check_collection_name(name)?;
            collections.insert(name.clone(), Collection::parse(name, definition)?);
        }
        let roles = match root.get("roles") {
            None | Some(Json::Null) => None,
            Some(Json::Object(roles)) => {
                for (role, definition) in roles {
                    let matcher = definition.get("match");
                    if !matches!(matcher, Some(Json::Object(_))) {
                        return Err(Error::invalid_schema(format!("roles.{role}.match"), "must be an object"));
                    }
                }
                Some(roles.clone())
            }
            Some(other) => {
                return Err(Error::invalid_schema(
                    "roles",
                    format!("expected an object, found {}", describe_json(other)),
                ));
            }
        };
        let schema = Schema { collections, roles, source: json.clone() };
        schema.check_relationship_targets()?;
        Ok(schema)
    }

    fn check_relationship_targets(&self) -> Result<()> {
        for (name, collection) in &self.collections {
            for (rel_name, rel) in &collection.relationships {
                if !self.collections.contains_key(&rel.collection) {
                    return Err(Error::invalid_schema(
                        format!("collections.{name}.relationships.{rel_name}"),
                        format!("relates to unknown collection '{}'", rel.collection),
                    ));
                }
            }
        }
        Ok(())
    }

    /// The schema in Triplit's JSON form: exactly what it was parsed from.
    pub fn to_json(&self) -> Json {
        self.source.clone()
    }

    /// A collection by name.
    pub fn collection(&self, name: &str) -> Result<&Collection> {
        self.collections.get(name).ok_or_else(|| Error::UnknownCollection(name.to_owned()))
    }

    /// All collections by name.
    pub fn collections(&self) -> &BTreeMap<String, Collection> {
        &self.collections
    }

    /// The roles as written, if the schema defines any.
    pub fn roles(&self) -> Option<&Map<String, Json>> {
        self.roles.as_ref()
    }
}

impl Collection {
    fn parse(name: &str, definition: &Json) -> Result<Self> {
        let base = format!("collections.{name}");
        let obj = definition.as_object().ok_or_else(|| {
            Error::invalid_schema(&base, format!("expected an object, found {}", describe_json(definition)))
        })?;
        let schema_json = obj.get("schema").ok_or_else(|| Error::invalid_schema(&base, "missing \"schema\""))?;
        let root = DataType::parse(schema_json, "").map_err(|e| match e {
            Error::InvalidSchema { path, message } => {
                Error::invalid_schema(join_path(&format!("{base}.schema"), &path), message)
            }
            other => other,
        })?;
        let DataType::Record { properties: attributes, .. } = root else {
            return Err(Error::invalid_schema(format!("{base}.schema"), "the root type must be a record"));
        };
        match attributes.get("id") {
            Some(DataType::String { .. }) => {}
            Some(other) => {
                return Err(Error::invalid_schema(
                    format!("{base}.schema.id"),
                    format!("id must be a string, found {}", other.type_name()),
                ));
            }
            None => {
                return Err(Error::invalid_schema(
                    format!("{base}.schema"),
                    "the root record must have an \"id\" attribute",
                ));
            }
        }
        let mut relationships = BTreeMap::new();
        if let Some(rels) = obj.get("relationships").filter(|r| !r.is_null()) {
            let rels = rels
                .as_object()
                .ok_or_else(|| Error::invalid_schema(format!("{base}.relationships"), "expected an object"))?;
            for (rel_name, rel) in rels {
                let path = format!("{base}.relationships.{rel_name}");
                check_property_name(rel_name, &path)?;
                if attributes.contains_key(rel_name) {
                    return Err(Error::invalid_schema(&path, "a relationship cannot share its name with an attribute"));
                }
                relationships.insert(rel_name.clone(), Relationship::parse(rel, &path)?);
            }
        }
        let permissions = match obj.get("permissions") {
            None | Some(Json::Null) => None,
            Some(Json::Object(perms)) => {
                check_permissions(perms, &format!("{base}.permissions"))?;
                Some(perms.clone())
            }
            Some(_) => {
                return Err(Error::invalid_schema(format!("{base}.permissions"), "expected an object"));
            }
        };
        let indexes = parse_indexes(obj.get("indexes"), &attributes, &format!("{base}.indexes"))?;
        Ok(Collection { attributes, relationships, permissions, indexes })
    }

    /// The type of an attribute path (`["profile", "city"]`).
    pub fn attribute_type(&self, path: &[&str]) -> Option<&DataType> {
        let (head, rest) = path.split_first()?;
        self.attributes.get(*head)?.at_path(rest)
    }
}

impl Collection {
    /// A whole document (API form) → encoded entity, with defaults filled in and an id
    /// generated when none is given.
    pub(crate) fn encode_insert(&self, name: &str, doc: &Map<String, Json>) -> Result<Map<String, Json>> {
        let mut encoded = encode_record(&self.attributes, doc, &Site::root(name))?;
        if !encoded.get("id").is_some_and(Json::is_string) {
            encoded.insert("id".into(), Json::String(nanoid()));
        }
        Ok(encoded)
    }

    /// A patch (API form) → encoded partial, given the current encoded document.
    pub(crate) fn encode_patch(
        &self,
        name: &str,
        current: &Map<String, Json>,
        patch: &Map<String, Json>,
    ) -> Result<Map<String, Json>> {
        let mut encoded = Map::new();
        for (key, value) in patch {
            let ty = self
                .attributes
                .get(key)
                .ok_or_else(|| Error::UnknownAttribute { collection: name.to_owned(), attribute: key.clone() })?;
            encoded.insert(key.clone(), ty.encode_patch(value, current.get(key), &Site::at(name, key))?);
        }
        Ok(encoded)
    }

    /// An encoded partial whose sets may be given as arrays of items (`{tags: ["x"]}`, as
    /// raw HTTP callers of Triplit's `/update` write them): each array becomes the encoded
    /// additions of its items (`{x: true}`), in records at any depth. Other values are left
    /// for [`Collection::validate_encoded`].
    pub(crate) fn set_arrays_as_additions(&self, name: &str, patch: &mut Map<String, Json>) -> Result<()> {
        types::set_arrays_as_additions(&self.attributes, patch, &Site::root(name))
    }

    /// An encoded entity a merge creates, completed: defaults filled in, required attributes
    /// checked (see [`types::complete_encoded_record`]).
    pub(crate) fn complete_encoded(&self, name: &str, fields: Map<String, Json>) -> Result<Map<String, Json>> {
        types::complete_encoded_record(&self.attributes, fields, &Site::root(name))
    }

    /// An encoded partial update of an entity whose current document is `current`, completed
    /// (see [`types::complete_encoded_patch`]).
    pub(crate) fn complete_encoded_patch(
        &self,
        name: &str,
        current: &Map<String, Json>,
        patch: &Map<String, Json>,
    ) -> Result<Map<String, Json>> {
        types::complete_encoded_patch(&self.attributes, current, patch, &Site::root(name))
    }

    /// Checks an encoded entity or partial from a merge.
    pub(crate) fn validate_encoded(&self, name: &str, fields: &Map<String, Json>) -> Result<()> {
        for (key, value) in fields {
            let ty = self
                .attributes
                .get(key)
                .ok_or_else(|| Error::UnknownAttribute { collection: name.to_owned(), attribute: key.clone() })?;
            ty.validate_encoded(value, &Site::at(name, key))?;
        }
        Ok(())
    }

    /// Encoded document → API form (sets as arrays, nulls left out).
    pub fn document_to_api(&self, doc: &Map<String, Json>) -> Map<String, Json> {
        self.into_api(doc.clone())
    }

    /// Whether [`Collection::into_api`] would return the document unchanged.
    pub(crate) fn is_api_form(&self, doc: &Map<String, Json>) -> bool {
        doc.iter().all(|(k, v)| !v.is_null() && self.attributes.get(k).is_none_or(|ty| ty.is_api_json(v)))
    }

    /// Like [`Collection::document_to_api`], consuming the document (no copies of the values
    /// that need no conversion).
    pub fn into_api(&self, doc: Map<String, Json>) -> Map<String, Json> {
        doc.into_iter()
            .filter(|(_, v)| !v.is_null())
            .map(|(k, v)| {
                let api = match self.attributes.get(&k) {
                    Some(ty) => ty.into_api_json(v),
                    None => v,
                };
                (k, api)
            })
            .collect()
    }
}

impl Relationship {
    fn parse(json: &Json, path: &str) -> Result<Self> {
        let query = json
            .get("query")
            .filter(|q| q.is_object())
            .ok_or_else(|| Error::invalid_schema(path, "missing \"query\" object"))?;
        let collection = query
            .get("collectionName")
            .and_then(Json::as_str)
            .ok_or_else(|| Error::invalid_schema(format!("{path}.query"), "missing \"collectionName\""))?
            .to_owned();
        let cardinality = match json.get("cardinality").and_then(Json::as_str) {
            Some("one") => Cardinality::One,
            Some("many") => Cardinality::Many,
            _ => {
                return Err(Error::invalid_schema(path, "cardinality must be \"one\" or \"many\""));
            }
        };
        if let Some(where_) = query.get("where").filter(|w| !w.is_null()) {
            if !where_.is_array() {
                return Err(Error::invalid_schema(format!("{path}.query.where"), "expected an array of filters"));
            }
        }
        Ok(Relationship { collection, cardinality, query: query.clone() })
    }
}

fn check_permissions(perms: &Map<String, Json>, base: &str) -> Result<()> {
    for (role, ops) in perms {
        let ops = ops
            .as_object()
            .ok_or_else(|| Error::invalid_schema(format!("{base}.{role}"), "expected an object of operations"))?;
        for (op, rule) in ops {
            let path = format!("{base}.{role}.{op}");
            if !OPERATIONS.contains(&op.as_str()) {
                return Err(Error::invalid_schema(
                    &path,
                    "unknown operation (expected read, insert, update, postUpdate or delete)",
                ));
            }
            match rule.get("filter") {
                Some(Json::Array(_)) => {}
                _ => return Err(Error::invalid_schema(&path, "expected {\"filter\": [...]}")),
            }
        }
    }
    Ok(())
}

fn parse_indexes(json: Option<&Json>, attributes: &BTreeMap<String, DataType>, base: &str) -> Result<Vec<Vec<String>>> {
    let Some(json) = json.filter(|j| !j.is_null()) else {
        return Ok(Vec::new());
    };
    let list = json.as_array().ok_or_else(|| Error::invalid_schema(base, "expected an array of attribute lists"))?;
    let mut indexes = Vec::new();
    for (i, index) in list.iter().enumerate() {
        let path = format!("{base}[{i}]");
        let columns = index
            .as_array()
            .filter(|c| !c.is_empty())
            .ok_or_else(|| Error::invalid_schema(&path, "expected a non-empty array of attribute paths"))?;
        let mut names = Vec::new();
        for column in columns {
            let name =
                column.as_str().ok_or_else(|| Error::invalid_schema(&path, "attribute paths must be strings"))?;
            let segments: Vec<&str> = name.split('.').collect();
            let (head, rest) = segments.split_first().expect("split yields one segment");
            let ty = attributes.get(*head).and_then(|t| t.at_path(rest));
            match ty {
                None => {
                    return Err(Error::invalid_schema(&path, format!("unknown attribute '{name}'")));
                }
                Some(DataType::Set { .. } | DataType::Record { .. }) => {
                    return Err(Error::invalid_schema(
                        &path,
                        format!("'{name}' is a set or record and cannot be indexed"),
                    ));
                }
                Some(_) => names.push(name.to_owned()),
            }
        }
        indexes.push(names);
    }
    Ok(indexes)
}

fn join_path(base: &str, rest: &str) -> String {
    if rest.is_empty() { base.to_owned() } else { format!("{base}.{rest}") }
}

/// Collection names: letters, digits and `_`, not starting with `_` or a digit.
pub(crate) fn check_collection_name(name: &str) -> Result<()> {
    let valid = name.chars().next().is_some_and(|c| c.is_ascii_alphabetic())
        && name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_');
    if valid {
        Ok(())
    } else {
        Err(Error::invalid_schema(
            format!("collections.{name}"),
            "collection names use letters, digits and _, and must not start with _ or a digit",
        ))
    }
}

/// Property names: letters, digits and `_`.
pub(crate) fn check_property_name(name: &str, path: &str) -> Result<()> {
    if !name.is_empty() && name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_') {
        Ok(())
    } else {
        Err(Error::invalid_schema(path, format!("property name '{name}' must use only letters, digits and _")))
    }
}
