"""The pure-Python IPC codec against pyarrow, both ways."""

import datetime

import pyarrow as pa
import pytest

from fungi import arrow_ipc
from fungi.arrow_ipc import Field

COLUMNS = {
    "bool": ([True, None, False, True, False, False, True, True, None, True], pa.bool_()),
    "int8": ([1, -2, None, 127, -128, 0, 5, 6, 7, 8], pa.int8()),
    "int32": ([1, 2, None, 2**31 - 1, -(2**31), 0, 5, 6, 7, 8], pa.int32()),
    "int64": ([10**15, None, -3, 0, 1, 2, 3, 4, 5, 6], pa.int64()),
    "uint64": ([2**64 - 1, 0, None, 1, 2, 3, 4, 5, 6, 7], pa.uint64()),
    "float32": ([0.5, None, -1.25, 2.0, 0.0, 1.0, 1.5, 3.0, 4.0, 8.0], pa.float32()),
    "float64": ([0.1, 1e300, None, -2.5, 0.0, 1.0, 2.0, 3.0, 4.0, 5.0], pa.float64()),
    "utf8": (["a", "", None, "héllo", "ünïcode ✓", "x" * 100, "b", "c", "d", "e"], pa.string()),
    "large_utf8": (["a", None, "bc", "", "d", "e", "f", "g", "h", "i"], pa.large_string()),
    "binary": ([b"\x00\x01", None, b"", b"abc", b"d", b"e", b"f", b"g", b"h", b"i"], pa.binary()),
    "date32": ([datetime.date(2026, 11, 26), None, datetime.date(1969, 12, 31)] + [datetime.date(2000, 1, 1)] * 7, pa.date32()),
    "timestamp[ms]": ([1_700_000_000_000, None, -1, 0, 1, 2, 3, 4, 5, 6], pa.timestamp("ms")),
    "timestamp[us, tz=UTC]": ([1, 2, None, 4, 5, 6, 7, 8, 9, 10], pa.timestamp("us", tz="UTC")),
}


def _pyarrow_values(name, values):
    if name.startswith("timestamp"):
        return pa.array(values, pa.int64()).cast(COLUMNS[name][1])
    return pa.array(values, COLUMNS[name][1])


def test_what_it_writes_pyarrow_reads():
    fields = [Field(f"c_{i}", name) for i, name in enumerate(COLUMNS)]
    data = arrow_ipc.encode(fields, [values for values, _ in COLUMNS.values()])
    table = pa.ipc.open_stream(data).read_all()
    assert table.num_rows == 10
    for i, (name, (values, arrow_type)) in enumerate(COLUMNS.items()):
        column = table.column(i)
        assert column.type == arrow_type, name
        assert column.combine_chunks().equals(_pyarrow_values(name, values)), name


def test_what_pyarrow_writes_it_reads():
    arrays = [_pyarrow_values(name, values) for name, (values, _) in COLUMNS.items()]
    batch = pa.record_batch(arrays, names=list(COLUMNS))
    sink = pa.BufferOutputStream()
    with pa.ipc.new_stream(sink, batch.schema) as w:
        w.write_batch(batch)
    fields, columns, rows = arrow_ipc.decode(sink.getvalue().to_pybytes())
    assert rows == 10
    assert [f.type for f in fields] == list(COLUMNS)
    assert [f.name for f in fields] == list(COLUMNS)
    for (name, (values, _)), column in zip(COLUMNS.items(), columns):
        assert column == values, name


def test_sliced_and_empty_batches_and_schemas():
    batch = pa.record_batch([pa.array(["x", None, "yz", "w"]).slice(1, 3)], names=["s"])
    sink = pa.BufferOutputStream()
    with pa.ipc.new_stream(sink, batch.schema) as w:
        w.write_batch(batch)
    assert arrow_ipc.decode(sink.getvalue().to_pybytes())[1] == [[None, "yz", "w"]]
    schema = pa.ipc.open_stream(arrow_ipc.schema_bytes([Field("x", "float64", False)])).schema
    assert schema == pa.schema([pa.field("x", pa.float64(), nullable=False)])
    fields, columns, rows = arrow_ipc.decode(arrow_ipc.encode([Field("x", "int64")], [[]]))
    assert (columns, rows) == ([[]], 0)


def test_bad_input_is_named():
    with pytest.raises(arrow_ipc.IpcError, match="unsupported type 'decimal'"):
        Field("d", "decimal")
    with pytest.raises(arrow_ipc.IpcError, match="column 'n' .* does not fit"):
        arrow_ipc.encode([Field("n", "int64")], [["seven"]])
    with pytest.raises(arrow_ipc.IpcError, match="has 1 values, not 2"):
        arrow_ipc.encode([Field("a", "int64"), Field("b", "int64")], [[1, 2], [1]])
    batch = pa.record_batch([pa.array([[1]])], names=["l"])
    sink = pa.BufferOutputStream()
    with pa.ipc.new_stream(sink, batch.schema) as w:
        w.write_batch(batch)
    with pytest.raises(arrow_ipc.IpcError, match="unsupported Arrow type id 12 in column 'l'"):
        arrow_ipc.decode(sink.getvalue().to_pybytes())
    assert arrow_ipc.from_sql("VARCHAR(20)") == "utf8"
    assert arrow_ipc.from_sql("TIMESTAMP(3)") == "timestamp[ms]"
    with pytest.raises(arrow_ipc.IpcError, match="'DECIMAL\\(10, 2\\)' has no sandboxed Python mapping"):
        arrow_ipc.from_sql("DECIMAL(10, 2)")
