//! A tenant's confinement wherever its job is planned: on the server, and, when the
//! server runs its jobs on a cluster, on the JobManager and every TaskManager, which
//! get the confinement with the job ([`TenantScope`]) and plan the job exactly as the
//! server does: a tenant reaches its own files and plugins, the egress hosts its quotas
//! allow, native Python only when allowed, and its plugins run within its limits.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, OnceLock};

use fungi_cluster::JobSpec;
use fungi_cluster::spec::TenantScope;
use fungi_execution::plan::PhysicalPlan;
use fungi_plugin::{PluginHost, PluginTenant};
use fungi_tenancy::Tenant;

use crate::service::plugin_limits;

/// The confinement of `scope`'s tenant, its plugins on `host` as `tenant`.
pub(crate) fn confinement(
    scope: &TenantScope,
    host: Arc<PluginHost>,
    tenant: Arc<PluginTenant>,
) -> fungi_sql::Confinement {
    let quotas = &scope.tenant.quotas;
    fungi_sql::Confinement {
        files_dir: scope.files_dir.clone(),
        egress: fungi_connector::egress::Egress::new(quotas.allowed_egress_hosts.iter().cloned()),
        allow_native_python: quotas.allow_unsandboxed_python,
        plugin_dir: scope.plugin_dir.clone(),
        host,
        tenant,
    }
}

/// The plugin host's tenant for `tenant` among `tenants`: one per tenant and limits, so
/// that memory and CPU limits hold across all its jobs in this process.
pub(crate) fn plugin_tenant(tenants: &PluginTenants, tenant: &Tenant) -> Arc<PluginTenant> {
    let mut tenants = tenants.lock().unwrap_or_else(|p| p.into_inner());
    let limits = plugin_limits(&tenant.quotas);
    match tenants.get(&tenant.id) {
        Some(t) if *t.limits() == limits => t.clone(),
        _ => {
            let t = Arc::new(PluginTenant::new(tenant.id.clone(), limits));
            tenants.insert(tenant.id.clone(), t.clone());
            t
        }
    }
}

/// The plugin host's tenants of a process, by tenant id.
pub(crate) type PluginTenants = Mutex<HashMap<String, Arc<PluginTenant>>>;

/// This process's plugin host and tenants for jobs planned from a [`TenantScope`].
fn process_plugins() -> Result<(Arc<PluginHost>, &'static PluginTenants), String> {
    static HOST: OnceLock<Arc<PluginHost>> = OnceLock::new();
    static TENANTS: OnceLock<PluginTenants> = OnceLock::new();
    let host = match HOST.get() {
        Some(h) => h.clone(),
        None => {
            let host = PluginHost::new(fungi_plugin::HostOptions::default())
                .map_err(|e| format!("cannot start the plugin host: {e}"))?;
            HOST.get_or_init(|| host).clone()
        }
    };
    Ok((host, TENANTS.get_or_init(Default::default)))
}

/// The job of a server's script: its one `INSERT INTO`.
pub(crate) fn single_insert(
    outcomes: Vec<fungi_sql::Outcome>,
) -> Result<fungi_execution::graph::JobGraph, String> {
    let mut graphs: Vec<_> = outcomes
        .into_iter()
        .filter_map(|o| match o {
            fungi_sql::Outcome::Insert(g) => Some(g),
            _ => None,
        })
        .collect();
    if graphs.len() != 1 {
        return Err(format!(
            "a job is a script with exactly one INSERT INTO; this one has {}",
            graphs.len()
        ));
    }
    Ok(graphs.remove(0))
}

/// Plans a server's job (`spec`, whose text begins with the tenant's catalog functions)
/// confined to `scope`, as the server planned it: one `INSERT INTO`, named after the
/// job, checkpointing where the spec says. Runs on the caller's thread (a planning
/// thread with a roomy stack).
pub fn plan_scoped(spec: &JobSpec, scope: &TenantScope) -> Result<PhysicalPlan, String> {
    let (host, tenants) = process_plugins()?;
    let config = fungi_common::config::JobConfig {
        parallelism: spec.parallelism.unwrap_or(1),
        ..Default::default()
    };
    let mut session = fungi_sql::SqlSession::new(config);
    session.confine(confinement(
        scope,
        host,
        plugin_tenant(tenants, &scope.tenant),
    ));
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| format!("cannot start a planning runtime: {e}"))?;
    let outcomes = runtime
        .block_on(session.execute_script(&spec.text))
        .map_err(|e| format!("the SQL does not plan: {e}"))?;
    let mut graph = single_insert(outcomes)?;
    if let Some(name) = &spec.name {
        graph.name = name.clone();
    }
    if let Some(dir) = &spec.checkpoint_dir {
        graph.config.checkpointing.dir = Some(dir.into());
    }
    graph.config.checkpointing.storage_options.clear();
    PhysicalPlan::new(graph).map_err(|e| e.to_string())
}
