//! Values: every attribute type through both JSON forms, and Triplit's ordering and null rules.

use std::cmp::Ordering;

use serde_json::{Value as Json, json};
use triplite::schema::DataType;
use triplite::{Date, Value};

fn ty(json: Json) -> DataType {
    DataType::from_json(&json).unwrap()
}

/// (type, API input, encoded form, API output)
fn round_trips() -> Vec<(Json, Json, Json, Json)> {
    vec![
        (json!({"type": "string"}), json!("héllo"), json!("héllo"), json!("héllo")),
        (json!({"type": "string", "config": {"enum": ["a", "b"]}}), json!("b"), json!("b"), json!("b")),
        (json!({"type": "number"}), json!(5), json!(5), json!(5)),
        (json!({"type": "number"}), json!(-2.5), json!(-2.5), json!(-2.5)),
        (json!({"type": "boolean"}), json!(true), json!(true), json!(true)),
        (
            json!({"type": "date"}),
            json!("2024-02-29T23:59:59.123Z"),
            json!("2024-02-29T23:59:59.123Z"),
            json!("2024-02-29T23:59:59.123Z"),
        ),
        (
            json!({"type": "date"}),
            json!("2021-06-15"),
            json!("2021-06-15T00:00:00.000Z"),
            json!("2021-06-15T00:00:00.000Z"),
        ),
        (
            json!({"type": "date"}),
            json!(86_400_000),
            json!("1970-01-02T00:00:00.000Z"),
            json!("1970-01-02T00:00:00.000Z"),
        ),
        (
            json!({"type": "set", "items": {"type": "string"}}),
            json!(["b", "a", "b"]),
            json!({"a": true, "b": true}),
            json!(["a", "b"]),
        ),
        (
            json!({"type": "set", "items": {"type": "number"}}),
            json!([10, 2, 1.5]),
            json!({"1.5": true, "2": true, "10": true}),
            json!([1.5, 2, 10]),
        ),
        (
            json!({"type": "set", "items": {"type": "boolean"}}),
            json!([true, false]),
            json!({"true": true, "false": true}),
            json!([false, true]),
        ),
        (
            json!({"type": "set", "items": {"type": "date"}}),
            json!(["2021-06-15"]),
            json!({"2021-06-15T00:00:00.000Z": true}),
            json!(["2021-06-15T00:00:00.000Z"]),
        ),
        (json!({"type": "set", "items": {"type": "string"}}), json!([]), json!({}), json!([])),
        (
            json!({"type": "record", "properties": {"a": {"type": "set", "items": {"type": "string"}}, "d": {"type": "date"}, "o": {"type": "string", "config": {"optional": true}}}}),
            json!({"a": ["x"], "d": 0}),
            json!({"a": {"x": true}, "d": "1970-01-01T00:00:00.000Z"}),
            json!({"a": ["x"], "d": "1970-01-01T00:00:00.000Z"}),
        ),
        (
            json!({"type": "json"}),
            json!({"k": [1, {"n": null}], "s": "t"}),
            json!({"k": [1, {"n": null}], "s": "t"}),
            json!({"k": [1, {"n": null}], "s": "t"}),
        ),
        (json!({"type": "json"}), json!([1, "two"]), json!([1, "two"]), json!([1, "two"])),
        (json!({"type": "string", "config": {"nullable": true}}), json!(null), json!(null), json!(null)),
    ]
}

#[test]
fn every_type_encodes_and_decodes_in_both_forms() {
    for (schema, api_in, encoded, api_out) in round_trips() {
        let t = ty(schema.clone());
        assert_eq!(t.to_encoded_json(&api_in).unwrap(), encoded, "{schema} encode {api_in}");
        assert_eq!(t.to_api_json(&encoded), api_out, "{schema} decode {encoded}");
        // The type's own schema JSON parses back to the same type.
        assert_eq!(DataType::from_json(&t.to_json()).unwrap(), t);
    }
}

