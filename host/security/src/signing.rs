//! Plugin signatures, compatible with cosign's keyed blob signatures
//! (`cosign sign-blob --key cosign.key plugin.wasm`, `cosign verify-blob --key cosign.pub
//! --signature plugin.wasm.sig plugin.wasm`): an ECDSA P-256 / SHA-256 signature (or
//! another scheme of the key) over the component bytes, base64-encoded. Keys are
//! cosign's: an encrypted private key PEM (`ENCRYPTED SIGSTORE PRIVATE KEY`, scrypt and
//! secretbox, as `cosign generate-key-pair` writes) and a public key PEM. The crypto is
//! the `sigstore` crate's.
//!
//! [`check`] applies a tenant's [`TrustPolicy`] to an upload and says which check
//! failed when it refuses one.

use base64::Engine;
use fungi_tenancy::{TrustMode, TrustPolicy};
use serde::{Deserialize, Serialize};
use sigstore::crypto::signing_key::SigStoreKeyPair;
use sigstore::crypto::signing_key::ecdsa::ECDSAKeys;
use sigstore::crypto::{CosignVerificationKey, Signature, SigningScheme};

/// Errors signing or reading keys.
#[derive(Debug, thiserror::Error)]
pub enum SigningError {
    /// A private key that cannot be read (wrong password, not a key).
    #[error("cannot read the private key: {0}")]
    PrivateKey(String),
    /// A public key that cannot be read.
    #[error("cannot read the public key: {0}")]
    PublicKey(String),
    /// Signing failed.
    #[error("cannot sign: {0}")]
    Sign(String),
    /// The signature does not verify.
    #[error("{0}")]
    Verify(String),
}

/// A new key pair, as `cosign generate-key-pair` makes: ECDSA P-256, the private key
/// encrypted with `password`. Returns (private key PEM, public key PEM).
pub fn generate_key_pair(password: &[u8]) -> Result<(String, String), SigningError> {
    let signer = SigningScheme::ECDSA_P256_SHA256_ASN1
        .create_signer()
        .map_err(|e| SigningError::Sign(e.to_string()))?;
    let pair = signer
        .to_sigstore_keypair()
        .map_err(|e| SigningError::Sign(e.to_string()))?;
    let private = pair
        .private_key_to_encrypted_pem(password)
        .map_err(|e| SigningError::PrivateKey(e.to_string()))?;
    let public = pair
        .public_key_to_pem()
        .map_err(|e| SigningError::PublicKey(e.to_string()))?;
    Ok((private.to_string(), public))
}

/// The signing scheme cosign uses with a key of this type.
fn scheme_of(pair: &SigStoreKeyPair) -> Result<SigningScheme, SigningError> {
    match pair {
        SigStoreKeyPair::ECDSA(ECDSAKeys::P256(_)) => Ok(SigningScheme::ECDSA_P256_SHA256_ASN1),
        SigStoreKeyPair::ECDSA(ECDSAKeys::P384(_)) => Ok(SigningScheme::ECDSA_P384_SHA384_ASN1),
        SigStoreKeyPair::ECDSA(ECDSAKeys::P521(_)) => Ok(SigningScheme::ECDSA_P521_SHA512_ASN1),
        SigStoreKeyPair::ED25519(_) => Ok(SigningScheme::ED25519),
        SigStoreKeyPair::RSA(_) => Err(SigningError::PrivateKey(
            "RSA keys are not supported for plugin signatures; use an ECDSA (cosign's default) \
             or Ed25519 key"
                .into(),
        )),
    }
}

/// Signs `bytes` with the private key `pem` (encrypted with `password`, or plain PKCS#8
/// when `password` is empty and the PEM is not encrypted). Returns the base64 signature,
/// as `cosign sign-blob` prints it.
pub fn sign(private_pem: &[u8], password: &[u8], bytes: &[u8]) -> Result<String, SigningError> {
    let pair = SigStoreKeyPair::from_encrypted_pem(private_pem, password).or_else(|encrypted| {
        SigStoreKeyPair::from_pem(private_pem).map_err(|_| {
            SigningError::PrivateKey(format!(
                "{encrypted} (is the password right? cosign reads it from COSIGN_PASSWORD)"
            ))
        })
    })?;
    let signer = pair
        .to_sigstore_signer(&scheme_of(&pair)?)
        .map_err(|e| SigningError::Sign(e.to_string()))?;
    let signature = signer
        .sign(bytes)
        .map_err(|e| SigningError::Sign(e.to_string()))?;
    Ok(base64::engine::general_purpose::STANDARD.encode(signature))
}

/// Checks a base64 `signature` of `bytes` against the public key `pem`.
pub fn verify(public_pem: &[u8], bytes: &[u8], signature: &str) -> Result<(), SigningError> {
    let key = CosignVerificationKey::try_from_pem(public_pem)
        .map_err(|e| SigningError::PublicKey(e.to_string()))?;
    let signature = signature.trim();
    if base64::engine::general_purpose::STANDARD
        .decode(signature)
        .is_err()
    {
        return Err(SigningError::Verify(
            "the signature is not base64 (expected what cosign sign-blob prints)".into(),
        ));
    }
    key.verify_signature(Signature::Base64Encoded(signature.as_bytes()), bytes)
        .map_err(|_| {
            SigningError::Verify(
                "the signature does not match the plugin's bytes for this key (the plugin \
                 was changed after signing, or signed with another key)"
                    .into(),
            )
        })
}

