//! Query semantics, table-driven: every operator on every type (null, missing, empty sets,
//! unicode, mixed JSON), groups, variables, order, after, limit, select, includes, exists,
//! relation paths, errors, and what the planner chooses. Every case runs on both backends,
//! with and without secondary indexes, so index-served and scanned answers must agree.

use serde_json::{Value as Json, json};
use triplite::query::QueryErrorKind;
use triplite::{Database, Error, Query, Schema, Variables};

fn schema(with_indexes: bool) -> Schema {
    let indexes = if with_indexes { json!([["s"], ["n"], ["d"], ["r.x"], ["j"], ["b", "n"]]) } else { json!([]) };
    let opt = |ty: &str| json!({"type": ty, "config": {"optional": true}});
    Schema::from_json(&json!({"collections": {
        "items": {
            "schema": {"type": "record", "properties": {
                "id": {"type": "string"},
                "s": opt("string"), "n": opt("number"), "b": opt("boolean"), "d": opt("date"), "j": opt("json"),
                "ss": {"type": "set", "items": {"type": "string"}, "config": {"optional": true}},
                "sn": {"type": "set", "items": {"type": "number"}, "config": {"optional": true}},
                "r": {"type": "record", "config": {"optional": true}, "properties": {"x": opt("number"), "y": opt("string")}},
                "owner_id": opt("string")
            }},
            "relationships": {
                "owner": {"query": {"collectionName": "owners", "where": [["id", "=", "$1.owner_id"]]}, "cardinality": "one"},
                "notes": {"query": {"collectionName": "notes", "where": [["item_id", "=", "$1.id"]]}, "cardinality": "many"}
            },
            "indexes": indexes
        },
        "owners": {"schema": {"type": "record", "properties": {"id": {"type": "string"}, "name": {"type": "string"}, "rank": opt("number")}}},
        "notes": {"schema": {"type": "record", "properties": {"id": {"type": "string"}, "item_id": {"type": "string"}, "text": {"type": "string"}}}}
    }}))
    .unwrap()
}

fn seed(db: &Database) {
    let rows = [
        json!({"id": "a", "s": "apple", "n": 1, "b": true, "d": "2021-01-01", "ss": ["a", "b"], "sn": [1, 2], "r": {"x": 1, "y": "q"}, "j": {"k": 1}, "owner_id": "o1"}),
        json!({"id": "b", "s": "Banana", "n": 2.5, "b": false, "d": "2022-06-15", "ss": [], "sn": [3], "r": {"x": 2}, "j": [1, 2], "owner_id": "o2"}),
        json!({"id": "c", "s": "Émile", "n": -3, "d": "2020-12-31", "ss": ["c"], "j": "text", "owner_id": "gone"}),
        json!({"id": "d", "s": null, "n": null, "b": null, "d": null, "ss": null, "j": null}),
        json!({"id": "e"}),
        json!({"id": "f", "s": "😀smile", "n": 0, "b": true, "ss": ["a"], "j": 5, "owner_id": "o1"}),
        json!({"id": "g", "s": "～wave", "j": true}),
    ];
    db.transact(|tx| {
        for row in rows {
            tx.insert("items", row)?;
        }
        tx.insert("owners", json!({"id": "o1", "name": "Zed", "rank": 2}))?;
        tx.insert("owners", json!({"id": "o2", "name": "amy"}))?;
        tx.insert("notes", json!({"id": "n1", "item_id": "a", "text": "first"}))?;
        tx.insert("notes", json!({"id": "n2", "item_id": "a", "text": "second"}))?;
        tx.insert("notes", json!({"id": "n3", "item_id": "c", "text": "third"}))?;
        Ok(())
    })
    .unwrap();
}

/// Every combination the cases run on.
fn databases() -> Vec<(String, Database)> {
    let mut out = Vec::new();
    for indexes in [true, false] {
        let memory = Database::builder().schema(schema(indexes)).open_in_memory().unwrap();
        let path = tempfile::tempdir().unwrap().keep().join("q.db");
        let sqlite = Database::builder().schema(schema(indexes)).open(path).unwrap();
        for (name, db) in [("memory", memory), ("sqlite", sqlite)] {
            seed(&db);
            out.push((format!("{name}{}", if indexes { "+indexes" } else { "" }), db));
        }
    }
    out
}

