//! Token verification: every key form and algorithm accepts a good token, and attacks fail with
//! Triplit's error names — `alg: none`, HS/RS key confusion, tampering, wrong keys, expiry,
//! `nbf`, unknown and mismatched `kid`s, a forged service token, malformed and huge tokens —
//! plus JWKS rotation served from a loopback HTTP server.

use std::io::{Read, Write};
use std::net::TcpListener;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use parking_lot::Mutex;
use serde_json::{Value as Json, json};
use triplite::auth::AuthErrorKind;
use triplite::{AuthConfig, Database, DevTokenKind, Error, mint_dev_token};

const SECRET: &str = "an-hmac-secret-for-tests";

fn fixture(name: &str) -> String {
    std::fs::read_to_string(format!("{}/tests/fixtures/keys/{name}", env!("CARGO_MANIFEST_DIR"))).unwrap()
}

fn now() -> i64 {
    SystemTime::now().duration_since(UNIX_EPOCH).unwrap().as_secs() as i64
}

fn sign(alg: Algorithm, kid: Option<&str>, claims: &Json, key: &EncodingKey) -> String {
    let mut header = Header::new(alg);
    header.kid = kid.map(str::to_owned);
    triplite::install_token_crypto();
    jsonwebtoken::encode(&header, claims, key).unwrap()
}

fn rsa_private() -> EncodingKey {
    EncodingKey::from_rsa_pem(fixture("rsa_private.pem").as_bytes()).unwrap()
}

fn user(sub: &str) -> Json {
    json!({"sub": sub, "iat": now(), "exp": now() + 3600})
}

fn db(config: AuthConfig) -> Database {
    Database::builder().auth(config).open_in_memory().unwrap()
}

fn external(key: String) -> Database {
    db(AuthConfig { jwt_secret: Some(SECRET.into()), external_jwt_secret: Some(key), ..AuthConfig::default() })
}

fn refused(db: &Database, token: &str) -> AuthErrorKind {
    match db.verify_token(token) {
        Err(Error::Auth { kind, message }) => {
            assert!(!message.is_empty());
            kind
        }
        other => panic!("token should be refused, got {other:?}"),
    }
}

#[test]
fn every_key_form_and_algorithm_accepts_a_good_token() {
    let hmac = db(AuthConfig { jwt_secret: Some(SECRET.into()), ..AuthConfig::default() });
    for alg in [Algorithm::HS256, Algorithm::HS384, Algorithm::HS512] {
        let token = sign(alg, None, &user("ann"), &EncodingKey::from_secret(SECRET.as_bytes()));
        assert_eq!(hmac.verify_token(&token).unwrap().claims["sub"], json!("ann"), "{alg:?}");
    }

    let rsa_pem = fixture("rsa_public.pem");
    let one_line = rsa_pem.replace('\n', "");
    for key in [rsa_pem.clone(), one_line, rsa_pem.replace('\n', "\\n")] {
        let db = external(key);
        for alg in [Algorithm::RS256, Algorithm::RS384, Algorithm::RS512, Algorithm::PS256, Algorithm::PS512] {
            let token = sign(alg, None, &user("bob"), &rsa_private());
            assert_eq!(db.verify_token(&token).unwrap().claims["sub"], json!("bob"), "{alg:?}");
        }
    }

    let ec = EncodingKey::from_ec_pem(fixture("ec_p256_private.pem").as_bytes()).unwrap();
    let ed = EncodingKey::from_ed_pem(fixture("ed25519_private.pem").as_bytes()).unwrap();
    let cases = [
        (fixture("ec_p256_public.pem"), Algorithm::ES256, &ec),
        (fixture("ed25519_public.pem"), Algorithm::EdDSA, &ed),
        (fixture("ec_p256_public.jwk.json"), Algorithm::ES256, &ec),
        (fixture("ed25519_public.jwk.json"), Algorithm::EdDSA, &ed),
    ];
    for (key, alg, signing) in cases {
        let token = sign(alg, None, &user("cat"), signing);
        assert_eq!(external(key).verify_token(&token).unwrap().claims["sub"], json!("cat"), "{alg:?}");
    }
    let token = sign(Algorithm::RS256, None, &user("dan"), &rsa_private());
    assert!(external(fixture("rsa_public.jwk.json")).verify_token(&token).is_ok(), "a single RSA JWK");

    // A JWK Set: the key is chosen by kid.
    let set = jwk_set(&["rsa_public.jwk.json", "ec_p256_public.jwk.json", "ed25519_public.jwk.json"]);
    let db = external(set.to_string());
    assert!(db.verify_token(&sign(Algorithm::RS256, Some("rsa-1"), &user("a"), &rsa_private())).is_ok());
    assert!(db.verify_token(&sign(Algorithm::ES256, Some("ec-1"), &user("a"), &ec)).is_ok());
    assert!(db.verify_token(&sign(Algorithm::EdDSA, Some("ed-1"), &user("a"), &ed)).is_ok());
}

