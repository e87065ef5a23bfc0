//! A SQL session: a catalog of tables and views, and the statements run against it.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use datafusion::catalog::MemTable;
use datafusion::common::DFSchema;
use datafusion::execution::SessionState;
use datafusion::logical_expr::{DdlStatement, LogicalPlan, WriteOp};
use datafusion::prelude::{SessionConfig, SessionContext};
use fungi_common::config::{JobConfig, RestartStrategy};
use fungi_connector::registry;
use fungi_execution::graph::{JobGraph, Partitioning};
use fungi_execution::operator::OperatorFactory;
use fungi_execution::plan::PhysicalPlan;

use crate::catalog::TableDef;
use crate::ddl::parse_create_table;
use crate::error::{Result, SqlError};
use crate::planner::{PlanSettings, Planned, Planner};
use crate::plugins::{self, SessionPlugins};
use crate::statement::StatementKind;
use crate::text::{closest, split_statements, unquote};
use crate::tvf::rewrite;
use crate::udfs::{self, Mod, Proctime, WindowMarker};

/// What a statement produced.
#[derive(Debug)]
pub enum Outcome {
    /// A DDL or SET statement took effect; the message says what happened.
    Done(String),
    /// `INSERT INTO`: a complete job, ready to run.
    Insert(JobGraph),
    /// A bare `SELECT`: a job without a sink; attach one with [`Query::with_sink`].
    Query(Query),
    /// `EXPLAIN`: the streaming job graph as text.
    Explain(String),
}

/// A planned `SELECT` whose results still need somewhere to go.
#[derive(Debug)]
pub struct Query {
    graph: JobGraph,
    output: Planned,
    /// The result columns.
    pub schema: arrow::datatypes::SchemaRef,
}

impl Query {
    /// Whether the rows are a changelog (a last column with each row's change kind).
    pub fn is_updating(&self) -> bool {
        self.output.updating
    }

    /// The job with `sink` (one subtask, so rows print in order per window) attached.
    pub fn with_sink(mut self, sink: OperatorFactory, name: &str) -> JobGraph {
        let node = self.graph.add_operator(name, 1, sink);
        let edge = if self.output.parallelism == 1 {
            Partitioning::Forward
        } else {
            Partitioning::Rebalance
        };
        self.graph.connect(self.output.node, node, edge);
        self.graph
    }
}

/// Plans Flink-style streaming SQL into Fungi jobs.
pub struct SqlSession {
    ctx: SessionContext,
    tables: BTreeMap<String, TableDef>,
    config: JobConfig,
    jobs: usize,
    settings: PlanSettings,
    plugins: SessionPlugins,
    dead_letter: DeadLetterSettings,
}

/// `SET 'dead-letter.*'`: where a job's dead letters are written besides its ring.
#[derive(Debug, Clone, Default)]
struct DeadLetterSettings {
    /// `dead-letter.path`: a JSON-lines file.
    path: Option<String>,
    /// `dead-letter.kafka.topic`.
    kafka_topic: Option<String>,
    /// `dead-letter.kafka.bootstrap-servers`.
    kafka_servers: Option<String>,
}

impl std::fmt::Debug for SqlSession {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SqlSession")
            .field("tables", &self.tables.keys())
            .finish()
    }
}

impl Default for SqlSession {
    fn default() -> Self {
        Self::new(JobConfig::default())
    }
}

impl SqlSession {
    /// A session whose jobs use `config`.
    pub fn new(config: JobConfig) -> Self {
        let mut options = SessionConfig::new();
        // Flink's identifiers are case-sensitive; Flink orders NULL as the smallest value
        // (first for ASC, last for DESC: Top-N by `price DESC` never keeps a NULL price
        // ahead of a real one).
        crate::flink_options(&mut options);
        let ctx = SessionContext::new_with_config(options);
        for udf in WindowMarker::udfs() {
            ctx.register_udf(udf);
        }
        ctx.register_udf(Mod::udf());
        ctx.register_udf(Proctime::udf());
        for udf in crate::udfs::FlinkString::udfs() {
            ctx.register_udf(udf);
        }
        for udf in crate::flink_functions::udfs() {
            ctx.register_udf(udf);
        }
        ctx.register_udaf(crate::flink_aggregates::FlinkAvg::udaf());
        ctx.register_udf(crate::names::Named::udf());
        SqlSession {
            ctx,
            tables: BTreeMap::new(),
            config,
            jobs: 0,
            settings: PlanSettings::default(),
            dead_letter: DeadLetterSettings::default(),
            plugins: SessionPlugins::default(),
        }
    }

