"""SQL type names (as written in Fungi's and Flink's DDL) and pyarrow types.

Inside a sandboxed plugin (a Wasm component) pyarrow does not exist: there types stay SQL
type names, checked by :func:`fungi.arrow_ipc.from_sql`.
"""

import re

try:
    import pyarrow as pa
except ImportError:  # inside a sandboxed plugin
    pa = None

from . import arrow_ipc


def _simple():
    return {
        "BOOLEAN": pa.bool_(),
        "TINYINT": pa.int8(),
        "SMALLINT": pa.int16(),
        "INT": pa.int32(),
        "INTEGER": pa.int32(),
        "BIGINT": pa.int64(),
        "FLOAT": pa.float32(),
        "REAL": pa.float32(),
        "DOUBLE": pa.float64(),
        "STRING": pa.string(),
        "VARCHAR": pa.string(),
        "BYTES": pa.binary(),
        "VARBINARY": pa.binary(),
        "DATE": pa.date32(),
    }


_TIMESTAMP_UNITS = {0: "s", 3: "ms", 6: "us", 9: "ns"}


def from_sql(name: str) -> "pa.DataType":
    """The pyarrow type of a SQL type name (``"DOUBLE"``, ``"TIMESTAMP(3)"``,
    ``"DECIMAL(10, 2)"``, ``"VARCHAR(20)"``)."""
    text = " ".join(name.strip().upper().split())
    base = re.sub(r"\(.*\)$", "", text).strip()
    simple = _simple()
    if base in simple:
        return simple[base]
    args = [int(a) for a in re.findall(r"\d+", text[len(base):])]
    if base == "TIMESTAMP":
        precision = args[0] if args else 6
        if precision not in _TIMESTAMP_UNITS:
            raise ValueError(f"TIMESTAMP({precision}): precision must be 0, 3, 6 or 9")
        return pa.timestamp(_TIMESTAMP_UNITS[precision])
    if base == "DECIMAL":
        precision, scale = (args + [10, 0][len(args):])[:2]
        return pa.decimal128(precision, scale)
    raise ValueError(f"unknown SQL type '{name}'; known: {', '.join(sorted(simple))}, TIMESTAMP(p), DECIMAL(p, s)")


def to_sql(t: "pa.DataType") -> str:
    """The SQL type name of a pyarrow type."""
    for name, arrow in _simple().items():
        if t == arrow and name not in ("INTEGER", "REAL", "VARCHAR", "VARBINARY"):
            return name
    if pa.types.is_timestamp(t):
        for precision, unit in _TIMESTAMP_UNITS.items():
            if t.unit == unit:
                return f"TIMESTAMP({precision})"
    if pa.types.is_decimal(t):
        return f"DECIMAL({t.precision}, {t.scale})"
    if pa.types.is_large_string(t):
        return "STRING"
    raise ValueError(f"no SQL type for {t}")


def as_arrow_type(t):
    """A pyarrow type from a pyarrow type or a SQL type name; without pyarrow (inside a
    sandboxed plugin) the SQL type name itself, once checked."""
    if pa is None:
        if isinstance(t, str):
            arrow_ipc.from_sql(t)
            return t
        raise TypeError(f"without pyarrow, types are SQL type names, not {t!r}")
    if isinstance(t, pa.DataType):
        return t
    if isinstance(t, str):
        return from_sql(t)
    raise TypeError(f"expected a pyarrow type or a SQL type name, not {t!r}")


def codec_type(t) -> str:
    """The :mod:`fungi.arrow_ipc` type name of a pyarrow type or a SQL type name."""
    if isinstance(t, str):
        return arrow_ipc.from_sql(t)
    return arrow_ipc.from_sql(to_sql(t))
