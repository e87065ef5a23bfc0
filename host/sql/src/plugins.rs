//! Plugin functions in SQL.
//!
//! ```sql
//! CREATE FUNCTION haversine LANGUAGE WASM USING 'plugins/strings_geo.wasm';
//! CREATE FUNCTION distinct_bidders AS 'hll_distinct' LANGUAGE WASM USING 'hll.wasm';
//! LOAD PLUGIN 'plugins/strings_geo.wasm';   -- every function of the plugin
//! CREATE FUNCTION f AS 'module.function' LANGUAGE PYTHON [USING 'file.py' | 'dir/'];
//! CREATE FUNCTION double_it(x BIGINT) RETURNS BIGINT LANGUAGE PYTHON AS $$
//! def double_it(x):
//!     return 2 * x
//! $$;
//! ```
//!
//! (Flink's `CREATE FUNCTION name AS 'identifier' LANGUAGE ... USING JAR '...'`, with
//! `WASM` as the language.) Scalar functions become DataFusion `ScalarUDF`s that call the
//! plugin once per batch; aggregates become DataFusion `AggregateUDF`s for planning, and
//! the streaming planner runs them as Fungi accumulators (one call per batch for all the
//! groups of an operator), so they work inside windows.

use std::collections::BTreeMap;
use std::sync::Arc;

use arrow::datatypes::{DataType, FieldRef};
use datafusion::common::{Result as DfResult, not_impl_err};
use datafusion::logical_expr::function::{AccumulatorArgs, StateFieldsArgs};
use datafusion::logical_expr::{
    Accumulator, AggregateUDF, AggregateUDFImpl, ColumnarValue, ScalarFunctionArgs, ScalarUDF,
    ScalarUDFImpl, Signature, Volatility as DfVolatility,
};
use fungi_plugin::{
    AggregateUdf, HostOptions, PluginHost, PluginKind, PluginTenant, ScalarUdf, TenantLimits,
    Volatility,
};
use fungi_streaming::aggregate::AggregateFunction;

use crate::error::{Result, SqlError};
use crate::text::{find_keyword, unquote};

/// What a session may use when it runs for a tenant of a shared server: its plugins
/// only, under its limits, in the server's plugin host; files only under its own
/// directory; hosts only among its allowed egress hosts; connectors and their options
/// only from the allow-lists of [`fungi_connector::descriptor`].
#[derive(Clone)]
pub struct Confinement {
    /// The tenant's files: a `filesystem` table's `path` is relative to it (absolute
    /// paths and `..` are refused).
    pub files_dir: std::path::PathBuf,
    /// `host:port` addresses the tenant's connectors may reach (Kafka brokers, http
    /// services).
    pub egress: fungi_connector::egress::Egress,
    /// Whether native (unsandboxed) Python functions may run.
    pub allow_native_python: bool,
    /// The tenant's uploaded plugins: `USING 'geo'` (or `'geo.wasm'`) reads
    /// `<plugin_dir>/geo.wasm`; paths are refused.
    pub plugin_dir: std::path::PathBuf,
    /// The server's plugin host, shared by every job.
    pub host: Arc<PluginHost>,
    /// The tenant its plugins run as: limits from its quotas, usage shared by its jobs.
    pub tenant: Arc<PluginTenant>,
}

/// `path` under `dir` if it is relative and has only normal components (no `..`, no
/// root): how a tenant names its files.
pub fn path_inside(dir: &std::path::Path, path: &str) -> Option<std::path::PathBuf> {
    let rel = std::path::Path::new(path);
    let inside = !path.is_empty()
        && rel.is_relative()
        && rel
            .components()
            .all(|c| matches!(c, std::path::Component::Normal(_)));
    inside.then(|| dir.join(rel))
}

