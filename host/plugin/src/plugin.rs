//! A loaded plugin: its component, checked against the contract, ready to instantiate.

use std::sync::Arc;

use arrow::datatypes::Field;
use wasmtime::component::{Component, InstancePre};

use crate::bindings::CONTRACT_VERSION;
use crate::error::{PluginError, Result};
use crate::host::{HostState, PluginHost};
use crate::limits::PluginTenant;
use crate::sandbox::Sandbox;

/// What a plugin provides (the world it targets).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PluginKind {
    /// Scalar functions (`scalar-udf`).
    Scalar,
    /// Aggregate functions (`aggregate-udf`).
    Aggregate,
    /// Table functions (`table-udf`).
    Table,
    /// A source connector.
    Source,
    /// A sink connector.
    Sink,
}

impl PluginKind {
    fn interface(self) -> &'static str {
        match self {
            PluginKind::Scalar => "scalar",
            PluginKind::Aggregate => "aggregate",
            PluginKind::Table => "table",
            PluginKind::Source => "source",
            PluginKind::Sink => "sink",
        }
    }
}

impl std::fmt::Display for PluginKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            PluginKind::Scalar => "a scalar function library",
            PluginKind::Aggregate => "an aggregate function library",
            PluginKind::Table => "a table function library",
            PluginKind::Source => "a source connector",
            PluginKind::Sink => "a sink connector",
        })
    }
}

/// A plugin's description of itself.
#[derive(Debug, Clone, PartialEq)]
pub struct Manifest {
    /// Name.
    pub name: String,
    /// Version.
    pub version: String,
    /// What it does.
    pub description: String,
    /// `host:port` addresses it wants to reach.
    pub network: Vec<String>,
    /// Guest directories it wants.
    pub directories: Vec<String>,
}

/// How a function's result depends on its input.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Volatility {
    /// Same input, same output.
    Immutable,
    /// Same within a query.
    Stable,
    /// May change per call.
    Volatile,
}

/// An exported function with its Arrow signature.
#[derive(Debug, Clone, PartialEq)]
pub struct FunctionSignature {
    /// Function name.
    pub name: String,
    /// Argument fields.
    pub arguments: Vec<Field>,
    /// Result field (table functions: a struct whose fields are the output columns).
    pub returns: Field,
    /// Volatility.
    pub volatility: Volatility,
    /// Aggregates only: whether it can take rows back.
    pub retractable: bool,
}

/// A plugin ready to be instantiated.
pub struct Plugin {
    pub(crate) host: Arc<PluginHost>,
    pub(crate) name: Arc<str>,
    digest: String,
    kind: PluginKind,
    pub(crate) pre: InstancePre<HostState>,
    manifest: Manifest,
    functions: Vec<FunctionSignature>,
    imports: Vec<String>,
}

impl std::fmt::Debug for Plugin {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Plugin")
            .field("name", &self.name)
            .field("kind", &self.kind)
            .field("digest", &self.digest)
            .finish_non_exhaustive()
    }
}

const KINDS: [PluginKind; 5] = [
    PluginKind::Scalar,
    PluginKind::Aggregate,
    PluginKind::Table,
    PluginKind::Source,
    PluginKind::Sink,
];

