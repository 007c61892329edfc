//! Order-preserving byte keys: `memcmp` on two keys agrees with [`Value::compare`] (Triplit's
//! order), so SQLite indexes built on keys serve ranges and `order` exactly — SQLite's own
//! comparison (type order, collation) differs from Triplit's.
//!
//! Layout: a type tag, then the payload. Missing and `null` share the lowest key: Triplit sorts
//! by `value ?? MIN`, so both sort first and tie, and its `=` treats them alike. Strings are
//! re-encoded so byte order equals UTF-16 code unit order.

use serde_json::Value as Json;

use super::Value;

const NO_VALUE: u8 = 0x01;
const OBJECT: u8 = 0x02;
const ARRAY: u8 = 0x03;
const NUMBER: u8 = 0x04;
const STRING: u8 = 0x05;
const BOOLEAN: u8 = 0x06;

/// The key of a value in encoded (stored) JSON form; `None` is a missing value.
///
/// Objects and arrays get only their type tag: they are never served from an index in order,
/// only narrowed by type, and the evaluator decides.
pub fn sort_key(value: Option<&Json>) -> Vec<u8> {
    match value {
        None | Some(Json::Null) => vec![NO_VALUE],
        Some(Json::Object(_)) => vec![OBJECT],
        Some(Json::Array(_)) => vec![ARRAY],
        Some(Json::Number(n)) => number_key(n.as_f64().unwrap_or(f64::NAN)),
        Some(Json::String(s)) => string_key(s),
        Some(Json::Bool(b)) => vec![BOOLEAN, u8::from(*b)],
    }
}

/// The key of a typed value (dates key as their ISO strings, as they are stored).
pub fn value_key(value: &Value) -> Vec<u8> {
    match value {
        Value::Number(n) => number_key(*n),
        Value::String(s) => string_key(s),
        Value::Date(d) => string_key(&d.to_iso_string()),
        Value::Boolean(b) => vec![BOOLEAN, u8::from(*b)],
        Value::Null => vec![NO_VALUE],
        Value::Record(_) | Value::Set(_) => vec![OBJECT],
        Value::Array(_) => vec![ARRAY],
    }
}

fn number_key(n: f64) -> Vec<u8> {
    let n = if n == 0.0 { 0.0 } else { n }; // -0 and 0 are equal
    let bits = n.to_bits();
    let ordered = if bits >> 63 == 1 { !bits } else { bits ^ (1 << 63) };
    let mut key = Vec::with_capacity(9);
    key.push(NUMBER);
    key.extend_from_slice(&ordered.to_be_bytes());
    key
}

fn string_key(s: &str) -> Vec<u8> {
    let mut key = Vec::with_capacity(s.len() + 1);
    key.push(STRING);
    for c in s.chars() {
        let cp = c as u32;
        if cp < 0x80 {
            key.push(cp as u8);
            continue;
        }
        // UTF-16 puts U+E000..=U+FFFF after every supplementary character (whose surrogates are
        // D800..DFFF); lifting them above U+10FFFF makes code point order equal UTF-16 order.
        let k = if (0xE000..=0xFFFF).contains(&cp) { cp + 0x10_0000 } else { cp };
        key.extend_from_slice(&[0x80 + (k >> 16) as u8, (k >> 8) as u8, k as u8]);
    }
    key
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::value::compare_utf16;
    use proptest::prelude::*;
    use serde_json::json;

    fn json_strategy() -> impl Strategy<Value = Json> {
        prop_oneof![
            Just(Json::Null),
            any::<bool>().prop_map(Json::Bool),
            any::<f64>().prop_filter("finite", |f| f.is_finite()).prop_map(|f| json!(f)),
            (-5i64..5).prop_map(|i| json!(i)),
            "\\PC{0,6}".prop_map(Json::String),
            prop::sample::select(vec!["a", "é", "😀", "～", "\u{e000}", "Z", ""]).prop_map(|s| json!(s)),
        ]
    }

    proptest! {
        #[test]
        fn key_order_is_value_order(a in json_strategy(), b in json_strategy()) {
            let by_value = Value::from_json(&a).compare(&Value::from_json(&b));
            let by_key = sort_key(Some(&a)).cmp(&sort_key(Some(&b)));
            prop_assert_eq!(by_value, by_key, "{} vs {}", a, b);
        }

        #[test]
        fn string_keys_order_by_utf16(a in "\\PC{0,8}", b in "\\PC{0,8}") {
            prop_assert_eq!(compare_utf16(&a, &b), string_key(&a).cmp(&string_key(&b)));
        }
    }

    #[test]
    fn missing_and_null_tie_below_everything() {
        assert_eq!(sort_key(None), sort_key(Some(&Json::Null)));
        assert!(sort_key(None) < sort_key(Some(&json!({}))));
        assert!(sort_key(Some(&json!(-0.0))) == sort_key(Some(&json!(0))));
    }
}