    /// Confines the session to a server tenant's plugins and limits (see
    /// [`Confinement`]).
    pub fn confine(&mut self, confinement: crate::plugins::Confinement) {
        self.plugins.confined = Some(confinement);
    }

    /// The tenant the session's plugins run as (their limits, usage and metrics), once
    /// a plugin was loaded.
    pub fn plugin_tenant(&self) -> Option<Arc<fungi_plugin::PluginTenant>> {
        self.plugins.current_tenant()
    }

    /// The job configuration (changed by `SET`).
    pub fn config(&self) -> &JobConfig {
        &self.config
    }

    /// The declared tables.
    pub fn tables(&self) -> impl Iterator<Item = &TableDef> {
        self.tables.values()
    }

    /// Runs every statement of a script, in order.
    pub async fn execute_script(&mut self, sql: &str) -> Result<Vec<Outcome>> {
        let mut out = Vec::new();
        for (i, stmt) in split_statements(sql).iter().enumerate() {
            let outcome = self.execute(stmt).await.map_err(|e| match e {
                SqlError::Plan(m) => SqlError::Plan(format!("statement {}: {m}", i + 1)),
                other => other,
            })?;
            out.push(outcome);
        }
        Ok(out)
    }

    /// Runs one statement. Only the statements of [`crate::statement`]'s allow-list are
    /// taken, and none of them runs a query or touches a file while it is planned.
    pub async fn execute(&mut self, stmt: &str) -> Result<Outcome> {
        // Comments go first: what follows reads the statement's leading words.
        let stmt = crate::text::strip_comments(stmt);
        let stmt = stmt.trim().trim_end_matches(';').trim();
        crate::limits::check_text(stmt)?;
        let kind = crate::statement::classify(stmt)?;
        match kind {
            StatementKind::CreateFunction | StatementKind::LoadPlugin => {
                let parsed = plugins::parse(stmt)?;
                let names = self.plugins.register(&parsed, &self.ctx)?;
                Ok(Outcome::Done(plugins::registered_message(
                    &parsed.path,
                    &names,
                )))
            }
            StatementKind::CreateTable => self.create_table(stmt).await,
            StatementKind::CreateView => self.create_view(stmt).await,
            StatementKind::Drop if self.plugins.confined.is_some() => Err(SqlError::Plan(
                "the statement 'DROP' is not allowed in a job submitted to a server: a job's \
                 tables and views live only as long as its script"
                    .into(),
            )),
            StatementKind::Drop => {
                let sql = rewrite(stmt)?;
                self.ctx
                    .sql_with_options(&sql, ddl_only())
                    .await
                    .map_err(|e| self.explain_error(e))?;
                let name = stmt
                    .split_whitespace()
                    .last()
                    .map(unquote)
                    .unwrap_or_default();
                self.tables.remove(&name);
                Ok(Outcome::Done("OK".into()))
            }
            StatementKind::Set => self.set(stmt),
            StatementKind::Explain => {
                let inner = stmt[7..].trim();
                let graph = match self.plan_statement(inner).await? {
                    Outcome::Insert(g) => g,
                    Outcome::Query(q) => {
                        q.with_sink(registry::sink("blackhole", &Default::default())?, "print")
                    }
                    _ => return Err(SqlError::Plan("EXPLAIN takes a SELECT or INSERT".into())),
                };
                Ok(Outcome::Explain(PhysicalPlan::new(graph)?.explain()))
            }
            StatementKind::Query | StatementKind::Insert => self.plan_statement(stmt).await,
        }
    }

    /// `CREATE VIEW`: DataFusion keeps the view's plan; nothing runs. The statement is
    /// parsed first and must be a plain (not materialized) view.
    async fn create_view(&mut self, stmt: &str) -> Result<Outcome> {
        let sql = rewrite(stmt)?;
        let state = self.state();
        let dialect = state.config().options().sql_parser.dialect;
        let parsed = state.sql_to_statement(&sql, &dialect)?;
        let is_view = matches!(
            &parsed,
            datafusion::sql::parser::Statement::Statement(s)
                if matches!(
                    s.as_ref(),
                    datafusion::sql::sqlparser::ast::Statement::CreateView(v) if !v.materialized
                )
        );
        if !is_view {
            return Err(SqlError::Plan(format!(
                "the statement is not a CREATE VIEW: {}",
                crate::statement::ALLOWED
            )));
        }
        self.ctx
            .sql_with_options(&sql, ddl_only())
            .await
            .map_err(|e| self.explain_error(e))?;
        Ok(Outcome::Done("OK".into()))
    }