impl Plugin {
    pub(crate) fn new(
        host: Arc<PluginHost>,
        name: &str,
        bytes: &[u8],
        component: Component,
    ) -> Result<Arc<Self>> {
        let ty = component.component_type();
        let engine = &host.engine;
        // The kind, from the exported interface, and its contract version.
        let mut kind = None;
        for (export, _) in ty.exports(engine) {
            let Some(rest) = export.strip_prefix("fungi:plugin/") else {
                continue;
            };
            let (interface, version) = rest.split_once('@').unwrap_or((rest, "(no version)"));
            if let Some(k) = KINDS.iter().find(|k| k.interface() == interface) {
                if version != CONTRACT_VERSION {
                    return Err(PluginError::Incompatible {
                        plugin: name.to_string(),
                        found: format!("fungi:plugin@{version}"),
                        expected: format!("fungi:plugin@{CONTRACT_VERSION}"),
                    });
                }
                kind = Some(*k);
            }
        }
        let kind = kind.ok_or_else(|| PluginError::Load {
            plugin: name.to_string(),
            reason: format!(
                "it exports none of the plugin interfaces (fungi:plugin/scalar, aggregate, table, source, sink @{CONTRACT_VERSION}); build it with the Fungi SDK"
            ),
        })?;
        // Imports: WASI and the host interface of the same contract version, nothing else.
        let imports: Vec<String> = ty
            .imports(engine)
            .map(|(name, _)| name.to_string())
            .collect();
        for import in &imports {
            let allowed = import.starts_with("wasi:")
                || *import == format!("fungi:plugin/host@{CONTRACT_VERSION}")
                || *import == format!("fungi:plugin/types@{CONTRACT_VERSION}");
            if let Some(rest) = import.strip_prefix("fungi:plugin/")
                && !allowed
            {
                let version = rest.split_once('@').map_or("(no version)", |v| v.1);
                return Err(PluginError::Incompatible {
                    plugin: name.to_string(),
                    found: format!("fungi:plugin@{version}"),
                    expected: format!("fungi:plugin@{CONTRACT_VERSION}"),
                });
            }
            if !allowed {
                return Err(PluginError::ForbiddenImport {
                    plugin: name.to_string(),
                    import: import.clone(),
                });
            }
        }
        let pre =
            host.linker
                .instantiate_pre(&component)
                .map_err(|e| PluginError::ForbiddenImport {
                    plugin: name.to_string(),
                    import: format!("{e:#}"),
                })?;
        let mut plugin = Plugin {
            host,
            name: name.into(),
            digest: blake3::hash(bytes).to_hex().to_string(),
            kind,
            pre,
            manifest: Manifest {
                name: name.to_string(),
                version: String::new(),
                description: String::new(),
                network: Vec::new(),
                directories: Vec::new(),
            },
            functions: Vec::new(),
            imports,
        };
        // Ask the plugin what it is, in a throwaway sandbox with default limits.
        let tenant = Arc::new(PluginTenant::new(
            "fungi-loader",
            plugin.host.default_limits(),
        ));
        let mut sandbox = Sandbox::new(&plugin, &tenant, &[])?;
        plugin.manifest = sandbox.manifest()?;
        plugin.functions = sandbox.functions()?;
        Ok(Arc::new(plugin))
    }

    /// The plugin's name (given at load).
    pub fn name(&self) -> &str {
        &self.name
    }

    /// BLAKE3 digest of the component bytes (hex).
    pub fn digest(&self) -> &str {
        &self.digest
    }

    /// What the plugin provides.
    pub fn kind(&self) -> PluginKind {
        self.kind
    }

    /// The plugin's manifest.
    pub fn manifest(&self) -> &Manifest {
        &self.manifest
    }

    /// The functions it exports (scalar, aggregate and table plugins).
    pub fn functions(&self) -> &[FunctionSignature] {
        &self.functions
    }

    /// What the component imports (WASI interfaces, the Fungi host interface).
    pub fn imports(&self) -> &[String] {
        &self.imports
    }

    /// The signature of function `name`.
    pub fn function(&self, name: &str) -> Result<&FunctionSignature> {
        self.functions
            .iter()
            .find(|f| f.name == name)
            .ok_or_else(|| PluginError::UnknownFunction {
                plugin: self.name.to_string(),
                function: name.to_string(),
                available: self
                    .functions
                    .iter()
                    .map(|f| f.name.as_str())
                    .collect::<Vec<_>>()
                    .join(", "),
            })
    }

    pub(crate) fn expect_kind(&self, kind: PluginKind) -> Result<()> {
        if self.kind == kind {
            Ok(())
        } else {
            Err(PluginError::WrongKind {
                plugin: self.name.to_string(),
                found: self.kind.to_string(),
                expected: kind.to_string(),
            })
        }
    }
}
