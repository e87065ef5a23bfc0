//! Native Python functions: CPython embedded through pyo3.
//!
//! A function is a Python callable marked by the SDK's `@fungi.udf(returns=...)` (a
//! scalar function), `@fungi.udaf(returns=...)` (an aggregate class) or
//! `@fungi.udtf(returns={...})` (a table function); the host reads
//! the `__fungi__` declaration the decorator leaves. Calls are per batch: the argument
//! arrays cross to pyarrow through the Arrow C data interface (no copy), the GIL is
//! held only for the call, and the result comes back the same way. A Python exception
//! becomes [`PythonError::Raised`] with the function's name, the message and the
//! traceback.
//!
//! Packages (pyarrow, the `fungi` SDK) come from a virtual environment added to
//! `sys.path` when the interpreter starts: `FUNGI_PYTHON_VENV`, else `VIRTUAL_ENV`,
//! else `~/.cache/fungi/pyvenv`.
//!
//! Native Python is not sandboxed: only tenants allowed unsandboxed code may use it
//! (the server checks); the others ship Python as a Wasm plugin.

use std::ffi::CString;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use arrow::array::{Array, ArrayData, ArrayRef, AsArray, RecordBatch, UInt32Array, make_array};
use arrow::datatypes::{DataType, Fields, UInt32Type};
use arrow_pyarrow::{FromPyArrow, ToPyArrow};
use pyo3::prelude::*;
use pyo3::types::PyList;

/// Errors of Python functions.
#[derive(Debug, Clone, thiserror::Error)]
pub enum PythonError {
    /// The interpreter or a package it needs is missing.
    #[error("Python is not usable: {0}")]
    Setup(String),
    /// The function cannot be loaded or is not declared for Fungi.
    #[error("Python function '{function}': {reason}")]
    Load {
        /// `module.function` as written.
        function: String,
        /// Why.
        reason: String,
    },
    /// The function raised an exception, or returned something that is not its result.
    #[error("Python function '{function}' raised {message}\n{traceback}")]
    Raised {
        /// The SQL name.
        function: String,
        /// `ExceptionType: message`.
        message: String,
        /// The formatted traceback.
        traceback: String,
    },
}

/// Results of this crate.
pub type Result<T> = std::result::Result<T, PythonError>;

/// The marker of Python failures in engine errors, which the operators' error policy
/// (`plugin.on-error`: fail or dead-letter) recognises, as it does plugin failures.
pub const ERROR_CODE: &str = "PLUGIN_PYTHON";

impl From<PythonError> for fungi_common::FungiError {
    fn from(e: PythonError) -> Self {
        fungi_common::FungiError::Operator {
            operator: "python".into(),
            message: format!("[{ERROR_CODE}] {e}"),
        }
    }
}

/// Where a function's module comes from.
#[derive(Debug, Clone)]
pub enum Source {
    /// An importable module (`sys.path`, plus `search_path` if given).
    Module {
        /// A directory to add to `sys.path` first.
        search_path: Option<PathBuf>,
    },
    /// A Python file, loaded as a module named after it.
    File(PathBuf),
    /// Source code (an inline body), loaded as the module `module`.
    Code {
        /// The module's name (also shown as its file name in tracebacks).
        module: String,
        /// The source.
        code: String,
    },
}

/// How a scalar function is called.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    /// Arrays in, array out, once per batch.
    Vectorized,
    /// Once per row with Python values (the loop runs in Python, once per batch).
    Row {
        /// Whether rows with a null argument give null without a call.
        skip_nulls: bool,
    },
}

/// The Python side of the host: conversions and loops that run once per batch.
const HOST_HELPERS: &str = r#"
import pyarrow as pa
import pyarrow.compute

def result(name, returns, value, rows):
    if isinstance(value, pa.ChunkedArray):
        value = value.combine_chunks()
    if not isinstance(value, pa.Array):
        try:
            value = pa.array(value, type=returns)
        except (pa.ArrowInvalid, pa.ArrowTypeError, TypeError) as e:
            raise TypeError(f"{name}: the result is not {returns}: {e}") from None
    if len(value) != rows:
        raise ValueError(f"{name}: returned {len(value)} values for {rows} rows")
    if value.type != returns:
        value = value.cast(returns)
    return value

