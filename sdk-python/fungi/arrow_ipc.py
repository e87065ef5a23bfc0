"""A small, pure-Python reader and writer of Arrow IPC streams.

Sandboxed plugins built from Python (``fungi plugin build --python``) run CPython inside
a WebAssembly component, where pyarrow (a native extension) does not exist. Batches cross
the plugin boundary as Arrow IPC stream bytes (a schema and at most one record batch), so
the guest needs an IPC codec written in Python. This is it: enough of the format for the
types SQL functions exchange, with columns as Python lists (``None`` for null).

Supported types (names as in :data:`TYPES`): ``bool``, ``int8`` .. ``int64``,
``uint8`` .. ``uint64``, ``float32``, ``float64``, ``utf8``, ``large_utf8``, ``binary``,
``large_binary``, ``date32`` (Python ``datetime.date``) and ``timestamp[s|ms|us|ns]``
with an optional time zone (values as integers in the unit, as the host stores them).
Anything else (decimals, lists, structs, dictionaries, compressed bodies) is refused with
an :class:`IpcError` naming it.

The flatbuffers of the metadata (``Message.fbs``, ``Schema.fbs``) are read and written by
hand: the ``flatbuffers`` runtime would only replace the lowest layer, while the Arrow
tables on top of it would still have to be written here, as no generated Python code for
them ships anywhere installable.
"""

from __future__ import annotations

import datetime
import re
import struct
from array import array
from dataclasses import dataclass
from itertools import accumulate
from typing import Any, List, Optional, Sequence, Tuple

__all__ = ["Field", "IpcError", "TYPES", "decode", "encode", "from_sql", "schema_bytes"]


class IpcError(ValueError):
    """Bytes that are not an Arrow IPC stream this codec reads, or values that do not fit
    their column's type."""


# Schema.fbs `Type` union ids.
_T_NULL, _T_INT, _T_FLOAT, _T_BINARY, _T_UTF8, _T_BOOL = 1, 2, 3, 4, 5, 6
_T_DATE, _T_TIMESTAMP, _T_LARGE_BINARY, _T_LARGE_UTF8 = 8, 10, 19, 20
# Message.fbs `MessageHeader` union ids.
_H_SCHEMA, _H_RECORD_BATCH = 1, 3
_METADATA_V5 = 4
_UNITS = ("s", "ms", "us", "ns")

#: Fixed-width types: name -> (``array`` typecode, byte width).
_FIXED = {
    "int8": ("b", 1),
    "int16": ("h", 2),
    "int32": ("i", 4),
    "int64": ("q", 8),
    "uint8": ("B", 1),
    "uint16": ("H", 2),
    "uint32": ("I", 4),
    "uint64": ("Q", 8),
    "float32": ("f", 4),
    "float64": ("d", 8),
    "date32": ("i", 4),
}
_VARIABLE = {"utf8": "i", "large_utf8": "q", "binary": "i", "large_binary": "q"}

#: The type names this codec knows (timestamps also as ``timestamp[ms, tz=UTC]``).
TYPES = ("bool",) + tuple(_FIXED) + tuple(_VARIABLE) + tuple(f"timestamp[{u}]" for u in _UNITS)

_TIMESTAMP = re.compile(r"^timestamp\[(s|ms|us|ns)(?:, tz=(.+))?\]$")
_EPOCH = datetime.date(1970, 1, 1)


def _check_type(name: str) -> str:
    if name in _FIXED or name in _VARIABLE or name == "bool" or _TIMESTAMP.match(name):
        return name
    raise IpcError(f"unsupported type '{name}'; supported: {', '.join(TYPES)}")


@dataclass(frozen=True)
class Field:
    """A column: its name, type name (see :data:`TYPES`) and nullability."""

    name: str
    type: str
    nullable: bool = True

    def __post_init__(self):
        _check_type(self.type)


