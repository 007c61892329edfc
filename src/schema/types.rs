//! Attribute types: their JSON schema form, validation, and the two document forms.
//!
//! Triplit documents exist in two JSON forms. The **API form** is what applications write and
//! read: dates as ISO strings (or epoch milliseconds on input), sets as arrays. The **encoded
//! form** is what is stored and synced: sets as `{"<item>": true|false}` objects (a `false` is a
//! removed item, kept as a tombstone so removals merge), a deleted key as `null`.

use std::collections::BTreeMap;

use serde_json::{Map, Value as Json, json};

use super::defaults::DefaultValue;
use crate::error::{Error, Result};
use crate::value::{Date, Value, js_number_to_string, number_to_json};

/// Options every attribute type carries (`config` in the schema JSON).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct TypeOptions {
    /// `null` is a valid value.
    pub nullable: bool,
    /// The attribute may be missing (and deleting it writes `null`).
    pub optional: bool,
    /// Filled in on insert when the attribute is missing.
    pub default: Option<DefaultValue>,
}

/// One attribute type of Triplit's schema.
#[derive(Debug, Clone, PartialEq)]
pub enum DataType {
    String { options: TypeOptions, allowed: Option<Vec<String>> },
    Number(TypeOptions),
    Boolean(TypeOptions),
    Date(TypeOptions),
    Set { items: Box<DataType>, options: TypeOptions },
    Record { properties: BTreeMap<String, DataType>, options: TypeOptions },
    Json(TypeOptions),
}

/// Where in which collection a value sits, for error messages.
#[derive(Debug, Clone)]
pub(crate) struct Site<'a> {
    pub collection: &'a str,
    /// The attribute path as a chain of borrowed keys: the dotted text is built only for an
    /// error (checking an entity otherwise allocated a path per attribute).
    parent: Option<&'a Site<'a>>,
    key: &'a str,
}

impl<'a> Site<'a> {
    pub(crate) fn root(collection: &'a str) -> Self {
        Site { collection, parent: None, key: "" }
    }

    /// A path inside `collection` that starts with `key` (itself dotted or empty).
    pub(crate) fn at(collection: &'a str, key: &'a str) -> Self {
        Site { collection, parent: None, key }
    }

    pub(crate) fn child<'b>(&'b self, key: &'b str) -> Site<'b> {
        Site { collection: self.collection, parent: Some(self), key }
    }

    /// The dotted attribute path.
    fn path(&self) -> String {
        match self.parent.map(Site::path) {
            Some(parent) if !parent.is_empty() => format!("{parent}.{}", self.key),
            _ => self.key.to_owned(),
        }
    }

    fn mismatch(&self, expected: impl Into<String>, found: &Json) -> Error {
        Error::TypeMismatch {
            collection: self.collection.to_owned(),
            attribute: self.path(),
            expected: expected.into(),
            found: describe_json(found),
        }
    }

    fn unknown(&self) -> Error {
        Error::UnknownAttribute { collection: self.collection.to_owned(), attribute: self.path() }
    }

    fn missing(&self) -> Error {
        Error::MissingAttribute { collection: self.collection.to_owned(), attribute: self.path() }
    }
}

/// A short description of a JSON value for "found …" in errors.
pub(crate) fn describe_json(json: &Json) -> String {
    match json {
        Json::Null => "null".into(),
        Json::Bool(b) => format!("boolean {b}"),
        Json::Number(n) => format!("number {n}"),
        Json::String(s) if s.chars().count() > 40 => {
            format!("string \"{}…\"", s.chars().take(40).collect::<String>())
        }
        Json::String(s) => format!("string \"{s}\""),
        Json::Array(_) => "array".into(),
        Json::Object(_) => "object".into(),
    }
}

