//! Attribute defaults: a literal, or one of Triplit's default functions.

use serde_json::{Value as Json, json};

use crate::error::{Error, Result};
use crate::value::Date;

/// How a missing attribute gets its value on insert.
#[derive(Debug, Clone, PartialEq)]
pub enum DefaultValue {
    /// A literal value, in API form.
    Literal(Json),
    /// The current time (`now`).
    Now,
    /// A 21-character nanoid (`nanoid`).
    Nanoid,
    /// A random UUID (`uuidv4`; `uuid` is its deprecated alias and is written back as given).
    Uuidv4 { deprecated_alias: bool },
    /// A time-ordered UUID (`uuidv7`).
    Uuidv7,
    /// An empty set (`Set.empty`).
    EmptySet,
}

impl DefaultValue {
    /// Parses a `config.default` value; `path` names it in errors.
    pub(crate) fn parse(json: &Json, path: &str) -> Result<Self> {
        let Some(func) = json.as_object().and_then(|o| o.get("func")) else {
            return Ok(DefaultValue::Literal(json.clone()));
        };
        let func =
            func.as_str().ok_or_else(|| Error::invalid_schema(path, "default function name must be a string"))?;
        Ok(match func {
            "now" => DefaultValue::Now,
            "nanoid" => DefaultValue::Nanoid,
            "uuid" => DefaultValue::Uuidv4 { deprecated_alias: true },
            "uuidv4" => DefaultValue::Uuidv4 { deprecated_alias: false },
            "uuidv7" => DefaultValue::Uuidv7,
            "Set.empty" => DefaultValue::EmptySet,
            other => {
                return Err(Error::invalid_schema(
                    path,
                    format!(
                        "unknown default function '{other}' (expected now, nanoid, uuid, uuidv4, uuidv7 or Set.empty)"
                    ),
                ));
            }
        })
    }

    /// Produces a fresh value in API form.
    pub fn generate(&self) -> Json {
        match self {
            DefaultValue::Literal(value) => value.clone(),
            DefaultValue::Now => Json::String(Date::now().to_iso_string()),
            DefaultValue::Nanoid => Json::String(nanoid()),
            DefaultValue::Uuidv4 { .. } => Json::String(uuid::Uuid::new_v4().to_string()),
            DefaultValue::Uuidv7 => Json::String(uuid::Uuid::now_v7().to_string()),
            DefaultValue::EmptySet => Json::Array(Vec::new()),
        }
    }

    /// The schema JSON form, as Triplit writes it.
    pub fn to_json(&self) -> Json {
        let func = |name: &str| json!({"func": name, "args": null});
        match self {
            DefaultValue::Literal(value) => value.clone(),
            DefaultValue::Now => func("now"),
            DefaultValue::Nanoid => func("nanoid"),
            DefaultValue::Uuidv4 { deprecated_alias: true } => func("uuid"),
            DefaultValue::Uuidv4 { deprecated_alias: false } => func("uuidv4"),
            DefaultValue::Uuidv7 => func("uuidv7"),
            DefaultValue::EmptySet => func("Set.empty"),
        }
    }
}

/// A 21-character nanoid over the URL-safe alphabet, as Triplit's `nanoid` default. Its random
/// bytes come from the thread's CSPRNG (rand's `ThreadRng`: ChaCha12, reseeded from the OS),
/// not from an RNG seeded from the OS for each id, which costs a system call per insert.
pub(crate) fn nanoid() -> String {
    nanoid::format(
        |size| {
            let mut bytes = vec![0u8; size];
            rand::Rng::fill(&mut rand::rng(), &mut bytes[..]);
            bytes
        },
        &nanoid::alphabet::SAFE,
        21,
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nanoids_are_21_url_safe_characters_and_do_not_repeat() {
        let ids: std::collections::HashSet<String> = (0..10_000).map(|_| nanoid()).collect();
        assert_eq!(ids.len(), 10_000);
        let safe = |c: char| c.is_ascii_alphanumeric() || c == '_' || c == '-';
        assert!(ids.iter().all(|id| id.chars().count() == 21 && id.chars().all(safe)));
        // Every character of the alphabet turns up: the bytes are not stuck.
        let seen: std::collections::HashSet<char> = ids.iter().flat_map(|id| id.chars()).collect();
        assert_eq!(seen.len(), 64);
    }

    #[test]
    fn generators_produce_the_documented_shapes() {
        let id = DefaultValue::Nanoid.generate();
        assert_eq!(id.as_str().unwrap().len(), 21);
        let v7 = DefaultValue::Uuidv7.generate();
        assert_eq!(uuid::Uuid::parse_str(v7.as_str().unwrap()).unwrap().get_version_num(), 7);
        let v4 = DefaultValue::parse(&json!({"func": "uuid", "args": null}), "x").unwrap();
        assert_eq!(uuid::Uuid::parse_str(v4.generate().as_str().unwrap()).unwrap().get_version_num(), 4);
        assert!(Date::parse(DefaultValue::Now.generate().as_str().unwrap()).is_some());
        assert_eq!(DefaultValue::EmptySet.generate(), json!([]));
    }

    #[test]
    fn unknown_functions_are_rejected_by_name() {
        let err = DefaultValue::parse(&json!({"func": "random"}), "todos.id").unwrap_err();
        assert!(err.to_string().contains("random"), "{err}");
    }
}
