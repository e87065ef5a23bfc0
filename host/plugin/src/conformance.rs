//! The conformance kit: contract tests any plugin of a kind must pass, plus the test
//! vectors kept in `conformance/vectors/<plugin name>.json` when there are some.
//!
//! Every kind: empty batches, all-NULL rows and rows of each declared type are answered
//! (not trapped), and a wrong argument type gives an error rather than a trap. Aggregates
//! also: merging is associative, state survives a snapshot/restore round trip, and a
//! retractable aggregate taking back what it was given is back to empty. `fungi plugin
//! test` prints the [`Report`].

use std::path::Path;
use std::sync::Arc;

use arrow::array::{
    Array, ArrayRef, BooleanArray, Float64Array, Int32Array, Int64Array, StringArray,
    new_null_array,
};
use arrow::datatypes::DataType;
use fungi_streaming::aggregate::GroupsAccumulator;

use crate::aggregate::AggregateUdf;
use crate::limits::{PluginTenant, TenantLimits};
use crate::plugin::{FunctionSignature, Plugin, PluginKind};
use crate::scalar::ScalarUdf;
use crate::table::TableUdf;

/// One check and its outcome.
#[derive(Debug, Clone)]
pub struct Check {
    /// Function checked (empty for plugin-wide checks).
    pub function: String,
    /// What was checked.
    pub name: String,
    /// `None` if it passed; otherwise what went wrong.
    pub failure: Option<String>,
}

/// The outcome of [`run`].
#[derive(Debug, Clone, Default)]
pub struct Report {
    /// Every check, in order.
    pub checks: Vec<Check>,
}

impl Report {
    /// Whether every check passed.
    pub fn passed(&self) -> bool {
        self.checks.iter().all(|c| c.failure.is_none())
    }

    pub(crate) fn record_failure(&mut self, function: &str, name: &str, why: String) {
        self.record(function, name, Err(why));
    }

    pub(crate) fn record_result(&mut self, function: &str, name: &str, result: Result<(), String>) {
        self.record(function, name, result);
    }

    fn record(&mut self, function: &str, name: &str, result: Result<(), String>) {
        self.checks.push(Check {
            function: function.to_string(),
            name: name.to_string(),
            failure: result.err(),
        });
    }
}

impl std::fmt::Display for Report {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        for c in &self.checks {
            let status = if c.failure.is_none() { "ok  " } else { "FAIL" };
            write!(f, "{status} {:<14} {}", c.function, c.name)?;
            if let Some(why) = &c.failure {
                write!(f, ": {why}")?;
            }
            writeln!(f)?;
        }
        let failed = self.checks.iter().filter(|c| c.failure.is_some()).count();
        write!(
            f,
            "{} checks, {} passed, {failed} failed",
            self.checks.len(),
            self.checks.len() - failed
        )
    }
}

/// Deterministic values of `t` (`rows` of them, every fifth NULL if `nulls`).
fn values(t: &DataType, rows: usize, seed: u64, nulls: bool) -> Option<ArrayRef> {
    let mut x = seed;
    let mut next = move || {
        x = x.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = x;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    };
    let valid = |i: usize| !nulls || i % 5 != 4;
    Some(match t {
        DataType::Int64 => Arc::new(Int64Array::from_iter((0..rows).map(|i| {
            let v = (next() % 2001) as i64 - 1000;
            valid(i).then_some(v)
        }))),
        DataType::Int32 => Arc::new(Int32Array::from_iter((0..rows).map(|i| {
            let v = (next() % 2001) as i32 - 1000;
            valid(i).then_some(v)
        }))),
        DataType::Float64 => Arc::new(Float64Array::from_iter((0..rows).map(|i| {
            let v = (next() % 180_000) as f64 / 1000.0 - 90.0;
            valid(i).then_some(v)
        }))),
        DataType::Utf8 => Arc::new(StringArray::from_iter((0..rows).map(|i| {
            let v = format!("Row {} of {}", next() % 1000, rows);
            valid(i).then_some(v)
        }))),
        DataType::Boolean => Arc::new(BooleanArray::from_iter(
            (0..rows).map(|i| valid(i).then_some(next() % 2 == 0)),
        )),
        _ => return None,
    })
}

