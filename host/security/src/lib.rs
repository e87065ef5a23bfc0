//! Who may do what in Fungi's server: API keys (stored as Argon2 hashes), the roles and
//! their permission matrix, and the shape of an audit record.
//!
//! The server asks this crate two questions for every call: who is calling
//! ([`ApiKey::parse`] and [`verify_secret`] against the stored hash), and whether that
//! role may perform the action ([`Role::allows`]). Tenant scoping (a tenant sees only
//! its own jobs and plugins) is applied by the server with [`Principal::sees_tenant`].
//! Callers may also present JWT bearer tokens ([`jwt`]). Plugins are signed and checked
//! against a tenant's trust policy with cosign-compatible keyed signatures ([`signing`]).

pub mod jwt;
pub mod signing;

use std::fmt;
use std::str::FromStr;

use argon2::Argon2;
use argon2::password_hash::{PasswordHash, PasswordHasher, PasswordVerifier, SaltString};
use serde::{Deserialize, Serialize};

/// Errors of this crate.
#[derive(Debug, thiserror::Error)]
pub enum SecurityError {
    /// A credential that is not of the expected form.
    #[error("malformed API key: {0}")]
    MalformedKey(String),
    /// The operating system gave no randomness.
    #[error("no randomness for a new key: {0}")]
    Random(String),
    /// Hashing failed.
    #[error("cannot hash a key: {0}")]
    Hash(String),
    /// A role name that is not one of the four.
    #[error("unknown role '{0}'; roles: admin, tenant-admin, developer, viewer")]
    UnknownRole(String),
}

/// A role: what a key may do.
#[derive(
    Debug,
    Clone,
    Copy,
    PartialEq,
    Eq,
    Hash,
    PartialOrd,
    Ord,
    Serialize,
    Deserialize,
    utoipa::ToSchema,
)]
#[serde(rename_all = "kebab-case")]
pub enum Role {
    /// Everything, across tenants: tenants, keys of any tenant, the audit log.
    Admin,
    /// Everything within its tenant, including its keys and its audit records.
    TenantAdmin,
    /// Jobs and plugins of its tenant.
    Developer,
    /// Reads jobs and plugins of its tenant.
    Viewer,
}

impl Role {
    /// Every role, most powerful first.
    pub const ALL: [Role; 4] = [
        Role::Admin,
        Role::TenantAdmin,
        Role::Developer,
        Role::Viewer,
    ];

    /// The role's name as written in requests and the CLI.
    pub fn name(self) -> &'static str {
        match self {
            Role::Admin => "admin",
            Role::TenantAdmin => "tenant-admin",
            Role::Developer => "developer",
            Role::Viewer => "viewer",
        }
    }

    /// The permission matrix.
    pub fn allows(self, action: Action) -> bool {
        use Action::*;
        match self {
            Role::Admin => true,
            Role::TenantAdmin => !matches!(action, TenantCreate | TenantList | TenantDelete),
            Role::Developer => matches!(
                action,
                JobSubmit
                    | JobList
                    | JobGet
                    | JobCancel
                    | JobSavepoint
                    | JobResume
                    | JobUpgrade
                    | MetricsRead
                    | SqlExplain
                    | PluginUpload
                    | PluginList
                    | PluginGet
                    | PluginDelete
                    | FileUpload
                    | FileList
                    | FileDelete
                    | FunctionRegister
                    | FunctionList
                    | FunctionDelete
            ),
            Role::Viewer => matches!(
                action,
                JobList
                    | JobGet
                    | PluginList
                    | PluginGet
                    | FileList
                    | FunctionList
                    | MetricsRead
                    | SqlExplain
            ),
        }
    }
}

impl fmt::Display for Role {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl FromStr for Role {
    type Err = SecurityError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Role::ALL
            .into_iter()
            .find(|r| r.name() == s)
            .ok_or_else(|| SecurityError::UnknownRole(s.to_string()))
    }
}

