//! Tenants and quotas. A tenant owns jobs, plugins and keys; its quotas bound what it
//! may run. The server checks [`Quotas::admit_job`] before a job starts, with the
//! tenant's current [`Usage`]; limits that apply while code runs (plugin memory and
//! CPU) are handed to the plugin host.

use serde::{Deserialize, Serialize};

/// A quota that a request would break, with the figures.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("tenant '{tenant}' quota '{quota}' exceeded: {detail}")]
pub struct QuotaExceeded {
    /// The tenant.
    pub tenant: String,
    /// The quota's name, as in [`Quotas`] (`max_jobs`, ...).
    pub quota: &'static str,
    /// What was asked and what is allowed.
    pub detail: String,
}

/// What a tenant may use. Every limit is optional; `None` means unlimited.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(default, deny_unknown_fields)]
pub struct Quotas {
    /// Jobs running at once.
    pub max_jobs: Option<u32>,
    /// The sum of the parallelism of the tenant's running jobs.
    pub max_total_parallelism: Option<u32>,
    /// Plugins stored.
    pub max_plugins: Option<u32>,
    /// Bytes of one plugin component.
    pub max_plugin_bytes: Option<u64>,
    /// Linear memory of one plugin instance, in bytes (enforced by the plugin host).
    pub plugin_memory_per_instance: Option<u64>,
    /// Linear memory of all the tenant's plugin instances together, in bytes, across
    /// its jobs (enforced by the plugin host).
    pub plugin_memory_total: Option<u64>,
    /// Milliseconds of plugin calls per second of wall clock, across the tenant's jobs;
    /// a tenant over budget waits (enforced by the plugin host).
    pub plugin_cpu_ms_per_second: Option<u64>,
    /// Bytes of one job's state, as measured by its checkpoints; a job whose checkpoint
    /// is larger fails with a message naming the quota.
    pub max_state_bytes: Option<u64>,
    /// `host:port` addresses plugins may connect to (none when empty).
    pub allowed_egress_hosts: Vec<String>,
    /// Whether native (unsandboxed) Python functions may run.
    pub allow_unsandboxed_python: bool,
}

/// What a tenant does with plugin signatures at upload.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum TrustMode {
    /// Signatures are not checked.
    #[default]
    Off,
    /// An unsigned plugin, or one whose signature does not verify, is stored with a
    /// warning (in the plugin's record and the audit log).
    Warn,
    /// Only plugins signed by one of the trusted keys are stored.
    Require,
}

impl TrustMode {
    /// The mode as written in requests (`off`, `warn`, `require`).
    pub fn name(self) -> &'static str {
        match self {
            TrustMode::Off => "off",
            TrustMode::Warn => "warn",
            TrustMode::Require => "require",
        }
    }

    /// The mode named `name`, if any.
    pub fn parse(name: &str) -> Option<TrustMode> {
        [TrustMode::Off, TrustMode::Warn, TrustMode::Require]
            .into_iter()
            .find(|m| m.name() == name)
    }
}

/// A tenant's trust policy for plugins: the mode and the public keys (PEM, as written
/// by `cosign generate-key-pair` or `fungi plugin keygen`) whose signatures it trusts.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(default, deny_unknown_fields)]
pub struct TrustPolicy {
    /// Off, warn or require.
    pub mode: TrustMode,
    /// Trusted public keys, PEM.
    pub keys: Vec<String>,
}

/// What a tenant uses now.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Usage {
    /// Jobs running.
    pub jobs: u32,
    /// Sum of their parallelism.
    pub parallelism: u32,
}

/// A tenant.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct Tenant {
    /// Its id: lower-case letters, digits and `-`, at most 63 characters.
    pub id: String,
    /// Its quotas.
    #[serde(default)]
    pub quotas: Quotas,
    /// Its plugin trust policy.
    #[serde(default)]
    pub trust: TrustPolicy,
}

/// Why a tenant id is refused, if it is.
pub fn check_tenant_id(id: &str) -> Result<(), String> {
    let ok = !id.is_empty()
        && id.len() <= 63
        && id
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
        && !id.starts_with('-');
    if ok {
        Ok(())
    } else {
        Err(format!(
            "tenant id '{id}' must be 1 to 63 lower-case letters, digits or '-', not starting with '-'"
        ))
    }
}

impl Quotas {
    /// Whether a job of `parallelism` may start for `tenant` now.
    pub fn admit_job(
        &self,
        tenant: &str,
        usage: Usage,
        parallelism: u32,
    ) -> Result<(), QuotaExceeded> {
        let exceeded = |quota, detail| QuotaExceeded {
            tenant: tenant.to_string(),
            quota,
            detail,
        };
        if let Some(max) = self.max_jobs
            && usage.jobs + 1 > max
        {
            return Err(exceeded(
                "max_jobs",
                format!("{} jobs are running, the limit is {max}", usage.jobs),
            ));
        }
        if let Some(max) = self.max_total_parallelism
            && usage.parallelism + parallelism > max
        {
            return Err(exceeded(
                "max_total_parallelism",
                format!(
                    "running jobs use {} slots, this one asks for {parallelism}, the limit is {max}",
                    usage.parallelism
                ),
            ));
        }
        Ok(())
    }

    /// Whether a plugin of `bytes` may be stored next to `stored` others.
    pub fn admit_plugin(&self, tenant: &str, stored: u32, bytes: u64) -> Result<(), QuotaExceeded> {
        if let Some(max) = self.max_plugins
            && stored + 1 > max
        {
            return Err(QuotaExceeded {
                tenant: tenant.to_string(),
                quota: "max_plugins",
                detail: format!("{stored} plugins are stored, the limit is {max}"),
            });
        }
        if let Some(max) = self.max_plugin_bytes
            && bytes > max
        {
            return Err(QuotaExceeded {
                tenant: tenant.to_string(),
                quota: "max_plugin_bytes",
                detail: format!("the plugin has {bytes} bytes, the limit is {max}"),
            });
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quotas_name_what_was_exceeded() {
        let q = Quotas {
            max_jobs: Some(2),
            max_total_parallelism: Some(4),
            ..Default::default()
        };
        assert!(
            q.admit_job(
                "a",
                Usage {
                    jobs: 1,
                    parallelism: 2
                },
                2
            )
            .is_ok()
        );
        let e = q
            .admit_job(
                "a",
                Usage {
                    jobs: 2,
                    parallelism: 2,
                },
                1,
            )
            .unwrap_err();
        assert_eq!(e.quota, "max_jobs");
        let e = q
            .admit_job(
                "a",
                Usage {
                    jobs: 1,
                    parallelism: 3,
                },
                2,
            )
            .unwrap_err();
        assert!(e.to_string().contains("max_total_parallelism"), "{e}");
        assert!(
            Quotas::default()
                .admit_job(
                    "a",
                    Usage {
                        jobs: 99,
                        parallelism: 99
                    },
                    9
                )
                .is_ok()
        );
        assert!(check_tenant_id("team-a1").is_ok());
        assert!(check_tenant_id("Team A").is_err());
        assert!(check_tenant_id("").is_err());
    }
}
