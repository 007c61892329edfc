//! Storage: writes, last-writer-wins merging, transactions and bad input, on both backends.

mod common;

use common::{backends, todo_schema};
use serde_json::{Value as Json, json};
use triplite::{Changes, Database, Error, Timestamp};

fn ts(ms: u64, client: &str) -> Timestamp {
    Timestamp::new(ms, 0, client)
}

fn changes(json: Json) -> Changes {
    Changes::from_json(&json).unwrap()
}

fn get(db: &Database, id: &str) -> Option<Json> {
    db.fetch_by_id("todos", id).unwrap()
}

#[test]
fn insert_fills_defaults_and_round_trips_every_type() {
    for backend in backends() {
        let db = backend.open(Some(todo_schema()));
        let inserted = db
            .insert(
                "todos",
                json!({"id": "t1", "text": "milk", "tags": ["b", "a"], "scores": [3, 1.5],
                       "meta": {"x": [1, 2], "y": null}, "address": {"city": "Oslo"}, "created_at": 0}),
            )
            .unwrap();
        assert_eq!(inserted["completed"], json!(false), "{}", backend.name);
        assert_eq!(inserted["priority"], json!("low"));
        assert_eq!(inserted["created_at"], json!("1970-01-01T00:00:00.000Z"));
        let fetched = get(&db, "t1").unwrap();
        assert_eq!(fetched, inserted, "{}: fetch equals the insert result", backend.name);
        assert_eq!(fetched["tags"], json!(["a", "b"]));
        assert_eq!(fetched["scores"], json!([1.5, 3]));
        assert_eq!(fetched["meta"], json!({"x": [1, 2], "y": null}));
        assert_eq!(fetched["address"], json!({"city": "Oslo"}));

        let generated = db.insert("todos", json!({"text": "no id"})).unwrap();
        let id = generated["id"].as_str().unwrap();
        assert_eq!(id.len(), 21, "a nanoid is generated");
        assert!(get(&db, id).is_some());
    }
}

#[test]
fn update_patches_records_sets_and_deletes_optionals() {
    for backend in backends() {
        let db = backend.open(Some(todo_schema()));
        db.insert("todos", json!({"id": "t1", "text": "a", "owner": "u1", "tags": ["x", "y"], "address": {"city": "Oslo", "zip": "0150"}}))
            .unwrap();
        db.update("todos", "t1", json!({"address": {"city": "Bergen"}, "tags": ["y", "z"], "owner": null})).unwrap();
        let t = get(&db, "t1").unwrap();
        assert_eq!(t["address"], json!({"city": "Bergen", "zip": "0150"}), "{}: records merge", backend.name);
        assert_eq!(t["tags"], json!(["y", "z"]), "an array replaces the set");
        assert!(t.get("owner").is_none(), "null deletes an optional attribute");
        // The encoded partial form adds and removes single items.
        db.update("todos", "t1", json!({"tags": {"w": true, "y": false}})).unwrap();
        assert_eq!(get(&db, "t1").unwrap()["tags"], json!(["w", "z"]));
    }
}

#[test]
fn bad_input_is_a_typed_error_and_writes_nothing() {
    for backend in backends() {
        let db = backend.open(Some(todo_schema()));
        db.insert("todos", json!({"id": "t1", "text": "a"})).unwrap();
        let cases: Vec<(Result<(), Error>, &str)> = vec![
            (
                db.insert("todos", json!({"id": "t2", "text": 5})).map(drop),
                "todos.text: expected string, found number 5",
            ),
            (db.insert("todos", json!({"id": "t2"})).map(drop), "todos.text: required attribute is missing"),
            (
                db.insert("todos", json!({"id": "t2", "text": "a", "bogus": 1})).map(drop),
                "todos.bogus: unknown attribute",
            ),
            (db.insert("nope", json!({"id": "t2"})).map(drop), "unknown collection 'nope'"),
            (db.insert("todos", json!(["not", "a", "doc"])).map(drop), "expected a document"),
            (db.insert("todos", json!({"id": "t2", "text": "a", "priority": "urgent"})).map(drop), "one of low, high"),
            (db.insert("todos", json!({"id": "t2", "text": "a", "created_at": "soon"})).map(drop), "todos.created_at"),
            (db.insert("todos", json!({"id": "t2", "text": "a", "tags": [1]})).map(drop), "todos.tags"),
            (
                db.insert("todos", json!({"id": "t2", "text": "a", "address": {"zip": "1"}})).map(drop),
                "todos.address.city: required",
            ),
            (db.update("todos", "t1", json!({"completed": "yes"})), "todos.completed: expected boolean"),
            (db.update("todos", "t1", json!({"text": null})), "todos.text: expected string, found null"),
            (db.update("todos", "t1", json!({"id": "other"})), "ids cannot change"),
            (db.update("todos", "missing", json!({"text": "b"})), "todos/missing: entity not found"),
        ];
        for (result, expected) in cases {
            let err = result.expect_err(expected).to_string();
            assert!(err.contains(expected), "{}: '{err}' should contain '{expected}'", backend.name);
        }
        assert!(get(&db, "t2").is_none(), "{}: nothing of a failed insert is written", backend.name);
        assert_eq!(get(&db, "t1").unwrap()["text"], json!("a"));
    }
}