/// Something a caller can ask the server to do; the audit log names it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Action {
    /// Submit a SQL job.
    JobSubmit,
    /// List jobs.
    JobList,
    /// Read one job.
    JobGet,
    /// Cancel a job.
    JobCancel,
    /// Take a savepoint of a job (and stop it).
    JobSavepoint,
    /// Resume a suspended job.
    JobResume,
    /// Replace a running job with a new version of its SQL, through a savepoint.
    JobUpgrade,
    /// Upload a plugin.
    PluginUpload,
    /// List plugins.
    PluginList,
    /// Inspect a plugin.
    PluginGet,
    /// Delete a plugin.
    PluginDelete,
    /// Store a file in the tenant's files (Python modules, input data).
    FileUpload,
    /// List the tenant's files.
    FileList,
    /// Delete one of the tenant's files.
    FileDelete,
    /// Register a function in the tenant's catalog.
    FunctionRegister,
    /// List the tenant's catalog functions.
    FunctionList,
    /// Remove a function from the tenant's catalog.
    FunctionDelete,
    /// Create a tenant.
    TenantCreate,
    /// List tenants.
    TenantList,
    /// Delete a tenant.
    TenantDelete,
    /// Set a tenant's plugin trust policy.
    TenantTrust,
    /// Create an API key.
    KeyCreate,
    /// List API keys.
    KeyList,
    /// Revoke an API key.
    KeyRevoke,
    /// Read the audit log.
    AuditRead,
    /// Read the Prometheus metrics (of the caller's tenant; every tenant's for admins).
    MetricsRead,
    /// Plan a SQL script without running it (EXPLAIN, validation).
    SqlExplain,
}

impl Action {
    /// Every action, in the order of the enum.
    pub const ALL: [Action; 27] = [
        Action::JobSubmit,
        Action::JobList,
        Action::JobGet,
        Action::JobCancel,
        Action::JobSavepoint,
        Action::JobResume,
        Action::JobUpgrade,
        Action::PluginUpload,
        Action::PluginList,
        Action::PluginGet,
        Action::PluginDelete,
        Action::FileUpload,
        Action::FileList,
        Action::FileDelete,
        Action::FunctionRegister,
        Action::FunctionList,
        Action::FunctionDelete,
        Action::TenantCreate,
        Action::TenantList,
        Action::TenantDelete,
        Action::TenantTrust,
        Action::KeyCreate,
        Action::KeyList,
        Action::KeyRevoke,
        Action::AuditRead,
        Action::MetricsRead,
        Action::SqlExplain,
    ];

    /// Whether the action changes something (mutating calls are always audited).
    pub fn is_mutation(self) -> bool {
        use Action::*;
        matches!(
            self,
            JobSubmit
                | JobCancel
                | JobSavepoint
                | JobResume
                | JobUpgrade
                | PluginUpload
                | PluginDelete
                | FileUpload
                | FileDelete
                | FunctionRegister
                | FunctionDelete
                | TenantCreate
                | TenantDelete
                | TenantTrust
                | KeyCreate
                | KeyRevoke
        )
    }

    /// The action's name in the audit log.
    pub fn name(self) -> &'static str {
        use Action::*;
        match self {
            JobSubmit => "job.submit",
            JobList => "job.list",
            JobGet => "job.get",
            JobCancel => "job.cancel",
            JobSavepoint => "job.savepoint",
            JobResume => "job.resume",
            JobUpgrade => "job.upgrade",
            PluginUpload => "plugin.upload",
            PluginList => "plugin.list",
            PluginGet => "plugin.get",
            PluginDelete => "plugin.delete",
            FileUpload => "file.upload",
            FileList => "file.list",
            FileDelete => "file.delete",
            FunctionRegister => "function.register",
            FunctionList => "function.list",
            FunctionDelete => "function.delete",
            TenantCreate => "tenant.create",
            TenantList => "tenant.list",
            TenantDelete => "tenant.delete",
            TenantTrust => "tenant.trust",
            KeyCreate => "key.create",
            KeyList => "key.list",
            KeyRevoke => "key.revoke",
            AuditRead => "audit.read",
            MetricsRead => "metrics.read",
            SqlExplain => "sql.explain",
        }
    }
}