    fn set(&mut self, stmt: &str) -> Result<Outcome> {
        let body = stmt[3..].trim();
        let (k, v) = body
            .split_once('=')
            .ok_or_else(|| SqlError::Plan(format!("SET needs 'key' = 'value', got '{body}'")))?;
        let (k, v) = (unquote(k), unquote(v));
        if self.plugins.confined.is_some() && !tenant_may_set(&k) {
            let why = if k.starts_with("plugin.") {
                "plugin limits come from the tenant's quotas"
            } else {
                "the server decides where state and checkpoints are kept, and tenants set \
                 only job settings"
            };
            return Err(SqlError::Plan(format!(
                "SET '{k}' is not allowed in a job submitted to a server: {why}; a tenant may \
                 set {}",
                TENANT_SETTINGS.join(", ")
            )));
        }
        let number = || {
            v.parse::<u32>()
                .map_err(|_| SqlError::Plan(format!("SET '{k}': '{v}' is not a number")))
        };
        match k.as_str() {
            "parallelism.default" | "table.exec.resource.default-parallelism" => {
                self.config.parallelism = number()?
            }
            "pipeline.max-parallelism" => self.config.max_parallelism = number()?,
            "table.exec.source.idle-timeout" => {
                let d = fungi_connector::options::parse_duration(&v)
                    .map_err(|e| SqlError::Plan(format!("SET '{k}': {e}")))?;
                self.config.source_idle_timeout = (!d.is_zero()).then_some(d);
            }
            "table.exec.state.ttl" => {
                let ms = fungi_connector::options::parse_duration(&v)
                    .map_err(|e| SqlError::Plan(format!("SET '{k}': {e}")))?
                    .as_millis() as i64;
                self.settings.state_ttl_ms = (ms > 0).then_some(ms);
            }
            "table.optimizer.agg-phase-strategy" => {
                self.settings.agg_phase = v.parse()?;
            }
            "plugin.on-error" => {
                self.plugins.on_error = v.parse().map_err(|_| {
                    SqlError::Plan(format!(
                        "SET '{k}': '{v}' is neither 'fail' nor 'dead-letter'"
                    ))
                })?;
            }
            "dead-letter.path" => {
                let path = v.strip_prefix("file://").unwrap_or(&v);
                let path = match &self.plugins.confined {
                    None => path.to_string(),
                    Some(c) => crate::plugins::path_inside(&c.files_dir, path)
                        .ok_or_else(|| {
                            SqlError::Plan(format!(
                                "SET '{k}': on a server the file is relative to the tenant's \
                                 files directory, without '..'; '{v}' is not"
                            ))
                        })?
                        .to_string_lossy()
                        .into_owned(),
                };
                self.dead_letter.path = Some(path);
            }
            "dead-letter.kafka.topic" => self.dead_letter.kafka_topic = Some(v.clone()),
            "dead-letter.kafka.bootstrap-servers" => {
                if let Some(c) = &self.plugins.confined {
                    c.check_brokers(&format!("SET '{k}'"), &v)?;
                }
                self.dead_letter.kafka_servers = Some(v.clone());
            }
            "plugin.batch-rows" => {
                self.plugins.batch_rows =
                    v.trim().parse().ok().filter(|n| *n > 0).ok_or_else(|| {
                        SqlError::Plan(format!("SET '{k}': '{v}' is not a positive number"))
                    })?;
            }
            "execution.checkpointing.interval" => {
                let d = fungi_connector::options::parse_duration(&v)
                    .map_err(|e| SqlError::Plan(format!("SET '{k}': {e}")))?;
                self.config.checkpointing.interval = (!d.is_zero()).then_some(d);
            }
            "execution.checkpointing.dir" | "state.checkpoints.dir" => {
                let dir = v.strip_prefix("file://").unwrap_or(&v);
                self.config.checkpointing.dir = Some(dir.into());
            }
            "s3.endpoint"
            | "s3.access-key"
            | "s3.secret-key"
            | "s3.region"
            | "s3.path.style.access" => {
                self.config
                    .checkpointing
                    .storage_options
                    .insert(k.clone(), v.clone());
            }
            "execution.checkpointing.timeout" => {
                self.config.checkpointing.timeout = fungi_connector::options::parse_duration(&v)
                    .map_err(|e| SqlError::Plan(format!("SET '{k}': {e}")))?;
            }
            "execution.checkpointing.min-pause" => {
                self.config.checkpointing.min_pause = fungi_connector::options::parse_duration(&v)
                    .map_err(|e| SqlError::Plan(format!("SET '{k}': {e}")))?;
            }
            "execution.checkpointing.num-retained" | "state.checkpoints.num-retained" => {
                self.config.checkpointing.retained = number()? as usize;
            }
            "state.backend.type" | "state.backend" => {
                self.config.state_backend = match v.to_ascii_lowercase().as_str() {
                    "hashmap" | "memory" => fungi_common::config::StateBackendKind::Memory,
                    "rocksdb" => fungi_common::config::StateBackendKind::Rocksdb,
                    _ => {
                        return Err(SqlError::Plan(format!(
                            "SET '{k}': '{v}' is neither 'hashmap' (memory) nor 'rocksdb'"
                        )));
                    }
                }
            }
            key if key.starts_with("restart-strategy") => {
                set_restart_strategy(&mut self.config.restart_strategy, key, &v)?
            }
            key if key.starts_with("plugin.") && self.plugins.confined.is_some() => {
                return Err(SqlError::Plan(format!(
                    "SET '{key}' is not allowed in a job submitted to a server: plugin limits \
                     come from the tenant's quotas"
                )));
            }
            key if key.starts_with("plugin.") => {
                let mut limits = self.plugins.limits.clone();
                plugins::set_limit(&mut limits, key, &v)?;
                self.plugins.set_limits(limits);
            }
            _ => {
                return Err(SqlError::Plan(format!(
                    "unknown setting '{k}'; known: parallelism.default, table.exec.resource.default-parallelism, pipeline.max-parallelism, table.exec.state.ttl, table.optimizer.agg-phase-strategy, table.exec.source.idle-timeout, execution.checkpointing.interval, execution.checkpointing.dir, execution.checkpointing.timeout, execution.checkpointing.min-pause, execution.checkpointing.num-retained, s3.endpoint, s3.access-key, s3.secret-key, s3.region, s3.path.style.access, state.backend.type, restart-strategy.type (and Flink's restart-strategy.* options), dead-letter.path, dead-letter.kafka.topic, dead-letter.kafka.bootstrap-servers, {}",
                    plugins::LIMIT_KEYS.join(", ")
                )));
            }
        }
        self.config.validate_values()?;
        Ok(Outcome::Done(format!("{k} = {v}")))
    }