fn ids(rows: &[Json]) -> Vec<String> {
    rows.iter().map(|r| r["id"].as_str().unwrap().to_owned()).collect()
}

fn run(db: &Database, query: &Json, vars: &Variables) -> Result<Vec<Json>, Error> {
    db.fetch_with(&Query::from_json(query)?, vars)
}

/// (where, ids expected in any order)
fn filter_cases() -> Vec<(Json, &'static str)> {
    vec![
        // strings: null and missing are "no value"; order is by UTF-16 code units
        (json!([["s", "=", "apple"]]), "a"),
        (json!([["s", "=", null]]), "d e"),
        (json!([["s", "!=", "apple"]]), "b c d e f g"),
        (json!([["s", "!=", null]]), "a b c f g"),
        (json!([["s", "<", "b"]]), "a b d e"),
        (json!([["s", ">", "b"]]), "c f g"),
        (json!([["s", ">=", "apple"]]), "a c f g"),
        (json!([["s", "<=", "Banana"]]), "b d e"),
        (json!([["s", ">", "😀"]]), "f g"),
        (json!([["s", "<", "～"]]), "a b c d e f"),
        (json!([["s", "in", ["apple", "Émile"]]]), "a c"),
        (json!([["s", "nin", ["apple"]]]), "b c d e f g"),
        (json!([["s", "like", "%AN%"]]), "b"),
        (json!([["s", "like", "é%"]]), "c"),
        (json!([["s", "like", "__smile"]]), "f"),
        (json!([["s", "like", "_smile"]]), ""),
        (json!([["s", "like", null]]), ""),
        (json!([["s", "nlike", "a%"]]), "b c d e f g"),
        (json!([["s", "isDefined", true]]), "a b c f g"),
        (json!([["s", "isDefined", false]]), "d e"),
        // numbers, and comparisons across types (numbers rank below strings)
        (json!([["n", "=", 1]]), "a"),
        (json!([["n", ">", 0]]), "a b"),
        (json!([["n", ">=", 0]]), "a b f"),
        (json!([["n", "<", 0]]), "c d e g"),
        (json!([["n", "<=", -3]]), "c d e g"),
        (json!([["n", "!=", 0]]), "a b c d e g"),
        (json!([["n", "in", [1, 2.5]]]), "a b"),
        (json!([["n", "in", ["1"]]]), ""),
        (json!([["n", "nin", [1]]]), "b c d e f g"),
        (json!([["n", ">", "abc"]]), ""),
        (json!([["n", "<", "abc"]]), "a b c d e f g"),
        (json!([["n", ">=", null]]), "a b c d e f g"),
        // booleans
        (json!([["b", "=", true]]), "a f"),
        (json!([["b", "=", false]]), "b"),
        (json!([["b", "!=", true]]), "b c d e g"),
        (json!([["b", ">", false]]), "a f"),
        (json!([["b", "=", true], ["n", ">", 0]]), "a"),
        // dates: stored as ISO strings, compared with the raw filter string
        (json!([["d", ">", "2021"]]), "a b"),
        (json!([["d", "=", "2021-01-01T00:00:00.000Z"]]), "a"),
        (json!([["d", "<", "2021-01-01"]]), "c d e f g"),
        (json!([["d", "isDefined", true]]), "a b c"),
        // sets of strings: has, and "some item satisfies" for item operators
        (json!([["ss", "has", "a"]]), "a f"),
        (json!([["ss", "!has", "a"]]), "b c d e g"),
        (json!([["ss", "=", "c"]]), "c"),
        (json!([["ss", "like", "A"]]), "a f"),
        (json!([["ss", "in", ["b", "c"]]]), "a c"),
        (json!([["ss", ">", "b"]]), "c"),
        (json!([["ss", "nin", ["a"]]]), "a c"),
        (json!([["ss", "isDefined", true]]), "a b c f"),
        // sets of numbers: items read back as the filter value's type
        (json!([["sn", "has", 2]]), "a"),
        (json!([["sn", ">", 2]]), "b"),
        (json!([["sn", "in", [3]]]), ""), // Triplit compares the item key "3" with 3 strictly
        // records
        (json!([["r", "isDefined", true]]), "a b"),
        (json!([["r.x", "=", 1]]), "a"),
        (json!([["r.x", ">", 1]]), "b"),
        (json!([["r.y", "isDefined", false]]), "b c d e f g"),
        // json: any type, compared across types
        (json!([["j", "=", 5]]), "f"),
        (json!([["j", ">", 1]]), "c f g"),
        (json!([["j", "<", "a"]]), "a b d e f"),
        (json!([["j", "like", "te%"]]), "c"),
        (json!([["j", "like", "[object%"]]), "a"), // JavaScript's String({}) is "[object Object]"
        (json!([["j", "like", "1,2"]]), "b"),      // and String([1, 2]) is "1,2"
        (json!([["s", "like", "%pp%"], ["s", "=", "apple"]]), "a"),
        (json!([["j.k", "=", 1]]), "a"),
        (json!([["j", "in", [5, "text"]]]), "c f"),
        (json!([["j", "has", 1]]), "b"),
        // groups and constants
        (json!([{"mod": "or", "filters": [["n", "=", 1], ["s", "=", "Banana"]]}]), "a b"),
        (json!([{"mod": "and", "filters": [["b", "=", true], ["n", ">", 0]]}]), "a"),
        (
            json!([{"mod": "or", "filters": [{"mod": "and", "filters": [["b", "=", true], ["n", "=", 0]]}, ["s", "=", "Émile"]]}]),
            "c f",
        ),
        (json!([{"mod": "or", "filters": []}]), ""),
        (json!([{"mod": "and", "filters": []}]), "a b c d e f g"),
        (json!([false]), ""),
        (json!([true]), "a b c d e f g"),
        // relations: paths become exists subqueries
        (json!([["owner.name", "=", "Zed"]]), "a f"),
        (json!([["owner.rank", "isDefined", false]]), "b"),
        (json!([["notes.text", "like", "%ir%"]]), "a c"),
        (json!([{"exists": {"_extends": "notes"}}]), "a c"),
        (json!([{"exists": {"_extends": "notes", "where": [["text", "=", "second"]]}}]), "a"),
        (
            json!([{"exists": {"collectionName": "owners", "where": [["id", "=", "$1.owner_id"], ["name", "=", "amy"]]}}]),
            "b",
        ),
        (json!([{"exists": {"collectionName": "notes", "where": [["item_id", "=", "$id"]]}}]), "a c"),
        // variables; an undefined variable compares as no value
        (json!([["s", "=", "$global.fruit"]]), "a"),
        (json!([["s", "=", "$query.name"]]), "b"),
        (json!([["s", "=", "$token.sub"]]), "c"),
        (json!([["s", "=", "$session.sub"]]), "c"),
        (json!([["s", "=", "$token.missing"]]), "d e"),
        (json!([["n", ">", "$token.missing"]]), "a b c f"),
        (json!([["id", "in", "$query.ids"]]), "a b"),
    ]
}

