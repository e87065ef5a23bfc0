"""What `fungi.build` refuses before it runs componentize-py."""

import pytest

from fungi import build


@pytest.mark.parametrize(
    "name, source, why",
    [
        ("numbers.py", "x = 1\n", "has the name of a module the plugin imports ('numbers')"),
        ("scalar.py", "x = 1\n", "('scalar'); rename the file"),
        ("app.txt", "x = 1\n", "is not a Python file"),
        ("empty.py", "x = 1\n", "has no function marked"),
        ("mixed.py", """
import fungi

@fungi.udf(returns="BIGINT", args=["BIGINT"])
def f(x):
    return x

@fungi.udaf(returns="BIGINT", args=["BIGINT"])
class G:
    def create(self): return 0
    def accumulate(self, s, xs): return s + sum(xs)
    def merge(self, a, b): return a + b
    def finish(self, s): return s
""", "has aggregates and scalar functions; a plugin is one kind"),
        ("untyped.py", "import fungi\n@fungi.udf(returns='BIGINT')\ndef f(x):\n    return x\n",
         "'f' does not declare its argument types"),
        ("badtype.py", "import fungi\n@fungi.udf(returns='BIGINT', args=['DECIMAL(10, 2)'])\ndef f(x):\n    return x\n",
         "'f': SQL type 'DECIMAL(10, 2)' has no sandboxed Python mapping"),
    ],
)
def test_refusals_name_the_problem(tmp_path, name, source, why):
    app = tmp_path / name
    app.write_text(source)
    with pytest.raises(build.BuildError, match=why.replace("(", "\\(").replace(")", "\\)")):
        build.build(app, tmp_path / "out.wasm", tmp_path)