#[test]
fn malformed_json_changes_are_rejected_by_name() {
    let err = Changes::from_json(&json!({"todos": {"sets": {"t1": 5}}})).unwrap_err();
    assert!(matches!(err, Error::InvalidJson { .. }), "{err}");
    assert!(err.to_string().contains("changes.todos.sets.t1"), "{err}");
}

#[test]
fn transactions_commit_all_or_nothing() {
    for backend in backends() {
        let db = backend.open(Some(todo_schema()));
        db.insert("todos", json!({"id": "keep", "text": "k"})).unwrap();
        let failed = db.transact(|tx| {
            tx.insert("todos", json!({"id": "a", "text": "a"}))?;
            tx.update("todos", "keep", json!({"text": "changed"}))?;
            tx.delete("todos", "keep")?;
            tx.insert("todos", json!({"id": "b", "text": 1}))?; // fails: wrong type
            Ok(())
        });
        assert!(matches!(failed, Err(Error::TypeMismatch { .. })), "{}", backend.name);
        assert!(get(&db, "a").is_none(), "{}: the first insert rolled back", backend.name);
        assert_eq!(get(&db, "keep").unwrap()["text"], json!("k"), "{}: update and delete rolled back", backend.name);

        // Reads inside a transaction see its own writes; later writes win.
        db.transact(|tx| {
            tx.insert("todos", json!({"id": "c", "text": "one"}))?;
            tx.update("todos", "c", json!({"text": "two"}))?;
            assert_eq!(tx.fetch_by_id("todos", "c")?.unwrap()["text"], json!("two"));
            Ok(())
        })
        .unwrap();
        assert_eq!(get(&db, "c").unwrap()["text"], json!("two"));

        // A panic inside a transaction rolls it back and leaves the database usable.
        let db2 = db.clone();
        let panicked = std::thread::spawn(move || {
            let _ = db2.transact(|tx| -> triplite::Result<()> {
                tx.insert("todos", json!({"id": "p", "text": "p"}))?;
                panic!("boom");
            });
        })
        .join();
        assert!(panicked.is_err());
        assert!(get(&db, "p").is_none(), "{}: the panicking transaction left nothing", backend.name);
        db.insert("todos", json!({"id": "after", "text": "x"})).unwrap();
    }
}

#[test]
fn lww_two_writers_same_and_different_attributes() {
    for backend in backends() {
        let db = backend.open(Some(todo_schema()));
        db.apply_changes(changes(json!({"todos": {"sets": {"t": {"id": "t", "text": "base", "completed": false, "priority": "low", "created_at": "2024-01-01T00:00:00.000Z", "tags": {}}}}})), &ts(10, "a"))
            .unwrap();
        // Different attributes never conflict.
        db.apply_changes(changes(json!({"todos": {"sets": {"t": {"text": "from a"}}}})), &ts(20, "a")).unwrap();
        db.apply_changes(changes(json!({"todos": {"sets": {"t": {"completed": true}}}})), &ts(21, "b")).unwrap();
        // Same attribute: the later timestamp wins even when it arrives first.
        db.apply_changes(changes(json!({"todos": {"sets": {"t": {"priority": "high"}}}})), &ts(40, "b")).unwrap();
        db.apply_changes(changes(json!({"todos": {"sets": {"t": {"priority": "low"}}}})), &ts(30, "a")).unwrap();
        // Equal physical time: the client id breaks the tie.
        db.apply_changes(changes(json!({"todos": {"sets": {"t": {"text": "z wins"}}}})), &ts(50, "z")).unwrap();
        db.apply_changes(changes(json!({"todos": {"sets": {"t": {"text": "a loses"}}}})), &ts(50, "a")).unwrap();
        let t = get(&db, "t").unwrap();
        assert_eq!(
            (&t["text"], &t["completed"], &t["priority"]),
            (&json!("z wins"), &json!(true), &json!("high")),
            "{}",
            backend.name
        );
    }
}

