//! The cryptography under `jsonwebtoken`, done by `ring`: the library the TLS stack (rustls,
//! for `wss://` and HTTPS) already links, so token signatures cost no second set of RSA,
//! elliptic-curve and hash code. It is smaller than jsonwebtoken's RustCrypto backend (about
//! 0.35 MB of a phone's library) and constant-time where that backend's RSA is not.
//!
//! `jsonwebtoken` reads its backend from a process-wide default, installed here before
//! triplite's first signature; [`install`] is public for a Rust app that calls `jsonwebtoken`
//! itself before triplite does. Every algorithm Triplit accepts is covered: HS256/384/512,
//! RS256/384/512 and PS256/384/512 (keys of 2048 to 8192 bits), ES256, ES384 and EdDSA.

use jsonwebtoken::crypto::{CryptoProvider, JwtSigner, JwtVerifier, KeyUtils};
use jsonwebtoken::errors::{Error, ErrorKind, Result};
use jsonwebtoken::jwk::{EllipticCurve, ThumbprintHash};
use jsonwebtoken::signature::{self, Signer, Verifier};
use jsonwebtoken::{Algorithm, DecodingKey, DecodingKeyKind, EncodingKey};
use ring::rand::SystemRandom;
use ring::signature::{self as sig, KeyPair};
use ring::{digest, hmac};

/// Makes `ring` jsonwebtoken's backend for this process, unless a backend is installed already
/// (then that one stays: every complete backend verifies the same tokens).
pub fn install() {
    static INSTALLED: std::sync::Once = std::sync::Once::new();
    INSTALLED.call_once(|| {
        let _already_chosen = PROVIDER.install_default();
    });
}

static PROVIDER: CryptoProvider = CryptoProvider {
    signer_factory: signer,
    verifier_factory: verifier,
    key_utils: KeyUtils {
        rsa_pub_components_from_private_key: rsa_components_of_private_key,
        rsa_pub_components_from_public_key: rsa_components_of_public_key,
        ec_pub_components_from_private_key: ec_components_of_private_key,
        ed_pub_components_from_private_key: ed_component_of_private_key,
        compute_digest: thumbprint_digest,
    },
};

/// How one algorithm signs and verifies.
#[derive(Clone, Copy)]
enum Scheme {
    Hmac(hmac::Algorithm),
    Rsa { signing: &'static dyn sig::RsaEncoding, verifying: &'static sig::RsaParameters },
    Ecdsa { signing: &'static sig::EcdsaSigningAlgorithm, verifying: &'static sig::EcdsaVerificationAlgorithm },
    Ed25519,
}

fn scheme(algorithm: Algorithm) -> Result<Scheme> {
    use Algorithm::*;
    Ok(match algorithm {
        HS256 => Scheme::Hmac(hmac::HMAC_SHA256),
        HS384 => Scheme::Hmac(hmac::HMAC_SHA384),
        HS512 => Scheme::Hmac(hmac::HMAC_SHA512),
        RS256 => Scheme::Rsa { signing: &sig::RSA_PKCS1_SHA256, verifying: &sig::RSA_PKCS1_2048_8192_SHA256 },
        RS384 => Scheme::Rsa { signing: &sig::RSA_PKCS1_SHA384, verifying: &sig::RSA_PKCS1_2048_8192_SHA384 },
        RS512 => Scheme::Rsa { signing: &sig::RSA_PKCS1_SHA512, verifying: &sig::RSA_PKCS1_2048_8192_SHA512 },
        PS256 => Scheme::Rsa { signing: &sig::RSA_PSS_SHA256, verifying: &sig::RSA_PSS_2048_8192_SHA256 },
        PS384 => Scheme::Rsa { signing: &sig::RSA_PSS_SHA384, verifying: &sig::RSA_PSS_2048_8192_SHA384 },
        PS512 => Scheme::Rsa { signing: &sig::RSA_PSS_SHA512, verifying: &sig::RSA_PSS_2048_8192_SHA512 },
        ES256 => {
            Scheme::Ecdsa { signing: &sig::ECDSA_P256_SHA256_FIXED_SIGNING, verifying: &sig::ECDSA_P256_SHA256_FIXED }
        }
        ES384 => {
            Scheme::Ecdsa { signing: &sig::ECDSA_P384_SHA384_FIXED_SIGNING, verifying: &sig::ECDSA_P384_SHA384_FIXED }
        }
        EdDSA => Scheme::Ed25519,
        // An algorithm a later jsonwebtoken adds is refused until it is mapped here.
        _ => return Err(ErrorKind::InvalidAlgorithm.into()),
    })
}