#[test]
fn tokens_signed_by_another_implementation_verify() {
    let tokens: Json = serde_json::from_str(&fixture("node-signed-tokens.json")).unwrap();
    let keys = [
        ("RS256", "rsa_public.pem"),
        ("RS512", "rsa_public.pem"),
        ("PS256", "rsa_public.pem"),
        ("ES256", "ec_p256_public.pem"),
        ("EdDSA", "ed25519_public.pem"),
    ];
    for (alg, key) in keys {
        let token = tokens[alg].as_str().unwrap();
        let verified = external(fixture(key)).verify_token(token).unwrap_or_else(|e| panic!("{alg}: {e}"));
        assert_eq!(verified.claims["sub"], "node-signed", "{alg}");
        // One flipped bit in the signature and it is refused.
        let (body, signature) = token.rsplit_once('.').unwrap();
        let mut bytes = URL_SAFE_NO_PAD.decode(signature).unwrap();
        bytes[7] ^= 1;
        let bent = format!("{body}.{}", URL_SAFE_NO_PAD.encode(bytes));
        assert_eq!(refused(&external(fixture(key)), &bent), AuthErrorKind::InvalidSignature, "{alg}");
    }
}

fn jwk_set(files: &[&str]) -> Json {
    json!({"keys": files.iter().map(|f| serde_json::from_str::<Json>(&fixture(f)).unwrap()).collect::<Vec<_>>()})
}

#[test]
fn attacks_fail_with_the_right_error() {
    let rsa_pem = fixture("rsa_public.pem");
    let db = external(rsa_pem.clone());
    let good = sign(Algorithm::RS256, None, &user("bob"), &rsa_private());
    assert!(db.verify_token(&good).is_ok());
    let parts: Vec<&str> = good.split('.').collect();
    let encode = |v: &Json| URL_SAFE_NO_PAD.encode(v.to_string());

    // alg: none, with and without a signature segment.
    let none_header = encode(&json!({"alg": "none", "typ": "JWT"}));
    assert_eq!(refused(&db, &format!("{none_header}.{}.", parts[1])), AuthErrorKind::InvalidSignature);
    assert_eq!(refused(&db, &format!("{none_header}.{}.{}", parts[1], parts[2])), AuthErrorKind::InvalidSignature);

    // HS/RS confusion: HS256 with the public key's PEM (with or without newlines) as the secret.
    for secret in [rsa_pem.clone(), rsa_pem.replace('\n', ""), rsa_pem.trim().to_owned()] {
        let forged = sign(Algorithm::HS256, None, &user("mallory"), &EncodingKey::from_secret(secret.as_bytes()));
        assert_eq!(refused(&db, &forged), AuthErrorKind::InvalidSignature);
    }

    // A tampered payload keeps the header and signature.
    let tampered = format!("{}.{}.{}", parts[0], encode(&user("admin")), parts[2]);
    assert_eq!(refused(&db, &tampered), AuthErrorKind::InvalidSignature);

    // Signed by another key.
    let other = EncodingKey::from_rsa_pem(fixture("rsa_other_private.pem").as_bytes()).unwrap();
    assert_eq!(refused(&db, &sign(Algorithm::RS256, None, &user("bob"), &other)), AuthErrorKind::InvalidSignature);

    // Expired, and not yet valid (beyond the leeway), both named InvalidTokenSignatureError.
    let expired = sign(Algorithm::RS256, None, &json!({"sub": "bob", "exp": now() - 60}), &rsa_private());
    assert_eq!(refused(&db, &expired), AuthErrorKind::Expired);
    assert_eq!(AuthErrorKind::Expired.name(), "InvalidTokenSignatureError");
    let early = sign(Algorithm::RS256, None, &json!({"sub": "bob", "nbf": now() + 600}), &rsa_private());
    assert_eq!(refused(&db, &early), AuthErrorKind::NotYetValid);
    // No leeway by default, as Triplit: a token a second past `exp` is refused. With one set,
    // it is accepted, and the session it opens ends when the leeway does.
    // `exp` is read once: a second may tick between two reads of the clock.
    let exp = now() - 1;
    let just_expired = sign(Algorithm::RS256, None, &json!({"sub": "bob", "exp": exp}), &rsa_private());
    assert_eq!(refused(&db, &just_expired), AuthErrorKind::Expired);
    let lenient =
        Database::builder().external_jwt_secret(rsa_pem.clone()).token_leeway_seconds(30).open_in_memory().unwrap();
    let verified = lenient.verify_token(&just_expired).expect("within the configured leeway");
    assert_eq!(verified.expires_at, Some(exp + 30));
    assert_eq!(refused(&lenient, &expired), AuthErrorKind::Expired, "60 s is beyond 30 s");

    // A token that claims to be a service token but is signed by the external key is checked
    // against JWT_SECRET, and fails.
    let fake_service = sign(Algorithm::RS256, None, &json!({"x-triplit-token-type": "secret"}), &rsa_private());
    assert_eq!(refused(&db, &fake_service), AuthErrorKind::InvalidSignature);

    // Malformed, huge and missing tokens.
    for garbage in
        ["abc", "a.b", "a.b.c", "!!!.###.$$$", &format!("{}.{}.x", parts[0], URL_SAFE_NO_PAD.encode("[1,2]"))]
    {
        assert_eq!(refused(&db, garbage), AuthErrorKind::InvalidPayload, "{garbage}");
        assert_eq!(AuthErrorKind::InvalidPayload.status(), 400);
    }
    let huge = sign(Algorithm::RS256, None, &json!({"sub": "x".repeat(100_000)}), &rsa_private());
    assert_eq!(refused(&db, &huge), AuthErrorKind::InvalidPayload);
    assert_eq!(refused(&db, ""), AuthErrorKind::NoToken);

    // Key sets: an unknown kid, and a kid whose key did not sign the token.
    let set_db = external(jwk_set(&["rsa_public.jwk.json", "ec_p256_public.jwk.json"]).to_string());
    assert_eq!(
        refused(&set_db, &sign(Algorithm::RS256, Some("nope"), &user("a"), &rsa_private())),
        AuthErrorKind::InvalidSignature
    );
    assert_eq!(
        refused(&set_db, &sign(Algorithm::RS256, Some("rsa-1"), &user("a"), &other)),
        AuthErrorKind::InvalidSignature
    );
    let ec = EncodingKey::from_ec_pem(fixture("ec_p256_private.pem").as_bytes()).unwrap();
    assert_eq!(
        refused(&set_db, &sign(Algorithm::ES256, Some("rsa-1"), &user("a"), &ec)),
        AuthErrorKind::InvalidSignature
    );
}