    async fn create_table(&mut self, stmt: &str) -> Result<Outcome> {
        let ddl = parse_create_table(stmt)?;
        let mut options = ddl.options.clone();
        let connector = options
            .iter()
            .position(|(k, _)| k == "connector")
            .map(|i| options.remove(i).1)
            .ok_or_else(|| {
                SqlError::Plan(format!(
                    "table '{}' needs WITH ('connector' = '...')",
                    ddl.name
                ))
            })?;
        let known: Vec<&str> = fungi_connector::descriptor::CONNECTORS
            .iter()
            .map(|c| c.name)
            .chain([plugins::WASM_CONNECTOR])
            .collect();
        if connector != plugins::WASM_CONNECTOR
            && fungi_connector::descriptor::descriptor(&connector).is_none()
        {
            let hint = closest(&connector, known.iter().copied())
                .map(|c| format!(" Did you mean '{c}'?"))
                .unwrap_or_default();
            return Err(SqlError::Plan(format!(
                "unknown connector '{connector}' for table '{}'.{hint} Available: {}",
                ddl.name,
                known.join(", ")
            )));
        }
        if let Some(c) = &self.plugins.confined {
            c.confine_table(&ddl.name, &connector, &mut options)?;
        }
        if connector == plugins::WASM_CONNECTOR && ddl.columns.is_empty() {
            return Err(SqlError::Plan(format!(
                "table '{}' of connector 'wasm' must declare its columns (the plugin's rows are read as them)",
                ddl.name
            )));
        }
        let (mut schema, declared) = if ddl.columns.is_empty() {
            let (_, schema) = registry::source(
                &connector,
                None,
                &fungi_connector::options::Options::new(&connector, options.clone())
                    .with_egress(self.plugins.confined.as_ref().map(|c| c.egress.clone())),
            )?;
            (schema, false)
        } else {
            // Column names are quoted, so names that are keywords elsewhere (`key`, `value`)
            // stay names.
            let columns: Vec<String> = ddl.columns.iter().map(|c| quote_column_name(c)).collect();
            let probe = format!("CREATE TABLE \"{}\" ({})", ddl.name, columns.join(", "));
            let plan = self.state().create_logical_plan(&probe).await?;
            let LogicalPlan::Ddl(DdlStatement::CreateMemoryTable(c)) = plan else {
                return Err(SqlError::Plan(format!(
                    "cannot read the columns of '{}'",
                    ddl.name
                )));
            };
            let mut fields: Vec<arrow::datatypes::Field> = c
                .input
                .schema()
                .fields()
                .iter()
                .map(|f| f.as_ref().clone())
                .collect();
            for (name, data_type) in &ddl.maps {
                if let Some(f) = fields.iter_mut().find(|f| f.name() == name) {
                    *f = f.clone().with_data_type(data_type.clone());
                }
            }
            (Arc::new(arrow::datatypes::Schema::new(fields)), true)
        };
        if !fungi_connector::descriptor::descriptor(&connector).is_some_and(|c| c.metadata_columns)
            && let Some(m) = ddl.metadata.first()
        {
            let with: Vec<&str> = fungi_connector::descriptor::CONNECTORS
                .iter()
                .filter(|c| c.metadata_columns)
                .map(|c| c.name)
                .collect();
            return Err(SqlError::Plan(format!(
                "table '{}': connector '{connector}' has no metadata columns (column '{}' is \
                 METADATA FROM '{}'); these connectors have them: {}",
                ddl.name,
                m.column,
                m.key,
                with.join(", ")
            )));
        }
        // Computed columns: typed against the declared ones, appended after them.
        let mut computed = Vec::new();
        if !ddl.computed.is_empty() {
            let base = DFSchema::try_from(schema.as_ref().clone())?;
            let mut fields: Vec<arrow::datatypes::Field> =
                schema.fields().iter().map(|f| f.as_ref().clone()).collect();
            for (name, text) in &ddl.computed {
                let expr = self.ctx.parse_sql_expr(text, &base).map_err(|e| {
                    SqlError::Plan(format!("computed column '{name}' of '{}': {e}", ddl.name))
                })?;
                crate::limits::check_expression(&expr)?;
                let data_type = datafusion::logical_expr::ExprSchemable::get_type(&expr, &base)?;
                let mut field = arrow::datatypes::Field::new(name, data_type, true);
                if udfs::is_proctime_call(&expr) {
                    field = field.with_metadata(
                        [(udfs::TIME_ATTRIBUTE.to_string(), "proctime".to_string())].into(),
                    );
                }
                fields.push(field);
                computed.push((name.clone(), expr));
            }
            schema = Arc::new(arrow::datatypes::Schema::new(fields));
        }
        if let Some((col, _)) = &ddl.watermark
            && ddl.computed.iter().any(|(c, _)| c == col)
        {
            return Err(SqlError::unsupported(
                format!("WATERMARK FOR the computed column '{col}'"),
                "declare the watermark on a column the connector provides",
            ));
        }
        if let Some(missing) = ddl
            .primary_key
            .iter()
            .find(|c| schema.field_with_name(c).is_err())
        {
            return Err(SqlError::Plan(format!(
                "table '{}': PRIMARY KEY column '{missing}' is not a column of the table",
                ddl.name
            )));
        }
        if let Some((col, _)) = &ddl.watermark {
            let field = schema.field_with_name(col).map_err(|_| {
                let names: Vec<&str> = schema.fields().iter().map(|f| f.name().as_str()).collect();
                let hint = closest(col, names.iter().copied())
                    .map(|c| format!(" Did you mean '{c}'?"))
                    .unwrap_or_default();
                SqlError::Plan(format!(
                    "WATERMARK FOR '{col}': table '{}' has no such column.{hint}",
                    ddl.name
                ))
            })?;
            if !matches!(
                field.data_type(),
                arrow::datatypes::DataType::Timestamp(_, _)
            ) {
                return Err(SqlError::Plan(format!(
                    "WATERMARK FOR '{col}': the column is {}, it must be a TIMESTAMP(3)",
                    field.data_type()
                )));
            }
        }
        let table = TableDef {
            name: ddl.name.clone(),
            schema: schema.clone(),
            declared,
            connector,
            options,
            watermark: ddl.watermark,
            computed,
            metadata: ddl.metadata.clone(),
            egress: self.plugins.confined.as_ref().map(|c| c.egress.clone()),
            primary_key: ddl.primary_key.clone(),
        };
        // Check the options now, not when the job starts. A connector that is both a
        // source and a sink (filesystem) is checked when a query uses the table, since
        // reading needs existing files and writing does not.
        let described = fungi_connector::descriptor::descriptor(&table.connector);
        let (source, sink) = (
            described.is_some_and(|c| c.source.is_some()),
            described.is_some_and(|c| c.sink.is_some()),
        );
        if source && !sink {
            registry::source(
                &table.connector,
                table.declared.then(|| table.source_schema()),
                &table.connector_options(),
            )?;
        } else if sink && !source {
            registry::sink(&table.connector, &table.connector_options())?;
        }
        self.ctx.deregister_table(ddl.name.as_str())?;
        self.ctx.register_table(
            ddl.name.as_str(),
            Arc::new(MemTable::try_new(schema, vec![vec![]])?),
        )?;
        self.tables.insert(ddl.name.clone(), table);
        Ok(Outcome::Done(format!("table {} created", ddl.name)))
    }