fn arguments(
    sig: &FunctionSignature,
    rows: usize,
    seed: u64,
    nulls: bool,
) -> Option<Vec<ArrayRef>> {
    sig.arguments
        .iter()
        .enumerate()
        .map(|(i, f)| values(f.data_type(), rows, seed + i as u64, nulls))
        .collect()
}

/// A column of a type the function does not take (to check errors are returned).
fn wrong_arguments(sig: &FunctionSignature, rows: usize) -> Vec<ArrayRef> {
    sig.arguments
        .iter()
        .map(|f| {
            if f.data_type() == &DataType::Utf8 {
                Arc::new(Int64Array::from_iter_values(0..rows as i64)) as ArrayRef
            } else {
                Arc::new(StringArray::from_iter_values(
                    (0..rows).map(|i| i.to_string()),
                )) as ArrayRef
            }
        })
        .collect()
}

/// Runs the contract tests for `plugin` (and its vectors from `vectors`, a directory of
/// `<plugin name>.json` files).
pub fn run(plugin: &Arc<Plugin>, vectors: Option<&Path>) -> Report {
    let mut report = Report::default();
    let mut limits = plugin.host.default_limits();
    // A generous call timeout (where the host can enforce one): conformance is about
    // behaviour, not speed.
    limits.call_timeout = limits
        .call_timeout
        .map(|_| std::time::Duration::from_secs(5));
    let tenant = Arc::new(PluginTenant::new("conformance", limits));
    match plugin.kind() {
        PluginKind::Source => {
            source_checks(plugin, &tenant, &mut report);
            return report;
        }
        PluginKind::Sink => {
            sink_checks(plugin, &mut report);
            return report;
        }
        _ => {}
    }
    report.record(
        "",
        "exports at least one function",
        if plugin.functions().is_empty() {
            Err("no functions".into())
        } else {
            Ok(())
        },
    );
    for sig in plugin.functions() {
        match plugin.kind() {
            PluginKind::Scalar => scalar_checks(plugin, &tenant, sig, &mut report),
            PluginKind::Table => table_checks(plugin, &tenant, sig, &mut report),
            PluginKind::Aggregate => aggregate_checks(plugin, &tenant, sig, &mut report),
            other => report.record(&sig.name, "kind", Err(format!("{other}: no checks yet"))),
        }
    }
    if let Some(dir) = vectors {
        crate::vectors::check(plugin, &tenant, dir, &mut report);
    }
    report
}

fn scalar_checks(
    plugin: &Arc<Plugin>,
    tenant: &Arc<PluginTenant>,
    sig: &FunctionSignature,
    report: &mut Report,
) {
    let f = match ScalarUdf::new(plugin.clone(), tenant.clone(), &sig.name, Vec::new()) {
        Ok(f) => f,
        Err(e) => return report.record(&sig.name, "create", Err(e.to_string())),
    };
    argument_checks(sig, report, |args, rows| {
        let out = f.call(args, rows)?;
        Ok((out.len() != rows).then(|| format!("{} rows for {rows}", out.len())))
    });
}

fn table_checks(
    plugin: &Arc<Plugin>,
    tenant: &Arc<PluginTenant>,
    sig: &FunctionSignature,
    report: &mut Report,
) {
    let name = &sig.name;
    let f = match TableUdf::new(plugin.clone(), tenant.clone(), name, Vec::new()) {
        Ok(f) => f,
        Err(e) => return report.record(name, "create", Err(e.to_string())),
    };
    // The host already checks output types and row indices on every call.
    argument_checks(sig, report, |args, rows| {
        let out = f.call(args, rows)?;
        Ok((rows == 0 && out.rows.num_rows() > 0)
            .then(|| format!("{} rows for an empty batch", out.rows.num_rows())))
    });
    // A batch gives the rows of its rows called one by one: no state across rows.
    let typed = arguments(sig, 64, 5, true).expect("types checked");
    report.record(
        name,
        "a batch gives the rows of its rows, one by one",
        (|| {
            let whole = f.call(&typed, 64).map_err(|e| e.to_string())?;
            for row in 0..64u32 {
                let args: Vec<ArrayRef> = typed.iter().map(|a| a.slice(row as usize, 1)).collect();
                let alone = f.call(&args, 1).map_err(|e| e.to_string())?.rows;
                let mine: arrow::array::UInt32Array = (0..whole.input_rows.len() as u32)
                    .filter(|&i| whole.input_rows.value(i as usize) == row)
                    .collect();
                let in_batch = arrow::compute::take_record_batch(&whole.rows, &mine)
                    .map_err(|e| e.to_string())?;
                if in_batch != alone {
                    return Err(format!(
                        "input row {row} gives {} rows in the batch, {} alone",
                        in_batch.num_rows(),
                        alone.num_rows()
                    ));
                }
            }
            Ok(())
        })(),
    );
}