#[test]
fn triplit_tokens_use_jwt_secret_and_dev_tokens_verify() {
    let db = external(fixture("rsa_public.pem"));
    let service = mint_dev_token(SECRET, DevTokenKind::Secret, "local-project-id").unwrap();
    let verified = db.verify_token(&service).unwrap();
    assert!(verified.is_service());
    assert_eq!(verified.claims["x-triplit-project-id"], json!("local-project-id"));
    let anon = db.verify_token(&mint_dev_token(SECRET, DevTokenKind::Anon, "p").unwrap()).unwrap();
    assert_eq!((anon.token_type.as_deref(), anon.is_service()), (Some("anon"), false));
    // A dev token signed with another secret is refused.
    assert_eq!(
        refused(&db, &mint_dev_token("other", DevTokenKind::Secret, "p").unwrap()),
        AuthErrorKind::InvalidSignature
    );
    // Without an external key, external tokens fall back to JWT_SECRET, as in Triplit.
    let hmac_only = db_with_secret();
    let external_token = sign(Algorithm::HS256, None, &user("eve"), &EncodingKey::from_secret(SECRET.as_bytes()));
    assert_eq!(hmac_only.verify_token(&external_token).unwrap().claims["sub"], json!("eve"));
    // An HMAC key never accepts an RSA-signed token.
    assert_eq!(
        refused(&hmac_only, &sign(Algorithm::RS256, None, &user("eve"), &rsa_private())),
        AuthErrorKind::InvalidSignature
    );
}

fn db_with_secret() -> Database {
    db(AuthConfig { jwt_secret: Some(SECRET.into()), ..AuthConfig::default() })
}

