//! Replays the real Triplit server's answers (`tests/fixtures/conformance/`) through the
//! Rust API, comparing by the rules of its README: multisets where order is not significant,
//! tie groups as multisets, and limit cuts inside a tie group judged against the candidates.
//!
//! The service identity's queries run on the database directly (a service token skips every
//! rule); every other identity's run through a session built from its claims, so its read
//! rules apply.

use std::collections::BTreeMap;
use std::sync::OnceLock;

use serde_json::{Map, Value as Json, json};
use triplite::schema::DataType;
use triplite::{Database, Error, Query, Schema, Variables};

const DIR: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures/conformance");

fn read(name: &str) -> String {
    std::fs::read_to_string(format!("{DIR}/{name}")).unwrap_or_else(|e| panic!("{DIR}/{name}: {e}"))
}

fn schema() -> &'static Schema {
    static SCHEMA: OnceLock<Schema> = OnceLock::new();
    SCHEMA.get_or_init(|| Schema::from_json_str(&read("schema.json")).unwrap())
}

fn load(db: &Database) {
    let data: Map<String, Json> = serde_json::from_str(&read("data.json")).unwrap();
    db.transact(|tx| {
        for (collection, rows) in &data {
            for row in rows.as_array().unwrap() {
                tx.insert(collection, row.clone())?;
            }
        }
        Ok(())
    })
    .unwrap();
}

/// Numbers compared by value (1 and 1.0 alike); sets sorted; includes canonicalized by shape.
fn canonical(entity: &Json, collection: &str, includes: Option<&Map<String, Json>>) -> Json {
    let Json::Object(fields) = entity else { return entity.clone() };
    let def = schema().collection(collection).unwrap();
    let mut out = Map::new();
    for (key, value) in fields {
        let canon = if let Some(shape) = includes.and_then(|i| i.get(key)) {
            let target = shape["collection"].as_str().unwrap();
            match value {
                Json::Array(items) => {
                    let mut rows: Vec<Json> = items.iter().map(|i| canonical(i, target, None)).collect();
                    if shape.get("order").is_none() {
                        sort_by_text(&mut rows);
                    }
                    Json::Array(rows)
                }
                other => canonical(other, target, None),
            }
        } else {
            canonical_value(value, def.attributes.get(key))
        };
        out.insert(key.clone(), canon);
    }
    Json::Object(out)
}

fn canonical_value(value: &Json, ty: Option<&DataType>) -> Json {
    match (ty, value) {
        (Some(DataType::Set { .. }), Json::Array(items)) => {
            let mut items: Vec<Json> = items.iter().map(|i| canonical_value(i, None)).collect();
            sort_by_text(&mut items);
            Json::Array(items)
        }
        (Some(DataType::Record { properties, .. }), Json::Object(fields)) => {
            Json::Object(fields.iter().map(|(k, v)| (k.clone(), canonical_value(v, properties.get(k)))).collect())
        }
        (_, Json::Number(n)) => {
            let f = n.as_f64().unwrap();
            if f.fract() == 0.0 && f.abs() < 1e15 { json!(f as i64) } else { json!(f) }
        }
        (_, Json::Array(items)) => Json::Array(items.iter().map(|i| canonical_value(i, None)).collect()),
        (_, Json::Object(fields)) => {
            Json::Object(fields.iter().map(|(k, v)| (k.clone(), canonical_value(v, None))).collect())
        }
        (_, other) => other.clone(),
    }
}

fn sort_by_text(rows: &mut [Json]) {
    rows.sort_by_key(|r| r.to_string());
}