def call_vectorized(name, fn, returns, rows, arrays):
    return result(name, returns, fn(*arrays), rows)

def call_rows(name, fn, returns, skip_nulls, rows, arrays):
    cols = [a.to_pylist() for a in arrays]
    out = []
    for i in range(rows):
        row = [c[i] for c in cols]
        out.append(None if skip_nulls and any(v is None for v in row) else fn(*row))
    return result(name, returns, out, rows)

def accumulate(agg, states, groups, arrays):
    # One accumulate call per group present in the batch, with that group's rows: the
    # rows are sorted by group once, and each group gets a zero-copy slice of its run.
    import pyarrow.compute as pc
    order = pc.array_sort_indices(groups)
    runs = pc.run_end_encode(groups.take(order))
    taken = [a.take(order) for a in arrays]
    start = 0
    for g, end in zip(runs.values.to_pylist(), runs.run_ends.to_pylist()):
        states[g] = agg.accumulate(states[g], *[a.slice(start, end - start) for a in taken])
        start = end

def finish(name, agg, returns, states):
    return result(name, returns, [agg.finish(s) for s in states], len(states))

def table_type(columns):
    return pa.struct([pa.field(n, t) for n, t in columns])

def table_result(name, columns_type, columns, index, rows):
    fields = list(columns_type)
    if isinstance(columns, (pa.Table, pa.RecordBatch)):
        columns = [columns.column(i) for i in range(columns.num_columns)]
    if len(columns) != len(fields):
        raise ValueError(f"{name}: returned {len(columns)} columns; it declares {len(fields)}")
    if not isinstance(index, pa.Array):
        index = pa.array(index, pa.int64())
    arrays = [result(f"{name}, column '{f.name}',", f.type, c, len(index)) for f, c in zip(fields, columns)]
    if len(index) and (pa.compute.min(index).as_py() < 0 or pa.compute.max(index).as_py() >= rows):
        raise ValueError(f"{name}: an input row index is outside 0..{rows}")
    return pa.StructArray.from_arrays(arrays, fields=fields), index.cast(pa.uint32())

def call_table_rows(name, fn, columns_type, skip_nulls, rows, arrays):
    cols = [a.to_pylist() for a in arrays]
    width = columns_type.num_fields
    out = [[] for _ in range(width)]
    index = []
    for i in range(rows):
        row = [c[i] for c in cols]
        if skip_nulls and any(v is None for v in row):
            continue
        produced = fn(*row)
        if produced is None:
            continue
        for r in produced:
            if width == 1 and not isinstance(r, (tuple, list)):
                r = (r,)
            if len(r) != width:
                raise ValueError(f"{name}: a row of {len(r)} values for {width} columns")
            for j in range(width):
                out[j].append(r[j])
            index.append(i)
    return table_result(name, columns_type, out, index, rows)

def call_table_vectorized(name, fn, columns_type, rows, arrays):
    produced = fn(*arrays)
    if not (isinstance(produced, tuple) and len(produced) == 2):
        raise TypeError(f"{name}: a vectorized table function returns (columns, input_rows)")
    return table_result(name, columns_type, produced[0], produced[1], rows)
"#;

/// The virtual environment whose packages the interpreter uses: `FUNGI_PYTHON_VENV`, else
/// `VIRTUAL_ENV`, else `~/.cache/fungi/pyvenv`, if it exists.
pub fn venv() -> Option<PathBuf> {
    let home = std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".cache/fungi/pyvenv"));
    std::env::var_os("FUNGI_PYTHON_VENV")
        .or_else(|| std::env::var_os("VIRTUAL_ENV"))
        .map(PathBuf::from)
        .or(home)
        .filter(|p| p.is_dir())
}