/// Checks for a function of any kind, through `call` (which returns a problem with its
/// output, if any): an empty batch, NULL arguments, every declared type (with NULLs),
/// and arguments of the wrong type refused with an error rather than a trap.
fn argument_checks(
    sig: &FunctionSignature,
    report: &mut Report,
    call: impl Fn(&[ArrayRef], usize) -> crate::Result<Option<String>>,
) {
    let name = &sig.name;
    let expect_rows = |args: Vec<ArrayRef>, rows: usize| -> Result<(), String> {
        match call(&args, rows).map_err(|e| e.to_string())? {
            None => Ok(()),
            Some(problem) => Err(problem),
        }
    };
    let Some(empty) = arguments(sig, 0, 1, false) else {
        return report.record(
            name,
            "declared types",
            Err(format!(
                "argument types {:?} have no test values",
                sig.arguments
            )),
        );
    };
    report.record(name, "empty batch", expect_rows(empty, 0));
    let nulls: Vec<ArrayRef> = sig
        .arguments
        .iter()
        .map(|a| new_null_array(a.data_type(), 3))
        .collect();
    report.record(name, "NULL arguments", expect_rows(nulls, 3));
    let typed = arguments(sig, 512, 7, true).expect("types checked");
    report.record(
        name,
        "each declared type, with NULLs",
        expect_rows(typed, 512),
    );
    let wrong = call(&wrong_arguments(sig, 4), 4);
    report.record(
        name,
        "wrong types are an error, not a trap",
        match wrong {
            Ok(_) if sig.arguments.is_empty() => Ok(()),
            Ok(_) => Err("accepted arguments of the wrong type".into()),
            Err(e) if e.code() == "PLUGIN_ERROR" => Ok(()),
            Err(e) => Err(e.to_string()),
        },
    );
}