/// Compares one case; returns a description of the first difference.
fn check(case: &Json, answer: Result<Vec<Json>, Error>) -> Result<(), String> {
    let status = case["status"].as_u64().unwrap();
    let answer = match (status, answer) {
        (200, Ok(rows)) => rows,
        (200, Err(e)) => return Err(format!("expected results, got error {e}")),
        (_, Ok(_)) => return Err(format!("expected {}, got results", case["result"]["name"])),
        (_, Err(Error::Query { kind, message })) => {
            return if kind.name() == case["result"]["name"] {
                Ok(())
            } else {
                Err(format!("expected {}, got {kind}: {message}", case["result"]["name"]))
            };
        }
        (_, Err(e)) => return Err(format!("expected {}, got {e}", case["result"]["name"])),
    };
    let collection = case["query"]["collectionName"].as_str().unwrap();
    let includes = case.get("includes").and_then(Json::as_object);
    let mut got: Vec<Json> = answer.iter().map(|e| canonical(e, collection, includes)).collect();
    let mut want: Vec<Json> =
        case["result"].as_array().unwrap().iter().map(|e| canonical(e, collection, includes)).collect();
    if got.len() != want.len() {
        return Err(format!("{} rows, expected {}", got.len(), want.len()));
    }
    if !case["ordered"].as_bool().unwrap_or(false) {
        sort_by_text(&mut got);
        sort_by_text(&mut want);
        return if got == want { Ok(()) } else { Err(first_difference(&got, &want)) };
    }
    // Ordered: segments are tie groups (multisets) or single rows; a limit cut is judged apart.
    let cut = case.get("limit_cut");
    let cut_start = cut.map(|c| c["start"].as_u64().unwrap() as usize).unwrap_or(usize::MAX);
    let mut segments: Vec<(usize, usize)> = Vec::new();
    let ties: Vec<(usize, usize)> = case
        .get("ties")
        .and_then(Json::as_array)
        .map(|t| t.iter().map(|r| (r[0].as_u64().unwrap() as usize, r[1].as_u64().unwrap() as usize)).collect())
        .unwrap_or_default();
    let mut i = 0;
    while i < want.len() {
        let end = ties.iter().find(|(s, _)| *s == i).map(|(_, e)| *e).unwrap_or(i + 1);
        segments.push((i, end));
        i = end;
    }
    for (start, end) in segments {
        if start >= cut_start {
            break;
        }
        let mut g = got[start..end].to_vec();
        let mut w = want[start..end].to_vec();
        sort_by_text(&mut g);
        sort_by_text(&mut w);
        if g != w {
            return Err(format!("rows {start}..{end}: {}", first_difference(&g, &w)));
        }
    }
    if let Some(cut) = cut {
        let end = cut["end"].as_u64().unwrap() as usize;
        let candidates: Vec<Json> = match cut.get("candidate_ids") {
            Some(ids) => ids.as_array().unwrap().clone(),
            None => cut["candidates"].as_array().unwrap().iter().map(|c| canonical(c, collection, includes)).collect(),
        };
        for row in &got[cut_start..end] {
            let ok = match cut.get("candidate_ids") {
                Some(_) => candidates.contains(&row["id"]),
                None => candidates.contains(row),
            };
            if !ok {
                return Err(format!("limit cut: {row} is not a candidate"));
            }
            if let Some(same) =
                want[cut_start..end].iter().find(|w| w.get("id").is_some() && w.get("id") == row.get("id"))
            {
                if same != row {
                    return Err(format!("limit cut: {row} differs from {same}"));
                }
            }
        }
    }
    Ok(())
}

fn first_difference(got: &[Json], want: &[Json]) -> String {
    for (g, w) in got.iter().zip(want) {
        if g != w {
            return format!("got {g}\nwant {w}");
        }
    }
    "lengths differ".into()
}

/// Cases where Triplit's answer comes from a Triplit bug that triplite does not copy (see
/// docs/compatibility.md, "Queries"): replayed, but not compared.
const KNOWN_DEVIATIONS: &[(&str, &str)] = &[
    ("q100-0036", "order through a relation into a record path: Triplit ignores the key"),
    ("q100-0266", "order through a relation into a record path: Triplit ignores the key"),
    ("q100-0563", "order through a relation into a record path: Triplit ignores the key"),
    ("q100-0454", "relational filter in an include's _extends: Triplit ignores it"),
    ("q101-0235", "relational filter in an include's _extends: Triplit ignores it"),
    ("q100-0084", "order through a relation into a record path: Triplit ignores the key"),
    ("q100-0127", "order through a relation into a record path: Triplit ignores the key"),
    ("q100-0233", "order through a relation into a record path: Triplit ignores the key"),
    ("q100-0264", "order through a relation into a record path: Triplit ignores the key"),
    ("q100-0309", "order through a relation into a record path: Triplit ignores the key"),
    ("q101-0141", "order through a relation into a record path: Triplit ignores the key"),
    ("q101-0395", "order through a relation into a record path: Triplit ignores the key"),
    ("q101-0309", "two `nin` filters on one attribute: Triplit's simplifier drops the second as a duplicate"),
];

