//! Replays the real Triplit server's answers to bad HTTP requests (`tests/fixtures/conformance/
//! errors.jsonl`: missing, malformed, forged and expired tokens, user tokens on service routes,
//! unknown and removed routes, invalid queries and documents) and compares the status, the
//! error name and, for the names whose message Triplit never varies, its `baseMessage`: what
//! went wrong in particular travels in `contextMessage`, as there.

use std::time::{SystemTime, UNIX_EPOCH};

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use serde_json::{Map, Value as Json, json};
use triplite::sync::http::{Body, Request};
use triplite::sync::{Limits, SyncServer};
use triplite::{Database, Schema};

const FIXTURES: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures");
const SECRET: &str = "error-conformance-secret";

fn fixture(path: &str) -> String {
    std::fs::read_to_string(format!("{FIXTURES}/{path}")).unwrap_or_else(|e| panic!("{path}: {e}"))
}

fn now() -> i64 {
    SystemTime::now().duration_since(UNIX_EPOCH).unwrap().as_secs() as i64
}

/// A token from a recipe of the fixture's README: `{alg, key, claims, time_claims}`, the
/// literal text, or another identity's token with its payload replaced.
fn token(recipe: &Json, identities: &Map<String, Json>) -> String {
    if let Some(literal) = recipe["literal"].as_str() {
        return literal.to_owned();
    }
    if let Some(tamper) = recipe.get("tamper") {
        let genuine = token(&identities[tamper["of"].as_str().unwrap()], identities);
        let parts: Vec<&str> = genuine.split('.').collect();
        let payload = claims(&tamper["payload"], &tamper["time_claims"]);
        let payload = URL_SAFE_NO_PAD.encode(serde_json::to_vec(&payload).unwrap());
        return format!("{}.{payload}.{}", parts[0], parts[2]);
    }
    let claims = claims(&recipe["claims"], &recipe["time_claims"]);
    let rsa = |file: &str| EncodingKey::from_rsa_pem(fixture(&format!("keys/{file}")).as_bytes()).unwrap();
    let (algorithm, key) = match recipe["key"].as_str().unwrap() {
        "JWT_SECRET" => (Algorithm::HS256, EncodingKey::from_secret(SECRET.as_bytes())),
        "OTHER_HS_SECRET" => (Algorithm::HS256, EncodingKey::from_secret(b"some other secret")),
        "EXTERNAL_PRIVATE_KEY" => (Algorithm::RS256, rsa("rsa_private.pem")),
        "OTHER_RSA_KEY" => (Algorithm::RS256, rsa("rsa_other_private.pem")),
        "EXTERNAL_PUBLIC_PEM_AS_HS256_SECRET" => {
            (Algorithm::HS256, EncodingKey::from_secret(fixture("keys/rsa_public.pem").as_bytes()))
        }
        "NONE" => {
            let segment = |json: &Json| URL_SAFE_NO_PAD.encode(serde_json::to_vec(json).unwrap());
            return format!("{}.{}.", segment(&json!({"alg": "none", "typ": "JWT"})), segment(&claims));
        }
        other => panic!("unknown key {other}"),
    };
    triplite::install_token_crypto();
    jsonwebtoken::encode(&Header::new(algorithm), &claims, &key).unwrap()
}

/// Claims with `time_claims` as offsets from now.
fn claims(claims: &Json, time_claims: &Json) -> Json {
    let mut claims = claims.clone();
    for (name, offset) in time_claims.as_object().into_iter().flatten() {
        claims[name] = json!(now() + offset.as_i64().unwrap());
    }
    claims
}

fn server() -> SyncServer {
    let db = Database::builder()
        .schema(Schema::from_json_str(&fixture("conformance/schema.json")).unwrap())
        .jwt_secret(SECRET)
        .external_jwt_secret(fixture("keys/rsa_public.pem"))
        .open_in_memory()
        .unwrap();
    SyncServer::new(db, Limits::default())
}

#[test]
fn bad_requests_get_the_real_servers_status_name_and_base_message() {
    let identities: Map<String, Json> = serde_json::from_str(&fixture("conformance/identities.json")).unwrap();
    let server = server();
    let mut differences = Vec::new();
    for line in fixture("conformance/errors.jsonl").lines() {
        let case: Json = serde_json::from_str(line).unwrap();
        let auth = &case["auth"];
        let authorization = if auth.is_null() {
            None
        } else if let Some(header) = auth["header"].as_str() {
            Some(header.to_owned())
        } else {
            let recipe = match auth["identity"].as_str() {
                Some(identity) => &identities[identity],
                None => &auth["token"],
            };
            Some(format!("{} {}", auth["scheme"].as_str().unwrap_or("Bearer"), token(recipe, &identities)))
        };
        let mut body = case["body"].clone();
        if body["schema"] == "<schema.json>" {
            body["schema"] = serde_json::from_str(&fixture("conformance/schema.json")).unwrap();
        }
        let body = match case["raw_body"].as_str() {
            Some(raw) => raw.to_owned(),
            None => body.to_string(),
        };
        let request = Request {
            method: case["method"].as_str().unwrap(),
            path: case["route"].as_str().unwrap(),
            authorization: authorization.as_deref(),
            content_type: Some("application/json"),
            body: body.as_bytes(),
            ..Request::default()
        };
        let answer = server.handle_http(&request);
        let Body::Json(error) = answer.body else { panic!("{}: not JSON", case["id"]) };
        let expected_base = case["message"].as_str().unwrap().split(" | Context: ").next().unwrap();
        let fixed = matches!(
            case["name"].as_str().unwrap(),
            "NoTokenProvidedError"
                | "InvalidAuthenticationSchemeError"
                | "InvalidTokenSignatureError"
                | "InvalidTokenPayloadError"
                | "ServiceKeyRequiredError"
        );
        let got = (answer.status, error["name"].clone());
        let want = (case["status"].as_u64().unwrap() as u16, case["name"].clone());
        if got != want || (fixed && error["baseMessage"] != expected_base) {
            differences.push(format!(
                "{} {}: got {} {}, Triplit {} {}",
                case["id"], case["desc"], got.0, error, want.0, case["message"]
            ));
        }
    }
    assert!(differences.is_empty(), "{} differ:\n{}", differences.len(), differences.join("\n"));
}
