//! Token errors, named as Triplit's server names them.

use std::fmt;

/// Why a token was refused; [`AuthErrorKind::name`] and [`AuthErrorKind::status`] are the
/// error name and HTTP status the real server answers with.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum AuthErrorKind {
    /// No token where one is required.
    NoToken,
    /// An `Authorization` header that is not `Bearer`.
    InvalidScheme,
    /// Not a JWT, or its header or payload is not JSON (or lacks the configured claims path).
    InvalidPayload,
    /// The signature does not verify, the algorithm is not allowed for the key, or no key
    /// matches the token's `kid`.
    InvalidSignature,
    /// `exp` has passed (Triplit reports this as an invalid signature).
    Expired,
    /// `nbf` is still in the future (Triplit reports this as an invalid signature).
    NotYetValid,
    /// `iss` or `aud` is not the configured one.
    WrongIssuerOrAudience,
    /// A route that needs a service (`secret`) token got another.
    ServiceKeyRequired,
    /// The key configuration itself is unusable.
    BadKeyConfiguration,
}

impl AuthErrorKind {
    /// Triplit's error name.
    pub fn name(self) -> &'static str {
        match self {
            AuthErrorKind::NoToken => "NoTokenProvidedError",
            AuthErrorKind::InvalidScheme => "InvalidAuthenticationSchemeError",
            AuthErrorKind::InvalidPayload => "InvalidTokenPayloadError",
            AuthErrorKind::InvalidSignature
            | AuthErrorKind::Expired
            | AuthErrorKind::NotYetValid
            | AuthErrorKind::WrongIssuerOrAudience => "InvalidTokenSignatureError",
            AuthErrorKind::ServiceKeyRequired => "ServiceKeyRequiredError",
            AuthErrorKind::BadKeyConfiguration => "InvalidKeyConfigurationError",
        }
    }

    /// The HTTP status Triplit answers with.
    pub fn status(self) -> u16 {
        match self {
            AuthErrorKind::InvalidPayload => 400,
            AuthErrorKind::BadKeyConfiguration => 500,
            _ => 401,
        }
    }
}

impl fmt::Display for AuthErrorKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

pub(crate) fn auth_error(kind: AuthErrorKind, message: impl Into<String>) -> crate::Error {
    crate::Error::Auth { kind, message: message.into() }
}
