"""A Python plugin that never returns: the CPU limits must stop it."""

import fungi


@fungi.udf(returns="BIGINT", args=["BIGINT"])
def spin(values):
    n = 0
    while True:
        n += 1


@fungi.udf(returns="BIGINT", args=["BIGINT"])
def hog(values):
    """Grows a list until the memory limit stops it."""
    hoard = []
    while True:
        hoard.append(bytearray(1 << 20))
