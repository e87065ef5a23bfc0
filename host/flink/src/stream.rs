//! Streams and their transformations.

use std::sync::Arc;
use std::time::Duration;

use arrow::array::{BooleanArray, RecordBatch, UInt32Array};
use arrow::datatypes::SchemaRef;
use fungi_common::ids::OperatorId;
use fungi_common::{FungiError, Result};
use fungi_execution::graph::Partitioning;
use fungi_execution::operator::OperatorFactory;
use fungi_execution::operators::{
    FilterOperator, FlatMapOperator, KeyedProcessFunction, KeyedProcessOperator, LATE_TAG,
    MapOperator, WatermarkAssigner, WindowOperator,
};
use fungi_streaming::aggregate::AggregateCall;
use fungi_streaming::watermark::WatermarkStrategy;
use fungi_streaming::window::WindowAssigner;
use fungi_streaming::window_aggregate::WindowAggregateSpec;

use crate::environment::StreamExecutionEnvironment;

/// A stream of record batches with a known schema.
#[derive(Clone)]
pub struct DataStream {
    env: StreamExecutionEnvironment,
    node: OperatorId,
    tag: Option<Arc<str>>,
    schema: SchemaRef,
    time_column: Option<String>,
    partitioning: Partitioning,
    side_outputs: Vec<(Arc<str>, SchemaRef)>,
}

impl std::fmt::Debug for DataStream {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DataStream")
            .field("node", &self.node)
            .field("schema", &self.schema)
            .finish()
    }
}

impl DataStream {
    pub(crate) fn new(
        env: StreamExecutionEnvironment,
        node: OperatorId,
        schema: SchemaRef,
        time_column: Option<String>,
    ) -> Self {
        DataStream {
            env,
            node,
            tag: None,
            schema,
            time_column,
            partitioning: Partitioning::Forward,
            side_outputs: Vec::new(),
        }
    }

    /// The schema of the stream's batches.
    pub fn schema(&self) -> &SchemaRef {
        &self.schema
    }

    /// Adds an operator fed by this stream and returns the stream it produces.
    fn then(
        &self,
        name: &str,
        factory: OperatorFactory,
        schema: SchemaRef,
        stateful: bool,
    ) -> DataStream {
        let mut g = self.env.graph.lock().expect("poisoned");
        let parallelism = g.config.parallelism;
        let node = if stateful {
            g.add_stateful_operator(name, parallelism, factory)
        } else {
            g.add_operator(name, parallelism, factory)
        };
        match &self.tag {
            Some(tag) => g.connect_side(self.node, tag, node, self.partitioning.clone()),
            None => g.connect(self.node, node, self.partitioning.clone()),
        }
        drop(g);
        DataStream::new(self.env.clone(), node, schema, self.time_column.clone())
    }

    /// Sets the parallelism of the operator that produces this stream.
    pub fn set_parallelism(self, parallelism: u32) -> Self {
        let mut g = self.env.graph.lock().expect("poisoned");
        g.nodes[self.node.0 as usize].parallelism = parallelism;
        drop(g);
        self
    }

    /// Distributes batches round-robin to the next operator's subtasks.
    pub fn rebalance(mut self) -> Self {
        self.partitioning = Partitioning::Rebalance;
        self
    }

    /// Sends every batch to every subtask of the next operator.
    pub fn broadcast(mut self) -> Self {
        self.partitioning = Partitioning::Broadcast;
        self
    }

    /// Reads event time from `strategy`'s column and generates watermarks. Directly on a
    /// source, watermarks are generated per split; elsewhere by an operator.
    pub fn assign_timestamps_and_watermarks(self, strategy: WatermarkStrategy) -> DataStream {
        let column = strategy.timestamp_column.clone();
        {
            let mut g = self.env.graph.lock().expect("poisoned");
            let node = &mut g.nodes[self.node.0 as usize];
            if let fungi_execution::graph::NodeKind::Source { watermarks, .. } = &mut node.kind
                && self.tag.is_none()
            {
                *watermarks = Some(strategy);
                drop(g);
                return DataStream {
                    time_column: Some(column),
                    ..self
                };
            }
        }
        let mut s = self.then(
            "watermarks",
            WatermarkAssigner::factory(strategy),
            self.schema.clone(),
            false,
        );
        s.time_column = Some(column);
        s
    }

    /// Applies `f` to every batch. `f` is called once on an empty batch at planning time
    /// to learn the output schema.
    pub fn map(
        &self,
        f: impl Fn(RecordBatch) -> Result<RecordBatch> + Send + Sync + 'static,
    ) -> Result<DataStream> {
        let schema = f(RecordBatch::new_empty(self.schema.clone()))
            .map_err(|e| {
                FungiError::Plan(format!(
                    "map function failed on an empty batch (used to learn its output schema): {e}"
                ))
            })?
            .schema();
        Ok(self.then("map", MapOperator::factory(f), schema, false))
    }

