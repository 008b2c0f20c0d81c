"""The package stack is one-way and `dhs --help` stays light.

Layers, lowest first: base (errors, fileio, config, redaction, common/) -> stamps (no torch) -> sim, survey
-> audit -> models -> inject (the torch injection engine) -> runtime (device set-up, checkpoint loading)
-> train, score (siblings) -> evaluate -> review -> demo -> cli. Every `import darkhaloscope.X` in the source
(lazy ones inside functions included) is read with `ast`; a module may import its own package or a strictly lower layer only (packages on one layer are
siblings and never import each other; the base modules of layer 0 may), and no chain of imports between files comes back to where it started.
"""

from __future__ import annotations

import ast
import functools
import json
import subprocess
import sys
from pathlib import Path

PKG = Path(__file__).resolve().parents[1] / "src" / "darkhaloscope"

# package (first name below darkhaloscope) -> layer; a new package must be placed here
LAYERS = {"errors": 0, "fileio": 0, "outlock": 0, "config": 0, "configargs": 0, "redaction": 0, "common": 0,
          "__init__": 0,
          "stamps": 1, "sim": 2, "survey": 2, "audit": 3, "models": 4, "inject": 4.5, "runtime": 5, "train": 6,
          "score": 6, "evaluate": 7, "review": 8, "grade": 8, "demo": 9, "cli": 10, "clidoc": 11, "__main__": 11}
TORCH_FREE = {"errors", "fileio", "outlock", "config", "configargs", "redaction", "common", "__init__", "stamps", "sim",
              "survey", "audit"}
# Known upward imports being removed (file -> why); delete the entry with the fix, never add one
PENDING: dict[str, str] = {}
HEAVY = ("torch", "lenstronomy", "matplotlib", "pyarrow", "scipy", "sklearn", "astropy", "timm", "torchvision")


def _package_of(path: Path) -> str:
    rel = path.relative_to(PKG)
    return rel.parts[0] if len(rel.parts) > 1 else rel.stem