fn aggregate_checks(
    plugin: &Arc<Plugin>,
    tenant: &Arc<PluginTenant>,
    sig: &FunctionSignature,
    report: &mut Report,
) {
    let name = &sig.name;
    let udaf = match AggregateUdf::new(plugin.clone(), tenant.clone(), name, Vec::new()) {
        Ok(f) => f,
        Err(e) => return report.record(name, "create", Err(e.to_string())),
    };
    let Some(parts) = (0..3)
        .map(|k| arguments(sig, 300, 11 + k * 7, true))
        .collect::<Option<Vec<_>>>()
    else {
        return report.record(
            name,
            "declared types",
            Err(format!(
                "argument types {:?} have no test values",
                sig.arguments
            )),
        );
    };
    let acc = || udaf.create_accumulator().map_err(|e| e.to_string());
    let eval = |a: &mut crate::aggregate::WasmAccumulator, groups: &[u32]| {
        a.evaluate(groups).map_err(|e| e.to_string())
    };
    let fill =
        |a: &mut crate::aggregate::WasmAccumulator, plan: &[(usize, u32)]| -> Result<(), String> {
            for &(p, group) in plan {
                a.update_batch(&parts[p], &vec![group; 300], 8)
                    .map_err(|e| e.to_string())?;
            }
            Ok(())
        };
    report.record(
        name,
        "empty group evaluates",
        (|| {
            let mut a = acc()?;
            let out = eval(&mut a, &[0])?;
            (out.len() == 1)
                .then_some(())
                .ok_or("no row for the group".to_string())
        })(),
    );
    report.record(
        name,
        "empty batch",
        (|| {
            let mut a = acc()?;
            let empty = arguments(sig, 0, 1, false).expect("types checked");
            a.update_batch(&empty, &[], 1).map_err(|e| e.to_string())
        })(),
    );
    // (a + b) + c == a + (b + c), through merges of groups 0, 1, 2.
    report.record(
        name,
        "merge is associative",
        (|| {
            let mut left = acc()?;
            fill(&mut left, &[(0, 0), (1, 1), (2, 2)])?;
            left.merge_groups(&[(3, 0), (3, 1)], 8)
                .map_err(|e| e.to_string())?;
            left.merge_groups(&[(4, 3), (4, 2)], 8)
                .map_err(|e| e.to_string())?;
            let mut right = acc()?;
            fill(&mut right, &[(0, 0), (1, 1), (2, 2)])?;
            right
                .merge_groups(&[(3, 1), (3, 2)], 8)
                .map_err(|e| e.to_string())?;
            right
                .merge_groups(&[(4, 0), (4, 3)], 8)
                .map_err(|e| e.to_string())?;
            let mut direct = acc()?;
            fill(&mut direct, &[(0, 0), (1, 0), (2, 0)])?;
            let (l, r, d) = (
                eval(&mut left, &[4])?,
                eval(&mut right, &[4])?,
                eval(&mut direct, &[0])?,
            );
            if l.to_data() != r.to_data() || l.to_data() != d.to_data() {
                return Err(format!(
                    "(a+b)+c = {l:?}, a+(b+c) = {r:?}, all at once = {d:?}"
                ));
            }
            Ok(())
        })(),
    );
    report.record(
        name,
        "state round-trips",
        (|| {
            let mut a = acc()?;
            fill(&mut a, &[(0, 0), (1, 1)])?;
            let states = a.snapshot(&[0, 1]).map_err(|e| e.to_string())?;
            let mut b = acc()?;
            b.restore(&[1, 0], &states).map_err(|e| e.to_string())?;
            let (x, y) = (eval(&mut a, &[0, 1])?, eval(&mut b, &[1, 0])?);
            (x.to_data() == y.to_data())
                .then_some(())
                .ok_or(format!("before {x:?}, after {y:?}"))
        })(),
    );
    if sig.retractable {
        report.record(
            name,
            "retracting everything empties a group",
            (|| {
                let mut a = acc()?;
                fill(&mut a, &[(0, 0)])?;
                a.retract_batch(&parts[0], &[0; 300], 8)
                    .map_err(|e| e.to_string())?;
                let mut empty = acc()?;
                let (x, y) = (eval(&mut a, &[0])?, eval(&mut empty, &[0])?);
                (x.to_data() == y.to_data())
                    .then_some(())
                    .ok_or(format!("{x:?} instead of {y:?}"))
            })(),
        );
    }
    report.record(
        name,
        "wrong types are an error, not a trap",
        (|| {
            let mut a = acc()?;
            match a.update_batch(&wrong_arguments(sig, 4), &[0; 4], 1) {
                Ok(()) => Err("accepted arguments of the wrong type".into()),
                Err(e) if e.to_string().contains("[PLUGIN_ERROR]") => Ok(()),
                Err(e) => Err(e.to_string()),
            }
        })(),
    );
}

/// Polls `reader` until it finishes (or `polls` polls); returns the rows.
fn drain(
    reader: &mut crate::connector::SplitReader,
    max_rows: u32,
    polls: usize,
) -> Result<Vec<arrow::array::RecordBatch>, String> {
    let mut out = Vec::new();
    for _ in 0..polls {
        match reader.poll(max_rows).map_err(|e| e.to_string())? {
            crate::connector::Poll::Batch(b) => out.push(b),
            crate::connector::Poll::Finished => break,
            _ => {}
        }
    }
    Ok(out)
}