impl Confinement {
    /// Refuses a connector or option a tenant may not use, and checks or rewrites the
    /// values that name files or hosts, so that the table stays within the tenant's files
    /// and egress hosts.
    pub(crate) fn confine_table(
        &self,
        table: &str,
        connector: &str,
        options: &mut [(String, String)],
    ) -> Result<()> {
        use fungi_connector::descriptor::{self, TenantCheck};
        // A plugin connector's options go to the plugin, which runs in the sandbox.
        if connector == WASM_CONNECTOR {
            return Ok(());
        }
        let Some(desc) =
            descriptor::descriptor(connector).filter(|_| descriptor::offered_to_tenants(connector))
        else {
            return Err(SqlError::Plan(format!(
                "table '{table}': connector '{connector}' is not offered to tenants on a server \
                 (it would write to the server's own output); use 'blackhole', 'filesystem' \
                 (in the tenant's files) or another sink"
            )));
        };
        for (key, value) in options.iter_mut() {
            let Some(check) = desc.tenant_check(key) else {
                return Err(SqlError::Plan(format!(
                    "table '{table}': option '{key}' of connector '{connector}' may not be set \
                     by a tenant on a server; allowed: {}",
                    desc.tenant_option_names().join(", ")
                )));
            };
            let what = format!("table '{table}', option '{key}':");
            match check {
                TenantCheck::Free => {}
                TenantCheck::TenantPath => {
                    let Some(path) = path_inside(&self.files_dir, value) else {
                        return Err(SqlError::Plan(format!(
                            "table '{table}': on a server a filesystem path is relative to the \
                             tenant's files directory, without '..'; '{value}' is not"
                        )));
                    };
                    *value = path.to_string_lossy().into_owned();
                }
                TenantCheck::EgressUrl => {
                    self.egress.check_url(&what, value)?;
                }
                TenantCheck::EgressBrokers => {
                    self.egress
                        .check_brokers(&format!("table '{table}': broker"), value)?;
                }
                TenantCheck::KafkaProperty => {
                    let name = key.strip_prefix("properties.").unwrap_or(key);
                    descriptor::check_kafka_property(name, value)
                        .map_err(|e| SqlError::Plan(format!("table '{table}': {e}")))?;
                }
                TenantCheck::TenantScoped => {
                    *value = format!("{}-{value}", self.tenant.name());
                }
            }
        }
        Ok(())
    }

    /// Refuses Kafka brokers (a comma-separated list) outside the tenant's egress hosts.
    pub(crate) fn check_brokers(&self, context: &str, servers: &str) -> Result<()> {
        Ok(self
            .egress
            .check_brokers(&format!("{context}: broker"), servers)?)
    }
}

impl std::fmt::Debug for Confinement {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Confinement")
            .field("plugin_dir", &self.plugin_dir)
            .field("tenant", &self.tenant.name())
            .finish()
    }
}

/// The plugins of a session: the host (made on first use), the tenant whose limits they
/// run under, and the aggregates the planner runs natively.
pub(crate) struct SessionPlugins {
    /// Set for a tenant's job on a server.
    pub(crate) confined: Option<Confinement>,
    host: Option<Arc<PluginHost>>,
    options: HostOptions,
    pub(crate) limits: TenantLimits,
    tenant: Option<Arc<PluginTenant>>,
    pub(crate) aggregates: BTreeMap<String, Arc<dyn AggregateFunction>>,
    /// Plugins loaded so far, by path: a component is compiled once per session, however
    /// many functions and tables use it.
    loaded: BTreeMap<String, Arc<fungi_plugin::Plugin>>,
    /// What a failing plugin call does to its batch.
    pub(crate) on_error: fungi_reliability::OnFailure,
    /// Registered plugin scalar functions.
    pub(crate) scalars: std::collections::BTreeSet<String>,
    /// Rows per plugin call (the planner coalesces smaller batches).
    pub(crate) batch_rows: usize,
}

impl Default for SessionPlugins {
    fn default() -> Self {
        SessionPlugins {
            confined: None,
            host: None,
            options: HostOptions {
                cache_dir: std::env::var_os("FUNGI_PLUGIN_CACHE").map(Into::into),
                ..HostOptions::default()
            },
            limits: TenantLimits::default(),
            tenant: None,
            aggregates: BTreeMap::new(),
            loaded: BTreeMap::new(),
            on_error: fungi_reliability::OnFailure::Fail,
            scalars: std::collections::BTreeSet::new(),
            batch_rows: 8192,
        }
    }
}

/// Options passed to a plugin.
type PluginConfig = Vec<(String, String)>;

/// The connector name of tables read or written by a plugin:
/// `WITH ('connector' = 'wasm', 'plugin' = 'path.wasm', ...the plugin's options)`.
pub(crate) const WASM_CONNECTOR: &str = "wasm";

/// What a function is written in.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Language {
    /// A Wasm component (sandboxed).
    Wasm,
    /// Native Python (`fungi-python`; not sandboxed).
    Python,
}

/// A parsed `CREATE FUNCTION ... LANGUAGE WASM|PYTHON` or `LOAD PLUGIN`.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct PluginStatement {
    /// WASM or PYTHON.
    pub(crate) language: Language,
    /// The component file (Wasm), or the Python file or directory (empty: the module is
    /// importable as it is).
    pub(crate) path: String,
    /// (SQL name, plugin function); `None`: every function under its own name.
    pub(crate) function: Option<(String, String)>,
    /// A Python function's inline body (`AS $$ ... $$`).
    pub(crate) inline: Option<InlinePython>,
}

