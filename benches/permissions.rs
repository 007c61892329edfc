//! The cost of permissions: the indexed todo query through a user's session against the same
//! query without rules, and token verifications per second (RS256, EdDSA).

use std::hint::black_box;
use std::time::Duration;

use criterion::{Criterion, Throughput, criterion_group, criterion_main};

mod common;
use common::{todo, todo_properties};
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use serde_json::json;
use triplite::{AuthConfig, Database, Direction, Query, Schema};

const ROWS: usize = 100_000;

fn fixture(name: &str) -> String {
    std::fs::read_to_string(format!("{}/tests/fixtures/keys/{name}", env!("CARGO_MANIFEST_DIR"))).unwrap()
}

fn schema() -> Schema {
    let own = json!({"filter": [["owner", "=", "$role.userId"]]});
    Schema::from_json(&json!({
        "roles": {"user": {"match": {"sub": "$userId"}}},
        "collections": {"todos": {
            "schema": {"type": "record", "properties": todo_properties()},
            "indexes": [["owner", "completed", "created_at"]],
            "permissions": {"user": {"read": own, "insert": own, "update": own, "delete": own}}
        }}
    }))
    .unwrap()
}

fn permissions(c: &mut Criterion) {
    let dir = tempfile::tempdir().unwrap();
    let db = Database::builder().schema(schema()).open(dir.path().join("p.db")).unwrap();
    db.transact(|tx| {
        for i in 0..ROWS {
            tx.insert("todos", todo(i))?;
        }
        Ok(())
    })
    .unwrap();
    let query = Query::new("todos")
        .filter("owner", "=", "user-3")
        .filter("completed", "=", false)
        .order("created_at", Direction::Desc)
        .limit(20);
    let session = db.session_from_claims(json!({"sub": "user-3"})).unwrap();
    assert_eq!(session.fetch(&query).unwrap(), db.fetch(&query).unwrap());
    let plan = session.explain(&query).unwrap();
    assert!(plan.ordered_by_index && plan.rows_read == 20, "{plan:?}");

    let mut group = c.benchmark_group("indexed_todo_query");
    group.measurement_time(Duration::from_secs(4));
    group.bench_function("user_session", |b| b.iter(|| black_box(session.fetch(&query).unwrap())));
    group.bench_function("no_rules", |b| b.iter(|| black_box(db.fetch(&query).unwrap())));
    group.finish();

    let claims = json!({"sub": "user-3", "exp": 4_000_000_000u64});
    let rsa = Database::builder()
        .auth(AuthConfig { external_jwt_secret: Some(fixture("rsa_public.pem")), ..AuthConfig::default() })
        .open_in_memory()
        .unwrap();
    triplite::install_token_crypto();
    let rs_token = jsonwebtoken::encode(
        &Header::new(Algorithm::RS256),
        &claims,
        &EncodingKey::from_rsa_pem(fixture("rsa_private.pem").as_bytes()).unwrap(),
    )
    .unwrap();
    let ed = Database::builder()
        .auth(AuthConfig { external_jwt_secret: Some(fixture("ed25519_public.pem")), ..AuthConfig::default() })
        .open_in_memory()
        .unwrap();
    triplite::install_token_crypto();
    let ed_token = jsonwebtoken::encode(
        &Header::new(Algorithm::EdDSA),
        &claims,
        &EncodingKey::from_ed_pem(fixture("ed25519_private.pem").as_bytes()).unwrap(),
    )
    .unwrap();

    let mut group = c.benchmark_group("verify_token");
    group.throughput(Throughput::Elements(1)).measurement_time(Duration::from_secs(4));
    group.bench_function("RS256", |b| b.iter(|| black_box(rsa.verify_token(&rs_token).unwrap())));
    group.bench_function("EdDSA", |b| b.iter(|| black_box(ed.verify_token(&ed_token).unwrap())));
    group.finish();
}

criterion_group!(benches, permissions);
criterion_main!(benches);