#[test]
fn set_tombstones_are_kept_in_encoded_form_and_hidden_in_results() {
    let t = ty(json!({"type": "set", "items": {"type": "string"}}));
    assert_eq!(t.to_api_json(&json!({"a": true, "gone": false})), json!(["a"]));
    // The encoded form is accepted as input too (an encoded partial).
    assert_eq!(t.to_encoded_json(&json!({"gone": false})).unwrap(), json!({"gone": false}));
}

#[test]
fn wrong_types_are_rejected_with_expected_and_found() {
    let cases = [
        (json!({"type": "string"}), json!(1), "expected string, found number 1"),
        (json!({"type": "number"}), json!("1"), "expected number, found string \"1\""),
        (json!({"type": "boolean"}), json!(0), "expected boolean, found number 0"),
        (json!({"type": "date"}), json!("31/12/2020"), "expected date"),
        (json!({"type": "date"}), json!(true), "expected date"),
        (json!({"type": "set", "items": {"type": "number"}}), json!(["x"]), "expected number"),
        (json!({"type": "set", "items": {"type": "number"}}), json!([null]), "found null"),
        (json!({"type": "set", "items": {"type": "string"}}), json!("x"), "expected set of string"),
        (json!({"type": "record", "properties": {}}), json!([]), "expected record, found array"),
        (json!({"type": "string"}), json!(null), "expected string, found null"),
        (json!({"type": "string", "config": {"enum": ["a"]}}), json!("b"), "expected string (one of a)"),
    ];
    for (schema, value, expected) in cases {
        let err = ty(schema.clone()).to_encoded_json(&value).unwrap_err().to_string();
        assert!(err.contains(expected), "{schema} with {value}: '{err}' should contain '{expected}'");
    }
}

#[test]
fn optional_and_nullable_accept_null() {
    assert!(ty(json!({"type": "number", "config": {"optional": true}})).to_encoded_json(&json!(null)).is_ok());
    assert!(ty(json!({"type": "number", "config": {"nullable": true}})).to_encoded_json(&json!(null)).is_ok());
    assert!(ty(json!({"type": "json"})).to_encoded_json(&json!(null)).is_ok());
}

#[test]
fn typed_decode_produces_values() {
    let set = ty(json!({"type": "set", "items": {"type": "number"}}));
    assert_eq!(
        set.decode(&json!({"2": true, "1": true, "3": false})),
        Value::Set(vec![Value::Number(1.0), Value::Number(2.0)])
    );
    let date = ty(json!({"type": "date"}));
    assert_eq!(date.decode(&json!("1970-01-01T00:00:00.001Z")), Value::Date(Date::from_millis(1)));
    assert_eq!(Value::Set(vec![Value::from("a")]).to_encoded_json(), json!({"a": true}));
}

#[test]
fn cross_type_order_and_nulls_first() {
    let mut values = vec![
        Value::Boolean(true),
        Value::from("b"),
        Value::Number(2.0),
        Value::from_json(&json!([1])),
        Value::from_json(&json!({"a": 1})),
        Value::Null,
        Value::Boolean(false),
        Value::from("a"),
        Value::Number(-1.0),
        Value::Date(Date::parse("2020-01-01").unwrap()),
    ];
    values.sort();
    let sorted: Vec<Json> = values.iter().map(Value::to_json).collect();
    assert_eq!(
        sorted,
        vec![
            json!(null),
            json!({"a": 1}),
            json!([1]),
            json!(-1),
            json!(2),
            json!("2020-01-01T00:00:00.000Z"), // dates rank and compare as their ISO strings
            json!("a"),
            json!("b"),
            json!(false),
            json!(true),
        ]
    );
}

#[test]
fn strings_order_by_utf16_like_javascript() {
    // Code-point order would put U+FF5E before U+1F600; JavaScript puts the emoji's surrogates first.
    assert_eq!(Value::from("😀").compare(&Value::from("～")), Ordering::Less);
    assert_eq!(Value::from("Z").compare(&Value::from("a")), Ordering::Less, "uppercase before lowercase, as JS");
    assert_eq!(Value::from("é").compare(&Value::from("z")), Ordering::Greater);
    assert_eq!(Value::Number(1.0), Value::Number(1.0));
    assert_eq!(Value::Number(-0.0).compare(&Value::Number(0.0)), Ordering::Equal);
}