/// Cases where Triplit answers with rows its read rules hide, through an include: the real
/// server (1.1.8, with this schema and data) returns alice no comments of post p_0824 at the root
/// but all five when she includes `comments` on the post. triplite applies the rule in includes
/// too. Replayed, not compared.
const INCLUDE_LEAKS: &[&str] = &[
    "q100-0005",
    "q100-0035",
    "q100-0085",
    "q100-0106",
    "q100-0147",
    "q100-0330",
    "q100-0473",
    "q100-0510",
    "q100-0514",
    "q101-0008",
    "q101-0138",
    "q101-0205",
    "q101-0291",
    "q101-0376",
    "q101-0515",
];

fn replay(identity: &str, db: &Database) -> (usize, Vec<String>) {
    let identities: Json = serde_json::from_str(&read("identities.json")).unwrap();
    let mut claims = identities[identity]["claims"].clone();
    let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_secs() as i64;
    for (claim, offset) in identities[identity].get("time_claims").and_then(Json::as_object).into_iter().flatten() {
        claims[claim] = json!(now + offset.as_i64().unwrap());
    }
    let vars = Variables::new().with_scope("$session", claims.clone());
    let session = (identity != "service").then(|| db.session_from_claims(claims.clone()).unwrap());
    let mut failures = Vec::new();
    let mut count = 0;
    for line in read("queries.jsonl").lines() {
        let case: Json = serde_json::from_str(line).unwrap();
        // CONFORMANCE_CASE=<id> replays one case and prints both answers in full.
        let only = std::env::var("CONFORMANCE_CASE").ok();
        if case["identity"] != identity || only.as_ref().is_some_and(|id| case["id"] != id.as_str()) {
            continue;
        }
        count += 1;
        let answer = Query::from_json(&case["query"]).and_then(|q| match &session {
            Some(session) => session.fetch(&q),
            None => db.fetch_with(&q, &vars),
        });
        if only.is_some() {
            eprintln!(
                "got:  {}",
                serde_json::to_string(answer.as_ref().map_err(|e| e.to_string()).unwrap_or(&Vec::new())).unwrap()
            );
            eprintln!("want: {}", case["result"]);
        }
        let known = KNOWN_DEVIATIONS.iter().any(|(id, _)| case["id"] == *id)
            || INCLUDE_LEAKS.contains(&case["id"].as_str().unwrap());
        if let (false, Err(why)) = (known, check(&case, answer)) {
            failures.push(format!(
                "{}: {}\n  {}",
                case["id"],
                case["query"],
                why.chars().take(300).collect::<String>()
            ));
        }
    }
    (count, failures)
}

#[test]
fn every_identity_answers_as_the_real_server() {
    let mut by_backend = BTreeMap::new();
    for (name, db) in [
        (
            "sqlite",
            Database::builder()
                .schema(schema().clone())
                .open(tempfile::tempdir().unwrap().keep().join("c.db"))
                .unwrap(),
        ),
        ("memory", Database::builder().schema(schema().clone()).open_in_memory().unwrap()),
    ] {
        let started = std::time::Instant::now();
        load(&db);
        let mut all = Vec::new();
        let mut total = 0;
        for identity in ["service", "anon", "alice", "bob", "carol"] {
            let (count, failures) = replay(identity, &db);
            total += count;
            all.extend(failures);
        }
        eprintln!("{name}: {total} cases in {:?}", started.elapsed());
        assert_eq!(total, 825, "every case replayed");
        by_backend.insert(name, all);
    }
    for (name, failures) in &by_backend {
        assert!(failures.is_empty(), "{name}: {} of the cases differ:\n{}", failures.len(), failures.join("\n\n"));
    }
}