    fn state(&self) -> SessionState {
        self.ctx.state()
    }

    /// Plans a SELECT or INSERT.
    async fn plan_statement(&mut self, stmt: &str) -> Result<Outcome> {
        let (stmt, lookups) = crate::tvf::rewrite_lookup_joins(stmt)?;
        let sql = rewrite(&stmt)?;
        let state = self.state();
        let dialect = state.config().options().sql_parser.dialect;
        let plan = match state.sql_to_statement(&sql, &dialect) {
            Ok(mut statement) => {
                crate::names::name_casts_apart(&mut statement);
                state.statement_to_plan(statement).await
            }
            Err(e) => Err(e),
        }
        .map_err(|e| self.explain_error(e))?;
        crate::limits::check_plan(&plan)?;
        refuse_plans_that_run(&plan)?;
        let plan = state
            .analyzer()
            .execute_and_check(plan, state.config_options(), |_, _| {})?;
        self.jobs += 1;
        let mut graph = JobGraph::new(format!("sql-{}", self.jobs));
        graph.config = self.config.clone();
        graph.dead_letter_targets = self.dead_letter_targets()?;
        match &plan {
            LogicalPlan::Dml(dml)
                if dml.op == WriteOp::Insert(datafusion::logical_expr::dml::InsertOp::Append) =>
            {
                let name = dml.table_name.table().to_string();
                let table = self
                    .tables
                    .get(&name)
                    .ok_or_else(|| {
                        SqlError::Plan(format!("table '{name}' is not declared with CREATE TABLE"))
                    })?
                    .clone();
                let mut planner = Planner::new(
                    &state,
                    &self.tables,
                    &mut graph,
                    self.settings,
                    lookups.clone(),
                    &mut self.plugins,
                );
                let out = planner.plan(&dml.input)?;
                if out.updating && !registry::accepts_updates(&table.connector) {
                    return Err(SqlError::Plan(format!(
                        "table '{name}' (connector '{}') accepts only inserts, but the query produces updates \
                         because it aggregates without a window (or ranks with ROW_NUMBER without a window, or joins such results); \
                         aggregate or rank per window (TUMBLE, HOP, ...) or write to a sink that accepts updates (upsert-kafka, stdout, blackhole)",
                        table.connector
                    )));
                }
                let sink = if table.connector == plugins::WASM_CONNECTOR {
                    self.plugins.sink(&table)?
                } else {
                    registry::sink(&table.connector, &table.connector_options()).map_err(|e| {
                        SqlError::Plan(format!("table '{name}' cannot be written to: {e}"))
                    })?
                };
                let single = fungi_connector::descriptor::descriptor(&table.connector)
                    .is_some_and(|c| c.single_writer);
                let parallelism = if single { 1 } else { out.parallelism };
                let node = graph.add_operator(&format!("{name}-sink"), parallelism, sink);
                let edge = if out.updating && !table.primary_key.is_empty() {
                    // The changes of one key reach one sink subtask, in order (an upsert
                    // sink's -D and +I of a key must not race).
                    Partitioning::Hash(table.primary_key.clone())
                } else if parallelism == out.parallelism {
                    Partitioning::Forward
                } else {
                    Partitioning::Rebalance
                };
                graph.connect(out.node, node, edge);
                graph.name = format!("insert-into-{name}");
                Ok(Outcome::Insert(graph))
            }
            LogicalPlan::Dml(_) => Err(SqlError::unsupported(
                "UPDATE, DELETE and INSERT OVERWRITE",
                "use INSERT INTO",
            )),
            query => {
                let schema = Arc::new(query.schema().as_arrow().clone());
                let mut planner = Planner::new(
                    &state,
                    &self.tables,
                    &mut graph,
                    self.settings,
                    lookups.clone(),
                    &mut self.plugins,
                );
                let output = planner.plan(query)?;
                Ok(Outcome::Query(Query {
                    graph,
                    output,
                    schema,
                }))
            }
        }
    }

