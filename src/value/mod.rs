//! One value type for every Triplit attribute type, with Triplit's cross-type ordering.
//!
//! Triplit compares values through its storage codec, so the order across types is the codec's
//! type order: `null < object < array < number < string < boolean`. Dates are stored as ISO
//! strings, so they rank (and compare against plain strings) as strings; sets are stored as
//! objects, so they rank as objects. Strings compare by UTF-16 code units, as JavaScript does.

mod date;
mod sort_key;

pub use date::Date;
pub use sort_key::{sort_key, value_key};

use std::cmp::Ordering;
use std::collections::BTreeMap;

use serde_json::Value as Json;

/// A value of any Triplit attribute type.
#[derive(Debug, Clone)]
pub enum Value {
    /// `null`, `undefined` or missing: Triplit treats all three alike.
    Null,
    Boolean(bool),
    Number(f64),
    String(String),
    Date(Date),
    /// A set of primitives (string, number, boolean or date), distinct and in [`Value`] order.
    Set(Vec<Value>),
    /// A record (nested attributes) or a JSON object.
    Record(BTreeMap<String, Value>),
    /// A JSON array; only `json` attributes hold these.
    Array(Vec<Value>),
}

impl Value {
    /// Converts untyped JSON (a `json` attribute, a schemaless document) into a value.
    pub fn from_json(json: &Json) -> Value {
        match json {
            Json::Null => Value::Null,
            Json::Bool(b) => Value::Boolean(*b),
            Json::Number(n) => Value::Number(n.as_f64().unwrap_or(f64::NAN)),
            Json::String(s) => Value::String(s.clone()),
            Json::Array(items) => Value::Array(items.iter().map(Value::from_json).collect()),
            Json::Object(map) => Value::Record(map.iter().map(|(k, v)| (k.clone(), Value::from_json(v))).collect()),
        }
    }

    /// The API (result) form: dates as ISO strings, sets as arrays.
    pub fn to_json(&self) -> Json {
        match self {
            Value::Null => Json::Null,
            Value::Boolean(b) => Json::Bool(*b),
            Value::Number(n) => number_to_json(*n),
            Value::String(s) => Json::String(s.clone()),
            Value::Date(d) => Json::String(d.to_iso_string()),
            Value::Set(items) | Value::Array(items) => Json::Array(items.iter().map(Value::to_json).collect()),
            Value::Record(map) => Json::Object(map.iter().map(|(k, v)| (k.clone(), v.to_json())).collect()),
        }
    }

    /// The encoded (storage and wire) form: like [`Value::to_json`] but sets become
    /// `{"<item>": true}` objects, as Triplit stores them.
    pub fn to_encoded_json(&self) -> Json {
        match self {
            Value::Set(items) => Json::Object(items.iter().map(|item| (item.set_key(), Json::Bool(true))).collect()),
            Value::Record(map) => Json::Object(map.iter().map(|(k, v)| (k.clone(), v.to_encoded_json())).collect()),
            Value::Array(items) => Json::Array(items.iter().map(Value::to_encoded_json).collect()),
            other => other.to_json(),
        }
    }

    /// The key a set item is stored under: JavaScript's `String(item)`.
    pub fn set_key(&self) -> String {
        match self {
            Value::String(s) => s.clone(),
            Value::Number(n) => js_number_to_string(*n),
            Value::Boolean(b) => b.to_string(),
            Value::Date(d) => d.to_iso_string(),
            other => other.to_json().to_string(),
        }
    }

    /// True for `null` (and so for missing values).
    pub fn is_null(&self) -> bool {
        matches!(self, Value::Null)
    }

    /// The type's rank in the codec's cross-type order.
    fn type_rank(&self) -> u8 {
        match self {
            Value::Null => 0,
            Value::Record(_) | Value::Set(_) => 1,
            Value::Array(_) => 2,
            Value::Number(_) => 3,
            Value::String(_) | Value::Date(_) => 4,
            Value::Boolean(_) => 5,
        }
    }

    /// Triplit's total order over all values (used by filters and by `order`).
    pub fn compare(&self, other: &Value) -> Ordering {
        use Value::*;
        match (self, other) {
            (Null, Null) => Ordering::Equal,
            (Boolean(a), Boolean(b)) => a.cmp(b),
            (Number(a), Number(b)) => compare_numbers(*a, *b),
            (String(a), String(b)) => compare_utf16(a, b),
            (Date(a), Date(b)) => a.cmp(b),
            (Date(a), String(b)) => compare_utf16(&a.to_iso_string(), b),
            (String(a), Date(b)) => compare_utf16(a, &b.to_iso_string()),
            (Array(a), Array(b)) | (Set(a), Set(b)) => compare_sequences(a, b),
            (Record(a), Record(b)) => {
                let left = a.iter();
                let right = b.iter();
                for ((ka, va), (kb, vb)) in left.zip(right) {
                    let by_key = compare_utf16(ka, kb).then_with(|| va.compare(vb));
                    if by_key != Ordering::Equal {
                        return by_key;
                    }
                }
                a.len().cmp(&b.len())
            }
            // A set and a record share the object rank; order sets first, deterministically.
            (Set(_), Record(_)) => Ordering::Less,
            (Record(_), Set(_)) => Ordering::Greater,
            _ => self.type_rank().cmp(&other.type_rank()),
        }
    }
}

impl PartialEq for Value {
    fn eq(&self, other: &Self) -> bool {
        self.compare(other) == Ordering::Equal
    }
}

