//! Convergence: the same set of changes, applied in any order, gives the same state — on both
//! backends, and equal to applying them in timestamp order.

mod common;

use proptest::prelude::*;
use serde_json::{Map, Value as Json, json};
use triplite::{Changes, Database, Schema, Timestamp};

fn schema() -> Schema {
    Schema::from_json(&json!({"collections": {"items": {"schema": {"type": "record", "properties": {
        "id": {"type": "string"},
        "name": {"type": "string", "config": {"optional": true}},
        "n": {"type": "number", "config": {"optional": true}},
        "tags": {"type": "set", "items": {"type": "string"}, "config": {"optional": true}},
        "info": {"type": "record", "config": {"optional": true}, "properties": {
            "a": {"type": "number", "config": {"optional": true}},
            "b": {"type": "string", "config": {"optional": true}}
        }},
        "blob": {"type": "json", "config": {"optional": true}}
    }}}}}))
    .unwrap()
}

#[derive(Debug, Clone)]
enum Op {
    /// With `id` in the fields it is an insert, without an update.
    Set {
        id: &'static str,
        fields: Map<String, Json>,
    },
    Delete {
        id: &'static str,
    },
}

fn field_strategy() -> impl Strategy<Value = (String, Json)> {
    let tag = prop::sample::select(vec!["t1", "t2", "t3"]);
    prop_oneof![
        prop::sample::select(vec!["p", "q", "r"]).prop_map(|s| ("name".to_string(), json!(s))),
        Just(("name".to_string(), Json::Null)),
        (0i32..4).prop_map(|n| ("n".to_string(), json!(n))),
        prop::collection::btree_map(tag, any::<bool>(), 1..3).prop_map(|m| ("tags".to_string(), json!(m))),
        (0i32..4).prop_map(|a| ("info".to_string(), json!({"a": a}))),
        prop::sample::select(vec!["x", "y"]).prop_map(|b| ("info".to_string(), json!({"b": b}))),
        Just(("info".to_string(), Json::Null)),
        (0i32..3).prop_map(|v| ("blob".to_string(), json!({"k": v}))),
        (0i32..3).prop_map(|v| ("blob".to_string(), json!([v]))),
    ]
}

fn op_strategy() -> impl Strategy<Value = Op> {
    let id = prop::sample::select(vec!["e1", "e2"]);
    prop_oneof![
        3 => (id.clone(), prop::collection::vec(field_strategy(), 0..4), any::<bool>()).prop_map(|(id, fields, insert)| {
            let mut fields: Map<String, Json> = fields.into_iter().collect();
            if insert {
                fields.insert("id".into(), json!(id));
            }
            Op::Set { id, fields }
        }),
        1 => id.prop_map(|id| Op::Delete { id }),
    ]
}

fn apply(db: &Database, stamped: &[(u64, Op)]) {
    for (ms, op) in stamped {
        let mut changes = Changes::default();
        match op {
            Op::Set { id, fields } => changes.set("items", id, fields.clone()),
            Op::Delete { id } => changes.delete("items", id),
        }
        db.apply_changes(&changes, &Timestamp::new(*ms, 0, format!("w{}", ms % 3))).unwrap();
    }
}

fn state(db: &Database) -> Vec<Json> {
    db.fetch_all("items").unwrap()
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 200, ..ProptestConfig::default() })]

    #[test]
    fn any_arrival_order_converges(
        (in_order, shuffled) in prop::collection::vec(op_strategy(), 1..10).prop_flat_map(|ops| {
            let stamped: Vec<(u64, Op)> = ops.into_iter().enumerate().map(|(i, op)| (i as u64 + 1, op)).collect();
            (Just(stamped.clone()), Just(stamped).prop_shuffle())
        })
    ) {
        let [memory, sqlite] = common::backends();
        let reference = memory.open(Some(schema()));
        apply(&reference, &in_order);
        let expected = state(&reference);
        for backend in [memory, sqlite] {
            let db = backend.open(Some(schema()));
            apply(&db, &shuffled);
            prop_assert_eq!(&state(&db), &expected, "{} after {:?}", backend.name, shuffled);
        }
    }
}