/// A key parsed once for one algorithm, signing.
enum SigningKey {
    Hmac(hmac::Key),
    Rsa(sig::RsaKeyPair, &'static dyn sig::RsaEncoding),
    Ecdsa(sig::EcdsaKeyPair),
    Ed25519(sig::Ed25519KeyPair),
}

struct RingSigner {
    algorithm: Algorithm,
    key: SigningKey,
}

fn signer(algorithm: &Algorithm, key: &EncodingKey) -> Result<Box<dyn JwtSigner>> {
    let der = key.as_bytes();
    let key = match scheme(*algorithm)? {
        Scheme::Hmac(hash) => SigningKey::Hmac(hmac::Key::new(hash, der)),
        Scheme::Rsa { signing, .. } => {
            let pair = sig::RsaKeyPair::from_der(der).map_err(|e| ErrorKind::InvalidRsaKey(e.to_string()))?;
            SigningKey::Rsa(pair, signing)
        }
        Scheme::Ecdsa { signing, .. } => SigningKey::Ecdsa(
            sig::EcdsaKeyPair::from_pkcs8(signing, der, &SystemRandom::new())
                .map_err(|_| ErrorKind::InvalidEcdsaKey)?,
        ),
        Scheme::Ed25519 => SigningKey::Ed25519(
            sig::Ed25519KeyPair::from_pkcs8_maybe_unchecked(der).map_err(|_| ErrorKind::InvalidEddsaKey)?,
        ),
    };
    Ok(Box::new(RingSigner { algorithm: *algorithm, key }))
}

impl Signer<Vec<u8>> for RingSigner {
    fn try_sign(&self, message: &[u8]) -> std::result::Result<Vec<u8>, signature::Error> {
        let rng = SystemRandom::new();
        match &self.key {
            SigningKey::Hmac(key) => Ok(hmac::sign(key, message).as_ref().to_vec()),
            SigningKey::Rsa(pair, encoding) => {
                let mut out = vec![0; pair.public().modulus_len()];
                pair.sign(*encoding, &rng, message, &mut out).map_err(|_| signature::Error::new())?;
                Ok(out)
            }
            SigningKey::Ecdsa(pair) => {
                Ok(pair.sign(&rng, message).map_err(|_| signature::Error::new())?.as_ref().to_vec())
            }
            SigningKey::Ed25519(pair) => Ok(pair.sign(message).as_ref().to_vec()),
        }
    }
}

impl JwtSigner for RingSigner {
    fn algorithm(&self) -> Algorithm {
        self.algorithm
    }
}

struct RingVerifier {
    algorithm: Algorithm,
    scheme: Scheme,
    key: DecodingKey,
}

fn verifier(algorithm: &Algorithm, key: &DecodingKey) -> Result<Box<dyn JwtVerifier>> {
    // A key of one family never verifies another's algorithm (no HS256 with an RSA public
    // key's bytes as the secret: the classic confusion attack).
    if key.family() != algorithm.family() {
        return Err(Error::from(ErrorKind::InvalidAlgorithm));
    }
    Ok(Box::new(RingVerifier { algorithm: *algorithm, scheme: scheme(*algorithm)?, key: key.clone() }))
}

impl Verifier<Vec<u8>> for RingVerifier {
    fn verify(&self, message: &[u8], signature: &Vec<u8>) -> std::result::Result<(), signature::Error> {
        let rejected = |_| signature::Error::new();
        match (self.scheme, self.key.kind()) {
            (Scheme::Hmac(hash), DecodingKeyKind::SecretOrDer(secret)) => {
                hmac::verify(&hmac::Key::new(hash, secret), message, signature).map_err(rejected)
            }
            (Scheme::Rsa { verifying, .. }, DecodingKeyKind::SecretOrDer(der)) => {
                sig::UnparsedPublicKey::new(verifying, der).verify(message, signature).map_err(rejected)
            }
            (Scheme::Rsa { verifying, .. }, DecodingKeyKind::RsaModulusExponent { n, e }) => {
                sig::RsaPublicKeyComponents { n, e }.verify(verifying, message, signature).map_err(rejected)
            }
            (Scheme::Ecdsa { verifying, .. }, DecodingKeyKind::SecretOrDer(point)) => {
                sig::UnparsedPublicKey::new(verifying, point).verify(message, signature).map_err(rejected)
            }
            (Scheme::Ed25519, DecodingKeyKind::SecretOrDer(public)) => {
                sig::UnparsedPublicKey::new(&sig::ED25519, public).verify(message, signature).map_err(rejected)
            }
            _ => Err(signature::Error::new()),
        }
    }
}

impl JwtVerifier for RingVerifier {
    fn algorithm(&self) -> Algorithm {
        self.algorithm
    }
}

fn rsa_components_of_private_key(der: &[u8]) -> Result<(Vec<u8>, Vec<u8>)> {
    let pair = sig::RsaKeyPair::from_der(der).map_err(|e| ErrorKind::InvalidRsaKey(e.to_string()))?;
    let components = sig::RsaPublicKeyComponents::<Vec<u8>>::from(pair.public());
    Ok((components.n, components.e))
}

/// Only JWK export from a bare public key needs this, and triplite never exports one.
fn rsa_components_of_public_key(_der: &[u8]) -> Result<(Vec<u8>, Vec<u8>)> {
    Err(ErrorKind::InvalidRsaKey("a JWK is not made from an RSA public key here".into()).into())
}

fn ec_components_of_private_key(der: &[u8], algorithm: Algorithm) -> Result<(EllipticCurve, Vec<u8>, Vec<u8>)> {
    let (Scheme::Ecdsa { signing, .. }, curve) = (scheme(algorithm)?, curve_of(algorithm)?) else {
        return Err(ErrorKind::InvalidEcdsaKey.into());
    };
    let pair =
        sig::EcdsaKeyPair::from_pkcs8(signing, der, &SystemRandom::new()).map_err(|_| ErrorKind::InvalidEcdsaKey)?;
    // The public key is the uncompressed point: 0x04, then x and y of equal length.
    let point = pair.public_key().as_ref();
    let (x, y) = point[1..].split_at((point.len() - 1) / 2);
    Ok((curve, x.to_vec(), y.to_vec()))
}

fn curve_of(algorithm: Algorithm) -> Result<EllipticCurve> {
    match algorithm {
        Algorithm::ES256 => Ok(EllipticCurve::P256),
        Algorithm::ES384 => Ok(EllipticCurve::P384),
        _ => Err(ErrorKind::InvalidEcdsaKey.into()),
    }
}

fn ed_component_of_private_key(der: &[u8], curve: &EllipticCurve) -> Result<Vec<u8>> {
    if *curve != EllipticCurve::Ed25519 {
        return Err(ErrorKind::InvalidAlgorithm.into());
    }
    let pair = sig::Ed25519KeyPair::from_pkcs8_maybe_unchecked(der).map_err(|_| ErrorKind::InvalidEddsaKey)?;
    Ok(pair.public_key().as_ref().to_vec())
}

fn thumbprint_digest(data: &[u8], hash: ThumbprintHash) -> Result<Vec<u8>> {
    let algorithm = match hash {
        ThumbprintHash::SHA256 => &digest::SHA256,
        ThumbprintHash::SHA384 => &digest::SHA384,
        ThumbprintHash::SHA512 => &digest::SHA512,
        _ => return Err(ErrorKind::InvalidAlgorithm.into()),
    };
    Ok(digest::digest(algorithm, data).as_ref().to_vec())
}

#[cfg(test)]
mod tests {
    use super::*;
    use jsonwebtoken::{Header, Validation};
    use serde_json::{Value as Json, json};

