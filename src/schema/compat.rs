//! Backward compatibility of a schema change, reported in Triplit's `SchemaChange` shape.
//!
//! A change is a list of attribute diffs. Some diffs are only safe while the data allows them
//! (a new required attribute needs an empty collection, a narrowed enum needs every stored value
//! to be in the new enum, …): each such diff becomes an issue, checked against the stored data.
//! The change is refused when any issue is violated by existing data.

use std::fmt;

use serde::Serialize;
use serde_json::{Value as Json, json};

use super::{Collection, DataType, Schema};
use crate::error::Result;

/// The outcome of a schema change, as Triplit's `POST /override-schema` returns it.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct SchemaChange {
    pub successful: bool,
    pub code: SchemaChangeCode,
    pub message: String,
    pub issues: Vec<SchemaIssue>,
    pub diff: Vec<Json>,
    pub old_schema: Option<Json>,
    pub new_schema: Json,
}

/// Why a schema change failed, or that it succeeded.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum SchemaChangeCode {
    Success,
    SchemaInvalid,
    ExistingDataMismatch,
    SchemaCompatibilityMismatch,
}

/// One diff that is allowed only while the stored data permits it.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct SchemaIssue {
    /// What changed, in words.
    pub issue: String,
    /// The data condition under which the change is safe (Triplit's names).
    pub data_constraint: &'static str,
    /// The attribute diff this is about.
    pub context: Json,
    /// True when stored data breaks the condition.
    pub violates_existing_data: bool,
    /// What to do about it.
    pub cure: String,
}

impl fmt::Display for SchemaChange {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.message)?;
        for issue in self.issues.iter().filter(|i| i.violates_existing_data) {
            write!(f, "; {} ({})", issue.issue, issue.cure)?;
        }
        Ok(())
    }
}

/// The data conditions under which a risky diff is allowed.
#[derive(Debug, Clone, PartialEq)]
enum DataConstraint {
    CollectionIsEmpty,
    AttributeIsEmpty,
    AttributeHasNoUndefined,
    AttributeHasNoNull,
    AttributeSatisfiesEnum(Vec<String>),
}

impl DataConstraint {
    fn name(&self) -> &'static str {
        match self {
            DataConstraint::CollectionIsEmpty => "collection_is_empty",
            DataConstraint::AttributeIsEmpty => "attribute_is_empty",
            DataConstraint::AttributeHasNoUndefined => "attribute_has_no_undefined",
            DataConstraint::AttributeHasNoNull => "attribute_has_no_null",
            DataConstraint::AttributeSatisfiesEnum(_) => "attribute_satisfies_enum",
        }
    }

    /// Whether one stored document breaks the condition.
    fn violated_by(&self, doc: &Json, path: &[String]) -> bool {
        let value = path.iter().try_fold(doc, |node, key| node.get(key));
        match self {
            DataConstraint::CollectionIsEmpty => true,
            DataConstraint::AttributeIsEmpty => value.is_some_and(|v| !v.is_null()),
            DataConstraint::AttributeHasNoUndefined => value.is_none(),
            DataConstraint::AttributeHasNoNull => value.is_some_and(Json::is_null),
            DataConstraint::AttributeSatisfiesEnum(allowed) => {
                value.and_then(Json::as_str).is_some_and(|s| !allowed.iter().any(|a| a == s))
            }
        }
    }

    fn cure(&self, collection: &str, path: &str) -> String {
        match self {
            DataConstraint::CollectionIsEmpty => {
                format!("delete all entities in '{collection}' first")
            }
            DataConstraint::AttributeIsEmpty => {
                format!("set '{path}' to undefined on every entity in '{collection}' first")
            }
            DataConstraint::AttributeHasNoUndefined => {
                format!("give every entity in '{collection}' a value for '{path}' first")
            }
            DataConstraint::AttributeHasNoNull => {
                format!("replace null values of '{path}' in '{collection}' first")
            }
            DataConstraint::AttributeSatisfiesEnum(allowed) => {
                format!("make every '{path}' in '{collection}' one of {} first", allowed.join(", "))
            }
        }
    }
}

