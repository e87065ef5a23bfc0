//! JWT bearer tokens, as an alternative to API keys when an identity provider issues
//! the credentials: HS256 (a shared secret) or RS256 (the provider's public key). A
//! token names its subject, tenant and role in its claims and must not be expired.

use jsonwebtoken::{Algorithm, DecodingKey, EncodingKey, Header, Validation};
use serde::{Deserialize, Serialize};

use crate::{Principal, Role};

/// Errors configuring or checking tokens.
#[derive(Debug, thiserror::Error)]
pub enum JwtError {
    /// The verification key cannot be read.
    #[error("JWT key: {0}")]
    Key(String),
    /// The token is not valid (bad signature, expired, wrong algorithm, bad claims).
    #[error("invalid JWT: {0}")]
    Invalid(String),
}

/// The claims Fungi reads.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Claims {
    /// Who (recorded in the audit log as `jwt:<sub>`).
    pub sub: String,
    /// The caller's tenant.
    pub tenant: String,
    /// The caller's role (`admin`, `tenant-admin`, `developer`, `viewer`).
    pub role: Role,
    /// Expiry, seconds since the epoch.
    pub exp: u64,
    /// Issuer, checked when the server is configured with one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub iss: Option<String>,
}

/// Checks bearer tokens with one key.
pub struct JwtVerifier {
    key: DecodingKey,
    validation: Validation,
}

impl std::fmt::Debug for JwtVerifier {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "JwtVerifier({:?})", self.validation.algorithms)
    }
}

impl JwtVerifier {
    /// HS256 tokens signed with `secret`.
    pub fn hs256(secret: &[u8], issuer: Option<&str>) -> Result<JwtVerifier, JwtError> {
        if secret.len() < 32 {
            return Err(JwtError::Key(format!(
                "an HS256 secret needs at least 32 bytes, this one has {}",
                secret.len()
            )));
        }
        Ok(Self::new(
            DecodingKey::from_secret(secret),
            Algorithm::HS256,
            issuer,
        ))
    }

    /// RS256 tokens, verified with the RSA public key `pem`.
    pub fn rs256(pem: &[u8], issuer: Option<&str>) -> Result<JwtVerifier, JwtError> {
        let key = DecodingKey::from_rsa_pem(pem).map_err(|e| JwtError::Key(e.to_string()))?;
        Ok(Self::new(key, Algorithm::RS256, issuer))
    }

    fn new(key: DecodingKey, algorithm: Algorithm, issuer: Option<&str>) -> JwtVerifier {
        let mut validation = Validation::new(algorithm);
        validation.set_required_spec_claims(&["exp", "sub"]);
        validation.leeway = 5;
        if let Some(iss) = issuer {
            validation.set_issuer(&[iss]);
            validation.required_spec_claims.insert("iss".into());
        }
        JwtVerifier { key, validation }
    }

    /// The caller a token names, if it is valid.
    pub fn verify(&self, token: &str) -> Result<Principal, JwtError> {
        let data = jsonwebtoken::decode::<Claims>(token.trim(), &self.key, &self.validation)
            .map_err(|e| JwtError::Invalid(e.to_string()))?;
        let c = data.claims;
        Ok(Principal {
            key_id: format!("jwt:{}", c.sub),
            tenant: c.tenant,
            role: c.role,
        })
    }
}

/// Whether a bearer credential looks like a JWT (three base64url parts) rather than an
/// API key.
pub fn looks_like_jwt(token: &str) -> bool {
    token.trim().split('.').count() == 3 && !token.trim().starts_with("fgk_")
}

/// Mints a token (what an identity provider does; used by tests and tooling):
/// `key` is the HS256 secret or the RS256 private key PEM.
pub fn mint(claims: &Claims, algorithm: &str, key: &[u8]) -> Result<String, JwtError> {
    let (alg, key) = match algorithm {
        "HS256" => (Algorithm::HS256, EncodingKey::from_secret(key)),
        "RS256" => (
            Algorithm::RS256,
            EncodingKey::from_rsa_pem(key).map_err(|e| JwtError::Key(e.to_string()))?,
        ),
        other => return Err(JwtError::Key(format!("unsupported algorithm '{other}'"))),
    };
    jsonwebtoken::encode(&Header::new(alg), claims, &key)
        .map_err(|e| JwtError::Invalid(e.to_string()))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn claims(exp: u64) -> Claims {
        Claims {
            sub: "alice".into(),
            tenant: "a".into(),
            role: Role::Developer,
            exp,
            iss: Some("idp".into()),
        }
    }

    fn now() -> u64 {
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_secs()
    }

    #[test]
    fn hs256_and_rs256_tokens_verify_and_bad_ones_are_refused() {
        let secret = b"0123456789abcdef0123456789abcdef";
        let v = JwtVerifier::hs256(secret, Some("idp")).unwrap();
        let t = mint(&claims(now() + 60), "HS256", secret).unwrap();
        assert!(looks_like_jwt(&t));
        let p = v.verify(&t).unwrap();
        assert_eq!(
            (p.key_id.as_str(), p.tenant.as_str(), p.role),
            ("jwt:alice", "a", Role::Developer)
        );
        let expired = mint(&claims(now() - 3600), "HS256", secret).unwrap();
        assert!(
            v.verify(&expired)
                .unwrap_err()
                .to_string()
                .contains("Expired")
        );
        let other = mint(
            &claims(now() + 60),
            "HS256",
            b"another secret of 32 bytes or more!",
        )
        .unwrap();
        assert!(v.verify(&other).is_err());
        assert!(JwtVerifier::hs256(b"short", None).is_err());

        let private = include_bytes!("../testdata/jwt-rs256-test.key");
        let public = include_bytes!("../testdata/jwt-rs256-test.pub");
        let v = JwtVerifier::rs256(public, None).unwrap();
        let t = mint(&claims(now() + 60), "RS256", private).unwrap();
        assert_eq!(v.verify(&t).unwrap().tenant, "a");
        // An HS256 token is not accepted by an RS256 verifier (algorithm confusion).
        let hs = mint(&claims(now() + 60), "HS256", public).unwrap();
        assert!(v.verify(&hs).is_err());
        assert!(!looks_like_jwt("fgk_ab_cd"));
    }
}
