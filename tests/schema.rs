//! Schema: parsing Triplit's JSON form, every validation error, storage, and compatibility checks.

mod common;

use common::{backends, todo_schema, todo_schema_json};
use serde_json::{Value as Json, json};
use triplite::schema::{Cardinality, DataType, SchemaChangeCode};
use triplite::{Database, Error, Schema};

fn with_collection(name: &str, properties: Json) -> Json {
    json!({"collections": {name: {"schema": {"type": "record", "properties": properties}}}})
}

fn id() -> Json {
    json!({"type": "string", "config": {}})
}

#[test]
fn parses_the_conformance_schema() {
    let text = include_str!("fixtures/conformance/schema.json");
    let schema = Schema::from_json_str(text).unwrap();
    let users = schema.collection("users").unwrap();
    assert!(matches!(users.attribute_type(&["profile", "stats", "rank"]), Some(DataType::Number(o)) if o.optional));
    assert_eq!(users.relationships["posts"].cardinality, Cardinality::Many);
    assert_eq!(users.relationships["org"].collection, "orgs");
    assert!(users.permissions.as_ref().unwrap().contains_key("admin"));
    assert!(schema.roles().unwrap().contains_key("user"));
    // Round trip through our JSON form parses to the same schema.
    assert_eq!(Schema::from_json(&schema.to_json()).unwrap(), schema);
}

#[test]
fn every_validation_error_names_where_and_what() {
    let cases: Vec<(Json, &str)> = vec![
        (json!([]), "expected an object"),
        (json!({}), "missing \"collections\""),
        (json!({"collections": []}), "collections: expected an object"),
        (with_collection("_private", json!({"id": id()})), "must not start with _"),
        (with_collection("9lives", json!({"id": id()})), "must not start with _ or a digit"),
        (with_collection("has-dash", json!({"id": id()})), "collections.has-dash"),
        (json!({"collections": {"a": {}}}), "collections.a: missing \"schema\""),
        (json!({"collections": {"a": {"schema": {"type": "string"}}}}), "root type must be a record"),
        (with_collection("a", json!({"name": {"type": "string"}})), "must have an \"id\""),
        (with_collection("a", json!({"id": {"type": "number"}})), "id must be a string"),
        (with_collection("a", json!({"id": id(), "bad name": {"type": "string"}})), "property name 'bad name'"),
        (with_collection("a", json!({"id": id(), "x": {"type": "strang"}})), "unknown type 'strang'"),
        (with_collection("a", json!({"id": id(), "x": {"config": {}}})), "collections.a.schema.x: missing \"type\""),
        (with_collection("a", json!({"id": id(), "x": {"type": "set"}})), "a set needs \"items\""),
        (
            with_collection(
                "a",
                json!({"id": id(), "x": {"type": "set", "items": {"type": "record", "properties": {}}}}),
            ),
            "set items must be string, number, boolean or date",
        ),
        (with_collection("a", json!({"id": id(), "x": {"type": "record"}})), "a record needs a \"properties\" object"),
        (
            with_collection("a", json!({"id": id(), "x": {"type": "string", "config": {"enum": [1]}}})),
            "enum values must be strings",
        ),
        (
            with_collection("a", json!({"id": id(), "x": {"type": "string", "config": {"optional": "yes"}}})),
            "config.optional must be a boolean",
        ),
        (
            with_collection("a", json!({"id": id(), "x": {"type": "number", "config": {"default": "five"}}})),
            "default does not fit the type",
        ),
        (
            with_collection("a", json!({"id": id(), "x": {"type": "string", "config": {"default": {"func": "rand"}}}})),
            "unknown default function 'rand'",
        ),
        (
            with_collection(
                "a",
                json!({"id": id(), "x": {"type": "string", "config": {"default": {"func": "Set.empty"}}}}),
            ),
            "only a default for sets",
        ),
        (
            with_collection(
                "a",
                json!({"id": id(), "x": {"type": "string", "config": {"enum": ["a"], "default": "b"}}}),
            ),
            "default does not fit",
        ),
        (
            json!({"collections": {"a": {"schema": {"type": "record", "properties": {"id": id()}}, "relationships": {"r": {"query": {"collectionName": "zzz"}, "cardinality": "one"}}}}}),
            "relates to unknown collection 'zzz'",
        ),
        (
            json!({"collections": {"a": {"schema": {"type": "record", "properties": {"id": id()}}, "relationships": {"r": {"query": {"collectionName": "a"}, "cardinality": "few"}}}}}),
            "cardinality must be",
        ),
        (
            json!({"collections": {"a": {"schema": {"type": "record", "properties": {"id": id()}}, "relationships": {"id": {"query": {"collectionName": "a"}, "cardinality": "one"}}}}}),
            "cannot share its name with an attribute",
        ),
        (
            json!({"collections": {"a": {"schema": {"type": "record", "properties": {"id": id()}}, "permissions": {"user": {"write": {"filter": []}}}}}}),
            "unknown operation",
        ),
        (
            json!({"collections": {"a": {"schema": {"type": "record", "properties": {"id": id()}}, "permissions": {"user": {"read": {"where": []}}}}}}),
            "expected {\"filter\": [...]}",
        ),
        (
            json!({"collections": {"a": {"schema": {"type": "record", "properties": {"id": id()}}, "indexes": [["missing"]]}}}),
            "unknown attribute 'missing'",
        ),
        (
            json!({"collections": {"a": {"schema": {"type": "record", "properties": {"id": id()}}, "indexes": "id"}}}),
            "expected an array of attribute lists",
        ),
        (json!({"collections": {}, "roles": {"user": {"match": "sub"}}}), "roles.user.match: must be an object"),
    ];
    for (json, expected) in cases {
        let err = Schema::from_json(&json).expect_err(expected);
        assert!(matches!(err, Error::InvalidSchema { .. }), "{err:?}");
        assert!(err.to_string().contains(expected), "'{err}' should contain '{expected}'");
    }
    let err = Schema::from_json_str("{not json").unwrap_err();
    assert!(matches!(err, Error::InvalidJson { .. }), "{err}");
}

