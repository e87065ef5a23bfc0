//! Tenants and quotas. A tenant owns jobs, plugins and keys; its quotas bound what it
//! may run. The server plans a job first and then checks what the plan will really run
//! ([`JobShape`], after every `SET` of its script) with [`Quotas::admit_plan`] and,
//! against the tenant's current [`Usage`], [`Quotas::admit_job`]; limits that apply
//! while code runs (plugin memory and CPU) are handed to the plugin host.

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
    /// Open files, sockets and streams the tenant's plugin instances may hold at once,
    /// across its jobs (enforced by the plugin host; default 2048).
    pub plugin_host_resources: Option<u64>,
    /// Bytes a call of the tenant's plugins may return, states and positions included
    /// (enforced by the plugin host; default 64 MiB).
    pub plugin_max_output_bytes: Option<u64>,
    /// Bytes of one job's state, as measured by its checkpoints; a job whose checkpoint
    /// is larger fails with a message naming the quota.
    pub max_state_bytes: Option<u64>,
    /// `host:port` addresses plugins may connect to (none when empty).
    pub allowed_egress_hosts: Vec<String>,
    /// Whether native (unsandboxed) Python functions may run.
    pub allow_unsandboxed_python: bool,
    /// The largest parallelism of one job's operators (default 1024).
    pub max_job_parallelism: Option<u32>,
    /// Restarts a fixed-delay restart strategy may allow (default 100).
    pub max_restart_attempts: Option<u32>,
    /// The least delay before a restart, ms, whatever the strategy (default 1000).
    pub min_restart_delay_ms: Option<u64>,
    /// The least checkpoint interval, ms (default 100).
    pub min_checkpoint_interval_ms: Option<u64>,
    /// Complete checkpoints a job may keep (default 10).
    pub max_retained_checkpoints: Option<u32>,
}

/// The server's defaults for the quotas on a job's settings that are left unset.
pub mod defaults {
    /// `max_job_parallelism`.
    pub const MAX_JOB_PARALLELISM: u32 = 1024;
    /// `max_restart_attempts`.
    pub const MAX_RESTART_ATTEMPTS: u32 = 100;
    /// `min_restart_delay_ms`.
    pub const MIN_RESTART_DELAY_MS: u64 = 1000;
    /// `min_checkpoint_interval_ms`.
    pub const MIN_CHECKPOINT_INTERVAL_MS: u64 = 100;
    /// `max_retained_checkpoints`.
    pub const MAX_RETAINED_CHECKPOINTS: u32 = 10;
    /// The largest number of key groups (`pipeline.max-parallelism`), as Flink's.
    pub const MAX_KEY_GROUPS: u32 = 32_768;
}