    /// The positions of the columns `args`, checked against the plugin function `sig`.
    fn plugin_arguments(
        &self,
        sig: &fungi_plugin::FunctionSignature,
        args: &[&str],
    ) -> Result<Vec<usize>> {
        if args.len() != sig.arguments.len() {
            return Err(FungiError::Plan(format!(
                "plugin function {} takes {} arguments, got {}",
                sig.name,
                sig.arguments.len(),
                args.len()
            )));
        }
        let mut indices = Vec::new();
        for (name, want) in args.iter().zip(&sig.arguments) {
            let i = self
                .schema
                .index_of(name)
                .map_err(|_| fungi_streaming::unknown_column(name, &self.schema))?;
            let got = self.schema.field(i).data_type();
            if got != want.data_type() {
                return Err(FungiError::Plan(format!(
                    "plugin function {}: column '{name}' is {got}, the function takes {}",
                    sig.name,
                    want.data_type()
                )));
            }
            indices.push(i);
        }
        Ok(indices)
    }

    /// This stream's fields followed by `more`.
    fn schema_with(&self, more: impl IntoIterator<Item = arrow::datatypes::Field>) -> SchemaRef {
        let fields: Vec<arrow::datatypes::Field> = self
            .schema
            .fields()
            .iter()
            .map(|f| f.as_ref().clone())
            .chain(more)
            .collect();
        Arc::new(arrow::datatypes::Schema::new(fields))
    }

    /// Appends the column `output`: the plugin function `udf` applied to the columns
    /// `args` (one call per batch).
    pub fn with_plugin_column(
        &self,
        udf: Arc<fungi_plugin::ScalarUdf>,
        args: &[&str],
        output: &str,
    ) -> Result<DataStream> {
        let sig = udf.signature().clone();
        let indices = self.plugin_arguments(&sig, args)?;
        let schema = self.schema_with([arrow::datatypes::Field::new(
            output,
            sig.returns.data_type().clone(),
            true,
        )]);
        let out = schema.clone();
        let f = move |batch: RecordBatch| -> Result<RecordBatch> {
            let columns: Vec<_> = indices.iter().map(|&i| batch.column(i).clone()).collect();
            let value = udf.call(&columns, batch.num_rows())?;
            let mut all = batch.columns().to_vec();
            all.push(value);
            Ok(RecordBatch::try_new(out.clone(), all)?)
        };
        Ok(self.then("plugin-map", MapOperator::factory(f), schema, false))
    }

    /// Joins each row with the rows the plugin table function `udf` gives for the
    /// columns `args` (Flink's `LATERAL TABLE`; one call per batch): a row that gives
    /// none is dropped, one that gives several is repeated. The function's columns are
    /// appended under their declared names.
    pub fn with_plugin_table(
        &self,
        udf: Arc<fungi_plugin::TableUdf>,
        args: &[&str],
    ) -> Result<DataStream> {
        let sig = udf.signature().clone();
        let indices = self.plugin_arguments(&sig, args)?;
        let columns = udf.columns().clone();
        self.lateral_table(
            "plugin-lateral-table",
            indices,
            columns,
            move |args, rows| {
                let joined = udf.call(args, rows)?;
                Ok((joined.rows, joined.input_rows))
            },
        )
    }

    /// [`with_plugin_table`](Self::with_plugin_table) for a native Python table function
    /// (`@fungi.udtf`, loaded with `fungi_python::load`): any argument types, checked by
    /// the function itself.
    pub fn with_python_table(
        &self,
        udf: Arc<fungi_python::PythonTableFunction>,
        args: &[&str],
    ) -> Result<DataStream> {
        let indices = args
            .iter()
            .map(|name| {
                self.schema
                    .index_of(name)
                    .map_err(|_| fungi_streaming::unknown_column(name, &self.schema))
            })
            .collect::<Result<Vec<_>>>()?;
        let columns = udf.columns().clone();
        self.lateral_table(
            "python-lateral-table",
            indices,
            columns,
            move |args, rows| Ok(udf.call(args, rows)?),
        )
    }

    /// Appends to each row the rows `call` gives for the columns at `indices`.
    fn lateral_table(
        &self,
        name: &'static str,
        indices: Vec<usize>,
        columns: arrow::datatypes::Fields,
        call: impl Fn(&[arrow::array::ArrayRef], usize) -> Result<(RecordBatch, UInt32Array)>
        + Send
        + Sync
        + 'static,
    ) -> Result<DataStream> {
        let schema = self.schema_with(columns.iter().map(|f| f.as_ref().clone()));
        let out = schema.clone();
        let f = move |batch: RecordBatch| -> Result<RecordBatch> {
            let args: Vec<_> = indices.iter().map(|&i| batch.column(i).clone()).collect();
            let (rows, input_rows) = call(&args, batch.num_rows())?;
            let mut all = arrow::compute::take_record_batch(&batch, &input_rows)?
                .columns()
                .to_vec();
            all.extend(rows.columns().iter().cloned());
            Ok(RecordBatch::try_new(out.clone(), all)?)
        };
        Ok(self.then(name, MapOperator::factory(f), schema, false))
    }