/// What checking an upload against a trust policy found.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case", tag = "status")]
pub enum SignatureStatus {
    /// The policy is off: nothing was checked.
    NotChecked,
    /// The signature verifies with trusted key number `key` (0-based, in the policy's
    /// order), whose SHA-256 fingerprint is given.
    Verified {
        /// Index of the key in the tenant's policy.
        key: usize,
        /// `sha256:<hex>` of the key's PEM text.
        fingerprint: String,
    },
    /// Under `warn`: stored although the check failed.
    Warning {
        /// Which check failed.
        reason: String,
    },
}

/// An upload refused under `require`, with the check that failed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("plugin signature check failed ({check}): {reason}")]
pub struct Untrusted {
    /// `signature-present`, `trusted-keys` or `signature-valid`.
    pub check: &'static str,
    /// Why.
    pub reason: String,
}

/// Applies `policy` to a plugin's `bytes` and its `signature` (base64), if it came with
/// one.
pub fn check(
    policy: &TrustPolicy,
    bytes: &[u8],
    signature: Option<&str>,
) -> Result<SignatureStatus, Untrusted> {
    if policy.mode == TrustMode::Off {
        return Ok(SignatureStatus::NotChecked);
    }
    let outcome = match signature.map(str::trim).filter(|s| !s.is_empty()) {
        None => Err(Untrusted {
            check: "signature-present",
            reason: "the plugin is unsigned; sign it with `fungi plugin sign --key` (or \
                     cosign sign-blob) and upload it with its signature"
                .into(),
        }),
        Some(_) if policy.keys.is_empty() => Err(Untrusted {
            check: "trusted-keys",
            reason: "the tenant's trust policy lists no keys".into(),
        }),
        Some(sig) => {
            let mut last = String::new();
            let found = policy.keys.iter().enumerate().find_map(|(i, pem)| {
                match verify(pem.as_bytes(), bytes, sig) {
                    Ok(()) => Some(i),
                    Err(e) => {
                        last = e.to_string();
                        None
                    }
                }
            });
            match found {
                Some(key) => Ok(SignatureStatus::Verified {
                    key,
                    fingerprint: fingerprint(&policy.keys[key]),
                }),
                None => Err(Untrusted {
                    check: "signature-valid",
                    reason: format!(
                        "no trusted key ({}) verifies the signature: {last}",
                        policy.keys.len()
                    ),
                }),
            }
        }
    };
    match (outcome, policy.mode) {
        (Err(e), TrustMode::Warn) => Ok(SignatureStatus::Warning {
            reason: e.to_string(),
        }),
        (outcome, _) => outcome,
    }
}

/// `sha256:<hex>` of a public key's PEM text, to name it.
pub fn fingerprint(pem: &str) -> String {
    use sha2::Digest;
    let digest = sha2::Sha256::digest(pem.trim().as_bytes());
    format!(
        "sha256:{}",
        digest
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect::<String>()
    )
}

/// Checks that `pem` is a public key this module can verify with.
pub fn check_public_key(pem: &str) -> Result<(), SigningError> {
    CosignVerificationKey::try_from_pem(pem.as_bytes())
        .map(|_| ())
        .map_err(|e| SigningError::PublicKey(e.to_string()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn signatures_verify_and_the_policy_names_the_failed_check() {
        let (private, public) = generate_key_pair(b"pw").unwrap();
        assert!(
            private.contains("ENCRYPTED SIGSTORE PRIVATE KEY"),
            "{private}"
        );
        let bytes = b"\0asm component bytes".to_vec();
        let sig = sign(private.as_bytes(), b"pw", &bytes).unwrap();
        verify(public.as_bytes(), &bytes, &sig).unwrap();
        assert!(sign(private.as_bytes(), b"wrong", &bytes).is_err());
        let mut tampered = bytes.clone();
        tampered[3] ^= 1;
        let e = verify(public.as_bytes(), &tampered, &sig).unwrap_err();
        assert!(e.to_string().contains("changed after signing"), "{e}");

        let (_, other) = generate_key_pair(b"").unwrap();
        let require = TrustPolicy {
            mode: TrustMode::Require,
            keys: vec![other.clone(), public.clone()],
        };
        match check(&require, &bytes, Some(&sig)).unwrap() {
            SignatureStatus::Verified { key, fingerprint } => {
                assert_eq!(key, 1);
                assert!(fingerprint.starts_with("sha256:"));
            }
            s => panic!("{s:?}"),
        }
        assert_eq!(
            check(&require, &bytes, None).unwrap_err().check,
            "signature-present"
        );
        assert_eq!(
            check(&require, &tampered, Some(&sig)).unwrap_err().check,
            "signature-valid"
        );
        assert_eq!(
            check(&require, &bytes, Some("%%%")).unwrap_err().check,
            "signature-valid"
        );
        let warn = TrustPolicy {
            mode: TrustMode::Warn,
            keys: vec![public.clone()],
        };
        assert!(matches!(
            check(&warn, &tampered, Some(&sig)).unwrap(),
            SignatureStatus::Warning { reason } if reason.contains("signature-valid")
        ));
        assert_eq!(
            check(&TrustPolicy::default(), &bytes, None).unwrap(),
            SignatureStatus::NotChecked
        );
    }
}