_SQL = {
    "BOOLEAN": "bool",
    "TINYINT": "int8",
    "SMALLINT": "int16",
    "INT": "int32",
    "INTEGER": "int32",
    "BIGINT": "int64",
    "FLOAT": "float32",
    "REAL": "float32",
    "DOUBLE": "float64",
    "STRING": "utf8",
    "VARCHAR": "utf8",
    "TEXT": "utf8",
    "BYTES": "binary",
    "VARBINARY": "binary",
    "DATE": "date32",
}
_SQL_PRECISION = {0: "s", 3: "ms", 6: "us", 9: "ns"}


def from_sql(name: str) -> str:
    """The codec's type name of a SQL type name (``"DOUBLE"``, ``"VARCHAR(20)"``,
    ``"TIMESTAMP(3)"``); a codec type name is returned as it is."""
    if name in TYPES or _TIMESTAMP.match(name):
        return name
    text = " ".join(name.strip().upper().split())
    base = re.sub(r"\(.*\)$", "", text).strip()
    if base in _SQL:
        return _SQL[base]
    if base == "TIMESTAMP":
        digits = re.findall(r"\d+", text[len(base):])
        precision = int(digits[0]) if digits else 6
        if precision not in _SQL_PRECISION:
            raise IpcError(f"TIMESTAMP({precision}): precision must be 0, 3, 6 or 9")
        return f"timestamp[{_SQL_PRECISION[precision]}]"
    raise IpcError(
        f"SQL type '{name}' has no sandboxed Python mapping; supported: "
        f"{', '.join(sorted(_SQL))}, TIMESTAMP(p)"
    )


# ---------------------------------------------------------------------------------------
# Flatbuffers: reading


def _u16(b, o):
    return struct.unpack_from("<H", b, o)[0]


def _i32(b, o):
    return struct.unpack_from("<i", b, o)[0]


def _u32(b, o):
    return struct.unpack_from("<I", b, o)[0]


class _Table:
    """A flatbuffer table at `pos` of `buf`."""

    __slots__ = ("buf", "pos", "vtable", "vtable_len")

    def __init__(self, buf, pos: int):
        self.buf = buf
        self.pos = pos
        self.vtable = pos - _i32(buf, pos)
        self.vtable_len = _u16(buf, self.vtable)

    def _field(self, slot: int) -> int:
        o = 4 + 2 * slot
        return _u16(self.buf, self.vtable + o) if o < self.vtable_len else 0

    def scalar(self, slot: int, fmt: str, default=0):
        o = self._field(slot)
        return struct.unpack_from(fmt, self.buf, self.pos + o)[0] if o else default

    def _target(self, slot: int) -> Optional[int]:
        o = self._field(slot)
        if not o:
            return None
        p = self.pos + o
        return p + _u32(self.buf, p)

    def table(self, slot: int) -> Optional["_Table"]:
        p = self._target(slot)
        return None if p is None else _Table(self.buf, p)

    def string(self, slot: int) -> Optional[str]:
        p = self._target(slot)
        if p is None:
            return None
        n = _u32(self.buf, p)
        return bytes(self.buf[p + 4 : p + 4 + n]).decode("utf-8")

    def tables(self, slot: int) -> List["_Table"]:
        p = self._target(slot)
        if p is None:
            return []
        n = _u32(self.buf, p)
        return [_Table(self.buf, p + 4 + 4 * i + _u32(self.buf, p + 4 + 4 * i)) for i in range(n)]

    def structs(self, slot: int, fmt: str) -> List[tuple]:
        p = self._target(slot)
        if p is None:
            return []
        n = _u32(self.buf, p)
        size = struct.calcsize(fmt)
        return [struct.unpack_from(fmt, self.buf, p + 4 + size * i) for i in range(n)]