/// An authenticated caller.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Principal {
    /// The key's id (never the secret).
    pub key_id: String,
    /// The tenant the key belongs to.
    pub tenant: String,
    /// The key's role.
    pub role: Role,
}

impl Principal {
    /// Whether the caller may see objects of `tenant` (admins see every tenant).
    pub fn sees_tenant(&self, tenant: &str) -> bool {
        self.role == Role::Admin || self.tenant == tenant
    }
}

/// The prefix of every key: `fgk_<id>_<secret>`.
const PREFIX: &str = "fgk_";

/// An API key as presented by a caller: `fgk_<id>_<secret>`. The id finds the stored
/// hash; only the secret is hashed.
#[derive(Clone, PartialEq, Eq)]
pub struct ApiKey {
    /// The public part, stored in clear.
    pub id: String,
    secret: String,
}

impl fmt::Debug for ApiKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "ApiKey({}, <secret>)", self.id)
    }
}

impl ApiKey {
    /// A new random key (96 bits of id, 192 bits of secret).
    pub fn generate() -> Result<ApiKey, SecurityError> {
        Ok(ApiKey {
            id: random_hex(12)?,
            secret: random_hex(24)?,
        })
    }

    /// Reads a key as given in an `Authorization: Bearer` header or `FUNGI_API_KEY`.
    pub fn parse(text: &str) -> Result<ApiKey, SecurityError> {
        let rest = text
            .trim()
            .strip_prefix(PREFIX)
            .ok_or_else(|| SecurityError::MalformedKey(format!("a key starts with '{PREFIX}'")))?;
        let (id, secret) = rest
            .split_once('_')
            .ok_or_else(|| SecurityError::MalformedKey("expected fgk_<id>_<secret>".into()))?;
        let hex = |s: &str| !s.is_empty() && s.bytes().all(|b| b.is_ascii_hexdigit());
        if !hex(id) || !hex(secret) {
            return Err(SecurityError::MalformedKey(
                "id and secret are hexadecimal".into(),
            ));
        }
        Ok(ApiKey {
            id: id.to_string(),
            secret: secret.to_string(),
        })
    }

    /// The key as the caller writes it. Shown once, when the key is created.
    pub fn reveal(&self) -> String {
        format!("{PREFIX}{}_{}", self.id, self.secret)
    }

    /// The Argon2 hash of the secret (PHC string), what the server stores.
    pub fn hash(&self) -> Result<String, SecurityError> {
        let mut salt = [0u8; 16];
        getrandom::fill(&mut salt).map_err(|e| SecurityError::Random(e.to_string()))?;
        let salt = SaltString::encode_b64(&salt).map_err(|e| SecurityError::Hash(e.to_string()))?;
        Argon2::default()
            .hash_password(self.secret.as_bytes(), &salt)
            .map(|h| h.to_string())
            .map_err(|e| SecurityError::Hash(e.to_string()))
    }

    /// Whether this key's secret matches a stored hash.
    pub fn verify(&self, stored_hash: &str) -> bool {
        verify_secret(&self.secret, stored_hash)
    }
}

/// Remembers which keys verified, so that a key is checked against its Argon2 hash (tens
/// of milliseconds of CPU, by design) once, not on every request; and slows down
/// guessing: after [`KeyChecks::MAX_FAILURES`] failures of a key id within
/// [`KeyChecks::FAILURE_WINDOW`], that key id is hashed at most once per
/// [`KeyChecks::THROTTLED_EVERY`] (other attempts are refused unhashed), so that guessing
/// at a key's secret cannot keep the server's CPU busy, and cannot lock the key's holder
/// out for long either.
#[derive(Debug, Default)]
pub struct KeyChecks {
    /// Per key id: the stored hash it verified against, and SHA-256 of the secret.
    verified: std::sync::Mutex<std::collections::HashMap<String, (String, [u8; 32])>>,
    /// Per key id: failures in the current window, when it started, and the last hash.
    failures: std::sync::Mutex<std::collections::HashMap<String, Failures>>,
}

