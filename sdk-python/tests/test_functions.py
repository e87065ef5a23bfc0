"""The decorators, the type mapping and the local runner."""

import pickle

import pyarrow as pa
import pyarrow.compute as pc
import pytest

import fungi


@fungi.udf(returns=pa.float64())
def to_fahrenheit(celsius):
    return pc.add(pc.multiply(celsius, 1.8), 32)


@fungi.udf(returns="STRING", mode="row")
def initials(name):
    return "".join(w[0] for w in name.split())


@fungi.udaf(returns=pa.float64())
class WeightedAvg:
    def create(self):
        return (0.0, 0.0)

    def accumulate(self, state, values, weights):
        s, w = state
        return (s + pc.sum(pc.multiply(values, weights)).as_py(), w + pc.sum(weights).as_py())

    def merge(self, a, b):
        return (a[0] + b[0], a[1] + b[1])

    def finish(self, state):
        return state[0] / state[1] if state[1] else None


def test_the_decorators_record_what_the_host_needs():
    spec = fungi.spec_of(to_fahrenheit)
    assert (spec.kind, spec.name, spec.returns, spec.mode) == ("udf", "to_fahrenheit", pa.float64(), "vectorized")
    assert fungi.spec_of(initials).returns == pa.string()
    assert fungi.spec_of(initials).mode == "row"
    assert fungi.spec_of(WeightedAvg).kind == "udaf"
    # The declaration survives pickling (the host may ship functions to workers).
    assert pickle.loads(pickle.dumps(fungi.spec_of(to_fahrenheit))) == fungi.spec_of(to_fahrenheit)


def test_bad_declarations_are_refused_with_the_reason():
    with pytest.raises(fungi.UdfError, match="needs returns"):
        fungi.udf()
    with pytest.raises(fungi.UdfError, match="mode must be one of"):
        fungi.udf(returns=pa.int64(), mode="batch")
    with pytest.raises(ValueError, match="unknown SQL type 'NUMBER'"):
        fungi.udf(returns="NUMBER")
    with pytest.raises(fungi.UdfError, match="lacks merge, finish"):

        @fungi.udaf(returns=pa.int64())
        class Half:
            def create(self):
                return 0

            def accumulate(self, state, values):
                return state

    with pytest.raises(fungi.UdfError, match="is not marked"):
        fungi.spec_of(len)


def test_vectorized_and_row_functions_run_over_batches():
    table = pa.table({"c": pa.array([0.0, 100.0, None, -40.0] * 5000), "name": ["Ada Lovelace", None, "Alan Turing", "x"] * 5000})
    out = fungi.run_udf(to_fahrenheit, table, ["c"], batch_rows=1000)
    assert out.type == pa.float64()
    assert out.to_pylist()[:4] == [32.0, 212.0, None, -40.0]
    assert len(out) == 20000
    names = fungi.run_udf(initials, table, ["name"])
    assert names.to_pylist()[:4] == ["AL", None, "AT", "x"]


def test_a_result_of_the_wrong_length_or_type_is_named():
    @fungi.udf(returns=pa.int64())
    def short(x):
        return x[:1]

    @fungi.udf(returns=pa.int64())
    def words(x):
        return ["a"] * len(x)

    table = pa.table({"x": [1, 2, 3]})
    with pytest.raises(fungi.UdfError, match="short: returned 1 values for 3 rows"):
        fungi.run_udf(short, table, ["x"])
    with pytest.raises(fungi.UdfError, match="words: the result is not int64"):
        fungi.run_udf(words, table, ["x"])


def test_an_aggregate_accumulates_merges_and_finishes_per_group():
    table = pa.table({
        "k": ["a", "b", "a", "a", "b"],
        "v": [1.0, 10.0, 3.0, 5.0, 20.0],
        "w": [1.0, 1.0, 1.0, 2.0, 3.0],
    })
    out = fungi.run_udaf(WeightedAvg, table, ["v", "w"], group_by=["k"])
    got = dict(zip(out.column("k").to_pylist(), out.column("WeightedAvg").to_pylist()))
    assert got == {"a": pytest.approx((1 + 3 + 10) / 4), "b": pytest.approx((10 + 60) / 4)}


def test_sql_types_map_to_pyarrow_and_back():
    for sql, arrow in [
        ("BIGINT", pa.int64()),
        ("double", pa.float64()),
        ("STRING", pa.string()),
        ("VARCHAR(20)", pa.string()),
        ("TIMESTAMP(3)", pa.timestamp("ms")),
        ("DECIMAL(10, 2)", pa.decimal128(10, 2)),
        ("BOOLEAN", pa.bool_()),
        ("DATE", pa.date32()),
        ("BYTES", pa.binary()),
    ]:
        assert fungi.from_sql(sql) == arrow, sql
    assert fungi.to_sql(pa.timestamp("ms")) == "TIMESTAMP(3)"
    assert fungi.to_sql(pa.int32()) == "INT"
    assert fungi.to_sql(pa.decimal128(10, 2)) == "DECIMAL(10, 2)"
    with pytest.raises(ValueError, match="precision must be"):
        fungi.from_sql("TIMESTAMP(4)")