fn vars() -> Variables {
    Variables::new().with_scope("$global", json!({"fruit": "apple"})).with_scope("$token", json!({"sub": "Émile"}))
}

#[test]
fn every_operator_on_every_type() {
    for (name, db) in databases() {
        for (filter, expected) in filter_cases() {
            let query = json!({"collectionName": "items", "where": filter, "vars": {"name": "Banana", "ids": ["a", "b", "zz"]}});
            let mut got = ids(&run(&db, &query, &vars()).unwrap_or_else(|e| panic!("{name} {filter}: {e}")));
            got.sort();
            let want: Vec<String> = expected.split_whitespace().map(str::to_owned).collect();
            assert_eq!(got, want, "{name}: where {filter}");
        }
    }
}

/// (order, after, limit, ids in order)
fn order_cases() -> Vec<(Json, Option<Json>, Option<usize>, &'static str)> {
    vec![
        (json!([["s", "ASC"]]), None, None, "d e b a c f g"),
        (json!([["s", "DESC"]]), None, None, "g f c a b e d"),
        (json!([["j", "ASC"]]), None, None, "d e a b f c g"),
        (json!([["r.x", "DESC"]]), None, None, "b a g f e d c"),
        (json!([["n", "DESC"]]), None, Some(2), "b a"),
        (json!([["n", "ASC"]]), Some(json!([[0], false])), None, "a b"),
        (json!([["n", "ASC"]]), Some(json!([[0], true])), None, "f a b"),
        (json!([["n", "ASC"]]), Some(json!([[null], true])), None, "c f a b"),
        (json!([["b", "DESC"], ["n", "DESC"]]), None, None, "a f b c g e d"),
        (json!([["b", "ASC"], ["n", "ASC"]]), Some(json!([[true, 0], false])), Some(1), "a"),
        (json!([["owner.name", "ASC"], ["id", "ASC"]]), None, None, "c d e g a f b"),
        (json!([["d", "DESC"]]), Some(json!([["2021-06-01"], false])), None, "a c g f e d"),
    ]
}