    fn fixture(name: &str) -> Vec<u8> {
        std::fs::read(format!("{}/tests/fixtures/keys/{name}", env!("CARGO_MANIFEST_DIR"))).unwrap()
    }

    fn round_trip(algorithm: Algorithm, signing: &EncodingKey, verifying: &DecodingKey) -> Json {
        install();
        let token = jsonwebtoken::encode(&Header::new(algorithm), &json!({"sub": "ann"}), signing).unwrap();
        let mut validation = Validation::new(algorithm);
        validation.required_spec_claims.clear();
        jsonwebtoken::decode::<Json>(&token, verifying, &validation).unwrap().claims
    }

    #[test]
    fn every_family_signs_and_verifies() {
        let rsa = EncodingKey::from_rsa_pem(&fixture("rsa_private.pem")).unwrap();
        let rsa_public = DecodingKey::from_rsa_pem(&fixture("rsa_public.pem")).unwrap();
        for algorithm in [Algorithm::RS256, Algorithm::RS384, Algorithm::RS512, Algorithm::PS256, Algorithm::PS512] {
            assert_eq!(round_trip(algorithm, &rsa, &rsa_public)["sub"], "ann", "{algorithm:?}");
        }
        let ec = EncodingKey::from_ec_pem(&fixture("ec_p256_private.pem")).unwrap();
        let ec_public = DecodingKey::from_ec_pem(&fixture("ec_p256_public.pem")).unwrap();
        assert_eq!(round_trip(Algorithm::ES256, &ec, &ec_public)["sub"], "ann");
        let ed = EncodingKey::from_ed_pem(&fixture("ed25519_private.pem")).unwrap();
        let ed_public = DecodingKey::from_ed_pem(&fixture("ed25519_public.pem")).unwrap();
        assert_eq!(round_trip(Algorithm::EdDSA, &ed, &ed_public)["sub"], "ann");
        for algorithm in [Algorithm::HS256, Algorithm::HS384, Algorithm::HS512] {
            let claims =
                round_trip(algorithm, &EncodingKey::from_secret(b"s3cret"), &DecodingKey::from_secret(b"s3cret"));
            assert_eq!(claims["sub"], "ann");
        }
    }