/// What [`KeyChecks::check`] found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum KeyCheck {
    /// The secret matches.
    Valid,
    /// The secret does not match.
    Invalid,
    /// Too many recent failures for this key id: not checked this time.
    Throttled,
}

#[derive(Debug)]
struct Failures {
    count: u32,
    since: std::time::Instant,
    last_hashed: std::time::Instant,
}

impl KeyChecks {
    /// Failures per key id within [`KeyChecks::FAILURE_WINDOW`] before it is throttled.
    pub const MAX_FAILURES: u32 = 10;
    /// The window failures are counted in.
    pub const FAILURE_WINDOW: std::time::Duration = std::time::Duration::from_secs(60);
    /// How often a throttled key id is hashed.
    pub const THROTTLED_EVERY: std::time::Duration = std::time::Duration::from_secs(1);

    /// Whether `key` matches `stored_hash`, hashing only when this key and hash have not
    /// verified before.
    pub fn check(&self, key: &ApiKey, stored_hash: &str) -> KeyCheck {
        use sha2::Digest;
        let digest: [u8; 32] = sha2::Sha256::digest(key.secret.as_bytes()).into();
        {
            let verified = self.verified.lock().unwrap_or_else(|p| p.into_inner());
            if let Some((hash, d)) = verified.get(&key.id)
                && hash == stored_hash
                && *d == digest
            {
                return KeyCheck::Valid;
            }
        }
        let now = std::time::Instant::now();
        {
            let mut failures = self.failures.lock().unwrap_or_else(|p| p.into_inner());
            if let Some(f) = failures.get_mut(&key.id) {
                if now.duration_since(f.since) > Self::FAILURE_WINDOW {
                    failures.remove(&key.id);
                } else if f.count >= Self::MAX_FAILURES {
                    if now.duration_since(f.last_hashed) < Self::THROTTLED_EVERY {
                        return KeyCheck::Throttled;
                    }
                    f.last_hashed = now;
                }
            }
        }
        if key.verify(stored_hash) {
            self.failures
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .remove(&key.id);
            self.verified
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .insert(key.id.clone(), (stored_hash.to_string(), digest));
            KeyCheck::Valid
        } else {
            let mut failures = self.failures.lock().unwrap_or_else(|p| p.into_inner());
            let f = failures.entry(key.id.clone()).or_insert(Failures {
                count: 0,
                since: now,
                last_hashed: now,
            });
            f.count += 1;
            // Throttling counts from the end of the last hash, however long hashing took.
            f.last_hashed = std::time::Instant::now();
            KeyCheck::Invalid
        }
    }

    /// Forgets a key (revoked or deleted).
    pub fn forget(&self, key_id: &str) {
        self.verified
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .remove(key_id);
    }
}

/// Whether `secret` matches the stored Argon2 hash (constant-time comparison inside).
pub fn verify_secret(secret: &str, stored_hash: &str) -> bool {
    PasswordHash::new(stored_hash)
        .and_then(|h| Argon2::default().verify_password(secret.as_bytes(), &h))
        .is_ok()
}

fn random_hex(bytes: usize) -> Result<String, SecurityError> {
    let mut buf = vec![0u8; bytes];
    getrandom::fill(&mut buf).map_err(|e| SecurityError::Random(e.to_string()))?;
    Ok(buf.iter().map(|b| format!("{b:02x}")).collect())
}

