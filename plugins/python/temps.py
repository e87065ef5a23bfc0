"""Temperatures and strings: scalar functions as a sandboxed Python plugin."""

import fungi


@fungi.udf(returns="DOUBLE", args=["BIGINT"])
def to_fahrenheit(celsius):
    """Vectorized: a list in, a list out (one call per batch)."""
    return [None if c is None else c * 1.8 + 32 for c in celsius]


@fungi.udf(returns="STRING", args=["STRING"], mode="row")
def shout(text):
    """Row-wise: one call per row; rows with a null give null without a call."""
    return text.upper() + "!"


@fungi.udf(returns="BIGINT", args=["BIGINT"])
def fragile(values):
    """Raises on every batch (for the dead-letter tests)."""
    raise ValueError(f"no luck with {len(values)} rows")