#[test]
fn order_after_and_limit() {
    for (name, db) in databases() {
        for (order, after, limit, expected) in order_cases() {
            let mut query = json!({"collectionName": "items", "order": order});
            if let Some(after) = &after {
                query["after"] = after.clone();
            }
            if let Some(limit) = limit {
                query["limit"] = json!(limit);
            }
            let got = ids(&run(&db, &query, &Variables::new()).unwrap_or_else(|e| panic!("{name} {query}: {e}")));
            assert_eq!(got.join(" "), expected, "{name}: {query}");
        }
    }
}

#[test]
fn select_and_includes() {
    for (name, db) in databases() {
        let query = json!({"collectionName": "items", "where": [["id", "in", ["a", "c", "e"]]], "order": [["id", "ASC"]],
            "select": ["s", "r.y"],
            "include": {"owner": null, "notes": {"_extends": "notes", "order": [["text", "DESC"]], "limit": 1},
                        "all_notes": {"subquery": {"collectionName": "notes", "where": [["item_id", "=", "$1.id"]], "select": ["text"]}, "cardinality": "many"}}});
        let rows = run(&db, &query, &Variables::new()).unwrap();
        assert_eq!(
            Json::Array(rows),
            json!([
                {"s": "apple", "r": {"y": "q"}, "owner": {"id": "o1", "name": "Zed", "rank": 2},
                 "notes": [{"id": "n2", "item_id": "a", "text": "second"}], "all_notes": [{"text": "first"}, {"text": "second"}]},
                {"s": "Émile", "owner": null, "notes": [{"id": "n3", "item_id": "c", "text": "third"}], "all_notes": [{"text": "third"}]},
                {"owner": null, "notes": [], "all_notes": []}
            ]),
            "{name}"
        );
    }
}

#[test]
fn relational_variables_through_relations_become_exists() {
    for (name, db) in databases() {
        // For each item, the owners whose name is the item's owner's name.
        let query = json!({"collectionName": "items", "where": [["id", "in", ["a", "b", "c"]]], "order": [["id", "ASC"]], "select": ["id"],
            "include": {"same_name": {"subquery": {"collectionName": "owners", "where": [["name", "=", "$1.owner.name"]], "select": ["id"]}, "cardinality": "many"}}});
        let rows = run(&db, &query, &Variables::new()).unwrap();
        assert_eq!(
            Json::Array(rows),
            json!([{"id": "a", "same_name": [{"id": "o1"}]}, {"id": "b", "same_name": [{"id": "o2"}]}, {"id": "c", "same_name": []}]),
            "{name}"
        );
    }
}

