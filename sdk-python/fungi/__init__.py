"""Fungi's Python SDK.

Write functions for Fungi's streaming SQL in Python:

* ``@fungi.udf(returns=pa.float64())`` marks a scalar function. By default it is
  *vectorized*: it receives one ``pyarrow.Array`` per argument, for a whole batch, and
  returns an array of the same length. ``mode="row"`` calls it once per row with Python
  values instead (simple, slower).
* ``@fungi.udaf(returns=...)`` marks an aggregate: a class with ``create``,
  ``accumulate``, ``merge`` and ``finish``. Its state is pickled by the host into
  checkpoints.
* ``@fungi.udtf(returns={"word": "STRING"})`` marks a table function: each input row
  gives zero or more output rows (row-wise by default, yielding tuples).
* :func:`fungi.run_udf` and :func:`fungi.run_udaf` run them over a ``pyarrow.Table``
  with the host's semantics, for unit tests.
* :class:`fungi.Client` talks to a Fungi server's REST API.

The host reads the ``__fungi__`` attribute the decorators set: the kind, the return
type and the calling mode.

The same decorated functions also build into a sandboxed plugin, a WebAssembly component
(``fungi plugin build --python app.py``, see :mod:`fungi.build`): there CPython runs
inside the component without pyarrow, arguments arrive as Python lists and the argument
types must be declared (``args=[...]``).
"""

from .client import Client, FungiError
from .types import from_sql, to_sql

try:
    from .local import run_udaf, run_udf
except ImportError:  # no pyarrow: inside a sandboxed plugin, where only the decorators matter
    pass
from .udf import FunctionSpec, UdfError, spec_of, udaf, udf, udtf

__all__ = [
    "Client",
    "FungiError",
    "FunctionSpec",
    "UdfError",
    "from_sql",
    "run_udaf",
    "run_udf",
    "spec_of",
    "to_sql",
    "udaf",
    "udf",
    "udtf",
]