    /// Adds "did you mean" to DataFusion's unknown-table and unknown-function errors.
    fn explain_error(&self, e: datafusion::error::DataFusionError) -> SqlError {
        let msg = e.to_string();
        if let Some(rest) = msg.split("Invalid function '").nth(1) {
            let name = rest.split('\'').next().unwrap_or("");
            let state = self.state();
            let names: Vec<&str> = state
                .scalar_functions()
                .keys()
                .chain(state.aggregate_functions().keys())
                .chain(state.window_functions().keys())
                .map(String::as_str)
                .filter(|n| !n.starts_with("fungi_"))
                .collect();
            let hint = match crate::flink_functions::equivalent(name) {
                Some(instead) => format!(" Fungi has no {name}; write {instead}."),
                None => closest(name, names.iter().copied())
                    .map(|c| format!(" Did you mean '{c}'?"))
                    .unwrap_or_default(),
            };
            return SqlError::Plan(format!("unknown function '{name}'.{hint}"));
        }
        if let Some(rest) = msg
            .split("table '")
            .nth(1)
            .filter(|_| msg.contains("not found"))
        {
            let name = rest.split('\'').next().unwrap_or("");
            let name = name.rsplit('.').next().unwrap_or(name);
            if let Some(c) = closest(name, self.tables.keys().map(String::as_str)) {
                return SqlError::Plan(format!("table '{name}' not found. Did you mean '{c}'?"));
            }
        }
        e.into()
    }
}