/// Adds the virtual environment's site-packages to `sys.path` (`site.addsitedir` skips
/// directories already there). No Rust lock is held while Python runs: the interpreter
/// may hand the GIL to another thread meanwhile, which would then wait on the lock while
/// holding the GIL.
fn init(py: Python<'_>) -> Result<()> {
    let Some(venv) = venv() else {
        return Ok(());
    };
    let site = py
        .import("site")
        .map_err(|e| PythonError::Setup(e.to_string()))?;
    for lib in ["lib", "lib64"] {
        let Ok(entries) = std::fs::read_dir(venv.join(lib)) else {
            continue;
        };
        for entry in entries.flatten() {
            let packages = entry.path().join("site-packages");
            if packages.is_dir() {
                site.call_method1("addsitedir", (packages.to_string_lossy(),))
                    .map_err(|e| PythonError::Setup(e.to_string()))?;
            }
        }
    }
    Ok(())
}

/// The host helpers module.
fn helpers(py: Python<'_>) -> Result<Bound<'_, PyModule>> {
    if let Ok(m) = py.import("_fungi_host") {
        return Ok(m);
    }
    init(py)?;
    let module = PyModule::from_code(
        py,
        &CString::new(HOST_HELPERS).expect("no NUL"),
        c"_fungi_host.py",
        c"_fungi_host",
    )
    .map_err(|e| {
        PythonError::Setup(format!(
            "{e} (the embedded Python needs pyarrow: pip install pyarrow into {})",
            venv().map_or(
                "a virtual environment named by FUNGI_PYTHON_VENV".into(),
                |v| v.display().to_string()
            )
        ))
    })?;
    py.import("sys")
        .and_then(|sys| sys.getattr("modules"))
        .and_then(|m| m.set_item("_fungi_host", &module))
        .map_err(|e| PythonError::Setup(e.to_string()))?;
    Ok(module)
}

/// A raised exception as [`PythonError::Raised`].
fn raised(py: Python<'_>, function: &str, e: PyErr) -> PythonError {
    let traceback = e
        .traceback(py)
        .and_then(|tb| tb.format().ok())
        .unwrap_or_default();
    PythonError::Raised {
        function: function.to_string(),
        message: e.to_string(),
        traceback,
    }
}

/// A function loaded for Fungi: a scalar function or an aggregate.
#[derive(Debug, Clone)]
pub enum Loaded {
    /// `@fungi.udf`.
    Scalar(Arc<PythonFunction>),
    /// `@fungi.udaf`.
    Aggregate(Arc<PythonAggregate>),
    /// `@fungi.udtf`.
    Table(Arc<PythonTableFunction>),
}

/// Loads `module.attribute` from `source` and reads its declaration; `sql_name` is the
/// name SQL calls it by.
pub fn load(source: &Source, target: &str, sql_name: &str) -> Result<Loaded> {
    let load_err = |reason: String| PythonError::Load {
        function: target.to_string(),
        reason,
    };
    Python::attach(|py| {
        helpers(py)?;
        let (module_name, attribute) = match source {
            Source::Module { .. } => target
                .rsplit_once('.')
                .ok_or_else(|| load_err("name it as 'module.function'".into()))?,
            Source::File(_) | Source::Code { .. } => {
                target.rsplit_once('.').unwrap_or(("", target))
            }
        };
        let module = match source {
            Source::Module { search_path } => {
                if let Some(dir) = search_path {
                    let path = py
                        .import("sys")
                        .and_then(|s| s.getattr("path"))
                        .map_err(|e| load_err(e.to_string()))?;
                    let path = path.cast::<PyList>().map_err(|e| load_err(e.to_string()))?;
                    path.insert(0, dir.to_string_lossy())
                        .map_err(|e| load_err(e.to_string()))?;
                }
                py.import(module_name)
                    .map_err(|e| load_err(raised(py, target, e).to_string()))?
            }
            Source::File(path) => {
                let code = std::fs::read_to_string(path)
                    .map_err(|e| load_err(format!("cannot read {}: {e}", path.display())))?;
                let name = path.file_stem().and_then(|s| s.to_str()).unwrap_or("udfs");
                from_code(py, &code, &path.to_string_lossy(), name)
                    .map_err(|e| load_err(raised(py, target, e).to_string()))?
            }
            Source::Code { module, code } => from_code(py, code, &format!("<{module}>"), module)
                .map_err(|e| load_err(raised(py, target, e).to_string()))?,
        };
        let object = module.getattr(attribute).map_err(|_| {
            load_err(format!(
                "module '{}' has no '{attribute}'",
                module.name().map(|n| n.to_string()).unwrap_or_default()
            ))
        })?;
        let spec = object.getattr("__fungi__").map_err(|_| {
            load_err("it is not marked with @fungi.udf(returns=...), @fungi.udaf(returns=...) or @fungi.udtf(returns=...) (the SDK in sdk-python/)".into())
        })?;
        let get = |field: &str| {
            spec.getattr(field)
                .map_err(|e| load_err(format!("__fungi__.{field}: {e}")))
        };
        let text = |field: &str| -> Result<String> {
            Ok(get(field)?
                .str()
                .map_err(|e| load_err(e.to_string()))?
                .to_string())
        };
        let kind = text("kind")?;
        let returns = || {
            DataType::from_pyarrow_bound(&get("returns")?)
                .map_err(|e| load_err(format!("return type: {e}")))
        };
        let mode = || -> Result<Mode> {
            let skip_nulls = get("skip_nulls")?
                .is_truthy()
                .map_err(|e| load_err(e.to_string()))?;
            Ok(match text("mode")?.as_str() {
                "row" => Mode::Row { skip_nulls },
                _ => Mode::Vectorized,
            })
        };
        match kind.as_str() {
            "udf" => {
                let (returns, mode) = (returns()?, mode()?);
                Ok(Loaded::Scalar(Arc::new(PythonFunction {
                    name: sql_name.to_string(),
                    callable: object.unbind(),
                    returns,
                    mode,
                })))
            }
            "udaf" => {
                let instance = object
                    .call0()
                    .map_err(|e| load_err(raised(py, target, e).to_string()))?;
                Ok(Loaded::Aggregate(Arc::new(PythonAggregate {
                    name: sql_name.to_string(),
                    instance: instance.unbind(),
                    returns: returns()?,
                })))
            }
            "udtf" => {
                let columns = helpers(py)?
                    .call_method1("table_type", (get("returns")?,))
                    .map_err(|e| load_err(format!("columns: {e}")))?;
                let columns_type = DataType::from_pyarrow_bound(&columns)
                    .map_err(|e| load_err(format!("columns: {e}")))?;
                let DataType::Struct(columns) = columns_type.clone() else {
                    return Err(load_err("columns: not a struct".into()));
                };
                Ok(Loaded::Table(Arc::new(PythonTableFunction {
                    name: sql_name.to_string(),
                    callable: object.unbind(),
                    columns,
                    columns_type,
                    mode: mode()?,
                })))
            }
            other => Err(load_err(format!("unknown kind '{other}'"))),
        }
    })
}

fn from_code<'py>(
    py: Python<'py>,
    code: &str,
    file: &str,
    name: &str,
) -> PyResult<Bound<'py, PyModule>> {
    let c = |s: &str| {
        CString::new(s).map_err(|e| pyo3::exceptions::PyValueError::new_err(e.to_string()))
    };
    PyModule::from_code(py, &c(code)?, &c(file)?, &c(name)?)
}