impl DataType {
    /// Parses one attribute type from the schema JSON; `path` names it in errors.
    pub(crate) fn parse(json: &Json, path: &str) -> Result<Self> {
        let obj = json.as_object().ok_or_else(|| {
            Error::invalid_schema(path, format!("expected a type object, found {}", describe_json(json)))
        })?;
        let kind =
            obj.get("type").and_then(Json::as_str).ok_or_else(|| Error::invalid_schema(path, "missing \"type\""))?;
        let config = match obj.get("config") {
            None | Some(Json::Null) => Map::new(),
            Some(Json::Object(config)) => config.clone(),
            Some(other) => {
                return Err(Error::invalid_schema(
                    path,
                    format!("\"config\" must be an object, found {}", describe_json(other)),
                ));
            }
        };
        let flag = |key: &str| -> Result<bool> {
            match config.get(key) {
                None | Some(Json::Null) => Ok(false),
                Some(Json::Bool(b)) => Ok(*b),
                Some(other) => Err(Error::invalid_schema(
                    path,
                    format!("config.{key} must be a boolean, found {}", describe_json(other)),
                )),
            }
        };
        let options = TypeOptions {
            nullable: flag("nullable")?,
            optional: flag("optional")?,
            default: config
                .get("default")
                .filter(|d| !d.is_null())
                .map(|d| DefaultValue::parse(d, path))
                .transpose()?,
        };
        let parsed = match kind {
            "string" => {
                let allowed = match config.get("enum") {
                    None | Some(Json::Null) => None,
                    Some(Json::Array(items)) => Some(
                        items
                            .iter()
                            .map(|item| {
                                item.as_str().map(str::to_owned).ok_or_else(|| {
                                    Error::invalid_schema(
                                        path,
                                        format!("enum values must be strings, found {}", describe_json(item)),
                                    )
                                })
                            })
                            .collect::<Result<Vec<_>>>()?,
                    ),
                    Some(other) => {
                        return Err(Error::invalid_schema(
                            path,
                            format!("enum must be an array, found {}", describe_json(other)),
                        ));
                    }
                };
                DataType::String { options, allowed }
            }
            "number" => DataType::Number(options),
            "boolean" => DataType::Boolean(options),
            "date" => DataType::Date(options),
            "json" => DataType::Json(options),
            "set" => {
                let items_json =
                    obj.get("items").ok_or_else(|| Error::invalid_schema(path, "a set needs \"items\""))?;
                let items = DataType::parse(items_json, &format!("{path}.items"))?;
                if !items.is_primitive() {
                    return Err(Error::invalid_schema(
                        path,
                        format!("set items must be string, number, boolean or date, found {}", items.type_name()),
                    ));
                }
                DataType::Set { items: Box::new(items), options }
            }
            "record" => {
                let props = obj
                    .get("properties")
                    .and_then(Json::as_object)
                    .ok_or_else(|| Error::invalid_schema(path, "a record needs a \"properties\" object"))?;
                // Some 1.x builders list optional keys on the record instead of in each config.
                let optional_keys: Vec<&str> = obj
                    .get("optional")
                    .and_then(Json::as_array)
                    .map(|keys| keys.iter().filter_map(Json::as_str).collect())
                    .unwrap_or_default();
                let mut properties = BTreeMap::new();
                for (name, prop) in props {
                    let prop_path = if path.is_empty() { name.clone() } else { format!("{path}.{name}") };
                    super::check_property_name(name, &prop_path)?;
                    let mut parsed = DataType::parse(prop, &prop_path)?;
                    if optional_keys.contains(&name.as_str()) {
                        parsed.options_mut().optional = true;
                    }
                    properties.insert(name.clone(), parsed);
                }
                DataType::Record { properties, options }
            }
            other => {
                return Err(Error::invalid_schema(
                    path,
                    format!("unknown type '{other}' (expected string, number, boolean, date, set, record or json)"),
                ));
            }
        };
        if let Some(DefaultValue::Literal(literal)) = &parsed.options().default {
            parsed
                .encode(literal, &Site::at("", path))
                .map_err(|e| Error::invalid_schema(path, format!("default does not fit the type: {e}")))?;
        }
        if matches!(parsed.options().default, Some(DefaultValue::EmptySet)) && !matches!(parsed, DataType::Set { .. }) {
            return Err(Error::invalid_schema(path, "Set.empty is only a default for sets"));
        }
        Ok(parsed)
    }

    /// Parses one attribute type from its schema JSON (`{"type": …, "config": …}`).
    pub fn from_json(json: &Json) -> Result<Self> {
        Self::parse(json, "")
    }

    /// API form → encoded form (what is stored and synced), checking the value fits.
    pub fn to_encoded_json(&self, value: &Json) -> Result<Json> {
        self.encode(value, &Site::root(""))
    }