impl Eq for Value {}

impl PartialOrd for Value {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}

impl Ord for Value {
    fn cmp(&self, other: &Self) -> Ordering {
        self.compare(other)
    }
}

impl From<&str> for Value {
    fn from(s: &str) -> Self {
        Value::String(s.to_owned())
    }
}

impl From<String> for Value {
    fn from(s: String) -> Self {
        Value::String(s)
    }
}

impl From<f64> for Value {
    fn from(n: f64) -> Self {
        Value::Number(n)
    }
}

impl From<i64> for Value {
    fn from(n: i64) -> Self {
        Value::Number(n as f64)
    }
}

impl From<bool> for Value {
    fn from(b: bool) -> Self {
        Value::Boolean(b)
    }
}

impl From<Date> for Value {
    fn from(d: Date) -> Self {
        Value::Date(d)
    }
}

/// [`Value::compare`] on encoded JSON directly, without building values (dates are ISO strings
/// there, so they compare as strings, as in Triplit).
pub fn compare_json(a: &Json, b: &Json) -> Ordering {
    fn rank(v: &Json) -> u8 {
        match v {
            Json::Null => 0,
            Json::Object(_) => 1,
            Json::Array(_) => 2,
            Json::Number(_) => 3,
            Json::String(_) => 4,
            Json::Bool(_) => 5,
        }
    }
    match (a, b) {
        (Json::Number(x), Json::Number(y)) => {
            compare_numbers(x.as_f64().unwrap_or(f64::NAN), y.as_f64().unwrap_or(f64::NAN))
        }
        (Json::String(x), Json::String(y)) => compare_utf16(x, y),
        (Json::Bool(x), Json::Bool(y)) => x.cmp(y),
        (Json::Null, Json::Null) => Ordering::Equal,
        (Json::Array(_), Json::Array(_)) | (Json::Object(_), Json::Object(_)) => {
            Value::from_json(a).compare(&Value::from_json(b))
        }
        _ => rank(a).cmp(&rank(b)),
    }
}

/// JavaScript compares strings by UTF-16 code units; Rust's `str` order is by code point, which
/// disagrees for characters above U+FFFF against U+E000..=U+FFFF.
pub fn compare_utf16(a: &str, b: &str) -> Ordering {
    if a.is_ascii() || b.is_ascii() {
        // For ASCII on either side the two orders agree, and byte comparison is much cheaper.
        return a.cmp(b);
    }
    a.encode_utf16().cmp(b.encode_utf16())
}

fn compare_numbers(a: f64, b: f64) -> Ordering {
    a.partial_cmp(&b).unwrap_or_else(|| a.total_cmp(&b))
}

fn compare_sequences(a: &[Value], b: &[Value]) -> Ordering {
    for (x, y) in a.iter().zip(b) {
        let order = x.compare(y);
        if order != Ordering::Equal {
            return order;
        }
    }
    a.len().cmp(&b.len())
}

/// A number as JSON, keeping integers integral so `5` does not come back as `5.0`.
pub(crate) fn number_to_json(n: f64) -> Json {
    if n.fract() == 0.0 && n.abs() < 9.007_199_254_740_992e15 {
        Json::from(n as i64)
    } else {
        serde_json::Number::from_f64(n).map(Json::Number).unwrap_or(Json::Null)
    }
}

/// JavaScript's `String(number)` for the numbers JSON can carry.
pub fn js_number_to_string(n: f64) -> String {
    if n.fract() == 0.0 && n.abs() < 1e21 {
        return format!("{}", n as i128);
    }
    let text = serde_json::Number::from_f64(n).map(|x| x.to_string()).unwrap_or_else(|| "NaN".into());
    match text.split_once('e') {
        Some((mantissa, exp)) if !exp.starts_with(['-', '+']) => format!("{mantissa}e+{exp}"),
        _ => text,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn cross_type_order_is_the_codec_order() {
        let ordered = [
            Value::Null,
            Value::from_json(&json!({"a": 1})),
            Value::from_json(&json!([1])),
            Value::Number(-5.0),
            Value::Number(3.0),
            Value::from("abc"),
            Value::Boolean(false),
            Value::Boolean(true),
        ];
        for pair in ordered.windows(2) {
            assert_eq!(pair[0].compare(&pair[1]), Ordering::Less, "{:?} < {:?}", pair[0], pair[1]);
        }
    }

    #[test]
    fn strings_compare_by_utf16_code_units() {
        // U+1F600 (surrogates D83D DE00) sorts before U+FF5E in UTF-16, after it by code point.
        assert_eq!(compare_utf16("😀", "～"), Ordering::Less);
        assert_eq!(compare_utf16("b", "a"), Ordering::Greater);
    }

    #[test]
    fn dates_compare_with_strings_as_iso_text() {
        let d = Value::Date(Date::parse("2021-06-15").unwrap());
        assert_eq!(d.compare(&Value::from("2021")), Ordering::Greater);
        assert_eq!(d.compare(&Value::from("2021-06-15T00:00:00.000Z")), Ordering::Equal);
    }

    #[test]
    fn set_keys_follow_javascript_string_conversion() {
        assert_eq!(Value::Number(1.0).set_key(), "1");
        assert_eq!(Value::Number(1.5).set_key(), "1.5");
        assert_eq!(Value::Number(1e21).set_key(), "1e+21");
        assert_eq!(Value::Boolean(true).set_key(), "true");
    }
}