/// The settings a confined tenant may `SET` (a key ending in `.` is a prefix). The
/// server checks the values against the tenant's quotas once the job is planned.
pub const TENANT_SETTINGS: &[&str] = &[
    "parallelism.default",
    "table.exec.resource.default-parallelism",
    "pipeline.max-parallelism",
    "table.exec.source.idle-timeout",
    "table.exec.state.ttl",
    "table.optimizer.agg-phase-strategy",
    "plugin.on-error",
    "plugin.batch-rows",
    "dead-letter.path",
    "dead-letter.kafka.topic",
    "dead-letter.kafka.bootstrap-servers",
    "execution.checkpointing.interval",
    "execution.checkpointing.timeout",
    "execution.checkpointing.min-pause",
    "execution.checkpointing.num-retained",
    "state.checkpoints.num-retained",
    "state.backend.type",
    "state.backend",
    "restart-strategy",
    "restart-strategy.",
];

/// Whether a confined tenant may `SET key`.
fn tenant_may_set(key: &str) -> bool {
    TENANT_SETTINGS.iter().any(|allowed| {
        if allowed.ends_with('.') {
            key.starts_with(allowed) && key.len() > allowed.len()
        } else {
            key == *allowed
        }
    })
}

/// DataFusion's options for the statements a session hands to it: definitions only (a
/// view, a drop); no DML (`COPY`, inserts into its own tables) and no statements (`SET
/// VARIABLE`, transactions).
fn ddl_only() -> datafusion::execution::context::SQLOptions {
    datafusion::execution::context::SQLOptions::new()
        .with_allow_ddl(true)
        .with_allow_dml(false)
        .with_allow_statements(false)
}

/// Refuses a planned SELECT or INSERT whose plan would define, copy or describe
/// something (e.g. `SELECT ... INTO`, which DataFusion plans as a table definition):
/// a streaming job reads its tables and writes its sink, nothing else.
fn refuse_plans_that_run(plan: &LogicalPlan) -> Result<()> {
    datafusion::execution::context::SQLOptions::new()
        .with_allow_ddl(false)
        .with_allow_statements(false)
        .verify_plan(plan)
        .map_err(|e| {
            SqlError::Plan(format!(
                "the query is not a streaming SELECT or INSERT INTO ({e}); a script holds {}",
                crate::statement::ALLOWED
            ))
        })?;
    match plan {
        LogicalPlan::Copy(_)
        | LogicalPlan::DescribeTable(_)
        | LogicalPlan::Explain(_)
        | LogicalPlan::Analyze(_) => Err(SqlError::Plan(format!(
            "the query is not a streaming SELECT or INSERT INTO; a script holds {}",
            crate::statement::ALLOWED
        ))),
        _ => Ok(()),
    }
}

/// A column definition `name TYPE ...` with the name double-quoted.
fn quote_column_name(def: &str) -> String {
    let def = def.trim();
    let end = match def.chars().next() {
        Some(q @ ('`' | '"')) => def[1..].find(q).map_or(def.len(), |i| i + 2),
        _ => def.find(char::is_whitespace).unwrap_or(def.len()),
    };
    let name = unquote(&def[..end]);
    format!("\"{}\"{}", name.replace('"', "\"\""), &def[end..])
}