    /// The schema JSON form, as Triplit writes it.
    pub fn to_json(&self) -> Json {
        let mut config = Map::new();
        let options = self.options();
        if options.nullable {
            config.insert("nullable".into(), Json::Bool(true));
        }
        if options.optional {
            config.insert("optional".into(), Json::Bool(true));
        }
        if let Some(default) = &options.default {
            config.insert("default".into(), default.to_json());
        }
        match self {
            DataType::String { allowed: Some(allowed), .. } => {
                config.insert("enum".into(), json!(allowed));
                json!({"type": "string", "config": config})
            }
            DataType::Set { items, .. } => {
                json!({"type": "set", "items": items.to_json(), "config": config})
            }
            DataType::Record { properties, .. } => {
                let props: Map<String, Json> = properties.iter().map(|(k, v)| (k.clone(), v.to_json())).collect();
                json!({"type": "record", "properties": props, "config": config})
            }
            other => json!({"type": other.type_name(), "config": config}),
        }
    }

    /// The schema JSON name of the type.
    pub fn type_name(&self) -> &'static str {
        match self {
            DataType::String { .. } => "string",
            DataType::Number(_) => "number",
            DataType::Boolean(_) => "boolean",
            DataType::Date(_) => "date",
            DataType::Set { .. } => "set",
            DataType::Record { .. } => "record",
            DataType::Json(_) => "json",
        }
    }

    /// A description including item types and enums, for error messages.
    pub fn describe(&self) -> String {
        match self {
            DataType::String { allowed: Some(allowed), .. } => format!("string (one of {})", allowed.join(", ")),
            DataType::Set { items, .. } => format!("set of {}", items.type_name()),
            other => other.type_name().to_owned(),
        }
    }

    pub fn options(&self) -> &TypeOptions {
        match self {
            DataType::String { options, .. }
            | DataType::Set { options, .. }
            | DataType::Record { options, .. }
            | DataType::Number(options)
            | DataType::Boolean(options)
            | DataType::Date(options)
            | DataType::Json(options) => options,
        }
    }

    fn options_mut(&mut self) -> &mut TypeOptions {
        match self {
            DataType::String { options, .. }
            | DataType::Set { options, .. }
            | DataType::Record { options, .. }
            | DataType::Number(options)
            | DataType::Boolean(options)
            | DataType::Date(options)
            | DataType::Json(options) => options,
        }
    }

    /// Whether the type may hold null (or be left out).
    pub fn accepts_null(&self) -> bool {
        let options = self.options();
        options.nullable || options.optional || matches!(self, DataType::Json(_))
    }

    fn is_primitive(&self) -> bool {
        matches!(self, DataType::String { .. } | DataType::Number(_) | DataType::Boolean(_) | DataType::Date(_))
    }

    /// The type at a dotted path inside this (record) type.
    pub fn at_path<'s>(&'s self, path: &[&str]) -> Option<&'s DataType> {
        match path.split_first() {
            None => Some(self),
            Some((head, rest)) => match self {
                DataType::Record { properties, .. } => properties.get(*head)?.at_path(rest),
                _ => None,
            },
        }
    }

    /// API form → encoded form, checking the value fits the type.
    pub(crate) fn encode(&self, value: &Json, site: &Site) -> Result<Json> {
        if value.is_null() {
            return if self.accepts_null() { Ok(Json::Null) } else { Err(site.mismatch(self.describe(), value)) };
        }
        match self {
            DataType::String { .. } | DataType::Number(_) | DataType::Boolean(_) if self.scalar_accepts(value) => {
                Ok(value.clone())
            }
            DataType::Date(_) => {
                encode_date(value).ok_or_else(|| site.mismatch("date (ISO-8601 string or epoch milliseconds)", value))
            }
            DataType::Set { items, .. } => match value {
                Json::Array(elements) => {
                    let mut encoded = Map::new();
                    for element in elements {
                        let key = items.encode_set_item(element, site)?;
                        encoded.insert(key, Json::Bool(true));
                    }
                    Ok(Json::Object(encoded))
                }
                // The encoded form of a set (an encoded partial) is accepted too.
                Json::Object(_) => self.validate_encoded(value, site).map(|_| value.clone()),
                _ => Err(site.mismatch(self.describe(), value)),
            },
            DataType::Record { properties, .. } => match value {
                Json::Object(fields) => Ok(Json::Object(encode_record(properties, fields, site)?)),
                _ => Err(site.mismatch("record", value)),
            },
            DataType::Json(_) => Ok(value.clone()),
            _ => Err(site.mismatch(self.describe(), value)),
        }
    }

    /// Whether a value is one of this scalar type's (a string type's: an allowed one).
    fn scalar_accepts(&self, value: &Json) -> bool {
        match (self, value) {
            (DataType::String { allowed, .. }, Json::String(s)) => allowed.as_ref().is_none_or(|a| a.contains(s)),
            (DataType::Number(_), Json::Number(_)) | (DataType::Boolean(_), Json::Bool(_)) => true,
            _ => false,
        }
    }

    /// A set item (API form) → the key it is stored under.
    fn encode_set_item(&self, item: &Json, site: &Site) -> Result<String> {
        if item.is_null() {
            return Err(site.mismatch(format!("{} set item", self.type_name()), item));
        }
        let encoded = self.encode(item, site)?;
        Ok(match encoded {
            Json::String(s) => s,
            Json::Number(n) => js_number_to_string(n.as_f64().unwrap_or(f64::NAN)),
            Json::Bool(b) => b.to_string(),
            other => other.to_string(),
        })
    }

    /// A set key (encoded form) → the typed item.
    fn decode_set_item(&self, key: &str) -> Option<Value> {
        match self {
            // `NaN`, `inf` and numbers past f64's range parse, but are no JSON number.
            DataType::Number(_) => key.parse::<f64>().ok().filter(|n| n.is_finite()).map(Value::Number),
            DataType::Boolean(_) => match key {
                "true" => Some(Value::Boolean(true)),
                "false" => Some(Value::Boolean(false)),
                _ => None,
            },
            DataType::Date(_) => Date::parse(key).map(Value::Date),
            _ => Some(Value::String(key.to_owned())),
        }
    }

    /// Checks an encoded value (from a merge or a sync peer) against the type.
    pub(crate) fn validate_encoded(&self, value: &Json, site: &Site) -> Result<()> {
        if value.is_null() {
            return if self.accepts_null() { Ok(()) } else { Err(site.mismatch(self.describe(), value)) };
        }
        match self {
            DataType::String { .. } | DataType::Number(_) | DataType::Boolean(_) => match self.scalar_accepts(value) {
                true => Ok(()),
                false => Err(site.mismatch(self.describe(), value)),
            },
            DataType::Date(_) => match value {
                Json::String(s) if Date::parse(s).is_some() => Ok(()),
                _ => Err(site.mismatch("date (ISO-8601 string)", value)),
            },
            DataType::Set { items, .. } => {
                let entries = value.as_object().ok_or_else(|| site.mismatch("encoded set ({item: boolean})", value))?;
                for (key, present) in entries {
                    if !present.is_boolean() {
                        return Err(site.child(key).mismatch("boolean set membership", present));
                    }
                    if items.decode_set_item(key).is_none() {
                        return Err(site.mismatch(self.describe(), &Json::String(key.clone())));
                    }
                }
                Ok(())
            }
            DataType::Record { properties, .. } => {
                let fields = value.as_object().ok_or_else(|| site.mismatch("record", value))?;
                for (key, field) in fields {
                    let ty = properties.get(key).ok_or_else(|| site.child(key).unknown())?;
                    ty.validate_encoded(field, &site.child(key))?;
                }
                Ok(())
            }
            DataType::Json(_) => Ok(()),
        }
    }

    /// Encoded form → typed value.
    pub fn decode(&self, value: &Json) -> Value {
        match (self, value) {
            (_, Json::Null) => Value::Null,
            (DataType::Date(_), Json::String(s)) => {
                Date::parse(s).map(Value::Date).unwrap_or_else(|| Value::String(s.clone()))
            }
            (DataType::Set { items, .. }, Json::Object(entries)) => {
                let mut members: Vec<Value> = entries
                    .iter()
                    .filter(|(_, present)| present.as_bool() == Some(true))
                    .filter_map(|(key, _)| items.decode_set_item(key))
                    .collect();
                members.sort();
                members.dedup();
                Value::Set(members)
            }
            (DataType::Record { properties, .. }, Json::Object(fields)) => Value::Record(
                fields
                    .iter()
                    .filter(|(_, v)| !v.is_null())
                    .map(|(k, v)| {
                        let decoded = match properties.get(k) {
                            Some(ty) => ty.decode(v),
                            None => Value::from_json(v),
                        };
                        (k.clone(), decoded)
                    })
                    .collect(),
            ),
            (_, other) => Value::from_json(other),
        }
    }

    /// Whether [`DataType::into_api_json`] would return the value unchanged.
    pub(crate) fn is_api_json(&self, value: &Json) -> bool {
        match (self, value) {
            (DataType::Set { .. }, Json::Object(_)) => false,
            (DataType::Record { properties, .. }, Json::Object(fields)) => {
                fields.iter().all(|(k, v)| !v.is_null() && properties.get(k).is_none_or(|ty| ty.is_api_json(v)))
            }
            (DataType::Number(_), Json::Number(n)) => number_to_json(n.as_f64().unwrap_or(f64::NAN)) == *value,
            _ => true,
        }
    }

    /// Encoded form → API form, consuming the value.
    pub fn into_api_json(&self, value: Json) -> Json {
        match (self, value) {
            (DataType::Set { .. }, value @ Json::Object(_)) => self.decode(&value).to_json(),
            (DataType::Record { properties, .. }, Json::Object(fields)) => Json::Object(
                fields
                    .into_iter()
                    .filter(|(_, v)| !v.is_null())
                    .map(|(k, v)| {
                        let api = match properties.get(&k) {
                            Some(ty) => ty.into_api_json(v),
                            None => v,
                        };
                        (k, api)
                    })
                    .collect(),
            ),
            (DataType::Number(_), Json::Number(n)) => number_to_json(n.as_f64().unwrap_or(f64::NAN)),
            (_, value) => value,
        }
    }

    /// Encoded form → API form (sets as arrays, nulls left out).
    pub fn to_api_json(&self, value: &Json) -> Json {
        match (self, value) {
            (DataType::Set { .. }, Json::Object(_)) => self.decode(value).to_json(),
            (DataType::Record { properties, .. }, Json::Object(fields)) => Json::Object(
                fields
                    .iter()
                    .filter(|(_, v)| !v.is_null())
                    .map(|(k, v)| {
                        let api = match properties.get(k) {
                            Some(ty) => ty.to_api_json(v),
                            None => v.clone(),
                        };
                        (k.clone(), api)
                    })
                    .collect(),
            ),
            (DataType::Number(_), Json::Number(n)) => number_to_json(n.as_f64().unwrap_or(f64::NAN)),
            _ => value.clone(),
        }
    }
}