def _read_type(field: _Table) -> str:
    kind = field.scalar(2, "<B")
    t = field.table(3)
    if kind == _T_INT:
        bits, signed = t.scalar(0, "<i"), t.scalar(1, "<?", False)
        return f"{'' if signed else 'u'}int{bits}"
    if kind == _T_FLOAT:
        precision = t.scalar(0, "<h")
        if precision == 1:
            return "float32"
        if precision == 2:
            return "float64"
        raise IpcError("unsupported type 'float16'")
    simple = {
        _T_UTF8: "utf8",
        _T_LARGE_UTF8: "large_utf8",
        _T_BINARY: "binary",
        _T_LARGE_BINARY: "large_binary",
        _T_BOOL: "bool",
    }
    if kind in simple:
        return simple[kind]
    if kind == _T_DATE:
        if t.scalar(0, "<h", 1) != 0:
            raise IpcError("unsupported type 'date64'")
        return "date32"
    if kind == _T_TIMESTAMP:
        unit = _UNITS[t.scalar(0, "<h")]
        tz = t.string(1)
        return f"timestamp[{unit}, tz={tz}]" if tz else f"timestamp[{unit}]"
    raise IpcError(f"unsupported Arrow type id {kind} in column '{field.string(0)}'")


def _read_schema(schema: _Table) -> List[Field]:
    fields = []
    for f in schema.tables(1):
        if f.table(4) is not None:
            raise IpcError(f"column '{f.string(0)}' is dictionary-encoded, which is unsupported")
        fields.append(Field(f.string(0) or "", _read_type(f), f.scalar(1, "<?", False)))
    return fields


def _messages(data):
    """(header type, header table, body) of each message of a stream."""
    pos, n = 0, len(data)
    while pos + 4 <= n:
        size = _i32(data, pos)
        pos += 4
        if size == -1:  # continuation marker, then the length
            size = _i32(data, pos)
            pos += 4
        if size == 0:
            return
        meta = memoryview(data)[pos : pos + size]
        pos += size
        message = _Table(meta, _u32(meta, 0))
        if message.scalar(0, "<h") < _METADATA_V5 - 1:
            raise IpcError("Arrow IPC metadata before version 4 is unsupported")
        body_len = message.scalar(3, "<q")
        body = memoryview(data)[pos : pos + body_len]
        pos += body_len
        yield message.scalar(1, "<B"), message.table(2), body


def _bits(buf, length: int) -> List[bool]:
    raw = bytes(buf)
    return [bool(raw[i >> 3] >> (i & 7) & 1) for i in range(length)]


def _column(field: Field, length: int, null_count: int, buffers, body) -> List[Any]:
    def buffer(i):
        off, size = buffers[i]
        return body[off : off + size]

    validity = _bits(buffer(0), length) if null_count else None
    t = field.type
    if t == "bool":
        values = _bits(buffer(1), length)
        used = 2
    elif t in _FIXED or t.startswith("timestamp"):
        code = _FIXED[t][0] if t in _FIXED else "q"
        raw = array(code)
        raw.frombytes(bytes(buffer(1))[: length * raw.itemsize])
        values = raw.tolist()
        if t == "date32":
            values = [_EPOCH + datetime.timedelta(days=d) for d in values]
        used = 2
    else:
        offsets = array(_VARIABLE[t])
        offsets.frombytes(bytes(buffer(1))[: (length + 1) * offsets.itemsize])
        data = bytes(buffer(2))
        if t.endswith("utf8"):
            values = [data[a:b].decode("utf-8") for a, b in zip(offsets, offsets[1:])]
        else:
            values = [data[a:b] for a, b in zip(offsets, offsets[1:])]
        used = 3
    if validity is not None:
        values = [v if ok else None for v, ok in zip(values, validity)]
    del buffers[:used]
    return values


def decode(data: bytes) -> Tuple[List[Field], Optional[List[List[Any]]], int]:
    """Reads a stream: its fields, its columns (``None`` without a batch) and rows."""
    fields = None
    for kind, header, body in _messages(data):
        if kind == _H_SCHEMA:
            fields = _read_schema(header)
        elif kind == _H_RECORD_BATCH:
            if fields is None:
                raise IpcError("a record batch before the schema")
            if header.table(3) is not None:
                raise IpcError("compressed record batches are unsupported")
            length = header.scalar(0, "<q")
            nodes = header.structs(1, "<qq")
            buffers = header.structs(2, "<qq")
            columns = [
                _column(f, node[0], node[1], buffers, body) for f, node in zip(fields, nodes)
            ]
            return fields, columns, length
        else:
            raise IpcError(f"unsupported IPC message type {kind}")
    if fields is None:
        raise IpcError("no schema in the stream")
    return fields, None, 0