    #[test]
    fn a_key_of_one_family_never_verifies_another_family_s_algorithm() {
        let rsa_public = DecodingKey::from_rsa_pem(&fixture("rsa_public.pem")).unwrap();
        assert!(verifier(&Algorithm::HS256, &rsa_public).is_err());
        assert!(verifier(&Algorithm::ES256, &rsa_public).is_err());
        assert!(verifier(&Algorithm::RS256, &DecodingKey::from_secret(b"x")).is_err());
    }

    #[test]
    fn a_changed_message_or_signature_is_refused() {
        let key = DecodingKey::from_secret(b"s3cret");
        let check = verifier(&Algorithm::HS256, &key).unwrap();
        let tag = hmac::sign(&hmac::Key::new(hmac::HMAC_SHA256, b"s3cret"), b"message").as_ref().to_vec();
        assert!(check.verify(b"message", &tag).is_ok());
        assert!(check.verify(b"messagf", &tag).is_err());
        let mut bent = tag.clone();
        bent[0] ^= 1;
        assert!(check.verify(b"message", &bent).is_err());
    }

    #[test]
    fn jwk_components_come_from_private_keys() {
        let ec = EncodingKey::from_ec_pem(&fixture("ec_p256_private.pem")).unwrap();
        let (curve, x, y) = ec_components_of_private_key(ec.as_bytes(), Algorithm::ES256).unwrap();
        assert_eq!((curve, x.len(), y.len()), (EllipticCurve::P256, 32, 32));
        let rsa = EncodingKey::from_rsa_pem(&fixture("rsa_private.pem")).unwrap();
        let (n, e) = rsa_components_of_private_key(rsa.as_bytes()).unwrap();
        assert!(n.len() >= 256 && e == [1, 0, 1], "a 2048-bit modulus, exponent 65537");
    }
}
