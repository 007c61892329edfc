//! Verification keys and where they come from.
//!
//! A key is configured as one string, read as Triplit reads `JWT_SECRET` and
//! `EXTERNAL_JWT_SECRET`, and more:
//! - a PEM public key — RSA (RS256/384/512, PS256/384/512), EC (ES256, ES384) or Ed25519
//!   (EdDSA); also when its newlines were removed to fit one line of an env file;
//! - a JSON Web Key, or a JWK Set (`{"keys": [...]}`, chosen by `kid`);
//! - an `https://` URL of a JWK Set (or `http://` to a loopback host), fetched, cached, and
//!   fetched again when a token names a `kid` it does not have (providers rotate keys);
//! - anything else: an HMAC secret (HS256/384/512).
//!
//! Every key carries the algorithms its type allows. A token's `alg` must be one of them, so
//! a token can never choose how it is checked (`none`, or HS256 with an RSA key's PEM as the
//! HMAC secret, fail).

use std::time::{Duration, Instant};

use jsonwebtoken::jwk::{AlgorithmParameters, EllipticCurve, Jwk, JwkSet};
use jsonwebtoken::{Algorithm, DecodingKey};
use parking_lot::Mutex;

use super::error::{AuthErrorKind as Kind, auth_error};
use crate::error::Result;

const RSA: &[Algorithm] =
    &[Algorithm::RS256, Algorithm::RS384, Algorithm::RS512, Algorithm::PS256, Algorithm::PS384, Algorithm::PS512];
const HMAC: &[Algorithm] = &[Algorithm::HS256, Algorithm::HS384, Algorithm::HS512];

/// One verification key and the algorithms it may verify.
#[derive(Clone)]
pub(crate) struct Key {
    pub kid: Option<String>,
    pub key: DecodingKey,
    pub algorithms: Vec<Algorithm>,
}

/// A configured source of verification keys.
pub(crate) enum KeySource {
    /// One key (a secret, a PEM key, a JWK): used whatever `kid` the token names.
    Single(Key),
    /// A JWK Set: the key is chosen by `kid`.
    Set(Vec<Key>),
    /// A JWK Set fetched from a URL.
    Url(JwksUrl),
}

impl KeySource {
    /// Reads a key configuration string.
    pub(crate) fn parse(config: &str) -> Result<Self> {
        let text = config.trim();
        if text.is_empty() {
            return Err(auth_error(Kind::BadKeyConfiguration, "the key is empty"));
        }
        if text.starts_with("-----BEGIN") {
            return pem_key(text).map(KeySource::Single);
        }
        if text.starts_with('{') {
            let json: serde_json::Value = serde_json::from_str(text)
                .map_err(|e| auth_error(Kind::BadKeyConfiguration, format!("key JSON: {e}")))?;
            if json.get("keys").is_some() {
                let set: JwkSet = serde_json::from_value(json)
                    .map_err(|e| auth_error(Kind::BadKeyConfiguration, format!("JWK Set: {e}")))?;
                return set_keys(&set).map(KeySource::Set);
            }
            let jwk: Jwk =
                serde_json::from_value(json).map_err(|e| auth_error(Kind::BadKeyConfiguration, format!("JWK: {e}")))?;
            return jwk_key(&jwk).map(KeySource::Single);
        }
        if text.starts_with("https://") || text.starts_with("http://") {
            return JwksUrl::new(text).map(KeySource::Url);
        }
        Ok(KeySource::Single(Key {
            kid: None,
            key: DecodingKey::from_secret(text.as_bytes()),
            algorithms: HMAC.to_vec(),
        }))
    }

    /// The key for a token's `kid`.
    pub(crate) fn key_for(&self, kid: Option<&str>) -> Result<Key> {
        match self {
            KeySource::Single(key) => Ok(key.clone()),
            KeySource::Set(keys) => pick(keys, kid),
            KeySource::Url(url) => url.key_for(kid),
        }
    }
}