@functools.lru_cache(maxsize=None)
def _imports(path: Path) -> tuple[tuple[int, str], ...]:
    """(line, absolute module name) of every import in the file, wherever it sits (each file parsed once per
    run: four tests walk every file)."""
    out = []
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            out += [(node.lineno, a.name) for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            assert node.level == 0, f"{path}:{node.lineno}: use absolute imports (darkhaloscope.X)"
            out += [(node.lineno, node.module or "")]
    return tuple(out)


def _edges() -> list[tuple[str, str, str]]:
    """(importing package, imported package, 'file:line') for every darkhaloscope-internal import."""
    edges = []
    for path in sorted(PKG.rglob("*.py")):
        src = _package_of(path)
        for line, mod in _imports(path):
            parts = mod.split(".")
            if parts[0] == "darkhaloscope" and len(parts) > 1:
                edges.append((src, parts[1], f"{path.relative_to(PKG.parent)}:{line}"))
    return edges


def test_every_package_has_a_layer():
    packages = {_package_of(p) for p in PKG.rglob("*.py")}
    missing = sorted(packages - set(LAYERS))
    assert not missing, f"place the new package(s) {missing} in LAYERS of {Path(__file__).name}"


def test_no_package_imports_a_higher_layer():
    bad = [f"{where}: {a} (layer {LAYERS[a]}) imports {b} (layer {LAYERS[b]})"
           for a, b, where in _edges() if a in LAYERS and b in LAYERS and a != b
           and (LAYERS[b] > LAYERS[a] or LAYERS[b] == LAYERS[a] > 0)
           and where.split(":")[0] not in PENDING]
    assert not bad, "upward imports:\n" + "\n".join(bad)


def test_no_import_cycle_between_packages():
    graph: dict[str, set[str]] = {}
    for a, b, _ in _edges():
        if a != b:
            graph.setdefault(a, set()).add(b)
    cycles = _cycles(graph)
    assert not cycles, "import cycles between packages:\n" + "\n".join(cycles)


def _cycles(graph: dict[str, set[str]]) -> list[str]:
    """Every back edge of a depth-first walk, as the chain of names that closes it."""
    cycles: list[str] = []
    state: dict[str, int] = {}

    def visit(node: str, trail: list[str]) -> None:
        state[node] = 1
        for nxt in sorted(graph.get(node, ())):
            if state.get(nxt) == 1:
                cycles.append(" -> ".join(trail[trail.index(nxt):] + [node, nxt]) if nxt in trail
                              else f"{node} -> {nxt}")
            elif nxt not in state:
                visit(nxt, trail + [node])
        state[node] = 2

    for n in sorted(graph):
        if n not in state:
            visit(n, [])
    return cycles


def _module_of(path: Path) -> str:
    rel = path.relative_to(PKG.parent).with_suffix("")
    parts = rel.parts[:-1] if rel.name == "__init__" else rel.parts
    return ".".join(parts)


def test_no_import_cycle_between_files():
    """Module-level and lazy imports alike: a cycle between two files (a.py imports b.py, which imports a.py
    inside a function) means one of them holds what belongs below both."""
    modules = {_module_of(p): p for p in PKG.rglob("*.py")}
    graph: dict[str, set[str]] = {}
    for name, path in modules.items():
        for _, mod in _imports(path):
            # `from darkhaloscope.x import y` names module x.y when y is a submodule, else x
            target = next((m for m in (mod, mod.rsplit(".", 1)[0]) if m in modules), None)
            if target and target != name and mod.startswith("darkhaloscope."):
                graph.setdefault(name, set()).add(target)
    cycles = _cycles(graph)
    assert not cycles, "import cycles between files:\n" + "\n".join(cycles)


def test_lower_layers_never_import_torch():
    bad = [f"{p.relative_to(PKG.parent)}:{line}: {mod}" for p in PKG.rglob("*.py") if _package_of(p) in TORCH_FREE
           for line, mod in _imports(p) if mod.split(".")[0] == "torch"]
    assert not bad, "torch imported below models/:\n" + "\n".join(bad)


HELP_PROBE = """
import contextlib, io, json, sys
from darkhaloscope.cli import build_parser
parser = build_parser()
sub = next(a for a in parser._actions if a.dest == "command")
argvs = [["--help"]] + [[c, "--help"] for c in sub.choices if c != "bench"]
bench = next(a for a in sub.choices["bench"]._actions if a.dest == "bench_command")
argvs += [["bench", b, "--help"] for b in bench.choices]
for argv in argvs:
    with contextlib.redirect_stdout(io.StringIO()):
        try:
            build_parser().parse_args(argv)
        except SystemExit:
            pass
print(json.dumps({"argvs": len(argvs), "modules": sorted(m for m in sys.modules if "." not in m)}))
"""


def test_help_of_every_command_imports_no_heavy_module():
    out = subprocess.run([sys.executable, "-c", HELP_PROBE], capture_output=True, text=True, check=True).stdout
    res = json.loads(out.splitlines()[-1])
    assert res["argvs"] > 10
    heavy = sorted(set(res["modules"]) & set(HEAVY))
    assert not heavy, f"`dhs ... --help` imported {heavy}: import them inside the command handlers"


def test_the_whole_suite_collects_together():
    """Test folders have no __init__.py: basenames must be unique and helpers must not come from `conftest`
    (with several folders collected, `from conftest import` gets another folder's conftest)."""
    tests = Path(__file__).resolve().parent
    names = [p.name for p in tests.rglob("test_*.py")]
    assert sorted({n for n in names if names.count(n) > 1}) == []
    bad = [str(p.relative_to(tests)) for p in tests.rglob("*.py") if p.name != "conftest.py"
           for _, mod in _imports(p) if mod == "conftest"]
    assert not bad, f"import helpers from a uniquely named module, not conftest: {bad}"