/// The module of `CREATE FUNCTION name [(args)] [RETURNS type] LANGUAGE PYTHON AS $$...$$`.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct InlinePython {
    /// The module's source.
    pub(crate) code: String,
    /// `RETURNS type`: marks an undecorated function as a row-wise UDF of that type (as
    /// RisingWave's and PostgreSQL's inline functions).
    pub(crate) returns: Option<String>,
}

/// The SQL name and language (`wasm` or `python`) of a single `CREATE FUNCTION`
/// statement, for a function catalog that stores statements (a trailing `;` is allowed).
pub fn function_statement(sql: &str) -> Result<(String, &'static str)> {
    let statements = crate::text::split_statements(sql);
    let [stmt] = statements.as_slice() else {
        return Err(SqlError::Plan(format!(
            "expected one CREATE FUNCTION statement, got {}",
            statements.len()
        )));
    };
    let starts_load = stmt
        .split_whitespace()
        .next()
        .is_some_and(|w| w.eq_ignore_ascii_case("LOAD"));
    if !is_plugin_statement(stmt) || starts_load {
        return Err(SqlError::Plan(
            "expected CREATE FUNCTION name ... LANGUAGE WASM|PYTHON ... (one function per \
             registration)"
                .into(),
        ));
    }
    let parsed = parse(stmt)?;
    let (name, _) = parsed.function.expect("CREATE FUNCTION names its function");
    let language = match parsed.language {
        Language::Wasm => "wasm",
        Language::Python => "python",
    };
    Ok((name, language))
}

/// Whether `stmt` is a `CREATE FUNCTION` or `LOAD PLUGIN`.
pub(crate) fn is_plugin_statement(stmt: &str) -> bool {
    let words: Vec<String> = stmt
        .split_whitespace()
        .take(4)
        .map(|w| w.to_ascii_uppercase())
        .collect();
    let w: Vec<&str> = words.iter().map(String::as_str).collect();
    matches!(
        w.as_slice(),
        ["LOAD", "PLUGIN", ..]
            | ["CREATE", "FUNCTION", ..]
            | ["CREATE", "TEMPORARY", "FUNCTION", ..]
            | ["CREATE", "TEMPORARY", "SYSTEM", "FUNCTION"]
            | ["CREATE", "SYSTEM", "FUNCTION", ..]
    )
}

