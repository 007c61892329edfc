//! The planner and indexes change how rows are found, never which rows come back: random data
//! and random queries give exactly the same answer (same rows, same order) through indexes as
//! through a plain scan of everything with the same evaluator.

use proptest::prelude::*;
use serde_json::{Value as Json, json};
use triplite::{Database, Query, Schema, Variables};

fn schema(indexes: bool) -> Schema {
    let opt = |ty: &str| json!({"type": ty, "config": {"optional": true}});
    let indexes = if indexes { json!([["s"], ["n"], ["b", "n"], ["s", "n"], ["n", "s"]]) } else { json!([]) };
    Schema::from_json(&json!({"collections": {
        "items": {"schema": {"type": "record", "properties": {
            "id": {"type": "string"}, "s": opt("string"), "n": opt("number"), "b": opt("boolean"),
            "t": {"type": "set", "items": {"type": "string"}, "config": {"optional": true}}, "owner_id": opt("string")}},
            "relationships": {"owner": {"query": {"collectionName": "owners", "where": [["id", "=", "$1.owner_id"]]}, "cardinality": "one"}},
            "indexes": indexes},
        "owners": {"schema": {"type": "record", "properties": {"id": {"type": "string"}, "name": {"type": "string"}}}}
    }}))
    .unwrap()
}

fn pick<T: Clone + std::fmt::Debug + 'static>(items: Vec<T>) -> impl Strategy<Value = T> {
    prop::sample::select(items)
}

fn string_value() -> impl Strategy<Value = Json> {
    pick(vec![json!("a"), json!("B"), json!("é"), json!("😀"), json!("～"), json!(""), json!("ab")])
}

fn number_value() -> impl Strategy<Value = Json> {
    pick(vec![json!(-1), json!(0), json!(1), json!(2.5), json!(1e9)])
}

fn maybe(value: impl Strategy<Value = Json>) -> impl Strategy<Value = Option<Json>> {
    prop_oneof![1 => Just(None), 1 => Just(Some(Json::Null)), 4 => value.prop_map(Some)]
}

fn item() -> impl Strategy<Value = Json> {
    (
        maybe(string_value()),
        maybe(number_value()),
        maybe(any::<bool>().prop_map(Json::Bool)),
        prop::collection::vec(string_value(), 0..3),
        maybe(pick(vec![json!("o0"), json!("o1"), json!("o2"), json!("gone")])),
    )
        .prop_map(|(s, n, b, t, owner)| {
            let mut doc = serde_json::Map::new();
            for (key, value) in [("s", s), ("n", n), ("b", b), ("owner_id", owner)] {
                if let Some(v) = value {
                    doc.insert(key.into(), v);
                }
            }
            doc.insert("t".into(), json!(t));
            Json::Object(doc)
        })
}

fn statement() -> impl Strategy<Value = Json> {
    let op = || pick(vec!["=", "!=", "<", ">", "<=", ">="]);
    prop_oneof![
        (op(), maybe(string_value())).prop_map(|(op, v)| json!(["s", op, v.unwrap_or(Json::Null)])),
        (op(), maybe(number_value())).prop_map(|(op, v)| json!(["n", op, v.unwrap_or(Json::Null)])),
        (op(), any::<bool>()).prop_map(|(op, v)| json!(["b", op, v])),
        prop::collection::vec(string_value(), 0..3).prop_map(|v| json!(["s", "in", v])),
        string_value().prop_map(|v| json!(["t", "has", v])),
        pick(vec!["%a%", "_", "%"]).prop_map(|p| json!(["s", "like", p])),
        pick(vec!["Zed", "amy"]).prop_map(|name| json!(["owner.name", "=", name])),
        Just(json!({"exists": {"_extends": "owner"}})),
    ]
}

fn filter() -> impl Strategy<Value = Json> {
    prop_oneof![3 => statement(), 1 => prop::collection::vec(statement(), 0..3).prop_map(|f| json!({"mod": "or", "filters": f}))]
}

fn query() -> impl Strategy<Value = Json> {
    let key = pick(vec!["s", "n", "b", "owner.name", "id"]);
    let order = prop::collection::vec((key, any::<bool>()), 0..3);
    (
        prop::collection::vec(filter(), 0..3),
        order,
        prop::option::of(0usize..8),
        any::<bool>(),
        any::<bool>(),
        maybe(number_value()),
        string_value(),
    )
        .prop_map(|(filters, order, limit, include, with_after, cursor_n, cursor_s)| {
            let mut query = json!({"collectionName": "items", "where": filters});
            let mut seen = Vec::new();
            let order: Vec<Json> = order
                .into_iter()
                .filter(|(k, _)| {
                    !seen.contains(k) && {
                        seen.push(*k);
                        true
                    }
                })
                .map(|(k, desc)| json!([k, if desc { "DESC" } else { "ASC" }]))
                .collect();
            // A cursor needs plain (non-relational) keys.
            let plain = order.iter().all(|o| o[0] != "owner.name");
            if with_after && !order.is_empty() && plain {
                let cursor: Vec<Json> = order
                    .iter()
                    .map(|o| match o[0].as_str().unwrap() {
                        "n" => cursor_n.clone().unwrap_or(Json::Null),
                        "b" => json!(true),
                        "id" => json!("i05"),
                        _ => cursor_s.clone(),
                    })
                    .collect();
                query["after"] = json!([cursor, limit.is_some()]);
            }
            if !order.is_empty() {
                query["order"] = Json::Array(order);
            }
            if let Some(limit) = limit {
                query["limit"] = json!(limit);
            }
            if include {
                query["include"] = json!({"owner": null});
            }
            query
        })
}

fn load(db: &Database, items: &[Json]) {
    db.transact(|tx| {
        tx.insert("owners", json!({"id": "o0", "name": "Zed"}))?;
        tx.insert("owners", json!({"id": "o1", "name": "amy"}))?;
        tx.insert("owners", json!({"id": "o2", "name": "Zed"}))?;
        for (i, item) in items.iter().enumerate() {
            let mut doc = item.clone();
            doc["id"] = json!(format!("i{i:02}"));
            tx.insert("items", doc)?;
        }
        Ok(())
    })
    .unwrap();
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 300, ..ProptestConfig::default() })]

    #[test]
    fn indexes_never_change_answers(items in prop::collection::vec(item(), 0..30), queries in prop::collection::vec(query(), 1..6)) {
        let reference = Database::builder().schema(schema(false)).open_in_memory().unwrap();
        let memory = Database::builder().schema(schema(true)).open_in_memory().unwrap();
        let sqlite = Database::builder().schema(schema(true)).open(tempfile::tempdir().unwrap().keep().join("p.db")).unwrap();
        for db in [&reference, &memory, &sqlite] {
            load(db, &items);
        }
        for json in &queries {
            let query = Query::from_json(json).unwrap();
            let expected = reference.fetch_with(&query, &Variables::new()).map_err(|e| e.to_string());
            for (name, db) in [("memory+indexes", &memory), ("sqlite+indexes", &sqlite)] {
                let got = db.fetch_with(&query, &Variables::new()).map_err(|e| e.to_string());
                prop_assert_eq!(&got, &expected, "{} on {}", name, json);
            }
        }
    }
}
