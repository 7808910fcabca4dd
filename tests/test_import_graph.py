"""The package's import graph points one way: no cycle, no upward arrow.

Every ``import`` in every module of ``yolov7c`` (module level and inside functions: a lazy
import is still a dependency) is read with ``ast``, resolved to the module it names, and
checked against the layering, bottom → top:

    errors, io_util, figures, synthetic, boxes, limits, progress, run_dirs, nms_settings,
    eval_settings, train_defaults → ir → zoo → backends → passes, report → data → eval →
    train → api, e2e → cli

A module may import modules of its own layer or below. Cycles are checked between units
(a subpackage, or one backend: backends.torch, backends.tvm, backends.onnx ...) over all
imports, and between modules over module-level imports (an import-time cycle).
"""
from __future__ import annotations

import ast
from functools import lru_cache
from pathlib import Path

import networkx as nx
import pytest

ROOT = Path(__file__).resolve().parents[1] / "yolov7c"

LAYERS: list[tuple[str, ...]] = [
    ("errors", "io_util", "figures", "synthetic", "boxes", "limits", "progress", "nms_settings",
     "run_dirs", "eval_settings", "train_defaults"),
    ("ir",),
    ("zoo",),
    ("backends",),
    ("passes", "report"),
    ("data",),
    ("eval",),
    ("train",),
    ("api", "e2e"),
    ("cli", "__main__"),
]
LEVEL = {name: i for i, names in enumerate(LAYERS) for name in names}


@lru_cache(maxsize=None)
def all_imports() -> tuple[tuple[str, Path, tuple[tuple[str, int, bool], ...]], ...]:
    """(module, path, its imports) for the package, parsed once per session."""
    mods = modules()
    return tuple((m, p, tuple(imports(m, p, mods))) for m, p in mods.items() if m != "yolov7c")


def modules() -> dict[str, Path]:
    out = {}
    for p in sorted(ROOT.rglob("*.py")):
        parts = list(p.relative_to(ROOT.parent).with_suffix("").parts)
        if parts[-1] == "__init__":
            parts = parts[:-1]
        out[".".join(parts)] = p
    return out


def _is_package(mod: str, mods: dict[str, Path]) -> bool:
    return mod in mods and mods[mod].name == "__init__.py"


def imports(mod: str, path: Path, mods: dict[str, Path]) -> list[tuple[str, int, bool]]:
    """(imported yolov7c module, line, at module level) for every import in ``path``."""
    tree = ast.parse(path.read_text(), str(path))
    typing_only = {id(s) for n in tree.body if isinstance(n, ast.If)
                   and "TYPE_CHECKING" in ast.unparse(n.test) for s in ast.walk(n)}
    in_function = {id(s) for n in ast.walk(tree)
                   if isinstance(n, (ast.FunctionDef, ast.AsyncFunctionDef, ast.Lambda))
                   for s in ast.walk(n) if s is not n}
    package = mod if _is_package(mod, mods) else mod.rpartition(".")[0]
    out = []
    for node in ast.walk(tree):
        if id(node) in typing_only:
            continue
        targets: list[str] = []
        if isinstance(node, ast.Import):
            targets = [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")
                base = base[: len(base) - (node.level - 1)]
                prefix = ".".join(base + ([node.module] if node.module else []))
            else:
                prefix = node.module or ""
            for a in node.names:  # `from pkg import submodule` names the submodule
                sub = f"{prefix}.{a.name}"
                targets.append(sub if sub in mods else prefix)
        for t in targets:
            if t == "yolov7c" or t.startswith("yolov7c."):
                while t not in mods and "." in t:
                    t = t.rpartition(".")[0]
                out.append((t, node.lineno, id(node) not in in_function))
    return out


def layer_of(mod: str) -> str:
    parts = mod.split(".")
    return parts[1] if len(parts) > 1 else ""


def unit_of(mod: str) -> str:
    parts = mod.split(".")
    return ".".join(parts[:3] if len(parts) > 2 and parts[1] == "backends" else parts[:2])


def test_every_module_has_a_layer() -> None:
    unknown = sorted({layer_of(m) for m in modules() if m != "yolov7c"} - set(LEVEL))
    assert not unknown, f"modules outside the layering (add them to LAYERS): {unknown}"


def test_no_upward_import() -> None:
    bad = []
    # the package root is skipped: it re-exports the API lazily, by name strings
    for mod, path, found in all_imports():
        src = LEVEL[layer_of(mod)]
        for target, line, _ in found:
            if target == "yolov7c":
                bad.append(f"{path.relative_to(ROOT.parent)}:{line}: {mod} imports the package "
                           f"root yolov7c (import the module it needs)")
            elif LEVEL[layer_of(target)] > src:
                bad.append(f"{path.relative_to(ROOT.parent)}:{line}: {mod} (layer "
                           f"{layer_of(mod)}) imports {target} (layer {layer_of(target)}, "
                           f"above)")
    assert not bad, "upward imports:\n" + "\n".join(bad)


def _cycle_message(g: nx.DiGraph) -> str | None:
    try:
        cycle = nx.find_cycle(g)
    except nx.NetworkXNoCycle:
        return None
    return "\n".join(f"  {a} → {b} ({g.edges[a, b]['where']})" for a, b in cycle)


@pytest.mark.parametrize("kind", ["units, all imports", "modules, import time"])
def test_no_cycle(kind: str) -> None:
    g = nx.DiGraph()
    for mod, path, found in all_imports():
        for target, line, top in found:
            if target == "yolov7c":
                continue
            if kind.startswith("units"):
                a, b = unit_of(mod), unit_of(target)
            elif top:
                a, b = mod, target
            else:
                continue
            if a != b:
                g.add_edge(a, b, where=f"{path.relative_to(ROOT.parent)}:{line}")
    msg = _cycle_message(g)
    assert msg is None, f"import cycle ({kind}):\n{msg}"


def test_the_checker_sees_a_violation(tmp_path: Path) -> None:
    """The walker resolves relative imports: an upward one written here is found."""
    pkg = tmp_path / "yolov7c"
    (pkg / "ir").mkdir(parents=True)
    (pkg / "__init__.py").write_text("")
    (pkg / "ir" / "__init__.py").write_text("")
    (pkg / "cli").mkdir()
    (pkg / "cli" / "__init__.py").write_text("")
    bad = pkg / "ir" / "x.py"
    bad.write_text("def f():\n    from ..cli import main\n")
    mods = {"yolov7c": pkg / "__init__.py", "yolov7c.ir": pkg / "ir" / "__init__.py",
            "yolov7c.cli": pkg / "cli" / "__init__.py", "yolov7c.ir.x": bad}
    assert imports("yolov7c.ir.x", bad, mods) == [("yolov7c.cli", 2, False)]
