"""A mean as a sandboxed Python aggregate (states pickled into the host's checkpoints)."""

import fungi


@fungi.udaf(returns="DOUBLE", args=["BIGINT"], name="mean_price")
class MeanPrice:
    def create(self):
        return (0, 0)

    def accumulate(self, state, prices):
        present = [p for p in prices if p is not None]
        return (state[0] + sum(present), state[1] + len(present))

    def merge(self, a, b):
        return (a[0] + b[0], a[1] + b[1])

    def finish(self, state):
        return state[0] / state[1] if state[1] else None