fn source_checks(plugin: &Arc<Plugin>, tenant: &Arc<PluginTenant>, report: &mut Report) {
    let source =
        match crate::connector::PluginSource::new(plugin.clone(), tenant.clone(), Vec::new()) {
            Ok(s) => s,
            Err(e) => return report.record("", "create", Err(e.to_string())),
        };
    let splits = match source.splits() {
        Ok(s) if !s.is_empty() => s,
        Ok(_) => return report.record("", "lists splits", Err("no splits".into())),
        Err(e) => return report.record("", "lists splits", Err(e.to_string())),
    };
    report.record("", "lists splits", Ok(()));
    let split = &splits[0];
    // Reading in two parts through a snapshot gives the same rows as reading at once.
    report.record(
        split,
        "resumes from its snapshot without gaps or repeats",
        (|| {
            let mut whole = source.open(split, None).map_err(|e| e.to_string())?;
            let all = drain(&mut whole, 64, 10_000)?;
            let mut first = source.open(split, None).map_err(|e| e.to_string())?;
            let mut parts = drain(&mut first, 64, 3)?;
            let offset = first.snapshot().map_err(|e| e.to_string())?;
            let mut rest = source
                .open(split, Some(offset))
                .map_err(|e| e.to_string())?;
            parts.extend(drain(&mut rest, 64, 10_000)?);
            let rows = |b: &[arrow::array::RecordBatch]| -> Result<Vec<String>, String> {
                let mut v = Vec::new();
                for batch in b {
                    let options = arrow::util::display::FormatOptions::default();
                    let f = batch
                        .columns()
                        .iter()
                        .map(|c| {
                            arrow::util::display::ArrayFormatter::try_new(c.as_ref(), &options)
                        })
                        .collect::<Result<Vec<_>, _>>()
                        .map_err(|e| e.to_string())?;
                    for i in 0..batch.num_rows() {
                        v.push(
                            f.iter()
                                .map(|f| f.value(i).to_string())
                                .collect::<Vec<_>>()
                                .join(","),
                        );
                    }
                }
                Ok(v)
            };
            let (a, b) = (rows(&all)?, rows(&parts)?);
            (a == b).then_some(()).ok_or(format!(
                "{} rows at once, {} through a snapshot",
                a.len(),
                b.len()
            ))
        })(),
    );
    report.record(
        "",
        "an unknown split is an error, not a trap",
        match source.open("\u{0}no such split", None) {
            Ok(_) => Ok(()),
            Err(e) if e.code() == "PLUGIN_ERROR" => Ok(()),
            Err(e) => Err(e.to_string()),
        },
    );
}

fn sink_checks(plugin: &Arc<Plugin>, report: &mut Report) {
    // Grant a scratch directory for every directory the sink asks for.
    let scratch: Vec<tempfile_dir::Dir> = plugin
        .manifest()
        .directories
        .iter()
        .map(|d| tempfile_dir::Dir::new(d))
        .collect();
    let limits = TenantLimits {
        directories: scratch
            .iter()
            .map(|d| (d.path.clone(), d.guest.clone(), true))
            .collect(),
        ..plugin.host.default_limits()
    };
    let tenant = Arc::new(PluginTenant::new("conformance-sink", limits));
    let sink = match crate::connector::PluginSink::new(plugin.clone(), tenant, Vec::new()) {
        Ok(s) => s,
        Err(e) => return report.record("", "create", Err(e.to_string())),
    };
    let batch = arrow::array::RecordBatch::try_from_iter([(
        "x",
        Arc::new(Int64Array::from_iter_values(0..10)) as ArrayRef,
    )])
    .expect("a batch");
    report.record(
        "",
        "write, pre-commit, commit, abort",
        (|| {
            let mut w = sink.open(0, Vec::new()).map_err(|e| e.to_string())?;
            w.write(&batch).map_err(|e| e.to_string())?;
            let h = w.pre_commit(1).map_err(|e| e.to_string())?;
            w.commit(&h).map_err(|e| e.to_string())?;
            w.write(&batch).map_err(|e| e.to_string())?;
            let h = w.pre_commit(2).map_err(|e| e.to_string())?;
            w.abort(&h).map_err(|e| e.to_string())?;
            let h = w.pre_commit(3).map_err(|e| e.to_string())?;
            w.commit(&h).map_err(|e| e.to_string())
        })(),
    );
    report.record(
        "",
        "commits pending transactions when reopened",
        (|| {
            let mut w = sink.open(1, Vec::new()).map_err(|e| e.to_string())?;
            w.write(&batch).map_err(|e| e.to_string())?;
            let h = w.pre_commit(1).map_err(|e| e.to_string())?;
            drop(w);
            sink.open(1, vec![h]).map(|_| ()).map_err(|e| e.to_string())
        })(),
    );
}

/// Scratch directories for the sink checks (removed when dropped).
mod tempfile_dir {
    use std::path::PathBuf;

    pub(super) struct Dir {
        pub(super) path: PathBuf,
        pub(super) guest: String,
    }

    impl Dir {
        pub(super) fn new(guest: &str) -> Self {
            let path = std::env::temp_dir().join(format!(
                "fungi-conformance-{}-{}",
                std::process::id(),
                guest.trim_matches('/').replace('/', "_")
            ));
            let _ = std::fs::create_dir_all(&path);
            Dir {
                path,
                guest: guest.to_string(),
            }
        }
    }

    impl Drop for Dir {
        fn drop(&mut self) {
            let _ = std::fs::remove_dir_all(&self.path);
        }
    }
}