fn pick(keys: &[Key], kid: Option<&str>) -> Result<Key> {
    let found = match kid {
        Some(kid) => keys.iter().find(|k| k.kid.as_deref() == Some(kid)),
        // A token without `kid` can only be matched when the set has exactly one key.
        None if keys.len() == 1 => keys.first(),
        None => None,
    };
    found.cloned().ok_or_else(|| {
        auth_error(Kind::InvalidSignature, format!("no key with kid {:?} in the key set", kid.unwrap_or("(none)")))
    })
}

/// A PEM public key, its type found by trying each; newlines are restored first, so a PEM
/// pasted onto one line (as `.env` files need) works.
fn pem_key(text: &str) -> Result<Key> {
    let pem = normalize_pem(text)?;
    let bytes = pem.as_bytes();
    let (key, algorithms) = if let Ok(key) = DecodingKey::from_rsa_pem(bytes) {
        (key, RSA.to_vec())
    } else if let Ok(key) = DecodingKey::from_ec_pem(bytes) {
        (key, vec![Algorithm::ES256, Algorithm::ES384])
    } else if let Ok(key) = DecodingKey::from_ed_pem(bytes) {
        (key, vec![Algorithm::EdDSA])
    } else {
        return Err(auth_error(Kind::BadKeyConfiguration, "the PEM is not an RSA, EC or Ed25519 public key"));
    };
    Ok(Key { kid: None, key, algorithms })
}

/// Rebuilds `-----BEGIN X-----\n<base64 in 64-column lines>\n-----END X-----`.
fn normalize_pem(text: &str) -> Result<String> {
    let text = text.replace("\\n", "\n");
    let bad = || auth_error(Kind::BadKeyConfiguration, "malformed PEM (expected -----BEGIN …----- … -----END …-----)");
    let after_begin = text.strip_prefix("-----BEGIN ").ok_or_else(bad)?;
    let (label, rest) = after_begin.split_once("-----").ok_or_else(bad)?;
    let end_marker = format!("-----END {label}-----");
    let body = rest.split(&end_marker).next().filter(|_| rest.contains(&end_marker)).ok_or_else(bad)?;
    let base64: String = body.chars().filter(|c| !c.is_whitespace()).collect();
    let lines: Vec<&str> = base64.as_bytes().chunks(64).map(|c| std::str::from_utf8(c).expect("ASCII")).collect();
    Ok(format!("-----BEGIN {label}-----\n{}\n{end_marker}\n", lines.join("\n")))
}

fn jwk_key(jwk: &Jwk) -> Result<Key> {
    let key = DecodingKey::from_jwk(jwk).map_err(|e| auth_error(Kind::BadKeyConfiguration, format!("JWK: {e}")))?;
    let mut algorithms = match &jwk.algorithm {
        AlgorithmParameters::RSA(_) => RSA.to_vec(),
        AlgorithmParameters::EllipticCurve(ec) => match ec.curve {
            EllipticCurve::P256 => vec![Algorithm::ES256],
            EllipticCurve::P384 => vec![Algorithm::ES384],
            _ => return Err(auth_error(Kind::BadKeyConfiguration, "unsupported elliptic curve")),
        },
        AlgorithmParameters::OctetKeyPair(_) => vec![Algorithm::EdDSA],
        AlgorithmParameters::OctetKey(_) => HMAC.to_vec(),
        _ => return Err(auth_error(Kind::BadKeyConfiguration, "unsupported JWK key type")),
    };
    // A JWK that names its algorithm allows only that one.
    if let Some(named) = jwk.common.key_algorithm.and_then(|a| a.to_string().parse::<Algorithm>().ok()) {
        algorithms.retain(|a| *a == named);
    }
    Ok(Key { kid: jwk.common.key_id.clone(), key, algorithms })
}

fn set_keys(set: &JwkSet) -> Result<Vec<Key>> {
    // Keys this library cannot use (other curves, encryption keys) are skipped, not fatal:
    // providers publish sets with more than we need.
    let keys: Vec<Key> = set.keys.iter().filter_map(|jwk| jwk_key(jwk).ok()).collect();
    if keys.is_empty() {
        return Err(auth_error(Kind::BadKeyConfiguration, "the JWK Set has no usable key"));
    }
    Ok(keys)
}