    /// Keeps the rows for which `predicate` is true.
    pub fn filter(
        &self,
        predicate: impl Fn(&RecordBatch) -> Result<BooleanArray> + Send + Sync + 'static,
    ) -> DataStream {
        self.then(
            "filter",
            FilterOperator::factory(predicate),
            self.schema.clone(),
            false,
        )
    }

    /// Turns each batch into zero or more batches of `schema`.
    pub fn flat_map(
        &self,
        schema: SchemaRef,
        f: impl Fn(RecordBatch) -> Result<Vec<RecordBatch>> + Send + Sync + 'static,
    ) -> DataStream {
        self.then("flat_map", FlatMapOperator::factory(f), schema, false)
    }

    /// Partitions the stream by the key columns.
    pub fn key_by<S: Into<String>>(&self, keys: impl IntoIterator<Item = S>) -> KeyedStream {
        KeyedStream {
            stream: self.clone(),
            keys: keys.into_iter().map(Into::into).collect(),
        }
    }

    /// The side output `tag` of the operator that produces this stream (e.g. the late
    /// rows of a window, tag `"late"`).
    pub fn side_output(&self, tag: &str) -> Result<DataStream> {
        let (tag, schema) = self
            .side_outputs
            .iter()
            .find(|(t, _)| &**t == tag)
            .cloned()
            .ok_or_else(|| {
                let known: Vec<&str> = self.side_outputs.iter().map(|(t, _)| &**t).collect();
                FungiError::Plan(format!(
                    "this stream has no side output '{tag}'; it has: {}",
                    known.join(", ")
                ))
            })?;
        Ok(DataStream {
            tag: Some(tag),
            schema,
            partitioning: Partitioning::Forward,
            side_outputs: Vec::new(),
            ..self.clone()
        })
    }

    /// Sends the stream to a sink.
    pub fn sink_to(&self, sink: OperatorFactory, name: &str) -> DataStream {
        self.then(name, sink, self.schema.clone(), false)
    }

    /// Prints the stream to stdout as JSON lines.
    pub fn print(&self) -> Result<DataStream> {
        let sink = fungi_connector::registry::sink(
            "stdout",
            &fungi_connector::options::Options::default(),
        )?;
        Ok(self.sink_to(sink, "print"))
    }
}

/// A stream partitioned by key: every row of one key goes to the same subtask.
#[derive(Clone, Debug)]
pub struct KeyedStream {
    stream: DataStream,
    keys: Vec<String>,
}

impl KeyedStream {
    fn keyed(&self) -> DataStream {
        DataStream {
            partitioning: Partitioning::Hash(self.keys.clone()),
            ..self.stream.clone()
        }
    }

    /// Groups the stream into windows.
    pub fn window(&self, assigner: Result<WindowAssigner>) -> WindowedStream {
        WindowedStream {
            keyed: self.clone(),
            assigner,
            allowed_lateness: 0,
        }
    }

    /// Runs a keyed process function (state and timers). `make` builds one instance per
    /// subtask; `output` is the schema it emits.
    pub fn process(
        &self,
        output: SchemaRef,
        make: impl Fn() -> Box<dyn KeyedProcessFunction> + Send + Sync + 'static,
    ) -> Result<DataStream> {
        let factory = KeyedProcessOperator::factory(self.keys.clone(), &self.stream.schema, make)?;
        Ok(self.keyed().then("process", factory, output, true))
    }
}

/// A keyed stream grouped into windows.
#[derive(Debug)]
pub struct WindowedStream {
    keyed: KeyedStream,
    assigner: Result<WindowAssigner>,
    allowed_lateness: i64,
}

impl WindowedStream {
    /// Keeps window state this long after the window fires; later rows update it.
    pub fn allowed_lateness(mut self, lateness: Duration) -> Self {
        self.allowed_lateness = lateness.as_millis() as i64;
        self
    }

    /// Aggregates each key's rows per window. The result has the key columns,
    /// `window_start`, `window_end` and one column per aggregate; rows too late for
    /// their windows are on the side output `"late"`.
    pub fn aggregate(self, aggregates: Vec<AggregateCall>) -> Result<DataStream> {
        let assigner = self.assigner?;
        let stream = &self.keyed.stream;
        let time_column = stream.time_column.clone().ok_or_else(|| {
            FungiError::Plan(
                "event-time windows need timestamps: call assign_timestamps_and_watermarks() or give the source a watermark strategy".into(),
            )
        })?;
        let spec = WindowAggregateSpec {
            keys: self.keyed.keys.clone(),
            time_column,
            assigner,
            allowed_lateness: self.allowed_lateness,
            aggregates,
        };
        let (factory, schema) = WindowOperator::factory(spec, &stream.schema)?;
        let mut out = self.keyed.keyed().then("window", factory, schema, true);
        // Results have no event-time column of their own; a later window on them needs
        // assign_timestamps_and_watermarks() (e.g. on window_start).
        out.time_column = None;
        out.side_outputs
            .push((Arc::from(LATE_TAG), stream.schema.clone()));
        Ok(out)
    }
}