struct Edit {
    collection: String,
    path: Vec<String>,
    issue: String,
    constraint: DataConstraint,
    diff: Json,
}

/// Visits the stored (encoded) documents of one collection until the visitor returns `false`.
pub(crate) type DocumentVisitor<'a> = dyn FnMut(&str, &mut dyn FnMut(&Json) -> bool) -> Result<()> + 'a;

impl SchemaChange {
    /// Compares `old` with `new`, checks the risky edits against stored data, and reports.
    pub(crate) fn evaluate(
        old: Option<&Schema>,
        new: &Schema,
        documents: &mut DocumentVisitor,
    ) -> Result<SchemaChange> {
        let mut diff = Vec::new();
        let mut edits = Vec::new();
        if let Some(old) = old {
            for (name, old_collection) in old.collections() {
                match new.collections().get(name) {
                    Some(new_collection) => {
                        diff_collection(name, old_collection, new_collection, &mut diff, &mut edits)
                    }
                    None => edits.push(Edit {
                        collection: name.clone(),
                        path: Vec::new(),
                        issue: format!("removed collection '{name}'"),
                        constraint: DataConstraint::CollectionIsEmpty,
                        diff: json!({"type": "delete", "collection": name, "attribute": []}),
                    }),
                }
            }
            for name in new.collections().keys().filter(|n| !old.collections().contains_key(*n)) {
                diff.push(
                    json!({"type": "insert", "collection": name, "attribute": [], "metadata": {"type": "collection"}}),
                );
            }
        }
        let mut issues = Vec::new();
        for edit in edits {
            let mut violated = false;
            documents(&edit.collection, &mut |doc| {
                violated = edit.constraint.violated_by(doc, &edit.path);
                !violated
            })?;
            let path = edit.path.join(".");
            issues.push(SchemaIssue {
                cure: edit.constraint.cure(&edit.collection, &path),
                issue: edit.issue,
                data_constraint: edit.constraint.name(),
                context: edit.diff.clone(),
                violates_existing_data: violated,
            });
            diff.push(edit.diff);
        }
        let broken: Vec<&SchemaIssue> = issues.iter().filter(|i| i.violates_existing_data).collect();
        let (successful, code, message) = if broken.is_empty() {
            (true, SchemaChangeCode::Success, "Schema updated successfully".to_owned())
        } else {
            let what: Vec<String> = broken.iter().map(|i| i.issue.clone()).collect();
            (
                false,
                SchemaChangeCode::ExistingDataMismatch,
                format!("Schema update failed: existing data conflicts with {}", what.join("; ")),
            )
        };
        Ok(SchemaChange {
            successful,
            code,
            message,
            issues,
            diff,
            old_schema: old.map(Schema::to_json),
            new_schema: new.to_json(),
        })
    }
}

fn diff_collection(name: &str, old: &Collection, new: &Collection, diff: &mut Vec<Json>, edits: &mut Vec<Edit>) {
    diff_properties(name, &mut Vec::new(), &old.attributes, &new.attributes, diff, edits);
    if old.relationships != new.relationships {
        diff.push(
            json!({"type": "update", "collection": name, "attribute": [], "metadata": {"type": "relationships"}}),
        );
    }
    if old.permissions != new.permissions {
        diff.push(json!({"_diff": "collectionPermissions", "collection": name}));
    }
}

