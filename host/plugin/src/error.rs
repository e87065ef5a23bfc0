//! Errors of the plugin host. Each carries the plugin and, for failed calls, the function
//! and what the guest printed, so the message says what broke where.

/// What went wrong with a plugin.
#[derive(Debug, thiserror::Error)]
pub enum PluginError {
    /// The bytes are not a loadable component.
    #[error("plugin '{plugin}' cannot be loaded: {reason}")]
    Load {
        /// Plugin (file) name.
        plugin: String,
        /// Why.
        reason: String,
    },
    /// Built against another version of the contract.
    #[error(
        "plugin '{plugin}' was built for the plugin contract {found}, but this host implements {expected}; rebuild the plugin against {expected}"
    )]
    Incompatible {
        /// Plugin name.
        plugin: String,
        /// The contract version the plugin targets.
        found: String,
        /// The version this host implements.
        expected: String,
    },
    /// The component imports something the host does not offer.
    #[error(
        "plugin '{plugin}' imports '{import}', which Fungi does not offer (plugins may import fungi:plugin/host and WASI)"
    )]
    ForbiddenImport {
        /// Plugin name.
        plugin: String,
        /// The import.
        import: String,
    },
    /// The plugin is not of the kind the caller needs.
    #[error("plugin '{plugin}' is {found}, not {expected}")]
    WrongKind {
        /// Plugin name.
        plugin: String,
        /// What it is.
        found: String,
        /// What was asked for.
        expected: String,
    },
    /// The plugin has no function of that name.
    #[error("plugin '{plugin}' has no function '{function}'; it exports: {available}")]
    UnknownFunction {
        /// Plugin name.
        plugin: String,
        /// Requested function.
        function: String,
        /// What it exports.
        available: String,
    },
    /// A call broke a limit of the tenant; the instance was discarded.
    #[error("plugin '{plugin}', function '{function}': {limit} (instance discarded){}", output_suffix(.output))]
    Limit {
        /// Plugin name.
        plugin: String,
        /// Function called.
        function: String,
        /// Which limit, with its value.
        limit: String,
        /// What the guest printed to stdout/stderr during the call (capped).
        output: String,
    },
    /// The guest trapped (panic, unreachable, stack overflow...); the instance was
    /// discarded.
    #[error("plugin '{plugin}', function '{function}' trapped: {reason} (instance discarded){}", output_suffix(.output))]
    Trap {
        /// Plugin name.
        plugin: String,
        /// Function called.
        function: String,
        /// The trap.
        reason: String,
        /// What the guest printed to stdout/stderr during the call (capped).
        output: String,
    },
    /// The guest returned an error.
    #[error("plugin '{plugin}', function '{function}' failed: {message}")]
    Guest {
        /// Plugin name.
        plugin: String,
        /// Function called.
        function: String,
        /// The guest's error.
        message: String,
    },
    /// The guest returned data that breaks the contract (bad IPC, wrong row count...).
    #[error("plugin '{plugin}', function '{function}' broke the contract: {reason}")]
    Contract {
        /// Plugin name.
        plugin: String,
        /// Function called.
        function: String,
        /// What was wrong.
        reason: String,
    },
    /// A host-side failure (I/O, engine).
    #[error("plugin host: {0}")]
    Host(String),
}

fn output_suffix(output: &str) -> String {
    if output.is_empty() {
        String::new()
    } else {
        format!("; the plugin printed: {}", output.trim_end())
    }
}

impl PluginError {
    /// A stable code for the error kind (for APIs and dead-letter reasons).
    pub fn code(&self) -> &'static str {
        match self {
            PluginError::Load { .. } => "PLUGIN_LOAD",
            PluginError::Incompatible { .. } => "PLUGIN_INCOMPATIBLE",
            PluginError::ForbiddenImport { .. } => "PLUGIN_FORBIDDEN_IMPORT",
            PluginError::WrongKind { .. } => "PLUGIN_WRONG_KIND",
            PluginError::UnknownFunction { .. } => "PLUGIN_UNKNOWN_FUNCTION",
            PluginError::Limit { .. } => "PLUGIN_LIMIT",
            PluginError::Trap { .. } => "PLUGIN_TRAP",
            PluginError::Guest { .. } => "PLUGIN_ERROR",
            PluginError::Contract { .. } => "PLUGIN_CONTRACT",
            PluginError::Host(_) => "PLUGIN_HOST",
        }
    }
}

impl From<PluginError> for fungi_common::FungiError {
    fn from(e: PluginError) -> Self {
        fungi_common::FungiError::Operator {
            operator: "plugin".into(),
            message: format!("[{}] {e}", e.code()),
        }
    }
}

/// Results of the plugin host.
pub type Result<T, E = PluginError> = std::result::Result<T, E>;
