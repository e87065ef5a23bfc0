"""The guest side of a sandboxed Python plugin: Fungi's WIT exports over decorated functions.

Only imported inside a component built by :mod:`fungi.build`: it needs the bindings
componentize-py generates (``wit_world``, ``componentize_py_types``). The build's entry
module calls :func:`register` with the user's module, then exposes the classes below under
the names componentize-py looks for.

Per call, a batch's Arrow IPC bytes are decoded into Python lists
(:mod:`fungi.arrow_ipc`), the function runs once per batch (vectorized: lists in, a list
out) or once per row (``mode="row"``; rows with a null argument give null without a call
unless ``skip_nulls=False``), and the result is encoded back. An exception becomes the
plugin error ``internal`` carrying the function name, ``Type: message`` and the traceback;
the host then applies the job's error policy (fail or dead-letter).
"""

import pickle
import traceback

from componentize_py_types import Err
from wit_world.imports import types as wit

from . import arrow_ipc
from .types import codec_type
from .udf import FunctionSpec

_functions = {}
_manifest = {}


def register(module, name: str, version: str, description: str) -> None:
    """Exports every function and aggregate of `module` marked with the SDK's decorators."""
    for value in vars(module).values():
        spec = getattr(value, "__fungi__", None)
        if isinstance(spec, FunctionSpec):
            _functions[spec.name] = (value, spec)
    _manifest.update(name=name, version=version, description=description)


def _fields(spec: FunctionSpec):
    """The argument fields and the result field (a table function: its column fields)."""
    args = [arrow_ipc.Field(f"arg{i}", codec_type(t)) for i, t in enumerate(spec.args or ())]
    if spec.kind == "udtf":
        return args, [arrow_ipc.Field(n, codec_type(t)) for n, t in spec.returns]
    return args, arrow_ipc.Field("result", codec_type(spec.returns))


def _signature(spec: FunctionSpec):
    args, result = _fields(spec)
    return wit.FunctionSignature(
        name=spec.name,
        arguments=arrow_ipc.schema_bytes(args),
        returns=arrow_ipc.schema_bytes(result if isinstance(result, list) else [result]),
        volatility=wit.Volatility.IMMUTABLE if spec.deterministic else wit.Volatility.VOLATILE,
    )


def _raised(what: str, e: BaseException) -> Err:
    trace = "".join(traceback.format_exception(type(e), e, e.__traceback__))
    return Err(wit.PluginError_Internal(f"Python {what} raised {type(e).__name__}: {e}\n{trace}"))


def _lookup(name: str, kind: str):
    entry = _functions.get(name)
    if entry is None or entry[1].kind != kind:
        known = ", ".join(sorted(n for n, (_, s) in _functions.items() if s.kind == kind))
        raise Err(wit.PluginError_Unsupported(f"no {kind} '{name}' in this plugin; it has: {known}"))
    return entry


def _decode(data: bytes, expected, what: str):
    """The argument columns of a call, checked against the declared argument fields."""
    try:
        fields, columns, rows = arrow_ipc.decode(data)
    except arrow_ipc.IpcError as e:
        raise Err(wit.PluginError_InvalidInput(f"{what}: arguments: {e}")) from None
    got = [f.type for f in fields]
    want = [f.type for f in expected]
    if got != want:
        raise Err(
            wit.PluginError_InvalidInput(
                f"{what} takes ({', '.join(want)}), called with ({', '.join(got)})"
            )
        )
    return columns or [], rows


def _encode(field, values, rows: int, what: str) -> bytes:
    if not isinstance(values, list):
        try:
            values = list(values)
        except TypeError:
            raise Err(
                wit.PluginError_InvalidInput(f"{what} returned {type(values).__name__}, not a list")
            ) from None
    if len(values) != rows:
        raise Err(wit.PluginError_InvalidInput(f"{what} returned {len(values)} values for {rows} rows"))
    try:
        return arrow_ipc.encode([field], [values])
    except arrow_ipc.IpcError as e:
        raise Err(wit.PluginError_InvalidInput(f"{what}: result {e}")) from None


class Plugin:
    """The manifest."""

    def describe(self):
        return wit.Manifest(
            name=_manifest["name"],
            version=_manifest["version"],
            description=_manifest["description"],
            capabilities=wit.Capabilities(network=[], directories=[]),
        )


class Scalar:
    """The scalar functions of the module."""

    def functions(self):
        return [_signature(s) for _, s in _functions.values() if s.kind == "udf"]


class ScalarFunction:
    """One scalar function, called per batch."""

    @classmethod
    def create(cls, name, config):
        fn, spec = _lookup(name, "udf")
        self = cls()
        self.fn, self.spec = fn, spec
        self.args, self.result = _fields(spec)
        return self

    def call(self, args):
        what = f"function '{self.spec.name}'"
        columns, rows = _decode(args, self.args, what)
        try:
            if self.spec.mode == "vectorized":
                values = self.fn(*columns)
            elif self.spec.skip_nulls:
                fn = self.fn
                values = [
                    None if None in row else fn(*row) for row in zip(*columns)
                ] if columns else [fn() for _ in range(rows)]
            else:
                fn = self.fn
                values = [fn(*row) for row in zip(*columns)] if columns else [fn() for _ in range(rows)]
        except Exception as e:  # noqa: BLE001 - every failure of user code is reported
            raise _raised(what, e) from None
        return _encode(self.result, values, rows, what)