fn to_py<'py>(py: Python<'py>, arrays: &[ArrayRef]) -> PyResult<Bound<'py, PyList>> {
    let converted = arrays
        .iter()
        .map(|a| a.to_data().to_pyarrow(py))
        .collect::<PyResult<Vec<_>>>()?;
    PyList::new(py, converted)
}

fn from_py(value: &Bound<'_, PyAny>) -> PyResult<ArrayRef> {
    Ok(make_array(ArrayData::from_pyarrow_bound(value)?))
}

/// A scalar Python function.
#[derive(Debug)]
pub struct PythonFunction {
    name: String,
    callable: Py<PyAny>,
    returns: DataType,
    mode: Mode,
}

impl PythonFunction {
    /// The SQL name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The result type.
    pub fn returns(&self) -> &DataType {
        &self.returns
    }

    /// How it is called.
    pub fn mode(&self) -> Mode {
        self.mode
    }

    /// Calls the function once for a batch of `rows` rows.
    pub fn call(&self, args: &[ArrayRef], rows: usize) -> Result<ArrayRef> {
        Python::attach(|py| {
            let h = helpers(py)?;
            let run = || -> PyResult<ArrayRef> {
                let arrays = to_py(py, args)?;
                let returns = self.returns.to_pyarrow(py)?;
                let out = match self.mode {
                    Mode::Vectorized => h.call_method1(
                        "call_vectorized",
                        (&self.name, self.callable.bind(py), returns, rows, arrays),
                    )?,
                    Mode::Row { skip_nulls } => h.call_method1(
                        "call_rows",
                        (
                            &self.name,
                            self.callable.bind(py),
                            returns,
                            skip_nulls,
                            rows,
                            arrays,
                        ),
                    )?,
                };
                from_py(&out)
            };
            run().map_err(|e| raised(py, &self.name, e))
        })
    }
}