#[test]
fn sets_merge_per_element_in_any_order() {
    for backend in backends() {
        let db = backend.open(Some(todo_schema()));
        let base = json!({"todos": {"sets": {"t": {"id": "t", "text": "x", "completed": false, "priority": "low", "created_at": "2024-01-01T00:00:00.000Z", "tags": {"a": true}}}}});
        db.apply_changes(changes(base), &ts(1, "a")).unwrap();
        // Concurrent add of b (writer a) and remove of a + add of c (writer b), arriving out of order.
        db.apply_changes(changes(json!({"todos": {"sets": {"t": {"tags": {"a": false, "c": true}}}}})), &ts(3, "b"))
            .unwrap();
        db.apply_changes(changes(json!({"todos": {"sets": {"t": {"tags": {"b": true}}}}})), &ts(2, "a")).unwrap();
        // A stale re-add of a loses to the newer removal.
        db.apply_changes(changes(json!({"todos": {"sets": {"t": {"tags": {"a": true}}}}})), &ts(2, "c")).unwrap();
        assert_eq!(get(&db, "t").unwrap()["tags"], json!(["b", "c"]), "{}", backend.name);
    }
}

#[test]
fn delete_against_concurrent_update_and_reinsert() {
    for backend in backends() {
        let db = backend.open(Some(todo_schema()));
        let insert = |text: &str| {
            changes(
                json!({"todos": {"sets": {"t": {"id": "t", "text": text, "completed": false, "priority": "low", "created_at": "2024-01-01T00:00:00.000Z", "tags": {}}}}}),
            )
        };
        db.apply_changes(insert("v1"), &ts(1, "a")).unwrap();
        db.apply_changes(changes(json!({"todos": {"deletes": ["t"]}})), &ts(5, "b")).unwrap();
        // An update stamped before the delete but arriving after it: erased by the delete.
        db.apply_changes(changes(json!({"todos": {"sets": {"t": {"text": "early"}}}})), &ts(3, "a")).unwrap();
        assert!(get(&db, "t").is_none(), "{}", backend.name);
        // An update after the delete: the entity does not exist, so the update is dropped.
        db.apply_changes(changes(json!({"todos": {"sets": {"t": {"text": "late", "owner": "ghost"}}}})), &ts(6, "a"))
            .unwrap();
        assert!(get(&db, "t").is_none(), "{}: an update of a deleted entity is dropped", backend.name);
        // Re-inserting re-creates it fresh: nothing of the old life or of the dropped update.
        db.apply_changes(insert("v2"), &ts(7, "c")).unwrap();
        let t = get(&db, "t").unwrap();
        assert_eq!(t["text"], json!("v2"), "{}", backend.name);
        assert!(t.get("owner").is_none(), "{}: the dropped update stays dropped", backend.name);
        // A delete stamped before the re-insert but arriving late does not remove it.
        db.apply_changes(changes(json!({"todos": {"deletes": ["t"]}})), &ts(6, "z")).unwrap();
        assert!(get(&db, "t").is_some(), "{}", backend.name);
        // Deletes apply before sets in one batch: delete + insert of the same id re-creates.
        db.apply_changes(changes(json!({"todos": {"deletes": ["t"], "sets": {"t": {"id": "t", "text": "v3", "completed": false, "priority": "low", "created_at": "2024-01-01T00:00:00.000Z", "tags": {}}}}})), &ts(9, "a")).unwrap();
        assert_eq!(get(&db, "t").unwrap()["text"], json!("v3"), "{}", backend.name);
    }
}

#[test]
fn update_of_missing_entity_is_dropped_on_merge_and_the_batch_goes_on() {
    for backend in backends() {
        let db = backend.open(Some(todo_schema()));
        let batch = changes(json!({"todos": {"sets": {
            "ghost": {"text": "nobody home"},
            "real": {"id": "real", "text": "here", "completed": false, "priority": "low", "created_at": "2024-01-01T00:00:00.000Z", "tags": {}}
        }}}));
        db.apply_changes(&batch, &ts(1, "a")).unwrap();
        assert!(get(&db, "ghost").is_none(), "{}", backend.name);
        assert_eq!(get(&db, "real").unwrap()["text"], json!("here"));
    }
}