class Table:
    """The table functions of the module."""

    def functions(self):
        return [_signature(s) for _, s in _functions.values() if s.kind == "udtf"]


class TableFunction:
    """One table function, called per batch: the output rows and, for each, its input row."""

    @classmethod
    def create(cls, name, config):
        fn, spec = _lookup(name, "udtf")
        self = cls()
        self.fn, self.spec = fn, spec
        self.args, self.columns = _fields(spec)
        return self

    def call(self, args):
        what = f"table function '{self.spec.name}'"
        columns, rows = _decode(args, self.args, what)
        width = len(self.columns)
        try:
            if self.spec.mode == "vectorized":
                out, index = self.fn(*columns)
                out, index = [list(c) for c in out], list(index)
            else:
                out, index = [[] for _ in range(width)], []
                for i, row in enumerate(zip(*columns) if columns else [()] * rows):
                    if self.spec.skip_nulls and None in row:
                        continue
                    for produced in self.fn(*row) or ():
                        if width == 1 and not isinstance(produced, (tuple, list)):
                            produced = (produced,)
                        if len(produced) != width:
                            raise ValueError(f"a row of {len(produced)} values for {width} columns")
                        for j in range(width):
                            out[j].append(produced[j])
                        index.append(i)
        except Exception as e:  # noqa: BLE001
            raise _raised(what, e) from None
        if len(out) != width or any(len(c) != len(index) for c in out):
            raise Err(wit.PluginError_InvalidInput(f"{what}: columns and input rows differ in length"))
        try:
            return (arrow_ipc.encode(self.columns, out), index)
        except arrow_ipc.IpcError as e:
            raise Err(wit.PluginError_InvalidInput(f"{what}: result {e}")) from None


class Aggregate:
    """The aggregates of the module."""

    def functions(self):
        from wit_world.exports.aggregate import AggregateSignature

        return [
            AggregateSignature(signature=_signature(s), retractable=False)
            for _, s in _functions.values()
            if s.kind == "udaf"
        ]


class Accumulator:
    """An aggregate's states for every group of an operator: a list indexed by group id
    (``None`` until a group gets rows); snapshots are the pickled states."""

    @classmethod
    def create(cls, name, config):
        agg_class, spec = _lookup(name, "udaf")
        self = cls()
        self.spec = spec
        self.args, self.result = _fields(spec)
        self.what = f"aggregate '{spec.name}'"
        try:
            self.agg = agg_class()
        except Exception as e:  # noqa: BLE001
            raise _raised(self.what, e) from None
        self.states = []
        return self

    def _state(self, group):
        state = self.states[group]
        return self.agg.create() if state is None else state

    def _grow(self, total):
        if len(self.states) < total:
            self.states.extend([None] * (total - len(self.states)))

    def update(self, args, groups, total_groups):
        columns, _ = _decode(args, self.args, self.what)
        self._grow(total_groups)
        rows_of = {}
        for row, group in enumerate(groups):
            rows_of.setdefault(group, []).append(row)
        try:
            for group, rows in rows_of.items():
                part = [[column[r] for r in rows] for column in columns]
                self.states[group] = self.agg.accumulate(self._state(group), *part)
        except Exception as e:  # noqa: BLE001
            raise _raised(self.what, e) from None

    def retract(self, args, groups, total_groups):
        raise Err(wit.PluginError_Unsupported(f"{self.what} cannot retract rows"))

    def merge(self, dst_src, total_groups):
        self._grow(total_groups)
        try:
            for dst, src in dst_src:
                if self.states[src] is not None:
                    self.states[dst] = self.agg.merge(self._state(dst), self.states[src])
        except Exception as e:  # noqa: BLE001
            raise _raised(self.what, e) from None

    def evaluate(self, groups):
        self._grow(max(groups, default=-1) + 1)
        try:
            values = [self.agg.finish(self._state(g)) for g in groups]
        except Exception as e:  # noqa: BLE001
            raise _raised(self.what, e) from None
        return _encode(self.result, values, len(groups), self.what)

    def reset(self, groups):
        for g in groups:
            if g < len(self.states):
                self.states[g] = None

    def snapshot(self, groups):
        self._grow(max(groups, default=-1) + 1)
        try:
            return [pickle.dumps(self._state(g)) for g in groups]
        except Exception as e:  # noqa: BLE001
            raise _raised(f"{self.what} (pickling its state)", e) from None

    def restore(self, groups, states):
        self._grow(max(groups, default=-1) + 1)
        try:
            for g, raw in zip(groups, states):
                self.states[g] = pickle.loads(raw)
        except Exception as e:  # noqa: BLE001
            raise Err(wit.PluginError_InvalidInput(f"{self.what}: unreadable state: {e}")) from None