#[test]
fn accepts_indexes_and_older_optional_lists() {
    let schema = Schema::from_json(&json!({"collections": {"t": {
        "schema": {"type": "record", "properties": {"id": id(), "owner": {"type": "string"}, "n": {"type": "number"}}, "optional": ["n"]},
        "indexes": [["owner", "n"]]
    }}}))
    .unwrap();
    let t = schema.collection("t").unwrap();
    assert_eq!(t.indexes, vec![vec!["owner".to_string(), "n".to_string()]]);
    assert!(t.attributes["n"].options().optional);
}

#[test]
fn schema_is_stored_and_compatible_changes_apply() {
    for backend in backends() {
        let db = backend.open(Some(todo_schema()));
        db.insert("todos", json!({"id": "t1", "text": "a", "priority": "high", "owner": "u"})).unwrap();
        // Adding an optional attribute and a collection is always safe.
        let mut next = todo_schema_json();
        next["collections"]["todos"]["schema"]["properties"]["note"] =
            json!({"type": "string", "config": {"optional": true}});
        next["collections"]["users"] = json!({"schema": {"type": "record", "properties": {"id": id()}}});
        let change = db.set_schema(Schema::from_json(&next).unwrap()).unwrap();
        assert!(change.successful && change.code == SchemaChangeCode::Success, "{}", backend.name);
        assert!(db.schema().unwrap().collection("users").is_ok());
        let as_json = serde_json::to_value(&change).unwrap();
        for key in ["successful", "code", "message", "issues", "diff", "oldSchema", "newSchema"] {
            assert!(as_json.get(key).is_some(), "SchemaChange has Triplit's key {key}");
        }
    }
}

