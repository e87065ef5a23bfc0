//! The plugin host against real components built from `plugins/` and
//! `conformance/hostile/` (by `fungi-plugin-artifacts`).

mod conformance;
mod connectors;
mod contract;
mod functions;
mod hostile;
mod versioning;

use std::path::Path;
use std::sync::{Arc, OnceLock};

use fungi_plugin::{HostOptions, Plugin, PluginHost, PluginTenant, TenantLimits};

/// One host for the whole test binary (as in a process).
pub(crate) fn host() -> &'static Arc<PluginHost> {
    static HOST: OnceLock<Arc<PluginHost>> = OnceLock::new();
    HOST.get_or_init(|| PluginHost::new(HostOptions::default()).expect("plugin host"))
}

pub(crate) fn load(path: &str) -> Arc<Plugin> {
    host().load_file(Path::new(path)).expect("plugin loads")
}

pub(crate) fn tenant(name: &str, limits: TenantLimits) -> Arc<PluginTenant> {
    Arc::new(PluginTenant::new(name, limits))
}
