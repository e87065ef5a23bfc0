//! Streaming SQL end to end: results against DataFusion's batch engine (the oracle),
//! planner error messages, and EXPLAIN.

mod confinement;
mod errors;
mod explain;
mod flink_semantics;
mod oracle;
mod plugins;
mod python;
mod reliability;

use arrow::array::RecordBatch;
use arrow::util::display::{ArrayFormatter, FormatOptions};
use fungi_execution::executor::LocalExecutor;
use fungi_execution::operators::CollectSink;
use fungi_sql::{Outcome, SqlSession};

/// Rows of `batches` as sorted strings (a multiset to compare).
pub(crate) fn rows(batches: &[RecordBatch]) -> Vec<String> {
    let mut out = rows_in_order(batches);
    out.sort();
    out
}

/// Rows of `batches` as strings, in arrival order.
pub(crate) fn rows_in_order(batches: &[RecordBatch]) -> Vec<String> {
    let options = FormatOptions::default().with_null("NULL");
    let mut out = Vec::new();
    for b in batches {
        let formatters: Vec<ArrayFormatter<'_>> = b
            .columns()
            .iter()
            .map(|c| ArrayFormatter::try_new(c.as_ref(), &options).unwrap())
            .collect();
        for i in 0..b.num_rows() {
            out.push(
                formatters
                    .iter()
                    .map(|f| f.value(i).to_string())
                    .collect::<Vec<_>>()
                    .join(" | "),
            );
        }
    }
    out
}

/// What running a script's last statement (a SELECT or an INSERT INTO) gave.
pub(crate) struct Ran {
    /// How the job ended.
    pub(crate) result: fungi_common::Result<fungi_execution::executor::JobSummary>,
    /// The rows of a SELECT.
    pub(crate) rows: Vec<RecordBatch>,
    /// The job's most recent dead letters, oldest first.
    pub(crate) dead_letters: Vec<fungi_execution::dead_letter::DeadLetter>,
    /// The operators' final counters.
    pub(crate) metrics: Vec<fungi_execution::metrics::OperatorSnapshot>,
}

impl Ran {
    /// The job's error message (panics if it succeeded).
    pub(crate) fn error(&self) -> String {
        match &self.result {
            Ok(_) => panic!("the job succeeded"),
            Err(e) => e.to_string(),
        }
    }

    /// Dead letters per reason (panics if the job failed).
    pub(crate) fn dead_letter_counts(&self) -> &std::collections::BTreeMap<String, u64> {
        &self
            .result
            .as_ref()
            .expect("the job succeeded")
            .dead_letters
    }
}

/// Runs a script whose last statement is a SELECT (into a collecting sink) or an
/// INSERT INTO.
pub(crate) async fn run(session: &mut SqlSession, script: &str) -> Ran {
    let mut outcomes = session.execute_script(script).await.unwrap();
    let (sink, collected) = CollectSink::new();
    let graph = match outcomes.pop() {
        Some(Outcome::Query(query)) => query.with_sink(sink.factory(), "collect"),
        Some(Outcome::Insert(graph)) => graph,
        _ => panic!("the script must end with a SELECT or an INSERT INTO"),
    };
    let handle = LocalExecutor::new().execute(graph).unwrap();
    let (metrics, dlq) = (handle.metrics().clone(), handle.dead_letters().clone());
    let result = handle.wait().await;
    Ran {
        result,
        rows: collected.batches(),
        dead_letters: dlq.recent(),
        metrics: metrics.snapshot(),
    }
}

/// Runs a script whose last statement is a SELECT and returns its rows, sorted.
pub(crate) async fn select(session: &mut SqlSession, script: &str) -> Vec<String> {
    let mut rows = select_in_order(session, script).await;
    rows.sort();
    rows
}

/// Runs a script whose last statement is a SELECT and returns its rows in arrival order.
pub(crate) async fn select_in_order(session: &mut SqlSession, script: &str) -> Vec<String> {
    let mut outcomes = session.execute_script(script).await.unwrap();
    let Some(Outcome::Query(query)) = outcomes.pop() else {
        panic!("the script must end with a SELECT")
    };
    let (sink, collected) = CollectSink::new();
    let graph = query.with_sink(sink.factory(), "collect");
    LocalExecutor::new()
        .execute(graph)
        .unwrap()
        .wait()
        .await
        .unwrap();
    rows_in_order(&collected.batches())
}

/// Runs a script whose last statement is a SELECT and returns its final rows, sorted: a
/// changelog result is applied (each retraction removes the row it names).
pub(crate) async fn select_final(session: &mut SqlSession, script: &str) -> Vec<String> {
    let mut outcomes = session.execute_script(script).await.unwrap();
    let Some(Outcome::Query(query)) = outcomes.pop() else {
        panic!("the script must end with a SELECT")
    };
    let updating = query.is_updating();
    let (sink, collected) = CollectSink::new();
    let graph = query.with_sink(sink.factory(), "collect");
    LocalExecutor::new()
        .execute(graph)
        .unwrap()
        .wait()
        .await
        .unwrap();
    let rows = rows_in_order(&collected.batches());
    if updating {
        apply_changelog(rows)
    } else {
        let mut rows = rows;
        rows.sort();
        rows
    }
}

/// Applies a changelog (rows with the change column last) and returns the final rows.
pub(crate) fn apply_changelog(rows: Vec<String>) -> Vec<String> {
    let mut table: Vec<String> = Vec::new();
    for row in rows {
        let (values, op) = row.rsplit_once(" | ").expect("change column");
        match op {
            "0" | "2" => table.push(values.to_string()),
            "1" | "3" => {
                let key = values.split(" | ").next().unwrap_or("");
                let Some(i) = table.iter().position(|v| v == values) else {
                    let same: Vec<&String> = table
                        .iter()
                        .filter(|v| v.starts_with(&format!("{key} |")))
                        .collect();
                    panic!("retracted row {values} was never emitted; rows of that key: {same:?}");
                };
                table.remove(i);
            }
            other => panic!("unknown change {other}"),
        }
    }
    table.sort();
    table
}

/// Rows of `sql` computed by DataFusion in batch mode.
pub(crate) async fn batch_rows(
    ctx: &datafusion::prelude::SessionContext,
    sql: &str,
) -> Vec<String> {
    let batches = ctx.sql(sql).await.unwrap().collect().await.unwrap();
    rows(&batches)
}