# ---------------------------------------------------------------------------------------
# Flatbuffers: writing (front to back; offsets patched once their targets are written)


class _Builder:
    def __init__(self):
        self.buf = bytearray(4)  # the root offset, patched by `finish`

    def pad(self, align: int, phase: int = 0):
        while len(self.buf) % align != phase:
            self.buf.append(0)

    def patch(self, at: int, target: int):
        struct.pack_into("<I", self.buf, at, target - at)

    def string(self, text: str) -> int:
        raw = text.encode("utf-8")
        self.pad(4)
        at = len(self.buf)
        self.buf += struct.pack("<I", len(raw)) + raw + b"\0"
        return at

    def table(self, fields) -> int:
        """`fields`: (slot, struct format or "offset", value); an offset's value is a
        function that writes its target and returns its position."""
        layout, rel = [], 4
        for slot, fmt, value in sorted(fields, key=lambda f: -_size(f[1])):
            size = _size(fmt)
            rel = (rel + size - 1) // size * size
            layout.append((slot, fmt, value, rel))
            rel += size
        table_len = rel
        slots = max((f[0] for f in fields), default=-1) + 1
        vtable = [0] * slots
        for slot, _, _, at in layout:
            vtable[slot] = at
        self.pad(2)
        vt_at = len(self.buf)
        self.buf += struct.pack(f"<HH{slots}H", 4 + 2 * slots, table_len, *vtable)
        self.pad(8, 0)
        start = len(self.buf)
        self.buf += bytes(table_len)
        struct.pack_into("<i", self.buf, start, start - vt_at)
        children = []
        for _, fmt, value, at in layout:
            if fmt == "offset":
                children.append((start + at, value))
            else:
                struct.pack_into(fmt, self.buf, start + at, value)
        for at, write in children:
            self.patch(at, write())
        return start

    def tables(self, writers) -> int:
        self.pad(4)
        at = len(self.buf)
        self.buf += struct.pack("<I", len(writers)) + bytes(4 * len(writers))
        for i, write in enumerate(writers):
            self.patch(at + 4 + 4 * i, write())
        return at

    def structs(self, fmt: str, items) -> int:
        self.pad(8, 4)
        at = len(self.buf)
        self.buf += struct.pack("<I", len(items))
        for item in items:
            self.buf += struct.pack(fmt, *item)
        return at

    def finish(self, root) -> bytes:
        self.patch(0, root())
        self.pad(8)
        return bytes(self.buf)


def _size(fmt: str) -> int:
    return 4 if fmt == "offset" else struct.calcsize(fmt)


def _type_table(b: _Builder, t: str):
    """(union type id, writer of the type table)."""
    if t in ("int8", "int16", "int32", "int64", "uint8", "uint16", "uint32", "uint64"):
        bits = int(t.lstrip("uint"))
        return _T_INT, lambda: b.table([(0, "<i", bits), (1, "<?", not t.startswith("u"))])
    if t in ("float32", "float64"):
        return _T_FLOAT, lambda: b.table([(0, "<h", 1 if t == "float32" else 2)])
    if t == "date32":
        return _T_DATE, lambda: b.table([(0, "<h", 0)])
    m = _TIMESTAMP.match(t)
    if m:
        unit, tz = _UNITS.index(m.group(1)), m.group(2)
        fields = [(0, "<h", unit)] + ([(1, "offset", lambda: b.string(tz))] if tz else [])
        return _T_TIMESTAMP, lambda: b.table(fields)
    ids = {
        "bool": _T_BOOL,
        "utf8": _T_UTF8,
        "large_utf8": _T_LARGE_UTF8,
        "binary": _T_BINARY,
        "large_binary": _T_LARGE_BINARY,
    }
    return ids[t], lambda: b.table([])


