"""Builds a sandboxed plugin from Python source: a WebAssembly component made by
componentize-py against Fungi's WIT worlds.

``fungi plugin build --python app.py`` runs this module (``python -m fungi.build``) with
the WIT contract the ``fungi`` binary was built with. The functions of ``app.py`` marked
with ``@fungi.udf`` become a ``scalar-udf`` component, those marked with ``@fungi.udaf``
an ``aggregate-udf`` one, ``@fungi.udtf`` a ``table-udf`` one (one kind per component, as
for Rust plugins). Inside, CPython
runs without native extensions (no pyarrow): arguments arrive as Python lists, decoded by
:mod:`fungi.arrow_ipc`, and argument types are declared with ``args=[...]``.

The component runs under the same limits as any plugin: memory, CPU time per call and
per second, fuel, no network or files unless granted.
"""

import argparse
import importlib.util
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import List, Optional, Sequence, Tuple

from .types import codec_type
from .udf import FunctionSpec

_WORLDS = {"udf": ("scalar-udf", "scalar", "Scalar", "ScalarFunction"),
           "udaf": ("aggregate-udf", "aggregate", "Aggregate", "Accumulator"),
           "udtf": ("table-udf", "table", "Table", "TableFunction")}
_ENTRY = "fungi_plugin_entry"
_KIND_NAMES = {"udf": "scalar functions", "udaf": "aggregates", "udtf": "table functions"}


class BuildError(Exception):
    """The source cannot become a plugin; the message says why."""


def _specs(app: Path) -> Tuple[List[FunctionSpec], str]:
    sys.path.insert(0, str(app.parent))
    try:
        module_spec = importlib.util.spec_from_file_location(app.stem, app)
        module = importlib.util.module_from_spec(module_spec)
        module_spec.loader.exec_module(module)
    except Exception as e:
        raise BuildError(f"{app} does not import: {type(e).__name__}: {e}") from e
    finally:
        sys.path.pop(0)
    specs = [v.__fungi__ for v in vars(module).values() if isinstance(getattr(v, "__fungi__", None), FunctionSpec)]
    if not specs:
        raise BuildError(f"{app} has no function marked with @fungi.udf, @fungi.udaf or @fungi.udtf")
    for s in specs:
        if s.args is None:
            raise BuildError(
                f"'{s.name}' does not declare its argument types: a sandboxed plugin needs "
                f"args=[...] in @fungi.{s.kind}"
            )
        for t in s.args + (tuple(t for _, t in s.returns) if s.kind == "udtf" else (s.returns,)):
            try:
                codec_type(t)
            except ValueError as e:
                raise BuildError(f"'{s.name}': {e}") from None
    return specs, (module.__doc__ or "").strip().split("\n")[0]


def _componentize_py() -> str:
    here = Path(sys.executable).parent / "componentize-py"
    found = str(here) if here.exists() else shutil.which("componentize-py")
    if not found:
        raise BuildError("componentize-py is not installed: pip install 'fungi[build]' (or componentize-py)")
    return found


def build(
    app: Path,
    output: Path,
    wit: Path,
    name: Optional[str] = None,
    version: str = "0.1.0",
    python_path: Sequence[Path] = (),
) -> str:
    """Builds `app` into the component `output`; returns the world it targets."""
    app = Path(app).resolve()
    if app.suffix != ".py" or not app.is_file():
        raise BuildError(f"{app} is not a Python file")
    if app.stem in getattr(sys, "stdlib_module_names", ()) or app.stem in ("fungi", _ENTRY, "scalar", "aggregate", "table"):
        raise BuildError(
            f"{app.name} has the name of a module the plugin imports ('{app.stem}'); rename the file"
        )
    specs, doc = _specs(app)
    kinds = {s.kind for s in specs}
    if len(kinds) > 1:
        raise BuildError(
            f"{app} has {' and '.join(sorted(_KIND_NAMES[k] for k in kinds))}; a plugin is "
            f"one kind: put each kind in its own file"
        )
    world, interface, exports_class, resource_class = _WORLDS[kinds.pop()]
    sdk = Path(__file__).resolve().parent
    with tempfile.TemporaryDirectory(prefix="fungi-build-") as tmp:
        tmp = Path(tmp)
        shutil.copytree(sdk, tmp / "fungi", ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))
        shutil.copy(app, tmp / app.name)
        (tmp / f"{_ENTRY}.py").write_text(
            f"import {app.stem} as _app\n"
            f"from fungi import _guest\n"
            f"_guest.register(_app, name={(name or app.stem)!r}, version={version!r}, "
            f"description={doc!r})\n"
            f"from fungi._guest import Plugin, {exports_class}\n"
        )
        (tmp / f"{interface}.py").write_text(f"from fungi._guest import {resource_class}\n")
        command = [_componentize_py(), "-d", str(wit), "-w", world, "componentize", "-p", str(tmp)]
        for p in python_path:
            command += ["-p", str(p)]
        command += [_ENTRY, "-o", str(Path(output).resolve())]
        done = subprocess.run(command, capture_output=True, text=True)
        if done.returncode != 0:
            raise BuildError(f"componentize-py failed:\n{done.stderr.strip() or done.stdout.strip()}")
    return world


def main(argv: Optional[Sequence[str]] = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m fungi.build", description=__doc__.split("\n\n")[0])
    parser.add_argument("app", type=Path, help="the Python file with the decorated functions")
    parser.add_argument("-o", "--output", type=Path, help="the component (default: <app>.wasm)")
    parser.add_argument("--wit", type=Path, required=True, help="directory of Fungi's plugin.wit")
    parser.add_argument("--name", help="the plugin's name (default: the file's name)")
    parser.add_argument("--version", default="0.1.0")
    parser.add_argument("-p", "--python-path", type=Path, action="append", default=[],
                        help="more directories of pure-Python modules to bundle")
    args = parser.parse_args(argv)
    output = args.output or args.app.with_suffix(".wasm")
    try:
        world = build(args.app, output, args.wit, args.name, args.version, args.python_path)
    except BuildError as e:
        print(f"error: {e}", file=sys.stderr)
        return 1
    print(f"built {output} ({world})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