/// Parses a plugin statement.
pub(crate) fn parse(stmt: &str) -> Result<PluginStatement> {
    let quoted = |from: usize| -> Option<String> {
        let rest = &stmt[from..];
        let start = rest.find('\'')?;
        let end = rest[start + 1..].find('\'')? + start + 1;
        Some(rest[start + 1..end].to_string())
    };
    if stmt
        .split_whitespace()
        .next()
        .is_some_and(|w| w.eq_ignore_ascii_case("LOAD"))
    {
        let path = quoted(0).ok_or_else(|| {
            SqlError::Plan("LOAD PLUGIN needs a file: LOAD PLUGIN 'path/to/plugin.wasm'".into())
        })?;
        return Ok(PluginStatement {
            language: Language::Wasm,
            path,
            function: None,
            inline: None,
        });
    }
    let language = find_keyword(stmt, "LANGUAGE", 0).ok_or_else(|| {
        SqlError::unsupported(
            "CREATE FUNCTION without LANGUAGE WASM",
            "write CREATE FUNCTION name [AS 'plugin_function'] LANGUAGE WASM USING 'plugin.wasm'",
        )
    })?;
    let lang = stmt[language + "LANGUAGE".len()..]
        .split_whitespace()
        .next()
        .unwrap_or("");
    let language_at = language;
    let language = if lang.eq_ignore_ascii_case("WASM") {
        Language::Wasm
    } else if lang.eq_ignore_ascii_case("PYTHON") {
        Language::Python
    } else {
        return Err(SqlError::unsupported(
            format!("functions in LANGUAGE {lang}"),
            "build the function as a Wasm plugin (fungi-sdk) and use LANGUAGE WASM USING \
             'plugin.wasm', or write it in Python (LANGUAGE PYTHON)",
        ));
    };
    let path = match (find_keyword(stmt, "USING", 0), language) {
        (Some(using), _) => quoted(using).ok_or_else(|| {
            SqlError::Plan("USING needs the file in quotes: USING 'plugin.wasm'".into())
        })?,
        (None, Language::Python) => String::new(),
        (None, Language::Wasm) => {
            return Err(SqlError::Plan(
                "CREATE FUNCTION ... LANGUAGE WASM needs USING 'plugin.wasm'".into(),
            ));
        }
    };
    let function_kw = find_keyword(stmt, "FUNCTION", 0).expect("checked by is_plugin_statement");
    let mut words = stmt[function_kw + "FUNCTION".len()..].split_whitespace();
    let mut name = words.next().unwrap_or("");
    if name.eq_ignore_ascii_case("IF") {
        // IF NOT EXISTS
        words.next();
        words.next();
        name = words.next().unwrap_or("");
    }
    let name = unquote(name.split('(').next().unwrap_or_default());
    if name.is_empty() || name.eq_ignore_ascii_case("LANGUAGE") {
        return Err(SqlError::Plan("CREATE FUNCTION needs a name".into()));
    }
    let as_at = find_keyword(stmt, "AS", function_kw);
    let body = as_at.and_then(|at| crate::text::dollar_quoted(&stmt[at + 2..]));
    let inline = match body {
        None => None,
        Some(_) if language != Language::Python => {
            return Err(SqlError::Plan(format!(
                "CREATE FUNCTION {name}: an inline body (AS $$ ... $$) is Python; a Wasm \
                 function comes from its component (USING 'plugin.wasm')"
            )));
        }
        Some(_) if !path.is_empty() => {
            return Err(SqlError::Plan(format!(
                "CREATE FUNCTION {name}: give either an inline body (AS $$ ... $$) or a file \
                 (USING '{path}'), not both"
            )));
        }
        Some((code, _)) => {
            let returns = find_keyword(stmt, "RETURNS", function_kw)
                .filter(|&at| at < language_at.min(as_at.unwrap_or(usize::MAX)))
                .map(|at| {
                    let end = language_at.min(as_at.unwrap_or(usize::MAX));
                    stmt[at + "RETURNS".len()..end.max(at + "RETURNS".len())]
                        .trim()
                        .to_string()
                })
                .filter(|t| !t.is_empty());
            Some(InlinePython {
                code: code.to_string(),
                returns,
            })
        }
    };
    let target = match as_at {
        Some(at) if at < language_at && inline.is_none() => {
            quoted(at).unwrap_or_else(|| name.clone())
        }
        _ => name.clone(),
    };
    if language == Language::Python && path.is_empty() && inline.is_none() && !target.contains('.')
    {
        return Err(SqlError::Plan(format!(
            "CREATE FUNCTION {name} ... LANGUAGE PYTHON: name the function as \
             AS 'module.function', or give its file with USING 'file.py'"
        )));
    }
    Ok(PluginStatement {
        language,
        path,
        function: Some((name, target)),
        inline,
    })
}

impl SessionPlugins {
    fn host(&mut self) -> Result<Arc<PluginHost>> {
        if let Some(c) = &self.confined {
            return Ok(c.host.clone());
        }
        if let Some(h) = &self.host {
            return Ok(h.clone());
        }
        let h = PluginHost::new(self.options.clone()).map_err(plugin_error)?;
        self.host = Some(h.clone());
        Ok(h)
    }

    /// The plugin at `path` (loaded on first use).
    fn load(&mut self, path: &str) -> Result<Arc<fungi_plugin::Plugin>> {
        if let Some(p) = self.loaded.get(path) {
            return Ok(p.clone());
        }
        let file = match &self.confined {
            None => std::path::PathBuf::from(path),
            Some(c) => {
                let name = path.strip_suffix(".wasm").unwrap_or(path);
                let valid = !name.is_empty()
                    && name.bytes().all(|b| {
                        b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-' || b == b'_'
                    });
                if !valid {
                    return Err(SqlError::Plan(format!(
                        "plugin '{path}': on a server a plugin is named by the name it was \
                         uploaded under (USING 'name'), not by a path"
                    )));
                }
                let file = c.plugin_dir.join(format!("{name}.wasm"));
                if !file.exists() {
                    return Err(SqlError::Plan(format!(
                        "tenant '{}' has no plugin '{name}'; upload it first (PUT \
                         /api/v1/plugins/{name}, or `fungi plugin upload`)",
                        c.tenant.name()
                    )));
                }
                file
            }
        };
        let plugin = self.host()?.load_file(&file).map_err(plugin_error)?;
        self.loaded.insert(path.to_string(), plugin.clone());
        Ok(plugin)
    }

    /// The session's tenant, if a plugin was loaded.
    pub(crate) fn current_tenant(&self) -> Option<Arc<PluginTenant>> {
        match &self.confined {
            Some(c) => Some(c.tenant.clone()),
            None => self.tenant.clone(),
        }
    }

    /// The session's tenant (made when the first plugin loads, with the limits SET so
    /// far).
    fn tenant(&mut self) -> Arc<PluginTenant> {
        if let Some(c) = &self.confined {
            return c.tenant.clone();
        }
        self.tenant
            .get_or_insert_with(|| Arc::new(PluginTenant::new("session", self.limits.clone())))
            .clone()
    }

