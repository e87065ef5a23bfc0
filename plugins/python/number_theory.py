"""Number theory as a sandboxed Python plugin (the benchmark's gcd)."""

import math

import fungi


@fungi.udf(returns="BIGINT", args=["BIGINT", "BIGINT"])
def gcd(a, b):
    return [None if x is None or y is None else math.gcd(x, y) for x, y in zip(a, b)]
