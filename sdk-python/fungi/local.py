"""Runs functions over a ``pyarrow.Table`` the way the host does, for unit tests."""

import pickle
from typing import Any, Callable, Dict, List, Sequence

import pyarrow as pa

from .udf import UdfError, spec_of


def _result(spec, values: Any, rows: int) -> pa.Array:
    """Checks and converts a function's result as the host does."""
    try:
        array = values if isinstance(values, (pa.Array, pa.ChunkedArray)) else pa.array(values, type=spec.returns)
    except (pa.ArrowInvalid, pa.ArrowTypeError, TypeError) as e:
        raise UdfError(f"{spec.name}: the result is not {spec.returns}: {e}") from e
    if isinstance(array, pa.ChunkedArray):
        array = array.combine_chunks()
    if len(array) != rows:
        raise UdfError(f"{spec.name}: returned {len(array)} values for {rows} rows")
    if array.type != spec.returns:
        try:
            array = array.cast(spec.returns)
        except (pa.ArrowInvalid, pa.ArrowNotImplementedError) as e:
            raise UdfError(f"{spec.name}: returned {array.type}, declared {spec.returns}: {e}") from e
    return array


def call_udf(fn: Callable, args: Sequence[pa.Array]) -> pa.Array:
    """One call of a scalar function over one batch of argument arrays."""
    spec = spec_of(fn)
    rows = len(args[0]) if args else 0
    if spec.mode == "vectorized":
        return _result(spec, fn(*args), rows)
    columns = [a.to_pylist() for a in args]
    out = []
    for i in range(rows):
        row = [c[i] for c in columns]
        out.append(None if spec.skip_nulls and any(v is None for v in row) else fn(*row))
    return _result(spec, out, rows)


def run_udf(fn: Callable, table: pa.Table, args: Sequence[str], batch_rows: int = 8192) -> pa.Array:
    """``fn`` over columns ``args`` of ``table``, in batches of ``batch_rows`` (as the
    host calls it once per batch). Returns the result column."""
    parts: List[pa.Array] = []
    for batch in table.select(list(args)).to_batches(max_chunksize=batch_rows):
        parts.append(call_udf(fn, batch.columns))
    spec = spec_of(fn)
    return pa.concat_arrays(parts) if parts else pa.array([], type=spec.returns)


def run_udaf(
    cls: type,
    table: pa.Table,
    args: Sequence[str],
    group_by: Sequence[str] = (),
    batch_rows: int = 8192,
) -> pa.Table:
    """The aggregate ``cls`` of columns ``args`` per group of ``group_by``.

    Each group's rows are accumulated in two halves into separate states that are
    pickled, unpickled and merged (as after a checkpoint restore and across subtasks),
    so a test also covers ``merge`` and the picklability of the state.
    """
    spec = spec_of(cls)
    agg = cls()
    keys: Dict[tuple, List[int]] = {}
    key_columns = [table.column(k).to_pylist() for k in group_by]
    for i in range(table.num_rows):
        keys.setdefault(tuple(c[i] for c in key_columns), []).append(i)
    out_keys: List[tuple] = []
    results = []
    for key, rows in keys.items():
        half = (len(rows) + 1) // 2
        states = []
        for part in (rows[:half], rows[half:]):
            state = agg.create()
            sub = table.take(pa.array(part, type=pa.int64())).select(list(args))
            for batch in sub.to_batches(max_chunksize=batch_rows):
                state = agg.accumulate(state, *batch.columns)
            states.append(pickle.loads(pickle.dumps(state)))
        results.append(agg.finish(agg.merge(states[0], states[1])))
        out_keys.append(key)
    columns = {k: pa.array([key[i] for key in out_keys], type=table.schema.field(k).type) for i, k in enumerate(group_by)}
    columns[spec.name] = _result(spec, results, len(results))
    return pa.table(columns)
