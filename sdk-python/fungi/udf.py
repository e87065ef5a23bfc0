"""The ``@udf`` and ``@udaf`` decorators and what they record for the host."""

import dataclasses
import inspect
from typing import Any, Callable, Optional, Sequence, Tuple

from .types import as_arrow_type

MODES = ("vectorized", "row")


class UdfError(Exception):
    """A function broke its contract (wrong result length or type, bad declaration)."""


@dataclasses.dataclass(frozen=True)
class FunctionSpec:
    """What the host needs to call a Python function: set by the decorators as the
    function's (or class's) ``__fungi__`` attribute."""

    #: ``"udf"``, ``"udaf"`` or ``"udtf"``.
    kind: str
    #: The SQL name (default: the Python name).
    name: str
    #: The result type (a pyarrow type; a SQL type name inside a sandboxed plugin); for a
    #: table function, its columns as ``(name, type)`` pairs.
    returns: Any
    #: ``"vectorized"`` (arrays in, array out) or ``"row"`` (one call per row).
    mode: str = "vectorized"
    #: Row mode: whether a row with a null argument gives null without a call.
    skip_nulls: bool = True
    #: Whether the same arguments always give the same result.
    deterministic: bool = True
    #: The argument types, as given (pyarrow types or SQL type names); native functions
    #: take any arguments without them, sandboxed plugins declare them in their signature.
    args: Optional[Tuple[Any, ...]] = None


def udf(
    returns: Any = None,
    *,
    name: Optional[str] = None,
    mode: str = "vectorized",
    skip_nulls: bool = True,
    deterministic: bool = True,
    args: Optional[Sequence[Any]] = None,
) -> Callable:
    """Marks a scalar function for Fungi.

    ``returns`` is a pyarrow type or a SQL type name. Vectorized functions get one
    ``pyarrow.Array`` per argument and return an array (or anything ``pyarrow.array``
    accepts) of the same length; row functions get Python values and return one.
    ``args`` lists the argument types; a sandboxed plugin (``fungi plugin build
    --python``) needs them, and there vectorized functions get Python lists instead.
    """
    if returns is None:
        raise UdfError("@fungi.udf needs returns=<pyarrow type or SQL type name>")
    return _function_marker(
        FunctionSpec(
            kind="udf",
            name=name or "",
            returns=as_arrow_type(returns),
            mode=_check_mode(mode),
            skip_nulls=skip_nulls,
            deterministic=deterministic,
            args=_arg_types(args),
        ),
        "@fungi.udf marks a function; use @fungi.udaf for a class",
    )


def _check_mode(mode: str) -> str:
    if mode not in MODES:
        raise UdfError(f"mode must be one of {MODES}, not {mode!r}")
    return mode


def _function_marker(spec: FunctionSpec, not_a_function: str) -> Callable:
    """The decorator that marks a function with `spec` (named after it unless named)."""

    def mark(fn: Callable) -> Callable:
        if not callable(fn) or inspect.isclass(fn):
            raise UdfError(not_a_function)
        fn.__fungi__ = dataclasses.replace(spec, name=spec.name or fn.__name__)
        return fn

    return mark


_UDAF_METHODS = ("create", "accumulate", "merge", "finish")


def _arg_types(args: Optional[Sequence[Any]]) -> Optional[Tuple[Any, ...]]:
    if args is None:
        return None
    if isinstance(args, (str, bytes)) or not isinstance(args, Sequence):
        raise UdfError("args must be a list of types (pyarrow types or SQL type names)")
    return tuple(as_arrow_type(a) for a in args)


def udaf(
    returns: Any = None, *, name: Optional[str] = None, args: Optional[Sequence[Any]] = None
) -> Callable:
    """Marks an aggregate class for Fungi.

    The class has ``create(self) -> state``, ``accumulate(self, state, *arrays) ->
    state`` (the arrays hold some of one group's rows), ``merge(self, state, other) ->
    state`` and ``finish(self, state) -> value``. States must be picklable: the host
    keeps them as bytes in its checkpoints. ``args`` lists the argument types (needed by
    sandboxed plugins, whose ``accumulate`` gets Python lists).
    """
    if returns is None:
        raise UdfError("@fungi.udaf needs returns=<pyarrow type or SQL type name>")
    result_type = as_arrow_type(returns)
    arg_types = _arg_types(args)

    def mark(cls: type) -> type:
        if not inspect.isclass(cls):
            raise UdfError("@fungi.udaf marks a class with create, accumulate, merge and finish")
        missing = [m for m in _UDAF_METHODS if not callable(getattr(cls, m, None))]
        if missing:
            raise UdfError(f"aggregate {cls.__name__} lacks {', '.join(missing)}")
        cls.__fungi__ = FunctionSpec(
            kind="udaf", name=name or cls.__name__, returns=result_type, args=arg_types
        )
        return cls

    return mark


def udtf(
    returns: Any = None,
    *,
    name: Optional[str] = None,
    mode: str = "row",
    skip_nulls: bool = True,
    args: Optional[Sequence[Any]] = None,
) -> Callable:
    """Marks a table function for Fungi: each input row gives zero or more output rows
    (Flink's ``LATERAL TABLE``).

    ``returns`` names the output columns: a dict ``{"word": "STRING", "position":
    pa.int64()}`` or a list of ``(name, type)`` pairs. In ``mode="row"`` (the default)
    the function gets one row's values and returns (or yields) its output rows, each a
    tuple with one value per column (a bare value when there is one column); rows with a
    null argument give nothing unless ``skip_nulls=False``. In ``mode="vectorized"`` it
    gets one array per argument for a whole batch and returns ``(columns, input_rows)``:
    the output columns (a ``pyarrow.Table``, ``RecordBatch``, or a list of arrays) and,
    for each output row, the index of the input row it came from.
    """
    if returns is None:
        raise UdfError("@fungi.udtf needs returns={column: type, ...}")
    pairs = list(returns.items()) if isinstance(returns, dict) else list(returns)
    if not pairs or not all(isinstance(p, (tuple, list)) and len(p) == 2 for p in pairs):
        raise UdfError("@fungi.udtf returns= is a dict or a list of (name, type) pairs, one per column")
    return _function_marker(
        FunctionSpec(
            kind="udtf",
            name=name or "",
            returns=tuple((str(n), as_arrow_type(t)) for n, t in pairs),
            mode=_check_mode(mode),
            skip_nulls=skip_nulls,
            args=_arg_types(args),
        ),
        "@fungi.udtf marks a function",
    )


def spec_of(obj: Any) -> FunctionSpec:
    """The declaration of a decorated function or aggregate class."""
    spec = getattr(obj, "__fungi__", None)
    if not isinstance(spec, FunctionSpec):
        raise UdfError(
            f"{getattr(obj, '__name__', obj)!r} is not marked with @fungi.udf, @fungi.udaf or @fungi.udtf"
        )
    return spec