def _field_table(b: _Builder, f: Field):
    kind, write_type = _type_table(b, f.type)
    return lambda: b.table(
        [
            (0, "offset", lambda: b.string(f.name)),
            (1, "<?", f.nullable),
            (2, "<B", kind),
            (3, "offset", write_type),
            (5, "offset", lambda: b.tables([])),
        ]
    )


def _schema_message(fields: Sequence[Field]) -> bytes:
    def header(b):
        return _H_SCHEMA, lambda: b.table(
            [(0, "<h", 0), (1, "offset", lambda: b.tables([_field_table(b, f) for f in fields]))]
        )

    return _message_with(header, 0)


def _message_with(header, body_len: int) -> bytes:
    b = _Builder()
    kind, write_header = header(b)
    meta = b.finish(
        lambda: b.table(
            [
                (0, "<h", _METADATA_V5),
                (1, "<B", kind),
                (2, "offset", write_header),
                (3, "<q", body_len),
            ]
        )
    )
    return struct.pack("<Ii", 0xFFFFFFFF, len(meta)) + meta


_END = struct.pack("<Ii", 0xFFFFFFFF, 0)


def _validity(values: Sequence[Any]) -> Tuple[int, bytes]:
    nulls = sum(1 for v in values if v is None)
    if not nulls:
        return 0, b""
    return nulls, _pack_bits(v is not None for v in values)


def _pack_bits(flags) -> bytes:
    out = bytearray()
    byte, bit = 0, 0
    for flag in flags:
        if flag:
            byte |= 1 << bit
        bit += 1
        if bit == 8:
            out.append(byte)
            byte, bit = 0, 0
    if bit:
        out.append(byte)
    return bytes(out)


def _encode_column(f: Field, values: Sequence[Any]) -> Tuple[int, List[bytes]]:
    """(null count, buffers) of one column."""
    nulls, validity = _validity(values)
    t = f.type
    try:
        if t == "bool":
            return nulls, [validity, _pack_bits(bool(v) for v in values)]
        if t in _FIXED or t.startswith("timestamp"):
            code = _FIXED[t][0] if t in _FIXED else "q"
            if t == "date32":
                values = [None if v is None else (v - _EPOCH).days for v in values]
            zero = 0.0 if code in "fd" else 0
            return nulls, [validity, array(code, [zero if v is None else v for v in values]).tobytes()]
        raw = [
            b"" if v is None else (v.encode("utf-8") if t.endswith("utf8") else bytes(v))
            for v in values
        ]
        offsets = array(_VARIABLE[t], [0])
        offsets.extend(accumulate(len(r) for r in raw))
        return nulls, [validity, offsets.tobytes(), b"".join(raw)]
    except (TypeError, OverflowError, AttributeError) as e:
        raise IpcError(f"column '{f.name}' ({t}): a value does not fit: {e}") from None


def schema_bytes(fields: Sequence[Field]) -> bytes:
    """A stream with a schema and no batch (a plugin's function signature)."""
    return _schema_message(fields) + _END


def encode(fields: Sequence[Field], columns: Sequence[Sequence[Any]]) -> bytes:
    """A stream with the schema of `fields` and one batch of `columns` (equal lengths)."""
    if len(fields) != len(columns):
        raise IpcError(f"{len(fields)} fields but {len(columns)} columns")
    length = len(columns[0]) if columns else 0
    nodes, buffers, body = [], [], bytearray()
    for f, values in zip(fields, columns):
        if len(values) != length:
            raise IpcError(f"column '{f.name}' has {len(values)} values, not {length}")
        nulls, parts = _encode_column(f, values)
        nodes.append((length, nulls))
        for part in parts:
            buffers.append((len(body), len(part)))
            body += part
            body += bytes(-len(body) % 8)

    def header(b):
        return _H_RECORD_BATCH, lambda: b.table(
            [
                (0, "<q", length),
                (1, "offset", lambda: b.structs("<qq", nodes)),
                (2, "offset", lambda: b.structs("<qq", buffers)),
            ]
        )

    return _schema_message(fields) + _message_with(header, len(body)) + bytes(body) + _END