/// A Python table function: each input row gives zero or more output rows.
#[derive(Debug)]
pub struct PythonTableFunction {
    name: String,
    callable: Py<PyAny>,
    columns: Fields,
    /// The columns as one struct type (how they cross from Python).
    columns_type: DataType,
    mode: Mode,
}

impl PythonTableFunction {
    /// The name it was loaded under.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The output columns.
    pub fn columns(&self) -> &Fields {
        &self.columns
    }

    /// How it is called.
    pub fn mode(&self) -> Mode {
        self.mode
    }

    /// Calls the function once for a batch of `rows` rows: the output rows, and for each
    /// the index of the input row it came from.
    pub fn call(&self, args: &[ArrayRef], rows: usize) -> Result<(RecordBatch, UInt32Array)> {
        Python::attach(|py| {
            let h = helpers(py)?;
            let run = || -> PyResult<(RecordBatch, UInt32Array)> {
                let arrays = to_py(py, args)?;
                let columns = self.columns_type.to_pyarrow(py)?;
                let callable = self.callable.bind(py);
                let out = match self.mode {
                    Mode::Vectorized => h.call_method1(
                        "call_table_vectorized",
                        (&self.name, callable, columns, rows, arrays),
                    )?,
                    Mode::Row { skip_nulls } => h.call_method1(
                        "call_table_rows",
                        (&self.name, callable, columns, skip_nulls, rows, arrays),
                    )?,
                };
                let (values, index): (Bound<'_, PyAny>, Bound<'_, PyAny>) = out.extract()?;
                let values = from_py(&values)?;
                let batch = RecordBatch::from(values.as_struct().clone());
                let index = from_py(&index)?.as_primitive::<UInt32Type>().clone();
                Ok((batch, index))
            };
            run().map_err(|e| raised(py, &self.name, e))
        })
    }
}

/// A Python aggregate: per-group states kept as Python objects, pickled for
/// checkpoints.
#[derive(Debug)]
pub struct PythonAggregate {
    name: String,
    instance: Py<PyAny>,
    returns: DataType,
}

/// The states of one operator's groups.
#[derive(Debug)]
pub struct States {
    list: Py<PyList>,
}

impl PythonAggregate {
    /// The SQL name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The result type.
    pub fn returns(&self) -> &DataType {
        &self.returns
    }

    /// No states yet.
    pub fn new_states(&self) -> States {
        Python::attach(|py| States {
            list: PyList::empty(py).unbind(),
        })
    }

    /// Grows `states` to `total` groups with fresh states.
    fn grow(&self, py: Python<'_>, states: &Bound<'_, PyList>, total: usize) -> PyResult<()> {
        while states.len() < total {
            states.append(self.instance.bind(py).call_method0("create")?)?;
        }
        Ok(())
    }

    /// Accumulates a batch: row `i` belongs to group `groups[i]`.
    pub fn update(
        &self,
        states: &States,
        args: &[ArrayRef],
        groups: &[u32],
        total: usize,
    ) -> Result<()> {
        Python::attach(|py| {
            let h = helpers(py)?;
            let list = states.list.bind(py);
            let run = || -> PyResult<()> {
                self.grow(py, list, total)?;
                h.call_method1(
                    "accumulate",
                    (
                        self.instance.bind(py),
                        list,
                        // The groups cross as an Arrow array, not as Python ints.
                        arrow::array::UInt32Array::from(groups.to_vec())
                            .to_data()
                            .to_pyarrow(py)?,
                        to_py(py, args)?,
                    ),
                )?;
                Ok(())
            };
            run().map_err(|e| raised(py, &self.name, e))
        })
    }