    /// Changes the limits; plugins loaded later use them.
    pub(crate) fn set_limits(&mut self, limits: TenantLimits) {
        self.limits = limits;
        self.tenant = None;
    }

    /// The plugin of a `wasm` table and the options it is configured with.
    fn table_plugin(
        &mut self,
        table: &crate::catalog::TableDef,
    ) -> Result<(Arc<fungi_plugin::Plugin>, PluginConfig)> {
        let path = table
            .options
            .iter()
            .find(|(k, _)| k == "plugin")
            .map(|(_, v)| v.clone())
            .ok_or_else(|| {
                SqlError::Plan(format!(
                    "table '{}' (connector 'wasm') needs 'plugin' = 'path/to/connector.wasm'",
                    table.name
                ))
            })?;
        let plugin = self.load(&path)?;
        let config = table
            .options
            .iter()
            .filter(|(k, _)| k != "plugin")
            .cloned()
            .collect();
        Ok((plugin, config))
    }

    /// The source of a `wasm` table.
    pub(crate) fn source(
        &mut self,
        table: &crate::catalog::TableDef,
    ) -> Result<fungi_execution::source::SourceFactory> {
        let (plugin, config) = self.table_plugin(table)?;
        let source =
            fungi_plugin::PluginSource::new(plugin, self.tenant(), config).map_err(plugin_error)?;
        source.factory(table.source_schema()).map_err(plugin_error)
    }

    /// The sink of a `wasm` table.
    pub(crate) fn sink(
        &mut self,
        table: &crate::catalog::TableDef,
    ) -> Result<fungi_execution::operator::OperatorFactory> {
        let (plugin, config) = self.table_plugin(table)?;
        let sink =
            fungi_plugin::PluginSink::new(plugin, self.tenant(), config).map_err(plugin_error)?;
        Ok(sink.factory())
    }

    /// Loads the plugin of `stmt` and registers its functions with `ctx`. Returns the
    /// registered SQL names.
    pub(crate) fn register(
        &mut self,
        stmt: &PluginStatement,
        ctx: &datafusion::prelude::SessionContext,
    ) -> Result<Vec<String>> {
        if stmt.language == Language::Python {
            return self.register_python(stmt, ctx);
        }
        let plugin = self.load(&stmt.path)?;
        let tenant = self.tenant();
        let wanted: Vec<(String, String)> = match &stmt.function {
            Some((sql, target)) => {
                plugin.function(target).map_err(plugin_error)?;
                vec![(sql.clone(), target.clone())]
            }
            None => plugin
                .functions()
                .iter()
                .map(|f| (f.name.clone(), f.name.clone()))
                .collect(),
        };
        for (sql, target) in &wanted {
            match plugin.kind() {
                PluginKind::Scalar => {
                    let udf = ScalarUdf::new(plugin.clone(), tenant.clone(), target, Vec::new())
                        .map_err(plugin_error)?;
                    ctx.register_udf(ScalarUDF::new_from_impl(WasmScalar::new(sql, udf)));
                    self.scalars.insert(sql.clone());
                }
                PluginKind::Aggregate => {
                    let udaf =
                        AggregateUdf::new(plugin.clone(), tenant.clone(), target, Vec::new())
                            .map_err(plugin_error)?;
                    let udaf = Arc::new(udaf);
                    ctx.register_udaf(AggregateUDF::new_from_impl(WasmAggregate::new(
                        sql,
                        udaf.clone(),
                    )));
                    self.aggregates.insert(sql.clone(), udaf);
                }
                PluginKind::Table => {
                    return Err(SqlError::unsupported(
                        format!(
                            "table function plugin '{}' in SQL (LATERAL TABLE)",
                            plugin.name()
                        ),
                        "call it from the DataStream API (DataStream::with_plugin_table); in \
                         SQL, use scalar or aggregate plugins",
                    ));
                }
                other => {
                    return Err(SqlError::unsupported(
                        format!("plugin '{}' ({other}) as a function", plugin.name()),
                        "use scalar or aggregate plugins in CREATE FUNCTION / LOAD PLUGIN; \
                         connectors in CREATE TABLE ... WITH ('connector' = 'wasm')",
                    ));
                }
            }
        }
        Ok(wanted.into_iter().map(|w| w.0).collect())
    }
}