#[test]
fn claims_path_issuer_and_audience() {
    let config = AuthConfig {
        jwt_secret: Some(SECRET.into()),
        external_jwt_secret: Some(fixture("rsa_public.pem")),
        claims_path: Some("app.meta".into()),
        issuer: Some("https://issuer.example".into()),
        audience: Some("triplite".into()),
        ..AuthConfig::default()
    };
    let db = db(config);
    let good = json!({"iss": "https://issuer.example", "aud": ["triplite", "other"], "app": {"meta": {"sub": "ann", "role": "admin"}}});
    let verified = db.verify_token(&sign(Algorithm::RS256, None, &good, &rsa_private())).unwrap();
    assert_eq!(verified.claims, json!({"sub": "ann", "role": "admin"}).as_object().unwrap().clone());

    let mut no_path = good.clone();
    no_path["app"] = json!({"other": {}});
    assert_eq!(refused(&db, &sign(Algorithm::RS256, None, &no_path, &rsa_private())), AuthErrorKind::InvalidPayload);
    let mut wrong_iss = good.clone();
    wrong_iss["iss"] = json!("https://evil.example");
    assert_eq!(
        refused(&db, &sign(Algorithm::RS256, None, &wrong_iss, &rsa_private())),
        AuthErrorKind::WrongIssuerOrAudience
    );
    let mut wrong_aud = good.clone();
    wrong_aud["aud"] = json!("someone-else");
    assert_eq!(
        refused(&db, &sign(Algorithm::RS256, None, &wrong_aud, &rsa_private())),
        AuthErrorKind::WrongIssuerOrAudience
    );
    // Triplit's own tokens are neither read through the claims path nor held to the provider's
    // issuer and audience.
    let service = db.verify_token(&mint_dev_token(SECRET, DevTokenKind::Secret, "p").unwrap()).unwrap();
    assert!(service.is_service() && service.claims.contains_key("x-triplit-token-type"));
}

#[test]
fn bad_key_configurations_are_reported_at_open() {
    for key in [
        "-----BEGIN PUBLIC KEY-----garbage-----END PUBLIC KEY-----",
        "{\"kty\": \"RSA\"}",
        "{\"keys\": []}",
        "http://example.com/jwks.json",
        " ",
    ] {
        let result = Database::builder().external_jwt_secret(key).open_in_memory();
        assert!(
            matches!(result, Err(Error::Auth { kind: AuthErrorKind::BadKeyConfiguration, .. })),
            "{key}: {:?}",
            result.err()
        );
    }
}

/// A loopback HTTP server answering every request with the current key set.
fn serve_keys(keys: Arc<Mutex<Json>>, hits: Arc<AtomicUsize>) -> String {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!("http://{}/.well-known/jwks.json", listener.local_addr().unwrap());
    std::thread::spawn(move || {
        for stream in listener.incoming().take(50) {
            let Ok(mut stream) = stream else { continue };
            let mut request = [0u8; 4096];
            let _ = stream.read(&mut request);
            hits.fetch_add(1, Ordering::SeqCst);
            let body = keys.lock().to_string();
            let _ = write!(
                stream,
                "HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
                body.len()
            );
        }
    });
    url
}

#[test]
fn jwks_url_is_cached_and_refetched_when_keys_rotate() {
    let mut rsa: Json = serde_json::from_str(&fixture("rsa_public.jwk.json")).unwrap();
    let keys = Arc::new(Mutex::new(json!({"keys": [rsa.clone()]})));
    let hits = Arc::new(AtomicUsize::new(0));
    let url = serve_keys(keys.clone(), hits.clone());
    let db = external(url);

    let token = sign(Algorithm::RS256, Some("rsa-1"), &user("ann"), &rsa_private());
    for _ in 0..5 {
        assert!(db.verify_token(&token).is_ok());
    }
    assert_eq!(hits.load(Ordering::SeqCst), 1, "the key set is fetched once and cached");

    // The provider rotates: the same key now has kid rsa-2, and an EC key joins.
    rsa["kid"] = json!("rsa-2");
    let ec: Json = serde_json::from_str(&fixture("ec_p256_public.jwk.json")).unwrap();
    *keys.lock() = json!({"keys": [rsa, ec]});
    std::thread::sleep(Duration::from_millis(600)); // past the minimum time between fetches
    let rotated = sign(Algorithm::RS256, Some("rsa-2"), &user("ann"), &rsa_private());
    assert!(db.verify_token(&rotated).is_ok(), "an unknown kid triggers a refetch");
    assert_eq!(hits.load(Ordering::SeqCst), 2);
    // Unknown kids in quick succession do not hammer the provider.
    for _ in 0..5 {
        assert_eq!(
            refused(&db, &sign(Algorithm::RS256, Some("made-up"), &user("x"), &rsa_private())),
            AuthErrorKind::InvalidSignature
        );
    }
    assert!(hits.load(Ordering::SeqCst) <= 3, "{} fetches", hits.load(Ordering::SeqCst));
}
