//! What the Fungi host offers a plugin while it runs: structured logs, metrics of the
//! calling operator, and the configuration given to the plugin.
//!
//! ```ignore
//! fungi_sdk::host::info("opened split", &[("split", "3")]);
//! fungi_sdk::host::counter_add("rows_emitted", 1024);
//! let endpoint = fungi_sdk::host::config("endpoint");
//! ```

use fungi_sdk_host_bindings::fungi::plugin::host as imports;

pub use imports::Level;

/// Writes a structured log line (the host's log, tagged with the plugin's name).
pub fn log(level: Level, message: &str, fields: &[(&str, &str)]) {
    let fields: Vec<(String, String)> = fields
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
    imports::log(level, message, &fields);
}

/// Logs at info level.
pub fn info(message: &str, fields: &[(&str, &str)]) {
    log(Level::Info, message, fields)
}

/// Logs at warn level.
pub fn warn(message: &str, fields: &[(&str, &str)]) {
    log(Level::Warn, message, fields)
}

/// Adds `value` to the counter `name` (per tenant and plugin on the host).
pub fn counter_add(name: &str, value: u64) {
    imports::counter_add(name, value)
}

/// Sets the gauge `name` to `value`.
pub fn gauge_set(name: &str, value: f64) {
    imports::gauge_set(name, value)
}

/// The configuration value `key` given to the plugin (`WITH` options, job config).
pub fn config(key: &str) -> Option<String> {
    imports::config_get(key)
}