impl SqlSession {
    /// The durable dead-letter targets the `dead-letter.*` settings name.
    fn dead_letter_targets(
        &self,
    ) -> Result<Vec<std::sync::Arc<dyn fungi_execution::dead_letter::DeadLetterTarget>>> {
        let d = &self.dead_letter;
        fungi_connector::registry::dead_letter_targets(
            d.path.as_deref().map(std::path::Path::new),
            d.kafka_servers.as_deref(),
            d.kafka_topic.as_deref(),
            self.plugins.confined.as_ref().map(|c| &c.egress),
        )
        .map_err(|e| {
            SqlError::Plan(format!(
                "{e} ('dead-letter.kafka.bootstrap-servers' and 'dead-letter.kafka.topic')"
            ))
        })
    }
}

/// Applies a Flink `restart-strategy.*` setting. Naming an option of another strategy
/// switches to that strategy with Flink's defaults first.
fn set_restart_strategy(strategy: &mut RestartStrategy, key: &str, value: &str) -> Result<()> {
    let bad = |what: &str| SqlError::Plan(format!("SET '{key}': '{value}' is not {what}"));
    let duration = || {
        fungi_connector::options::parse_duration(value)
            .map_err(|e| SqlError::Plan(format!("SET '{key}': {e}")))
    };
    let count = || {
        value
            .trim()
            .parse::<u32>()
            .map_err(|_| bad("a whole number"))
    };
    let fraction = || value.trim().parse::<f64>().map_err(|_| bad("a number"));
    let fixed = || RestartStrategy::FixedDelay {
        attempts: 1,
        delay: Duration::from_secs(1),
    };
    let exponential = || RestartStrategy::ExponentialDelay {
        initial: Duration::from_secs(1),
        max: Duration::from_secs(300),
        multiplier: 1.5,
        jitter: 0.1,
        reset_after: Duration::from_secs(3600),
        attempts: u32::MAX,
    };
    let rate = || RestartStrategy::FailureRate {
        max_failures: 1,
        interval: Duration::from_secs(60),
        delay: Duration::from_secs(1),
    };
    if key == "restart-strategy.type" || key == "restart-strategy" {
        *strategy = match value.trim().to_ascii_lowercase().as_str() {
            "none" | "off" | "disable" => RestartStrategy::None,
            "fixed-delay" | "fixeddelay" => fixed(),
            "exponential-delay" | "exponentialdelay" => exponential(),
            "failure-rate" | "failurerate" => rate(),
            _ => return Err(bad("none, fixed-delay, exponential-delay or failure-rate")),
        };
        return Ok(());
    }
    let (kind, option) = key
        .strip_prefix("restart-strategy.")
        .and_then(|k| k.split_once('.'))
        .ok_or_else(|| SqlError::Plan(format!("unknown setting '{key}'")))?;
    let make = match kind {
        "fixed-delay" => fixed,
        "exponential-delay" => exponential,
        "failure-rate" => rate,
        _ => {
            return Err(SqlError::Plan(format!(
                "unknown restart strategy in '{key}'"
            )));
        }
    };
    if std::mem::discriminant(strategy) != std::mem::discriminant(&make()) {
        *strategy = make();
    }
    match (strategy, option) {
        (RestartStrategy::FixedDelay { attempts, .. }, "attempts") => *attempts = count()?,
        (RestartStrategy::FixedDelay { delay, .. }, "delay") => *delay = duration()?,
        (RestartStrategy::ExponentialDelay { initial, .. }, "initial-backoff") => {
            *initial = duration()?
        }
        (RestartStrategy::ExponentialDelay { max, .. }, "max-backoff") => *max = duration()?,
        (RestartStrategy::ExponentialDelay { multiplier, .. }, "backoff-multiplier") => {
            *multiplier = fraction()?
        }
        (RestartStrategy::ExponentialDelay { jitter, .. }, "jitter-factor") => {
            *jitter = fraction()?
        }
        (RestartStrategy::ExponentialDelay { reset_after, .. }, "reset-backoff-threshold") => {
            *reset_after = duration()?
        }
        (RestartStrategy::ExponentialDelay { attempts, .. }, "attempts-before-reset-backoff") => {
            *attempts = count()?
        }
        (RestartStrategy::FailureRate { max_failures, .. }, "max-failures-per-interval") => {
            *max_failures = count()?
        }
        (RestartStrategy::FailureRate { interval, .. }, "failure-rate-interval") => {
            *interval = duration()?
        }
        (RestartStrategy::FailureRate { delay, .. }, "delay") => *delay = duration()?,
        _ => return Err(SqlError::Plan(format!("unknown setting '{key}'"))),
    }
    Ok(())
}