/// What a planned job will run, as the quotas see it: the figures after every `SET` of
/// its script.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct JobShape {
    /// The largest parallelism of its operators (the slots it holds).
    pub parallelism: u32,
    /// Its key groups (`pipeline.max-parallelism`).
    pub max_parallelism: u32,
    /// Restarts its strategy allows (`None`: no limit, as an exponential-delay
    /// strategy's).
    pub restart_attempts: Option<u32>,
    /// The shortest delay before one of its restarts (`None`: it never restarts).
    pub restart_min_delay_ms: Option<u64>,
    /// Its checkpoint interval, ms, when it checkpoints.
    pub checkpoint_interval_ms: Option<u64>,
    /// Complete checkpoints it keeps.
    pub retained_checkpoints: u32,
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

    /// Whether a planned job's settings are within the tenant's quotas (its share of the
    /// running jobs is [`Quotas::admit_job`]'s).
    pub fn admit_plan(&self, tenant: &str, job: &JobShape) -> Result<(), QuotaExceeded> {
        let exceeded = |quota, detail| {
            Err(QuotaExceeded {
                tenant: tenant.to_string(),
                quota,
                detail,
            })
        };
        let max = self
            .max_job_parallelism
            .unwrap_or(defaults::MAX_JOB_PARALLELISM);
        if job.parallelism > max {
            return exceeded(
                "max_job_parallelism",
                format!(
                    "the job runs at parallelism {}, the limit is {max}",
                    job.parallelism
                ),
            );
        }
        if job.max_parallelism > defaults::MAX_KEY_GROUPS || job.max_parallelism < job.parallelism {
            return exceeded(
                "pipeline.max-parallelism",
                format!(
                    "the job asks for {} key groups; it needs between its parallelism ({}) and {}",
                    job.max_parallelism,
                    job.parallelism,
                    defaults::MAX_KEY_GROUPS
                ),
            );
        }
        let max_attempts = self
            .max_restart_attempts
            .unwrap_or(defaults::MAX_RESTART_ATTEMPTS);
        if let Some(attempts) = job.restart_attempts
            && job.restart_min_delay_ms.is_some()
            && attempts > max_attempts
        {
            return exceeded(
                "max_restart_attempts",
                format!(
                    "the restart strategy allows {attempts} restarts, the limit is {max_attempts}"
                ),
            );
        }
        let min_delay = self
            .min_restart_delay_ms
            .unwrap_or(defaults::MIN_RESTART_DELAY_MS);
        if let Some(delay) = job.restart_min_delay_ms
            && delay < min_delay
        {
            return exceeded(
                "min_restart_delay_ms",
                format!(
                    "the restart strategy waits {delay} ms before a restart, the least is {min_delay} ms"
                ),
            );
        }
        let min_interval = self
            .min_checkpoint_interval_ms
            .unwrap_or(defaults::MIN_CHECKPOINT_INTERVAL_MS);
        if let Some(interval) = job.checkpoint_interval_ms
            && interval < min_interval
        {
            return exceeded(
                "min_checkpoint_interval_ms",
                format!(
                    "the job checkpoints every {interval} ms, the least interval is {min_interval} ms"
                ),
            );
        }
        let max_retained = self
            .max_retained_checkpoints
            .unwrap_or(defaults::MAX_RETAINED_CHECKPOINTS);
        if job.retained_checkpoints > max_retained {
            return exceeded(
                "max_retained_checkpoints",
                format!(
                    "the job keeps {} checkpoints, the limit is {max_retained}",
                    job.retained_checkpoints
                ),
            );
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
        let shape = JobShape {
            parallelism: 2,
            max_parallelism: 128,
            restart_attempts: Some(3),
            restart_min_delay_ms: Some(1000),
            checkpoint_interval_ms: Some(1000),
            retained_checkpoints: 3,
        };
        assert!(Quotas::default().admit_plan("a", &shape).is_ok());
        for (bad, quota) in [
            (
                JobShape {
                    restart_attempts: Some(u32::MAX),
                    ..shape
                },
                "max_restart_attempts",
            ),
            (
                JobShape {
                    restart_min_delay_ms: Some(0),
                    ..shape
                },
                "min_restart_delay_ms",
            ),
            (
                JobShape {
                    checkpoint_interval_ms: Some(1),
                    ..shape
                },
                "min_checkpoint_interval_ms",
            ),
            (
                JobShape {
                    retained_checkpoints: 1000,
                    ..shape
                },
                "max_retained_checkpoints",
            ),
            (
                JobShape {
                    max_parallelism: 1 << 20,
                    ..shape
                },
                "pipeline.max-parallelism",
            ),
            (
                JobShape {
                    max_parallelism: 1,
                    ..shape
                },
                "pipeline.max-parallelism",
            ),
        ] {
            let e = Quotas::default().admit_plan("a", &bad).unwrap_err();
            assert_eq!(e.quota, quota, "{e}");
        }
        let q = Quotas {
            max_job_parallelism: Some(1),
            ..Default::default()
        };
        assert_eq!(
            q.admit_plan("a", &shape).unwrap_err().quota,
            "max_job_parallelism"
        );
        // A strategy that never restarts has no delay to check.
        let never = JobShape {
            restart_attempts: Some(0),
            restart_min_delay_ms: None,
            ..shape
        };
        assert!(Quotas::default().admit_plan("a", &never).is_ok());
        assert!(check_tenant_id("Team A").is_err());
        assert!(check_tenant_id("").is_err());
    }
}