#[test]
fn invalid_queries_are_named_errors() {
    let db = Database::builder().schema(schema(true)).open_in_memory().unwrap();
    let cases = [
        (json!({"collectionName": "nope"}), QueryErrorKind::InvalidCollectionName),
        (json!({"collectionName": "items", "where": [["zz", "=", 1]]}), QueryErrorKind::InvalidFilter),
        (json!({"collectionName": "items", "where": [["s", "has", "a"]]}), QueryErrorKind::InvalidFilter),
        (json!({"collectionName": "items", "where": [["n", "like", "1"]]}), QueryErrorKind::InvalidFilter),
        (json!({"collectionName": "items", "where": [["b", "in", [true]]]}), QueryErrorKind::InvalidFilter),
        (json!({"collectionName": "items", "where": [["d", "nin", ["x"]]]}), QueryErrorKind::InvalidFilter),
        (json!({"collectionName": "items", "where": [["r", "=", 1]]}), QueryErrorKind::InvalidFilter),
        (json!({"collectionName": "items", "where": [["s", "~", 1]]}), QueryErrorKind::InvalidFilter),
        (json!({"collectionName": "items", "where": [{"mod": "xor", "filters": []}]}), QueryErrorKind::InvalidFilter),
        (
            json!({"collectionName": "items", "where": [{"exists": {"_extends": "nope"}}]}),
            QueryErrorKind::InvalidFilter,
        ),
        (json!({"collectionName": "items", "order": [["ss", "ASC"]]}), QueryErrorKind::InvalidOrder),
        (json!({"collectionName": "items", "order": [["notes.text", "ASC"]]}), QueryErrorKind::InvalidOrder),
        (json!({"collectionName": "items", "order": [["zz", "ASC"]]}), QueryErrorKind::InvalidOrder),
        (json!({"collectionName": "items", "after": [["x"], true]}), QueryErrorKind::InvalidAfter),
        (
            json!({"collectionName": "items", "order": [["n", "ASC"]], "after": [[1, 2], true]}),
            QueryErrorKind::InvalidAfter,
        ),
        (
            json!({"collectionName": "items", "order": [["d", "ASC"]], "after": [["not a date"], true]}),
            QueryErrorKind::InvalidAfter,
        ),
        (json!({"collectionName": "items", "limit": -1}), QueryErrorKind::InvalidLimit),
        (json!({"collectionName": "items", "select": ["owner"]}), QueryErrorKind::InvalidSelect),
        (json!({"collectionName": "items", "include": {"zz": null}}), QueryErrorKind::RelationDoesNotExist),
        (json!({"collectionName": "items", "include": {"s": null}}), QueryErrorKind::IncludedNonRelation),
    ];
    for (query, kind) in cases {
        match run(&db, &query, &Variables::new()) {
            Err(Error::Query { kind: got, message }) => {
                assert_eq!(got, kind, "{query}: {message}");
                assert!(!message.is_empty());
            }
            other => panic!("{query}: expected {kind}, got {other:?}"),
        }
    }
    assert!(matches!(Query::from_json_str("{nope"), Err(Error::InvalidJson { .. })));
}

#[test]
fn the_planner_reads_only_what_it_returns() {
    for (name, db) in databases().into_iter().filter(|(n, _)| n.contains("indexes")) {
        // An id lookup.
        let by_id = db.explain(&Query::new("items").filter("id", "=", "c")).unwrap();
        assert_eq!((by_id.access.as_str(), by_id.rows_read), ("ids (1)", 1), "{name}");
        // Equality on an index.
        let eq = db.explain(&Query::new("items").filter("s", "=", "apple")).unwrap();
        assert_eq!((eq.access.as_str(), eq.rows_read, eq.results), ("index (s)", 1, 1), "{name}");
        // Equality prefix + order + limit: reads exactly the rows it returns.
        let ordered = db
            .explain(&Query::new("items").filter("b", "=", true).order("n", triplite::Direction::Desc).limit(1))
            .unwrap();
        assert_eq!(
            (ordered.access.as_str(), ordered.rows_read, ordered.ordered_by_index),
            ("index (b, n)", 1, true),
            "{name}"
        );
        // A range.
        let range = db.explain(&Query::new("items").filter("n", ">", 0)).unwrap();
        assert_eq!((range.access.as_str(), range.rows_read, range.results), ("index (n)", 2, 2), "{name}");
        // No usable index: a scan of the collection.
        let scan = db.explain(&Query::new("items").filter("s", "like", "%a%")).unwrap();
        assert_eq!((scan.access.as_str(), scan.rows_read), ("scan", 7), "{name}");
    }
}

#[test]
fn relation_keys_are_indexed_for_includes_and_exists() {
    let db = Database::builder().schema(schema(false)).open_in_memory().unwrap();
    seed(&db);
    let explain = db.explain(&Query::new("notes").filter("item_id", "=", "a")).unwrap();
    assert_eq!((explain.access.as_str(), explain.rows_read), ("index (item_id)", 2));
}

#[test]
fn transactions_read_their_own_writes_through_queries() {
    let db = Database::builder().schema(schema(true)).open_in_memory().unwrap();
    seed(&db);
    db.transact(|tx| {
        tx.insert("items", json!({"id": "h", "s": "apple"}))?;
        let rows = tx.fetch(&Query::new("items").filter("s", "=", "apple"))?;
        assert_eq!(ids(&rows), vec!["a", "h"]);
        Ok(())
    })
    .unwrap();
}