#[test]
fn breaking_changes_report_which_change_breaks_which_data() {
    for backend in backends() {
        let db = backend.open(Some(todo_schema()));
        db.insert("todos", json!({"id": "t1", "text": "a", "priority": "high", "owner": "u"})).unwrap();
        db.insert("todos", json!({"id": "t2", "text": "b"})).unwrap();
        let attempt = |edit: &dyn Fn(&mut Json)| {
            let mut next = todo_schema_json();
            edit(&mut next["collections"]["todos"]["schema"]["properties"]);
            db.set_schema(Schema::from_json(&next).unwrap())
        };
        type Edit = Box<dyn Fn(&mut Json)>;
        let breaking: Vec<(Edit, &str)> = vec![
            (Box::new(|p| p["due"] = json!({"type": "date", "config": {}})), "added required attribute 'due'"),
            (Box::new(|p| p["owner"] = json!({"type": "string", "config": {}})), "made 'owner' required"),
            (Box::new(|p| p["priority"]["config"]["enum"] = json!(["low"])), "restricted 'priority'"),
            (Box::new(|p| p["text"] = json!({"type": "number", "config": {}})), "changed the type of 'text'"),
            (
                Box::new(|p| {
                    p.as_object_mut().unwrap().remove("text");
                }),
                "removed attribute 'text'",
            ),
        ];
        for (edit, expected) in breaking {
            let Err(Error::IncompatibleSchema(change)) = attempt(&*edit) else {
                panic!("{}: {expected} should be refused", backend.name)
            };
            assert_eq!(change.code, SchemaChangeCode::ExistingDataMismatch);
            let issue = change.issues.iter().find(|i| i.violates_existing_data).unwrap();
            assert!(issue.issue.contains(expected), "{}: {} should contain {expected}", backend.name, issue.issue);
            assert_eq!(issue.context["collection"], json!("todos"));
            assert!(change.to_string().contains(expected));
        }
        // The schema did not change.
        assert_eq!(*db.schema().unwrap(), todo_schema());
        // The same edits pass once no data stands in the way.
        db.delete("todos", "t1").unwrap();
        db.delete("todos", "t2").unwrap();
        attempt(&|p| p["due"] = json!({"type": "date", "config": {}})).unwrap();
    }
}

#[test]
fn opening_with_a_breaking_schema_fails_and_keeps_the_old_one() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("app.db");
    Database::builder()
        .schema(todo_schema())
        .open(&path)
        .unwrap()
        .insert("todos", json!({"id": "t", "text": "a"}))
        .unwrap();
    let mut next = todo_schema_json();
    next["collections"]["todos"]["schema"]["properties"]["due"] = json!({"type": "date", "config": {}});
    let result = Database::builder().schema(Schema::from_json(&next).unwrap()).open(&path);
    assert!(matches!(result, Err(Error::IncompatibleSchema(_))));
    assert_eq!(*Database::open(&path).unwrap().schema().unwrap(), todo_schema());
}

/// Found by the `document` fuzz target: writes that returned Ok left documents the schema
/// rejects on insert.
#[test]
fn every_write_leaves_documents_that_fit_the_schema() {
    for backend in backends() {
        let db = backend.open(Some(todo_schema()));
        db.insert("todos", json!({"id": "t1", "text": "a"})).unwrap();
        // A record the entity does not have yet must come whole: through the API...
        let error = db.update("todos", "t1", json!({"address": {"zip": "0150"}})).unwrap_err();
        assert!(error.to_string().contains("address.city: required attribute is missing"), "{}: {error}", backend.name);
        // ...and through a client's encoded changes.
        let partial =
            triplite::Changes::from_json(&json!({"todos": {"sets": {"t1": {"address": {"zip": "0150"}}}}})).unwrap();
        assert!(db.commit_changes(&partial).is_err(), "{}", backend.name);
        assert!(db.fetch_by_id("todos", "t1").unwrap().unwrap().get("address").is_none());
        db.update("todos", "t1", json!({"address": {"city": "Oslo"}})).unwrap();
        let zip =
            triplite::Changes::from_json(&json!({"todos": {"sets": {"t1": {"address": {"zip": "0150"}}}}})).unwrap();
        db.commit_changes(&zip).unwrap();
        assert_eq!(
            db.fetch_by_id("todos", "t1").unwrap().unwrap()["address"],
            json!({"city": "Oslo", "zip": "0150"}),
            "an existing record merges"
        );
        // Number-set items that no JSON number can hold.
        for item in ["NaN", "inf", "-inf", "1e400"] {
            let set =
                triplite::Changes::from_json(&json!({"todos": {"sets": {"t1": {"scores": {item: true}}}}})).unwrap();
            assert!(db.commit_changes(&set).is_err(), "{}: {item}", backend.name);
        }
        let fetched = db.fetch_by_id("todos", "t1").unwrap().unwrap();
        let fresh = backend.open(Some(todo_schema()));
        fresh.insert("todos", fetched).expect("what was stored inserts again");
    }
}