impl DataType {
    /// API-form patch value → encoded partial. Records merge key by key; a set given as an
    /// array replaces the set (items no longer present become tombstones), a set given in
    /// encoded form (`{item: bool}`) adds and removes items.
    pub(crate) fn encode_patch(&self, value: &Json, current: Option<&Json>, site: &Site) -> Result<Json> {
        match (self, value) {
            // A record the entity does not have yet is written whole, as on insert.
            (DataType::Record { properties, .. }, Json::Object(fields)) if current.is_none_or(Json::is_null) => {
                Ok(Json::Object(encode_record(properties, fields, site)?))
            }
            (DataType::Record { properties, .. }, Json::Object(fields)) => {
                let mut encoded = Map::new();
                for (key, field) in fields {
                    let ty = properties.get(key).ok_or_else(|| site.child(key).unknown())?;
                    let existing = current.and_then(|c| c.get(key));
                    encoded.insert(key.clone(), ty.encode_patch(field, existing, &site.child(key))?);
                }
                Ok(Json::Object(encoded))
            }
            (DataType::Set { .. }, Json::Array(_)) => {
                let Json::Object(mut replacement) = self.encode(value, site)? else {
                    unreachable!("sets encode to objects")
                };
                if let Some(Json::Object(old)) = current {
                    for (item, present) in old {
                        if present.as_bool() == Some(true) && !replacement.contains_key(item) {
                            replacement.insert(item.clone(), Json::Bool(false));
                        }
                    }
                }
                Ok(Json::Object(replacement))
            }
            _ => self.encode(value, site),
        }
    }
}