fn diff_properties(
    collection: &str,
    prefix: &mut Vec<String>,
    old: &std::collections::BTreeMap<String, DataType>,
    new: &std::collections::BTreeMap<String, DataType>,
    diff: &mut Vec<Json>,
    edits: &mut Vec<Edit>,
) {
    for (key, old_type) in old {
        prefix.push(key.clone());
        let path = prefix.clone();
        let dotted = path.join(".");
        match new.get(key) {
            None => {
                let constraint = if old_type.options().optional {
                    DataConstraint::AttributeIsEmpty
                } else {
                    DataConstraint::CollectionIsEmpty
                };
                edits.push(Edit {
                    collection: collection.to_owned(),
                    issue: format!("removed attribute '{dotted}'"),
                    diff: json!({"type": "delete", "collection": collection, "attribute": path, "metadata": old_type.to_json()}),
                    path,
                    constraint,
                });
            }
            Some(new_type) => match (old_type, new_type) {
                (DataType::Record { properties: old_props, .. }, DataType::Record { properties: new_props, .. }) => {
                    diff_options(collection, &path, old_type, new_type, diff, edits);
                    diff_properties(collection, prefix, old_props, new_props, diff, edits);
                }
                _ if old_type.describe() != new_type.describe() && !enum_only_change(old_type, new_type) => {
                    edits.push(Edit {
                        collection: collection.to_owned(),
                        issue: format!(
                            "changed the type of '{dotted}' from {} to {}",
                            old_type.describe(),
                            new_type.describe()
                        ),
                        diff: json!({"type": "update", "collection": collection, "attribute": path,
                                     "changes": {"type": new_type.type_name()}}),
                        path,
                        constraint: DataConstraint::AttributeIsEmpty,
                    });
                }
                _ => diff_options(collection, &path, old_type, new_type, diff, edits),
            },
        }
        prefix.pop();
    }
    for (key, new_type) in new.iter().filter(|(k, _)| !old.contains_key(*k)) {
        let mut path = prefix.clone();
        path.push(key.clone());
        let entry =
            json!({"type": "insert", "collection": collection, "attribute": path, "metadata": new_type.to_json()});
        let options = new_type.options();
        if options.optional || options.nullable || options.default.is_some() {
            diff.push(entry);
        } else {
            edits.push(Edit {
                collection: collection.to_owned(),
                issue: format!("added required attribute '{}' without a default", path.join(".")),
                diff: entry,
                path,
                constraint: DataConstraint::CollectionIsEmpty,
            });
        }
    }
}

fn enum_only_change(old: &DataType, new: &DataType) -> bool {
    matches!((old, new), (DataType::String { .. }, DataType::String { .. }))
}

fn diff_options(
    collection: &str,
    path: &[String],
    old: &DataType,
    new: &DataType,
    diff: &mut Vec<Json>,
    edits: &mut Vec<Edit>,
) {
    let dotted = path.join(".");
    let (o, n) = (old.options(), new.options());
    let base =
        |changes: Json| json!({"type": "update", "collection": collection, "attribute": path, "changes": changes});
    let mut push_edit = |issue: String, constraint: DataConstraint, changes: Json| {
        edits.push(Edit {
            collection: collection.to_owned(),
            path: path.to_vec(),
            issue,
            constraint,
            diff: base(changes),
        });
    };
    if o.optional && !n.optional {
        push_edit(
            format!("made '{dotted}' required"),
            DataConstraint::AttributeHasNoUndefined,
            json!({"optional": false}),
        );
    }
    if o.nullable && !n.nullable {
        push_edit(
            format!("made '{dotted}' non-nullable"),
            DataConstraint::AttributeHasNoNull,
            json!({"options": {"nullable": false}}),
        );
    }
    if let (DataType::String { allowed: old_enum, .. }, DataType::String { allowed: Some(new_enum), .. }) = (old, new) {
        let narrowed = match old_enum {
            None => true,
            Some(old_enum) => old_enum.iter().any(|v| !new_enum.contains(v)),
        };
        if narrowed {
            push_edit(
                format!("restricted '{dotted}' to the values {}", new_enum.join(", ")),
                DataConstraint::AttributeSatisfiesEnum(new_enum.clone()),
                json!({"options": {"enum": new_enum}}),
            );
            return;
        }
    }
    if old != new {
        diff.push(base(json!({"options": new.to_json()["config"].clone()})));
    }
}