#[test]
fn inserting_an_existing_id_merges_as_triplit_does() {
    for backend in backends() {
        let db = backend.open(Some(todo_schema()));
        db.insert("todos", json!({"id": "t", "text": "a", "owner": "u1"})).unwrap();
        db.insert("todos", json!({"id": "t", "text": "b"})).unwrap();
        let t = get(&db, "t").unwrap();
        assert_eq!((&t["text"], &t["owner"]), (&json!("b"), &json!("u1")), "{}", backend.name);
    }
}

#[test]
fn merge_path_validates_encoded_changes() {
    for backend in backends() {
        let db = backend.open(Some(todo_schema()));
        let bad = changes(json!({"todos": {"sets": {"t": {"id": "t", "text": "ok", "tags": ["not", "encoded"]}}}}));
        let err = db.apply_changes(&bad, &ts(1, "a")).unwrap_err();
        assert!(err.to_string().contains("todos.tags"), "{}: {err}", backend.name);
        let wrong_id = changes(json!({"todos": {"sets": {"t": {"id": "u", "text": "ok"}}}}));
        assert!(db.apply_changes(&wrong_id, &ts(2, "a")).is_err());
        assert!(get(&db, "t").is_none() && get(&db, "u").is_none());
    }
}

#[test]
fn server_stamps_client_changes_with_its_own_clock() {
    for backend in backends() {
        let db = backend.open(Some(todo_schema()));
        let t1 = db.commit_changes(changes(json!({"todos": {"sets": {"t": {"id": "t", "text": "a", "completed": false, "priority": "low", "created_at": "2024-01-01T00:00:00.000Z", "tags": {}}}}}))).unwrap();
        let t2 = db.commit_changes(changes(json!({"todos": {"sets": {"t": {"text": "b"}}}}))).unwrap();
        assert!(t2 > t1 && t1.client == "test-client", "{}", backend.name);
        assert_eq!(get(&db, "t").unwrap()["text"], json!("b"));
    }
}

#[test]
fn schemaless_documents_are_any_json() {
    for backend in backends() {
        let db = backend.open(None);
        db.insert("notes", json!({"id": "n", "body": {"a": 1, "list": [1, 2]}, "n": 1})).unwrap();
        db.update("notes", "n", json!({"body": {"b": 2, "list": [3]}})).unwrap();
        assert_eq!(
            db.fetch_by_id("notes", "n").unwrap().unwrap(),
            json!({"id": "n", "body": {"a": 1, "b": 2, "list": [3]}, "n": 1}),
            "{}: objects deep-merge, arrays are replaced",
            backend.name
        );
        assert!(matches!(db.insert("bad name", json!({})), Err(Error::UnknownCollection(_))));
        assert_eq!(db.collection_names().unwrap(), vec!["notes".to_string()]);
    }
}

#[test]
fn a_document_nested_deeper_than_can_be_read_back_is_refused_and_writes_nothing() {
    let nested = |levels: usize| (0..levels).fold(json!(1), |inner, _| json!([inner]));
    for backend in backends() {
        let db = backend.open(None);
        // The document is one level, its attribute the rest: 127 in all is the most that reads back.
        db.insert("notes", json!({"id": "ok", "body": nested(126)})).unwrap();
        assert_eq!(db.fetch_by_id("notes", "ok").unwrap().unwrap()["body"], nested(126), "{}", backend.name);
        let refused = db.transact(|tx| {
            tx.insert("notes", json!({"id": "first", "body": 1}))?;
            tx.insert("notes", json!({"id": "deep", "body": nested(127)}))
        });
        assert!(matches!(refused, Err(Error::InvalidJson { .. })), "{}: {refused:?}", backend.name);
        assert_eq!(db.fetch_by_id("notes", "first").unwrap(), None, "{}: nothing of the transaction", backend.name);
        assert_eq!(db.fetch_by_id("notes", "deep").unwrap(), None, "{}", backend.name);
    }
}