/// See [`super::Collection::set_arrays_as_additions`].
pub(crate) fn set_arrays_as_additions(
    properties: &BTreeMap<String, DataType>,
    fields: &mut Map<String, Json>,
    site: &Site,
) -> Result<()> {
    for (key, value) in fields.iter_mut() {
        match (properties.get(key), &mut *value) {
            (Some(set @ DataType::Set { .. }), Json::Array(_)) => *value = set.encode(value, &site.child(key))?,
            (Some(DataType::Record { properties, .. }), Json::Object(nested)) => {
                set_arrays_as_additions(properties, nested, &site.child(key))?
            }
            _ => {}
        }
    }
    Ok(())
}

/// Encodes the fields of a whole record against its properties: defaults fill missing
/// attributes, and required ones must be present. (Patches go through `encode_patch`.)
pub(crate) fn encode_record(
    properties: &BTreeMap<String, DataType>,
    fields: &Map<String, Json>,
    site: &Site,
) -> Result<Map<String, Json>> {
    let mut encoded = Map::new();
    for (key, value) in fields {
        let ty = properties.get(key).ok_or_else(|| site.child(key).unknown())?;
        encoded.insert(key.clone(), ty.encode(value, &site.child(key))?);
    }
    fill_missing(properties, &mut encoded, site)?;
    Ok(encoded)
}