/// One audit record: who did what to which object, when, and how it ended.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct AuditRecord {
    /// Sequence number (append order).
    pub seq: i64,
    /// Milliseconds since the epoch.
    pub time_ms: i64,
    /// The key id, or `anonymous` when authentication failed.
    pub who: String,
    /// The caller's tenant (empty when unknown).
    pub tenant: String,
    /// The action (`job.submit`, ...), or the request line when none applies.
    pub action: String,
    /// What the action was on (a job id, a tenant, ...).
    pub target: String,
    /// `ok`, `denied: ...`, `unauthenticated: ...` or `failed: ...`.
    pub result: String,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_action_is_listed_once() {
        let names: std::collections::BTreeSet<&str> =
            Action::ALL.iter().map(|a| a.name()).collect();
        assert_eq!(names.len(), Action::ALL.len());
        // Admins may do everything, and only admins may do everything.
        assert!(Action::ALL.iter().all(|a| Role::Admin.allows(*a)));
        assert!(Action::ALL.iter().any(|a| !Role::TenantAdmin.allows(*a)));
    }

    #[test]
    fn keys_round_trip_and_only_the_right_secret_verifies() {
        let key = ApiKey::generate().unwrap();
        let hash = key.hash().unwrap();
        assert!(hash.starts_with("$argon2"), "{hash}");
        assert!(!hash.contains(&key.secret));
        let parsed = ApiKey::parse(&key.reveal()).unwrap();
        assert_eq!(parsed, key);
        assert!(parsed.verify(&hash));
        let other = ApiKey::generate().unwrap();
        assert!(
            !ApiKey {
                id: key.id.clone(),
                ..other
            }
            .verify(&hash)
        );
        assert!(!key.verify("not a hash"));
        assert!(format!("{key:?}").contains("<secret>"));
        for bad in ["", "fgk_", "fgk_abc", "xyz_ab_cd", "fgk_zz_00"] {
            assert!(ApiKey::parse(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn key_checks_remember_valid_keys_and_slow_down_guessing_without_locking_out() {
        let checks = KeyChecks::default();
        let key = ApiKey::generate().unwrap();
        let hash = key.hash().unwrap();
        assert_eq!(checks.check(&key, &hash), KeyCheck::Valid);
        // Remembered: the same key and hash verify without hashing (fast).
        let start = std::time::Instant::now();
        for _ in 0..100 {
            assert_eq!(checks.check(&key, &hash), KeyCheck::Valid);
        }
        assert!(start.elapsed() < std::time::Duration::from_secs(1));
        // A wrong secret for the same id fails; after MAX_FAILURES the id is throttled,
        // but the remembered right key still passes.
        let wrong = ApiKey {
            id: key.id.clone(),
            secret: "00".into(),
        };
        for _ in 0..KeyChecks::MAX_FAILURES {
            assert_eq!(checks.check(&wrong, &hash), KeyCheck::Invalid);
        }
        assert_eq!(checks.check(&wrong, &hash), KeyCheck::Throttled);
        assert_eq!(checks.check(&key, &hash), KeyCheck::Valid);
        // A key not remembered (after a restart) gets through within a second.
        let fresh = KeyChecks::default();
        for _ in 0..KeyChecks::MAX_FAILURES {
            assert_eq!(fresh.check(&wrong, &hash), KeyCheck::Invalid);
        }
        assert_eq!(fresh.check(&key, &hash), KeyCheck::Throttled);
        std::thread::sleep(KeyChecks::THROTTLED_EVERY);
        assert_eq!(fresh.check(&key, &hash), KeyCheck::Valid);
        // A revoked or rotated hash is not taken from memory.
        checks.forget(&key.id);
        let other = ApiKey::generate().unwrap().hash().unwrap();
        assert_ne!(checks.check(&key, &other), KeyCheck::Valid);
    }

    #[test]
    fn the_permission_matrix() {
        assert!(Role::ALL.iter().all(|r| r.allows(Action::JobList)));
        assert!(!Role::Viewer.allows(Action::JobSubmit));
        assert!(Role::Developer.allows(Action::JobSubmit));
        assert!(!Role::Developer.allows(Action::KeyCreate));
        assert!(Role::TenantAdmin.allows(Action::KeyCreate));
        assert!(!Role::TenantAdmin.allows(Action::TenantCreate));
        assert!(Role::Admin.allows(Action::TenantCreate));
        assert_eq!("tenant-admin".parse::<Role>().unwrap(), Role::TenantAdmin);
        assert!("root".parse::<Role>().is_err());
    }
}
