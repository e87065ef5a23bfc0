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
        /// Which limit, its value and what the call reached.
        limit: Box<LimitBreach>,
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

/// Which of a tenant's limits a plugin call broke.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum LimitKind {
    /// Memory per instance or for the whole tenant (bytes).
    Memory,
    /// Time per call (milliseconds).
    CallTime,
    /// Fuel per call.
    Fuel,
    /// The guest's stack.
    Stack,
    /// Bytes a call may return (a batch, states, positions, handles).
    Output,
    /// Plugin instances per tenant.
    Instances,
    /// Open files, sockets and streams per instance and tenant.
    HostResources,
    /// A call time limit that this host cannot enforce (built without interruption).
    Unenforceable,
}

/// A broken limit: which, its value and what the call reached (where known), and the
/// explanation people read.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LimitBreach {
    /// Which limit.
    pub kind: LimitKind,
    /// The limit's value, in the kind's unit, where it has one.
    pub limit: Option<u64>,
    /// What the call reached or asked for, in the same unit, where known.
    pub value: Option<u64>,
    /// The explanation, naming the limit and the figures.
    pub message: String,
}

impl LimitBreach {
    /// A breach of `kind` with its figures, boxed as [`PluginError::Limit`] holds it.
    pub fn boxed(
        kind: LimitKind,
        limit: Option<u64>,
        value: Option<u64>,
        message: impl Into<String>,
    ) -> Box<Self> {
        Box::new(LimitBreach {
            kind,
            limit,
            value,
            message: message.into(),
        })
    }
}

impl std::fmt::Display for LimitBreach {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.message)
    }
}

fn output_suffix(output: &str) -> String {
    if output.is_empty() {
        String::new()
    } else {
        format!("; the plugin printed: {}", output.trim_end())
    }
}

impl PluginError {
    /// A call whose result (`what`, e.g. "a polled batch") of `bytes` bytes is over the
    /// tenant's output limit of `max` bytes per call.
    pub fn output_limit(
        plugin: impl Into<String>,
        function: impl Into<String>,
        what: &str,
        max: usize,
        bytes: usize,
    ) -> Self {
        PluginError::Limit {
            plugin: plugin.into(),
            function: function.into(),
            limit: LimitBreach::boxed(
                LimitKind::Output,
                Some(max as u64),
                Some(bytes as u64),
                format!("{what} of {bytes} bytes is over the output limit of {max} bytes per call"),
            ),
            output: String::new(),
        }
    }

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