impl SessionPlugins {
    /// Registers a native Python function (scalar or aggregate).
    fn register_python(
        &mut self,
        stmt: &PluginStatement,
        ctx: &datafusion::prelude::SessionContext,
    ) -> Result<Vec<String>> {
        let (sql, target) = stmt
            .function
            .clone()
            .expect("CREATE FUNCTION names its function");
        let mut path = std::path::PathBuf::from(&stmt.path);
        if let Some(c) = &self.confined {
            if !c.allow_native_python {
                return Err(SqlError::Plan(format!(
                    "native Python functions are not allowed for tenant '{}' (its quota \
                     allow_unsandboxed_python is off): ship '{sql}' as a Wasm plugin instead",
                    c.tenant.name()
                )));
            }
            if !stmt.path.is_empty() {
                path = path_inside(&c.files_dir, &stmt.path).ok_or_else(|| {
                    SqlError::Plan(format!(
                        "USING '{}': on a server a Python file is relative to the tenant's \
                         files directory, without '..'",
                        stmt.path
                    ))
                })?;
            }
        }
        let source = if let Some(inline) = &stmt.inline {
            let mut code = inline.code.clone();
            if let Some(returns) = &inline.returns {
                // RETURNS marks an undecorated function as a row-wise UDF.
                code.push_str(&format!(
                    "\n\nimport fungi as _fungi\nif not hasattr({target}, '__fungi__'):\n    \
                     {target} = _fungi.udf(returns={returns:?}, mode='row')({target})\n"
                ));
            }
            fungi_python::Source::Code {
                module: format!("inline_{sql}"),
                code,
            }
        } else if stmt.path.is_empty() {
            fungi_python::Source::Module { search_path: None }
        } else if fungi_python::is_python_file(&path) {
            fungi_python::Source::File(path)
        } else {
            fungi_python::Source::Module {
                search_path: Some(path),
            }
        };
        let loaded = fungi_python::load(&source, &target, &sql)
            .map_err(|e| SqlError::Plan(e.to_string()))?;
        match loaded {
            fungi_python::Loaded::Scalar(f) => {
                ctx.register_udf(ScalarUDF::new_from_impl(crate::python::PythonScalar::new(
                    f,
                )));
                self.scalars.insert(sql.clone());
            }
            fungi_python::Loaded::Aggregate(a) => {
                ctx.register_udaf(AggregateUDF::new_from_impl(
                    crate::python::PythonAggregateUdf::new(a.clone()),
                ));
                self.aggregates.insert(
                    sql.clone(),
                    Arc::new(crate::python::PythonAggregateFunction(a)),
                );
            }
            fungi_python::Loaded::Table(_) => {
                return Err(SqlError::unsupported(
                    format!("the Python table function '{sql}' in SQL"),
                    "call it from the DataStream API (DataStream::with_python_table); in SQL, \
                     table functions (LATERAL TABLE) are not planned yet",
                ));
            }
        }
        Ok(vec![sql])
    }
}

/// The `SET 'plugin.*'` keys.
pub(crate) const LIMIT_KEYS: &[&str] = &[
    "plugin.call-timeout",
    "plugin.cpu-budget-per-second",
    "plugin.memory-per-instance",
    "plugin.memory-total",
    "plugin.max-instances",
    "plugin.max-host-resources",
    "plugin.max-host-resources-per-instance",
    "plugin.max-log-bytes-per-second",
    "plugin.max-output",
    "plugin.on-error",
    "plugin.batch-rows",
    "plugin.grant-directory",
    "plugin.allow-network",
];

