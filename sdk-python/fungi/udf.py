"""The ``@udf`` and ``@udaf`` decorators and what they record for the host."""

import dataclasses
import inspect
from typing import Any, Callable, Optional

import pyarrow as pa

from .types import as_arrow_type

MODES = ("vectorized", "row")


class UdfError(Exception):
    """A function broke its contract (wrong result length or type, bad declaration)."""


@dataclasses.dataclass(frozen=True)
class FunctionSpec:
    """What the host needs to call a Python function: set by the decorators as the
    function's (or class's) ``__fungi__`` attribute."""

    #: ``"udf"`` or ``"udaf"``.
    kind: str
    #: The SQL name (default: the Python name).
    name: str
    #: The result type.
    returns: pa.DataType
    #: ``"vectorized"`` (arrays in, array out) or ``"row"`` (one call per row).
    mode: str = "vectorized"
    #: Row mode: whether a row with a null argument gives null without a call.
    skip_nulls: bool = True
    #: Whether the same arguments always give the same result.
    deterministic: bool = True


def udf(
    returns: Any = None,
    *,
    name: Optional[str] = None,
    mode: str = "vectorized",
    skip_nulls: bool = True,
    deterministic: bool = True,
) -> Callable:
    """Marks a scalar function for Fungi.

    ``returns`` is a pyarrow type or a SQL type name. Vectorized functions get one
    ``pyarrow.Array`` per argument and return an array (or anything ``pyarrow.array``
    accepts) of the same length; row functions get Python values and return one.
    """
    if returns is None:
        raise UdfError("@fungi.udf needs returns=<pyarrow type or SQL type name>")
    if mode not in MODES:
        raise UdfError(f"mode must be one of {MODES}, not {mode!r}")
    result_type = as_arrow_type(returns)

    def mark(fn: Callable) -> Callable:
        if not callable(fn) or inspect.isclass(fn):
            raise UdfError("@fungi.udf marks a function; use @fungi.udaf for a class")
        fn.__fungi__ = FunctionSpec(
            kind="udf",
            name=name or fn.__name__,
            returns=result_type,
            mode=mode,
            skip_nulls=skip_nulls,
            deterministic=deterministic,
        )
        return fn

    return mark


_UDAF_METHODS = ("create", "accumulate", "merge", "finish")


def udaf(returns: Any = None, *, name: Optional[str] = None) -> Callable:
    """Marks an aggregate class for Fungi.

    The class has ``create(self) -> state``, ``accumulate(self, state, *arrays) ->
    state`` (the arrays hold some of one group's rows), ``merge(self, state, other) ->
    state`` and ``finish(self, state) -> value``. States must be picklable: the host
    keeps them as bytes in its checkpoints.
    """
    if returns is None:
        raise UdfError("@fungi.udaf needs returns=<pyarrow type or SQL type name>")
    result_type = as_arrow_type(returns)

    def mark(cls: type) -> type:
        if not inspect.isclass(cls):
            raise UdfError("@fungi.udaf marks a class with create, accumulate, merge and finish")
        missing = [m for m in _UDAF_METHODS if not callable(getattr(cls, m, None))]
        if missing:
            raise UdfError(f"aggregate {cls.__name__} lacks {', '.join(missing)}")
        cls.__fungi__ = FunctionSpec(kind="udaf", name=name or cls.__name__, returns=result_type)
        return cls

    return mark


def spec_of(obj: Any) -> FunctionSpec:
    """The declaration of a decorated function or aggregate class."""
    spec = getattr(obj, "__fungi__", None)
    if not isinstance(spec, FunctionSpec):
        raise UdfError(f"{getattr(obj, '__name__', obj)!r} is not marked with @fungi.udf or @fungi.udaf")
    return spec