/// Adds what a whole record lacks: defaults for missing attributes, and required records
/// built from their own defaults; a required attribute with neither is an error.
fn fill_missing(properties: &BTreeMap<String, DataType>, encoded: &mut Map<String, Json>, site: &Site) -> Result<()> {
    for (key, ty) in properties {
        if encoded.contains_key(key) {
            continue;
        }
        let options = ty.options();
        if let Some(default) = &options.default {
            encoded.insert(key.clone(), ty.encode(&default.generate(), &site.child(key))?);
        } else if let DataType::Record { properties: nested, .. } = ty {
            // A record whose fields all have defaults or are optional can be left out.
            if !options.optional && !options.nullable {
                let filled = encode_record(nested, &Map::new(), &site.child(key))?;
                encoded.insert(key.clone(), Json::Object(filled));
            }
        } else if !options.optional && !options.nullable {
            return Err(site.child(key).missing());
        }
    }
    Ok(())
}

/// Completes an encoded entity that a merge creates (a client's insert over sync): defaults
/// fill missing attributes and required ones must be present, as for an insert through the
/// API. The fields themselves were validated already.
pub(crate) fn complete_encoded_record(
    properties: &BTreeMap<String, DataType>,
    mut fields: Map<String, Json>,
    site: &Site,
) -> Result<Map<String, Json>> {
    for (key, value) in fields.iter_mut() {
        if let (Some(DataType::Record { properties: nested, .. }), Json::Object(nested_fields)) =
            (properties.get(key), value)
        {
            *nested_fields = complete_encoded_record(nested, std::mem::take(nested_fields), &site.child(key))?;
        }
    }
    fill_missing(properties, &mut fields, site)?;
    Ok(fields)
}

/// Completes an encoded partial update against the entity's current fields: a record the
/// entity does not have yet must come whole (completed as on insert), one it has merges key by
/// key. The fields themselves were validated already.
pub(crate) fn complete_encoded_patch(
    properties: &BTreeMap<String, DataType>,
    current: &Map<String, Json>,
    patch: &Map<String, Json>,
    site: &Site,
) -> Result<Map<String, Json>> {
    let mut complete = patch.clone();
    for (key, value) in patch {
        let (Some(DataType::Record { properties: nested, .. }), Json::Object(fields)) = (properties.get(key), value)
        else {
            continue;
        };
        let filled = match current.get(key) {
            Some(Json::Object(existing)) => complete_encoded_patch(nested, existing, fields, &site.child(key))?,
            _ => complete_encoded_record(nested, fields.clone(), &site.child(key))?,
        };
        complete.insert(key.clone(), Json::Object(filled));
    }
    Ok(complete)
}

/// Accepts ISO strings (normalised to JavaScript's form) and epoch milliseconds.
fn encode_date(value: &Json) -> Option<Json> {
    let date = match value {
        Json::String(s) => Date::parse(s)?,
        Json::Number(n) => Date::from_millis(n.as_f64().filter(|f| f.is_finite())? as i64),
        _ => return None,
    };
    Some(Json::String(date.to_iso_string()))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ty(json: Json) -> DataType {
        DataType::parse(&json, "t").unwrap()
    }

    #[test]
    fn set_round_trip_keeps_tombstones_out_of_results() {
        let set = ty(json!({"type": "set", "items": {"type": "number", "config": {}}, "config": {}}));
        let encoded = set.encode(&json!([3, 1, 2]), &Site::root("c")).unwrap();
        assert_eq!(encoded, json!({"1": true, "2": true, "3": true}));
        assert_eq!(set.to_api_json(&json!({"1": true, "2": false, "10": true})), json!([1, 10]));
    }

    #[test]
    fn enum_is_enforced_on_write() {
        let s = ty(json!({"type": "string", "config": {"enum": ["a", "b"]}}));
        assert!(s.encode(&json!("a"), &Site::root("c")).is_ok());
        let err = s.encode(&json!("z"), &Site::root("c")).unwrap_err();
        assert!(err.to_string().contains("one of a, b"), "{err}");
    }
}
