//! Documents against a schema: a sequence of writes, each checked for atomicity and validity —
//! not only that nothing crashes.
//!
//! The input is one operation per line, a letter and then JSON:
//!
//! ```text
//! i ["users", {doc}]                  Database::insert
//! u ["users", "id", {patch}]          Database::update
//! d ["users", "id"]                   Database::delete
//! t [["i", "users", {doc}], ...]      Database::transact: the operations above, letter first,
//!                                     and ["fail"] (or any malformed one) to abort there
//! c {changes}                         Database::commit_changes(decode_changes(changes)), the
//!                                     SuperJSON envelope of a client's CHANGES or plain JSON
//! ```
//!
//! Every input runs on both backends (SQLite, the production store, and the in-memory one).
//! After each operation: one that failed left every collection exactly as it was; one that
//! succeeded left only documents that read back, that insert again into a fresh database with
//! the same schema, and that the `role` index finds.
#![no_main]

use std::collections::BTreeMap;
use std::sync::LazyLock;

use libfuzzer_sys::fuzz_target;
use serde_json::{Value as Json, json};
use triplite::sync::protocol::decode_changes;
use triplite::{Database, Error, Query, Schema, Transaction};

const COLLECTIONS: [&str; 3] = ["users", "orgs", "posts"];
const ROLES: [&str; 3] = ["member", "editor", "owner"];

/// Every type and option the schema language has: enums, defaults of each kind, optional and
/// nullable attributes, sets of each item type, records nested two deep with optional fields,
/// json, relations both ways, and a secondary index. Parsed once: opening the databases is most
/// of what an input costs.
static SCHEMA: LazyLock<Schema> = LazyLock::new(schema);

fn schema() -> Schema {
    let empty_set = json!({"default": {"func": "Set.empty", "args": null}});
    Schema::from_json(&json!({"collections": {
        "users": {
            "schema": {"type": "record", "properties": {
                "id": {"type": "string", "config": {"default": {"func": "nanoid", "args": null}}},
                "name": {"type": "string"},
                "role": {"type": "string", "config": {"enum": ROLES, "default": "member"}},
                "age": {"type": "number", "config": {"optional": true}},
                "score": {"type": "number", "config": {"default": 0}},
                "active": {"type": "boolean", "config": {"default": true}},
                "joined": {"type": "date", "config": {"default": {"func": "now", "args": null}}},
                "last_seen": {"type": "date", "config": {"nullable": true}},
                "nickname": {"type": "string", "config": {"nullable": true, "optional": true}},
                "tags": {"type": "set", "items": {"type": "string"}, "config": empty_set},
                "lucky": {"type": "set", "items": {"type": "number"}, "config": {"optional": true}},
                "flags": {"type": "set", "items": {"type": "boolean"}, "config": {"optional": true}},
                "visits": {"type": "set", "items": {"type": "date"}, "config": {"optional": true}},
                "profile": {"type": "record", "properties": {
                    "city": {"type": "string"},
                    "bio": {"type": "string", "config": {"optional": true}},
                    "stats": {"type": "record", "properties": {
                        "followers": {"type": "number", "config": {"default": 0}},
                        "rank": {"type": "number", "config": {"optional": true, "nullable": true}}
                    }}
                }},
                "settings": {"type": "record", "config": {"optional": true}, "properties": {
                    "theme": {"type": "string", "config": {"enum": ["light", "dark"]}},
                    "beta": {"type": "boolean", "config": {"optional": true}}
                }},
                "meta": {"type": "json", "config": {"optional": true}},
                "org_id": {"type": "string", "config": {"optional": true}}
            }},
            "relationships": {
                "org": relation("orgs", "id", "org_id", "one"),
                "posts": relation("posts", "author_id", "id", "many")
            },
            "indexes": [["role", "score"]]
        },
        "orgs": {
            "schema": {"type": "record", "properties": {
                "id": {"type": "string", "config": {"default": {"func": "uuidv4", "args": null}}},
                "name": {"type": "string"},
                "plan": {"type": "string", "config": {"enum": ["free", "pro"], "nullable": true}},
                "founded": {"type": "date", "config": {"optional": true}},
                "seats": {"type": "number", "config": {"default": 5}},
                "settings": {"type": "json", "config": {"optional": true}}
            }},
            "relationships": {
                "members": relation("users", "org_id", "id", "many")
            }
        },
        "posts": {
            "schema": {"type": "record", "properties": {
                "id": {"type": "string", "config": {"default": {"func": "uuidv7", "args": null}}},
                "author_id": {"type": "string"},
                "title": {"type": "string"},
                "status": {"type": "string", "config": {"enum": ["draft", "published"], "default": "draft"}},
                "created": {"type": "date", "config": {"default": {"func": "now", "args": null}}},
                "tags": {"type": "set", "items": {"type": "string"}, "config": empty_set},
                "extra": {"type": "json", "config": {"optional": true}}
            }},
            "relationships": {
                "author": relation("users", "id", "author_id", "one")
            }
        }
    }}))
    .expect("the fuzz schema is valid")
}

