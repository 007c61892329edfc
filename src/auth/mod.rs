//! Token authentication: which key verifies a token, verification, claims, and development
//! tokens.
//!
//! As in Triplit, a token whose (unverified) `x-triplit-token-type` is `anon`, `secret` or
//! `test` is a Triplit token, verified with `JWT_SECRET`; any other token is external, verified
//! with `EXTERNAL_JWT_SECRET`, or `JWT_SECRET` when none is set. The type only picks the key: a
//! token claiming to be a service token must still be signed with `JWT_SECRET`.

mod crypto;
mod error;
mod keys;

pub use crypto::install as install_token_crypto;
pub use error::AuthErrorKind;

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use jsonwebtoken::{Algorithm, EncodingKey, Header, Validation};
use serde_json::{Map, Value as Json, json};

use crate::error::Result;
use error::{AuthErrorKind as Kind, auth_error};
use keys::KeySource;

/// The claim that marks Triplit's own tokens.
pub const TOKEN_TYPE_CLAIM: &str = "x-triplit-token-type";

/// Token types verified with `JWT_SECRET`.
const INTERNAL_TYPES: [&str; 3] = ["anon", "secret", "test"];

/// Where tokens' keys come from, and what else a token must satisfy.
#[derive(Debug, Clone, Default)]
pub struct AuthConfig {
    /// `JWT_SECRET`: verifies Triplit's own tokens (and external ones when no external key is set).
    pub jwt_secret: Option<String>,
    /// `EXTERNAL_JWT_SECRET`: verifies tokens from an identity provider.
    pub external_jwt_secret: Option<String>,
    /// `CLAIMS_PATH` (`a.b.c`): where an external token keeps the claims roles match on.
    pub claims_path: Option<String>,
    /// When set, an external token's `iss` must equal it.
    pub issuer: Option<String>,
    /// When set, an external token's `aud` must contain it.
    pub audience: Option<String>,
    /// Seconds of clock skew allowed on `exp` and `nbf` (default 0, as Triplit: an expired
    /// token is refused at once, over HTTP and WebSocket alike).
    pub leeway_seconds: Option<u64>,
}

/// A verified token's claims.
#[derive(Debug, Clone, PartialEq)]
pub struct VerifiedToken {
    /// The claims roles and `$token.*` read (for external tokens, those at the claims path).
    pub claims: Map<String, Json>,
    /// The `x-triplit-token-type` claim, when it was one of Triplit's token types.
    pub token_type: Option<String>,
    /// When the token stops being accepted, in seconds since the Unix epoch: `exp` plus the
    /// configured leeway.
    pub expires_at: Option<i64>,
}

impl VerifiedToken {
    /// A service (`secret`) token: it bypasses permission rules.
    pub fn is_service(&self) -> bool {
        self.token_type.as_deref() == Some("secret")
    }
}

/// Verifies tokens with the configured keys.
pub(crate) struct Verifier {
    internal: Option<KeySource>,
    external: Option<KeySource>,
    claims_path: Option<Vec<String>>,
    issuer: Option<String>,
    audience: Option<String>,
    leeway: u64,
}

impl Verifier {
    pub(crate) fn new(config: &AuthConfig) -> Result<Self> {
        let parse = |key: &Option<String>| key.as_deref().map(KeySource::parse).transpose();
        Ok(Verifier {
            internal: parse(&config.jwt_secret)?,
            external: parse(&config.external_jwt_secret)?,
            claims_path: config
                .claims_path
                .as_ref()
                .filter(|p| !p.is_empty())
                .map(|p| p.split('.').map(str::to_owned).collect()),
            issuer: config.issuer.clone(),
            audience: config.audience.clone(),
            leeway: config.leeway_seconds.unwrap_or(0),
        })
    }