/// A JWK Set at a URL, cached.
pub(crate) struct JwksUrl {
    url: String,
    agent: ureq::Agent,
    cached: Mutex<Option<Fetched>>,
}

struct Fetched {
    at: Instant,
    keys: Vec<Key>,
}

/// How long a fetched key set is trusted before it is fetched again.
const JWKS_TTL: Duration = Duration::from_secs(600);
/// The least time between two fetches, so tokens with made-up `kid`s cannot make us hammer
/// the provider.
const JWKS_MIN_REFETCH: Duration = Duration::from_millis(500);

impl JwksUrl {
    fn new(url: &str) -> Result<Self> {
        if let Some(rest) = url.strip_prefix("http://") {
            let authority = rest.split(['/', '?', '#']).next().unwrap_or("");
            let host = match authority.strip_prefix('[') {
                Some(v6) => v6.split(']').next().unwrap_or(""),
                None => authority.split(':').next().unwrap_or(""),
            };
            let loopback = host == "localhost" || host == "::1" || host.starts_with("127.");
            if !loopback {
                return Err(auth_error(
                    Kind::BadKeyConfiguration,
                    format!("a JWKS URL must use https (plain http is allowed only for loopback hosts): {url}"),
                ));
            }
        }
        let agent = ureq::Agent::config_builder().timeout_global(Some(Duration::from_secs(10))).build().into();
        Ok(JwksUrl { url: url.to_owned(), agent, cached: Mutex::new(None) })
    }

    fn fetch(&self) -> Result<Vec<Key>> {
        let fail =
            |e: String| auth_error(Kind::InvalidSignature, format!("fetching the key set from {}: {e}", self.url));
        let body = self
            .agent
            .get(&self.url)
            .call()
            .map_err(|e| fail(e.to_string()))?
            .into_body()
            .read_to_string()
            .map_err(|e| fail(e.to_string()))?;
        let set: JwkSet = serde_json::from_str(&body).map_err(|e| fail(format!("not a JWK Set: {e}")))?;
        set_keys(&set)
    }

    fn key_for(&self, kid: Option<&str>) -> Result<Key> {
        let mut cached = self.cached.lock();
        if let Some(fetched) = cached.as_ref().filter(|f| f.at.elapsed() < JWKS_TTL) {
            if let Ok(key) = pick(&fetched.keys, kid) {
                return Ok(key);
            }
            if fetched.at.elapsed() < JWKS_MIN_REFETCH {
                return pick(&fetched.keys, kid);
            }
        }
        // Not cached, stale, or an unknown `kid` (the provider may have rotated): fetch again.
        let keys = self.fetch()?;
        let key = pick(&keys, kid);
        *cached = Some(Fetched { at: Instant::now(), keys });
        key
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_line_pems_are_restored() {
        let pem = "-----BEGIN PUBLIC KEY-----\nAAAA\nBBBB\n-----END PUBLIC KEY-----\n";
        let flat = pem.replace('\n', "");
        assert_eq!(normalize_pem(&flat).unwrap(), "-----BEGIN PUBLIC KEY-----\nAAAABBBB\n-----END PUBLIC KEY-----\n");
        assert_eq!(normalize_pem(&pem.replace('\n', "\\n")).unwrap(), normalize_pem(pem).unwrap());
        assert!(normalize_pem("-----BEGIN PUBLIC KEY-----AAAA").is_err());
    }

    #[test]
    fn plain_http_only_to_loopback() {
        assert!(JwksUrl::new("http://127.0.0.1:9/jwks.json").is_ok());
        assert!(JwksUrl::new("http://localhost/jwks.json").is_ok());
        assert!(JwksUrl::new("http://[::1]:80/jwks.json").is_ok());
        assert!(JwksUrl::new("http://example.com/jwks.json").is_err());
        assert!(JwksUrl::new("https://example.com/jwks.json").is_ok());
    }
}