/// Applies `SET 'key' = 'value'` for a plugin limit (durations as `500 ms`, sizes as
/// `64 mb`).
pub(crate) fn set_limit(limits: &mut TenantLimits, key: &str, value: &str) -> Result<()> {
    let bad = |what: &str| SqlError::Plan(format!("SET '{key}': '{value}' is not {what}"));
    let duration = || {
        fungi_connector::options::parse_duration(value).map_err(|_| bad("a duration (e.g. 500 ms)"))
    };
    let size = || -> Result<usize> {
        let v = value.trim().to_ascii_lowercase();
        let split = v.find(|c: char| !c.is_ascii_digit()).unwrap_or(v.len());
        let n: usize = v[..split]
            .trim()
            .parse()
            .map_err(|_| bad("a size (e.g. 64 mb)"))?;
        let unit = match v[split..].trim() {
            "" | "b" => 1,
            "kb" | "k" | "kib" => 1 << 10,
            "mb" | "m" | "mib" => 1 << 20,
            "gb" | "g" | "gib" => 1 << 30,
            _ => return Err(bad("a size (e.g. 64 mb)")),
        };
        Ok(n * unit)
    };
    match key {
        "plugin.call-timeout" => {
            limits.call_timeout = match value.trim() {
                "none" | "NONE" => None,
                _ => Some(duration()?),
            }
        }
        "plugin.cpu-budget-per-second" => limits.cpu_budget_per_second = duration()?,
        "plugin.memory-per-instance" => limits.memory_per_instance = size()?,
        "plugin.memory-total" => limits.memory_total = size()?,
        "plugin.max-output" => limits.max_output_bytes = size()?,
        "plugin.grant-directory" => {
            // 'host/path=/guest/path' (read-write) or 'host/path=/guest/path:ro'.
            let (host, guest) = value
                .split_once('=')
                .ok_or_else(|| bad("of the form 'host/dir=/guest/dir[:ro]'"))?;
            let (guest, writable) = match guest.strip_suffix(":ro") {
                Some(g) => (g, false),
                None => (guest.strip_suffix(":rw").unwrap_or(guest), true),
            };
            limits
                .directories
                .push((host.trim().into(), guest.trim().to_string(), writable));
        }
        "plugin.allow-network" => {
            for addr in value.split(',').map(str::trim).filter(|a| !a.is_empty()) {
                addr.parse::<std::net::SocketAddr>()
                    .map_err(|_| bad("a list of ip:port addresses"))?;
                limits.network_allow.push(addr.to_string());
            }
        }
        "plugin.max-instances" => {
            limits.max_instances = value.trim().parse().map_err(|_| bad("a number"))?
        }
        "plugin.max-host-resources" => {
            limits.max_host_resources = value.trim().parse().map_err(|_| bad("a number"))?
        }
        "plugin.max-host-resources-per-instance" => {
            limits.max_host_resources_per_instance =
                value.trim().parse().map_err(|_| bad("a number"))?
        }
        "plugin.max-log-bytes-per-second" => limits.max_log_bytes_per_second = size()?,
        _ => {
            return Err(SqlError::Plan(format!(
                "unknown setting '{key}'; plugin limits: {}",
                LIMIT_KEYS.join(", ")
            )));
        }
    }
    Ok(())
}

fn plugin_error(e: fungi_plugin::PluginError) -> SqlError {
    SqlError::Plan(e.to_string())
}

fn df_volatility(v: Volatility) -> DfVolatility {
    match v {
        Volatility::Immutable => DfVolatility::Immutable,
        Volatility::Stable => DfVolatility::Stable,
        Volatility::Volatile => DfVolatility::Volatile,
    }
}

/// A plugin scalar function as a DataFusion UDF.
#[derive(Debug)]
struct WasmScalar {
    name: String,
    udf: Arc<ScalarUdf>,
    signature: Signature,
}

impl WasmScalar {
    fn new(name: &str, udf: ScalarUdf) -> Self {
        let sig = udf.signature();
        let signature = Signature::exact(
            sig.arguments
                .iter()
                .map(|f| f.data_type().clone())
                .collect(),
            df_volatility(sig.volatility),
        );
        WasmScalar {
            name: name.to_string(),
            udf: Arc::new(udf),
            signature,
        }
    }
}

impl PartialEq for WasmScalar {
    fn eq(&self, other: &Self) -> bool {
        self.name == other.name && Arc::ptr_eq(&self.udf, &other.udf)
    }
}
impl Eq for WasmScalar {}
impl std::hash::Hash for WasmScalar {
    fn hash<H: std::hash::Hasher>(&self, state: &mut H) {
        self.name.hash(state);
    }
}

impl ScalarUDFImpl for WasmScalar {
    fn name(&self) -> &str {
        &self.name
    }

    fn signature(&self) -> &Signature {
        &self.signature
    }

    fn return_type(&self, _arg_types: &[DataType]) -> DfResult<DataType> {
        Ok(self.udf.signature().returns.data_type().clone())
    }

    fn invoke_with_args(&self, args: ScalarFunctionArgs) -> DfResult<ColumnarValue> {
        let (arrays, rows) = crate::udfs::argument_arrays(&args)?;
        match self.udf.call(&arrays, rows) {
            Ok(a) => Ok(ColumnarValue::Array(a)),
            // Typed, for the operators' error policy.
            Err(e) => Err(crate::operators::FunctionFailure::plugin(&e)),
        }
    }
}

/// A plugin aggregate as a DataFusion UDAF, for planning. Fungi's streaming operators
/// run it through its own accumulators; DataFusion never executes it.
#[derive(Debug)]
struct WasmAggregate {
    name: String,
    udaf: Arc<AggregateUdf>,
    signature: Signature,
}

impl WasmAggregate {
    fn new(name: &str, udaf: Arc<AggregateUdf>) -> Self {
        let signature = Signature::exact(
            udaf.signature()
                .arguments
                .iter()
                .map(|f| f.data_type().clone())
                .collect(),
            DfVolatility::Immutable,
        );
        WasmAggregate {
            name: name.to_string(),
            udaf,
            signature,
        }
    }
}

