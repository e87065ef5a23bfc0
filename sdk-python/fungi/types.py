"""SQL type names (as written in Fungi's and Flink's DDL) and pyarrow types."""

import re

import pyarrow as pa

_SIMPLE = {
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


def from_sql(name: str) -> pa.DataType:
    """The pyarrow type of a SQL type name (``"DOUBLE"``, ``"TIMESTAMP(3)"``,
    ``"DECIMAL(10, 2)"``, ``"VARCHAR(20)"``)."""
    text = " ".join(name.strip().upper().split())
    base = re.sub(r"\(.*\)$", "", text).strip()
    if base in _SIMPLE:
        return _SIMPLE[base]
    args = [int(a) for a in re.findall(r"\d+", text[len(base):])]
    if base == "TIMESTAMP":
        precision = args[0] if args else 6
        if precision not in _TIMESTAMP_UNITS:
            raise ValueError(f"TIMESTAMP({precision}): precision must be 0, 3, 6 or 9")
        return pa.timestamp(_TIMESTAMP_UNITS[precision])
    if base == "DECIMAL":
        precision, scale = (args + [10, 0][len(args):])[:2]
        return pa.decimal128(precision, scale)
    raise ValueError(f"unknown SQL type '{name}'; known: {', '.join(sorted(_SIMPLE))}, TIMESTAMP(p), DECIMAL(p, s)")


def to_sql(t: pa.DataType) -> str:
    """The SQL type name of a pyarrow type."""
    for name, arrow in _SIMPLE.items():
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


def as_arrow_type(t) -> pa.DataType:
    """A pyarrow type from a pyarrow type or a SQL type name."""
    if isinstance(t, pa.DataType):
        return t
    if isinstance(t, str):
        return from_sql(t)
    raise TypeError(f"expected a pyarrow type or a SQL type name, not {t!r}")