    /// Merges the state of group `src` into group `dst` for each pair.
    pub fn merge(&self, states: &States, pairs: &[(u32, u32)], total: usize) -> Result<()> {
        Python::attach(|py| {
            let list = states.list.bind(py);
            let run = || -> PyResult<()> {
                self.grow(py, list, total)?;
                for &(d, s) in pairs {
                    let merged = self.instance.bind(py).call_method1(
                        "merge",
                        (list.get_item(d as usize)?, list.get_item(s as usize)?),
                    )?;
                    list.set_item(d as usize, merged)?;
                }
                Ok(())
            };
            run().map_err(|e| raised(py, &self.name, e))
        })
    }

    /// Gives `groups` fresh states.
    pub fn reset(&self, states: &States, groups: &[u32]) -> Result<()> {
        Python::attach(|py| {
            let list = states.list.bind(py);
            let run = || -> PyResult<()> {
                for &g in groups {
                    if (g as usize) < list.len() {
                        list.set_item(g as usize, self.instance.bind(py).call_method0("create")?)?;
                    }
                }
                Ok(())
            };
            run().map_err(|e| raised(py, &self.name, e))
        })
    }

    /// The results of `groups`.
    pub fn evaluate(&self, states: &States, groups: &[u32]) -> Result<ArrayRef> {
        Python::attach(|py| {
            let h = helpers(py)?;
            let list = states.list.bind(py);
            let run = || -> PyResult<ArrayRef> {
                let max = groups.iter().copied().max().map_or(0, |g| g as usize + 1);
                self.grow(py, list, max)?;
                let picked = PyList::new(
                    py,
                    groups
                        .iter()
                        .map(|&g| list.get_item(g as usize))
                        .collect::<PyResult<Vec<_>>>()?,
                )?;
                from_py(&h.call_method1(
                    "finish",
                    (
                        &self.name,
                        self.instance.bind(py),
                        self.returns.to_pyarrow(py)?,
                        picked,
                    ),
                )?)
            };
            run().map_err(|e| raised(py, &self.name, e))
        })
    }

    /// The pickled states of `groups` (for checkpoints).
    pub fn snapshot(&self, states: &States, groups: &[u32]) -> Result<Vec<Vec<u8>>> {
        Python::attach(|py| {
            let list = states.list.bind(py);
            let run = || -> PyResult<Vec<Vec<u8>>> {
                let pickle = py.import("pickle")?;
                groups
                    .iter()
                    .map(|&g| {
                        let b = pickle.call_method1("dumps", (list.get_item(g as usize)?,))?;
                        Ok(b.cast::<pyo3::types::PyBytes>()?.as_bytes().to_vec())
                    })
                    .collect()
            };
            run().map_err(|e| raised(py, &self.name, e))
        })
    }

    /// Merges pickled states (made by [`snapshot`](Self::snapshot)) into `groups`.
    pub fn merge_pickled(
        &self,
        states: &States,
        groups: &[u32],
        bytes: &[Vec<u8>],
        total: usize,
    ) -> Result<()> {
        Python::attach(|py| {
            let list = states.list.bind(py);
            let run = || -> PyResult<()> {
                self.grow(py, list, total)?;
                let pickle = py.import("pickle")?;
                for (&g, b) in groups.iter().zip(bytes) {
                    let saved =
                        pickle.call_method1("loads", (pyo3::types::PyBytes::new(py, b),))?;
                    let merged = self
                        .instance
                        .bind(py)
                        .call_method1("merge", (list.get_item(g as usize)?, saved))?;
                    list.set_item(g as usize, merged)?;
                }
                Ok(())
            };
            run().map_err(|e| raised(py, &self.name, e))
        })
    }
}

/// Whether a path names a Python file.
pub fn is_python_file(path: &Path) -> bool {
    path.extension().is_some_and(|e| e == "py")
}