    /// Verifies a token and returns its claims.
    pub(crate) fn verify(&self, token: &str) -> Result<VerifiedToken> {
        let token = token.trim();
        if token.is_empty() {
            return Err(auth_error(Kind::NoToken, "No token provided"));
        }
        if token.len() > 64 * 1024 {
            return Err(auth_error(Kind::InvalidPayload, "the token is larger than 64 KiB"));
        }
        let parts: Vec<&str> = token.split('.').collect();
        if parts.len() != 3 {
            return Err(auth_error(Kind::InvalidPayload, "Token could not be decoded as a valid JWT"));
        }
        let header = decode_segment(parts[0], "header")?;
        let unverified = decode_segment(parts[1], "payload")?;
        let token_type = unverified
            .get(TOKEN_TYPE_CLAIM)
            .and_then(Json::as_str)
            .filter(|t| INTERNAL_TYPES.contains(t))
            .map(str::to_owned);
        let source = match token_type {
            Some(_) => self.internal.as_ref(),
            None => self.external.as_ref().or(self.internal.as_ref()),
        }
        .ok_or_else(|| auth_error(Kind::InvalidSignature, "no key is configured to verify this token"))?;

        let alg_name = header.get("alg").and_then(Json::as_str).unwrap_or("");
        let algorithm: Algorithm = alg_name
            .parse()
            .map_err(|_| auth_error(Kind::InvalidSignature, format!("algorithm '{alg_name}' is not accepted")))?;
        let key = source.key_for(header.get("kid").and_then(Json::as_str))?;
        if !key.algorithms.contains(&algorithm) {
            return Err(auth_error(
                Kind::InvalidSignature,
                format!("algorithm {alg_name} is not accepted for this key"),
            ));
        }
        let mut validation = Validation::new(algorithm);
        validation.algorithms = vec![algorithm];
        validation.leeway = self.leeway;
        validation.required_spec_claims.clear();
        validation.validate_nbf = true;
        // Issuer and audience describe the identity provider: Triplit's own tokens carry neither.
        let external = token_type.is_none();
        validation.validate_aud = external && self.audience.is_some();
        if let Some(audience) = self.audience.as_ref().filter(|_| external) {
            validation.set_audience(&[audience]);
        }
        if let Some(issuer) = self.issuer.as_ref().filter(|_| external) {
            validation.set_issuer(&[issuer]);
            validation.required_spec_claims.insert("iss".into());
        }
        crypto::install();
        let data =
            jsonwebtoken::decode::<Map<String, Json>>(token, &key.key, &validation).map_err(verification_error)?;
        let mut claims = data.claims;
        // The leeway that let the token in also decides when an open connection closes.
        let leeway = i64::try_from(self.leeway).unwrap_or(i64::MAX);
        let expires_at = claims.get("exp").and_then(Json::as_i64).map(|exp| exp.saturating_add(leeway));
        if token_type.is_none() {
            if let Some(path) = &self.claims_path {
                let nested = path
                    .iter()
                    .try_fold(&Json::Object(claims.clone()), |node, key| node.get(key))
                    .and_then(Json::as_object)
                    .cloned();
                claims = nested.ok_or_else(|| {
                    auth_error(
                        Kind::InvalidPayload,
                        format!("the token has no claims object at the claims path '{}'", path.join(".")),
                    )
                })?;
            }
        }
        Ok(VerifiedToken { claims, token_type, expires_at })
    }
}

/// A token's claims read without checking its signature or expiry: what an embedded client,
/// which holds its user's token but not the provider's key, uses for local permission checks
/// and its refresh schedule. Never trust these for access on a server.
pub fn unverified_claims(token: &str) -> Result<Map<String, Json>> {
    let parts: Vec<&str> = token.trim().split('.').collect();
    if parts.len() != 3 {
        return Err(auth_error(Kind::InvalidPayload, "Token could not be decoded as a valid JWT"));
    }
    decode_segment(parts[1], "payload")
}

fn decode_segment(segment: &str, what: &str) -> Result<Map<String, Json>> {
    let bytes = URL_SAFE_NO_PAD.decode(segment.trim_end_matches('=')).map_err(|_| {
        auth_error(
            Kind::InvalidPayload,
            format!("Token could not be decoded as a valid JWT: the {what} is not base64url"),
        )
    })?;
    serde_json::from_slice(&bytes).map_err(|_| {
        auth_error(
            Kind::InvalidPayload,
            format!("Token could not be decoded as a valid JWT: the {what} is not a JSON object"),
        )
    })
}

fn verification_error(e: jsonwebtoken::errors::Error) -> crate::Error {
    use jsonwebtoken::errors::ErrorKind as Jwt;
    match e.kind() {
        Jwt::ExpiredSignature => auth_error(Kind::Expired, "\"exp\" claim timestamp check failed"),
        Jwt::ImmatureSignature => auth_error(Kind::NotYetValid, "\"nbf\" claim timestamp check failed"),
        Jwt::InvalidIssuer | Jwt::InvalidAudience | Jwt::MissingRequiredClaim(_) => {
            auth_error(Kind::WrongIssuerOrAudience, format!("the token's issuer or audience is not accepted ({e})"))
        }
        Jwt::Base64(_) | Jwt::Json(_) | Jwt::Utf8(_) | Jwt::InvalidToken => {
            auth_error(Kind::InvalidPayload, format!("Token could not be decoded as a valid JWT ({e})"))
        }
        _ => auth_error(Kind::InvalidSignature, format!("signature verification failed ({e})")),
    }
}

/// The kinds of development token `triplite dev` prints.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DevTokenKind {
    /// Matches the default `anonymous` role.
    Anon,
    /// A service token: bypasses permissions.
    Secret,
}

/// Mints a development token signed with `JWT_SECRET` (HS256, no expiry), as `triplit dev`
/// does: `{"x-triplit-token-type": kind, "x-triplit-project-id": project_id}`.
pub fn mint_dev_token(jwt_secret: &str, kind: DevTokenKind, project_id: &str) -> Result<String> {
    if jwt_secret.is_empty() {
        return Err(auth_error(Kind::BadKeyConfiguration, "JWT_SECRET is empty"));
    }
    let kind = match kind {
        DevTokenKind::Anon => "anon",
        DevTokenKind::Secret => "secret",
    };
    let claims = json!({TOKEN_TYPE_CLAIM: kind, "x-triplit-project-id": project_id});
    crypto::install();
    jsonwebtoken::encode(&Header::new(Algorithm::HS256), &claims, &EncodingKey::from_secret(jwt_secret.as_bytes()))
        .map_err(|e| auth_error(Kind::BadKeyConfiguration, format!("signing failed: {e}")))
}