/// A relation to the `collection` entities whose `attribute` equals this one's `own`.
fn relation(collection: &str, attribute: &str, own: &str, cardinality: &str) -> Json {
    let filter = json!([[attribute, "=", format!("$1.{own}")]]);
    json!({"query": {"collectionName": collection, "where": filter}, "cardinality": cardinality})
}

/// What the database holds, as a reader sees it: every collection in API form, and the names
/// of the collections the store knows.
#[derive(Debug, PartialEq)]
struct Dump {
    collections: BTreeMap<&'static str, Vec<Json>>,
    names: Vec<String>,
}

fn dump(db: &Database) -> Dump {
    let collections = COLLECTIONS
        .iter()
        .map(|&c| (c, db.fetch_all(c).unwrap_or_else(|e| panic!("fetch_all({c}) failed: {e}"))))
        .collect();
    let names = db.collection_names().unwrap_or_else(|e| panic!("collection_names failed: {e}"));
    Dump { collections, names }
}

/// One write of a transaction (`["i", collection, doc]`, `["u", collection, id, patch]`,
/// `["d", collection, id]`); anything else aborts the transaction with an error.
fn write(tx: &mut Transaction, op: &Json) -> triplite::Result<()> {
    let parts = op.as_array().map(Vec::as_slice).unwrap_or_default();
    match parts {
        [Json::String(letter), Json::String(c), doc] if letter == "i" => tx.insert(c, doc.clone()).map(drop),
        [Json::String(letter), Json::String(c), Json::String(id), patch] if letter == "u" => {
            tx.update(c, id, patch.clone())
        }
        [Json::String(letter), Json::String(c), Json::String(id)] if letter == "d" => tx.delete(c, id),
        _ => Err(Error::InvalidJson { context: "fuzz".into(), message: format!("abort at {op}") }),
    }
}

/// Runs one line; `None` when it names no operation.
fn run(db: &Database, letter: u8, arg: &Json) -> Option<triplite::Result<()>> {
    let parts = arg.as_array().map(Vec::as_slice).unwrap_or_default();
    Some(match (letter, parts) {
        (b'i', [Json::String(c), doc]) => db.insert(c, doc.clone()).map(|stored| {
            let id = stored["id"].as_str().unwrap_or_else(|| panic!("an insert returned no id: {stored}"));
            let found = db.fetch_by_id(c, id).unwrap_or_else(|e| panic!("fetch_by_id({c}, {id}) failed: {e}"));
            assert!(found.is_some(), "{c}/{id} was inserted but is not there");
        }),
        (b'u', [Json::String(c), Json::String(id), patch]) => db.update(c, id, patch.clone()),
        (b'd', [Json::String(c), Json::String(id)]) => db.delete(c, id),
        (b't', ops) => db.transact(|tx| ops.iter().try_for_each(|op| write(tx, op))),
        (b'c', _) => db.commit_changes(&decode_changes(arg.clone()).ok()?).map(drop),
        _ => return None,
    })
}

/// Every stored document is one the schema accepts, and the index agrees with the documents.
fn check_valid(db: &Database, after: &Dump, mirror: &Database) {
    for (&collection, docs) in &after.collections {
        for doc in docs {
            if let Err(e) = mirror.insert(collection, doc.clone()) {
                panic!("a stored {collection} document does not insert again ({e}):\n{doc:#}");
            }
        }
    }
    for role in ROLES {
        let mut by_index: Vec<Json> = db
            .fetch(&Query::new("users").filter("role", "=", role))
            .unwrap_or_else(|e| panic!("the role query failed: {e}"));
        let mut by_scan: Vec<Json> =
            after.collections["users"].iter().filter(|doc| doc["role"] == role).cloned().collect();
        let id = |doc: &Json| doc["id"].as_str().unwrap_or_default().to_owned();
        by_index.sort_by_key(id);
        by_scan.sort_by_key(id);
        assert_eq!(by_index, by_scan, "users with role {role}: the index and the documents disagree");
    }
}

/// Runs the lines on `db`, checking each; `mirror` is a database with the same schema to insert
/// the stored documents into.
fn exercise(db: &Database, mirror: &Database, lines: &[(u8, Json)]) {
    for (letter, arg) in lines {
        let before = dump(db);
        let Some(outcome) = run(db, *letter, arg) else { continue };
        let after = dump(db);
        match outcome {
            Err(e) => assert_eq!(before, after, "a failed {} ({e}) changed the database: {arg}", *letter as char),
            Ok(()) => check_valid(db, &after, mirror),
        }
    }
}

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else { return };
    let lines: Vec<(u8, Json)> = text
        .lines()
        .filter_map(|line| {
            let (&letter, rest) = line.as_bytes().split_first()?;
            Some((letter, serde_json::from_slice(rest).ok()?))
        })
        .collect();
    if lines.is_empty() {
        return;
    }
    let open = || Database::builder().schema(SCHEMA.clone());
    let mirror = open().open_in_memory().expect("an in-memory database");
    let sqlite = open().open(":memory:").expect("a SQLite database in memory");
    exercise(&sqlite, &mirror, &lines);
    let memory = open().open_in_memory().expect("an in-memory database");
    exercise(&memory, &mirror, &lines);
});