#[test]
fn sqlite_database_survives_reopening_with_schema_and_clock() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("nested/dir/app.db");
    let first_ts = {
        let db = Database::builder().schema(todo_schema()).open(&path).unwrap();
        db.insert("todos", json!({"id": "t", "text": "persisted", "tags": ["x"]})).unwrap();
        db.commit_changes(Changes::default()).unwrap()
    };
    // Reopen without a schema: the stored schema, client id and clock come back.
    let db = Database::open(&path).unwrap();
    assert!(db.schema().is_some());
    assert_eq!(db.fetch_by_id("todos", "t").unwrap().unwrap()["tags"], json!(["x"]));
    let next = db.commit_changes(Changes::default()).unwrap();
    assert!(next > first_ts, "the clock never goes back across reopening: {first_ts} then {next}");
    assert_eq!(next.client, first_ts.client, "the client id is stable");
}

#[test]
fn a_file_with_expression_indexes_opens_with_them_rebuilt_over_key_columns() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("app.db");
    let schema = triplite::Schema::from_json(&json!({"collections": {"todos": {
        "schema": {"type": "record", "properties": {"id": {"type": "string"}, "owner": {"type": "string"}, "n": {"type": "number"}}},
        "indexes": [["owner", "n"]]}}}))
    .unwrap();
    {
        let db = Database::builder().schema(schema.clone()).open(&path).unwrap();
        for (id, owner, n) in [("a", "ann", 2), ("b", "bob", 1), ("c", "ann", 1), ("d", "ann", 3)] {
            db.insert("todos", json!({"id": id, "owner": owner, "n": n})).unwrap();
        }
    }
    // Back to layout 2, as an earlier build wrote it: an expression index over the document and
    // no key columns. (The stand-in key function only lets the old index be created here.)
    {
        let conn = rusqlite::Connection::open(&path).unwrap();
        conn.create_scalar_function(
            "triplite_key",
            1,
            rusqlite::functions::FunctionFlags::SQLITE_DETERMINISTIC,
            |ctx| Ok(ctx.get_raw(0).as_bytes().map(<[u8]>::to_vec).unwrap_or_default()),
        )
        .unwrap();
        let (name, table): (String, String) = conn
            .query_row("SELECT i.name, c.tbl FROM indexes i JOIN collections c ON c.name = i.collection", [], |row| {
                Ok((row.get(0)?, row.get(1)?))
            })
            .unwrap();
        let columns: Vec<String> = conn
            .prepare(&format!("SELECT name FROM pragma_table_info('{table}') WHERE name LIKE 'k\\_%' ESCAPE '\\'"))
            .unwrap()
            .query_map([], |row| row.get(0))
            .unwrap()
            .collect::<Result<_, _>>()
            .unwrap();
        assert_eq!(columns.len(), 2, "one key column per indexed path: {columns:?}");
        conn.execute_batch(&format!("DROP INDEX {name}")).unwrap();
        for column in &columns {
            conn.execute_batch(&format!("ALTER TABLE {table} DROP COLUMN {column}")).unwrap();
        }
        conn.execute_batch(&format!(
            "CREATE INDEX {name} ON {table} (triplite_key(doc -> '$.\"owner\"'), triplite_key(doc -> '$.\"n\"')) WHERE doc IS NOT NULL;
             PRAGMA user_version = 2;"
        ))
        .unwrap();
    }
    let db = Database::builder().schema(schema).open(&path).unwrap();
    let query = triplite::Query::from_json(
        &json!({"collectionName": "todos", "where": [["owner", "=", "ann"]], "order": [["n", "DESC"]]}),
    )
    .unwrap();
    let ids: Vec<Json> = db.fetch(&query).unwrap().into_iter().map(|todo| todo["id"].clone()).collect();
    assert_eq!(ids, vec![json!("d"), json!("a"), json!("c")]);
    db.insert("todos", json!({"id": "e", "owner": "ann", "n": 4})).unwrap();
    assert_eq!(db.fetch(&query).unwrap()[0]["id"], json!("e"), "new rows are keyed as they are written");
    drop(db);
    let conn = rusqlite::Connection::open(&path).unwrap();
    let version: i64 = conn.query_row("PRAGMA user_version", [], |row| row.get(0)).unwrap();
    assert_eq!(version, 3);
    let expression_indexes: i64 = conn
        .query_row("SELECT COUNT(*) FROM sqlite_master WHERE type = 'index' AND sql LIKE '%triplite_key%'", [], |row| {
            row.get(0)
        })
        .unwrap();
    assert_eq!(expression_indexes, 0, "no index needs triplite's own function any more");
    // The stock shell's checks work on the file (they evaluate no function of ours).
    let check: String = conn.query_row("PRAGMA integrity_check", [], |row| row.get(0)).unwrap();
    assert_eq!(check, "ok");
}