impl PartialEq for WasmAggregate {
    fn eq(&self, other: &Self) -> bool {
        self.name == other.name && Arc::ptr_eq(&self.udaf, &other.udaf)
    }
}
impl Eq for WasmAggregate {}
impl std::hash::Hash for WasmAggregate {
    fn hash<H: std::hash::Hasher>(&self, state: &mut H) {
        self.name.hash(state);
    }
}

impl AggregateUDFImpl for WasmAggregate {
    fn name(&self) -> &str {
        &self.name
    }

    fn signature(&self) -> &Signature {
        &self.signature
    }

    fn return_type(&self, _arg_types: &[DataType]) -> DfResult<DataType> {
        Ok(self.udaf.signature().returns.data_type().clone())
    }

    fn accumulator(&self, _acc_args: AccumulatorArgs) -> DfResult<Box<dyn Accumulator>> {
        not_impl_err!(
            "the plugin aggregate {} runs in Fungi's streaming operators, not in DataFusion's executor",
            self.name
        )
    }

    fn state_fields(&self, args: StateFieldsArgs) -> DfResult<Vec<FieldRef>> {
        Ok(vec![Arc::new(arrow::datatypes::Field::new(
            format!("{}[state]", args.name),
            DataType::Binary,
            true,
        ))])
    }
}

/// The plugin statement's outcome message.
pub(crate) fn registered_message(plugin: &str, names: &[String]) -> String {
    format!("plugin {plugin}: registered {}", names.join(", "))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sets_limits() {
        let mut l = TenantLimits::default();
        set_limit(&mut l, "plugin.memory-per-instance", "16 MB").unwrap();
        set_limit(&mut l, "plugin.call-timeout", "250 ms").unwrap();
        assert_eq!(l.memory_per_instance, 16 << 20);
        assert_eq!(l.call_timeout, Some(std::time::Duration::from_millis(250)));
        assert!(set_limit(&mut l, "plugin.max-instances", "many").is_err());
        assert!(set_limit(&mut l, "plugin.nope", "1").is_err());
    }

    #[test]
    fn parses_create_function_and_load_plugin() {
        assert!(is_plugin_statement(
            "CREATE FUNCTION f LANGUAGE WASM USING 'a.wasm'"
        ));
        assert!(is_plugin_statement("LOAD PLUGIN 'a.wasm'"));
        assert!(!is_plugin_statement("CREATE TABLE t (a INT)"));
        assert_eq!(
            parse("CREATE FUNCTION dist AS 'haversine' LANGUAGE WASM USING 'geo.wasm'").unwrap(),
            PluginStatement {
                language: Language::Wasm,
                path: "geo.wasm".into(),
                function: Some(("dist".into(), "haversine".into())),
                inline: None,
            }
        );
        assert_eq!(
            parse("CREATE FUNCTION f AS 'pkg.mod.fn' LANGUAGE PYTHON").unwrap(),
            PluginStatement {
                language: Language::Python,
                path: String::new(),
                function: Some(("f".into(), "pkg.mod.fn".into())),
                inline: None,
            }
        );
        assert_eq!(
            parse("CREATE TEMPORARY FUNCTION IF NOT EXISTS gcd LANGUAGE WASM USING JAR 'm.wasm'")
                .unwrap()
                .function,
            Some(("gcd".into(), "gcd".into()))
        );
        assert_eq!(parse("LOAD PLUGIN 'x.wasm'").unwrap().function, None);
        let inline = parse(
            "CREATE FUNCTION twice(x BIGINT) RETURNS BIGINT LANGUAGE PYTHON AS $$\ndef twice(x):\n    return 'it''s' and 2 * x\n$$",
        )
        .unwrap();
        assert_eq!(inline.function, Some(("twice".into(), "twice".into())));
        assert_eq!(
            inline.inline,
            Some(InlinePython {
                code: "\ndef twice(x):\n    return 'it''s' and 2 * x\n".into(),
                returns: Some("BIGINT".into()),
            })
        );
        let e = parse("CREATE FUNCTION f LANGUAGE WASM AS $$ x $$ USING 'a.wasm'")
            .unwrap_err()
            .to_string();
        assert!(e.contains("an inline body (AS $$ ... $$) is Python"), "{e}");
        let e = parse("CREATE FUNCTION f AS 'com.acme.F' LANGUAGE JAVA USING JAR 'f.jar'")
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("LANGUAGE JAVA") && e.contains("LANGUAGE WASM"),
            "{e}"
        );
    }
}
