"""The package is layered: imports point downward only, and the low layers import no torch.

The table below is the single place to record the layering. When a subpackage arrives
(models, adapters, train, eval, synth, uhr, fusion, teacher, ...), add a row naming the
earthvlm subpackages it may import, and list it in ``TORCH_FREE`` if it must stay
importable without torch. A subpackage with no row fails ``test_every_subpackage_has_a_layer``.
"""

from __future__ import annotations

import ast
from dataclasses import dataclass
from pathlib import Path

import pytest

import earthvlm

# layer -> the earthvlm subpackages its modules may import (itself included). The
# top-level modules in CORE may be imported from anywhere.
LAYERS: dict[str, set[str]] = {
    "geo": {"geo"},
    "scale": {"scale", "geo"},
    "data": {"data", "scale", "geo"},
    # synthetic scenes with known objects and GSD (row added when synth/ appeared; it is
    # numpy-only today, so consider adding it to TORCH_FREE once its design settles)
    "synth": {"synth", "data", "scale", "geo"},
    # model parts: adapters (CS-HLoRA and baselines) sit below models (backbones, heads,
    # the ScaleEarth wrapper)
    "adapters": {"adapters", "scale", "geo"},
    "models": {"models", "adapters", "fusion", "data", "scale", "geo"},
    # optical + SAR fusion modules (HCA and its baselines), attached by models/
    "fusion": {"fusion", "data", "scale", "geo"},
    # UHR reading, views with their own GSD, the zoom tool and loop (the loop drives a model)
    "uhr": {"uhr", "models", "adapters", "fusion", "data", "scale", "geo"},
    # OpenAI-compatible clients and the pipelines that generate and judge data
    "teacher": {"teacher", "data", "scale", "geo"},
    # the SFT loop: builds models and adapters, reads data (and generates synthetic data)
    "train": {
        "train",
        "models",
        "adapters",
        "fusion",
        "uhr",
        "teacher",
        "data",
        "synth",
        "scale",
        "geo",
    },
    # diagnostics, metrics and benchmarks: beside train (neither imports the other),
    # above the model parts
    "eval": {
        "eval",
        "models",
        "adapters",
        "fusion",
        "uhr",
        "teacher",
        "data",
        "synth",
        "scale",
        "geo",
    },
    # whole experiments: generate data, train and evaluate; nothing below imports them
    "experiments": {
        "experiments",
        "eval",
        "train",
        "models",
        "adapters",
        "fusion",
        "uhr",
        "teacher",
        "data",
        "synth",
        "scale",
        "geo",
    },
    # the OpenAI-compatible server: the top floor beside cli/ (only cli imports it)
    "serve": {
        "serve",
        "eval",
        "train",
        "models",
        "adapters",
        "fusion",
        "uhr",
        "teacher",
        "synth",
        "data",
        "scale",
        "geo",
    },
    "cli": {
        "cli",
        "serve",
        "experiments",
        "eval",
        "train",
        "models",
        "adapters",
        "fusion",
        "uhr",
        "teacher",
        "synth",
        "data",
        "scale",
        "geo",
    },
}
#: Top-level modules (``errors``, ``io``, ``provenance``, ``registry``, ``__init__``):
#: importable from every layer, and themselves importing no subpackage.
CORE = {"errors", "io", "provenance", "registry", "typed", "__init__"}
#: Layers that must import without torch and friends, at module level or inside functions.
TORCH_FREE = {"geo", "scale", "data", "synth", "teacher"}
#: Packages that must stay torch-free inside a layer that need not be (scorers run
#: wherever predictions are, with no model around).
TORCH_FREE_PACKAGES = {
    "earthvlm.eval.metrics",
    "earthvlm.eval.judge",
    "earthvlm.eval.benchmarks",
    # UHR reading and the zoom tool run wherever data is prepared; only the loop may
    # use a model
    "earthvlm.uhr.view",
    "earthvlm.uhr.reader",
    "earthvlm.uhr.tool",
    "earthvlm.uhr.chain",
}
HEAVY = {"torch", "torchvision", "transformers", "peft", "accelerate", "trl"}

SRC = Path(earthvlm.__file__).resolve().parent


@dataclass(frozen=True)
class Import:
    module: str  # the absolute module imported
    line: int


def _module_name(path: Path) -> str:
    rel = path.relative_to(SRC.parent).with_suffix("")
    parts = list(rel.parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def _imports(source: str, module: str, is_package: bool) -> list[Import]:
    """Every module a source imports, anywhere in it, with relative imports made absolute.

    ``from earthvlm import x`` counts as importing ``earthvlm.x`` (x may be a subpackage);
    ``importlib.import_module("...")`` and ``__import__("...")`` with a literal count too.
    """
    pkg = module if is_package else module.rpartition(".")[0]
    out: list[Import] = []
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            out += [Import(a.name, node.lineno) for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = pkg.split(".")
                base = base[: len(base) - (node.level - 1)]
                target = ".".join(base + ([node.module] if node.module else []))
            else:
                target = node.module or ""
            out.append(Import(target, node.lineno))
            out += [Import(f"{target}.{a.name}", node.lineno) for a in node.names]
        elif (
            isinstance(node, ast.Call)
            and node.args
            and isinstance(node.args[0], ast.Constant)
            and isinstance(node.args[0].value, str)
            and (
                (isinstance(node.func, ast.Attribute) and node.func.attr == "import_module")
                or (isinstance(node.func, ast.Name) and node.func.id == "__import__")
            )
        ):
            out.append(Import(node.args[0].value, node.lineno))
    return out


def _layer(module: str) -> str:
    """The layer of a module: ``earthvlm.scale.gsd`` -> ``scale``, ``earthvlm`` -> ``__init__``."""
    parts = module.split(".")
    return parts[1] if len(parts) > 1 else "__init__"


def violations(module: str, source: str, is_package: bool = False) -> list[str]:
    """What is wrong with a module's imports, one line each (empty when it is fine)."""
    layer = _layer(module)
    subpackages = {p.name for p in SRC.iterdir() if p.is_dir() and (p / "__init__.py").exists()}
    allowed = set() if layer in CORE else LAYERS.get(layer)
    if allowed is None:
        return [f"{module}: subpackage {layer!r} has no row in LAYERS"]
    problems = []
    for imp in _imports(source, module, is_package):
        top = imp.module.split(".")[0]
        torch_free = layer in TORCH_FREE or any(
            module == p or module.startswith(p + ".") for p in TORCH_FREE_PACKAGES
        )
        if torch_free and top in HEAVY:
            problems.append(
                f"{module}:{imp.line} imports {imp.module} (layer {layer} is torch-free)"
            )
        if top != "earthvlm" or imp.module == "earthvlm":
            continue
        target = imp.module.split(".")[1]
        if target in CORE or (target not in subpackages and target not in LAYERS):
            continue  # a core module, or a name (not a module) imported from earthvlm
        if target not in allowed:
            problems.append(
                f"{module}:{imp.line} imports {imp.module}: layer {layer} may import only "
                f"{sorted(allowed) or 'core modules'}"
            )
    return problems


def _modules() -> list[tuple[str, Path]]:
    return sorted((_module_name(p), p) for p in SRC.rglob("*.py"))


def test_the_walk_finds_every_layer() -> None:
    found = {_layer(m) for m, _ in _modules()}
    assert {"geo", "scale", "data", "cli", "errors", "io", "__init__"} <= found


def test_every_subpackage_has_a_layer() -> None:
    subpackages = {p.name for p in SRC.iterdir() if p.is_dir() and (p / "__init__.py").exists()}
    missing = subpackages - set(LAYERS)
    assert not missing, f"add a row to LAYERS in {__file__} for {sorted(missing)}"


@pytest.mark.parametrize(("module", "path"), _modules(), ids=[m for m, _ in _modules()])
def test_imports_point_downward(module: str, path: Path) -> None:
    source = path.read_text(encoding="utf-8")
    assert violations(module, source, path.name == "__init__.py") == []


# -- the checker itself ------------------------------------------------------------------


@pytest.mark.parametrize(
    ("module", "source", "fragment"),
    [
        ("earthvlm.scale.x", "import torch", "torch-free"),
        ("earthvlm.data.x", "def f():\n    from transformers import AutoModel", "torch-free"),
        ("earthvlm.geo.x", "import peft.tuners", "torch-free"),
        (
            "earthvlm.data.x",
            "import importlib\nimportlib.import_module('accelerate')",
            "torch-free",
        ),
        ("earthvlm.geo.x", "from earthvlm.scale.gsd import GSD", "layer geo may import"),
        ("earthvlm.geo.x", "from ..data import record", "layer geo may import"),
        ("earthvlm.scale.x", "from earthvlm.data.record import Record", "layer scale"),
        ("earthvlm.scale.x", "from earthvlm import cli", "layer scale"),
        ("earthvlm.data.x", "import earthvlm.cli.main", "layer data"),
        ("earthvlm.io", "from earthvlm.scale import gsd", "may import only"),
        ("earthvlm.nosuchlayer.x", "import torch", "no row in LAYERS"),
    ],
)
def test_checker_reports_upward_and_heavy_imports(module: str, source: str, fragment: str) -> None:
    problems = violations(module, source)
    assert problems and fragment in problems[0], problems


@pytest.mark.parametrize(
    ("module", "source"),
    [
        ("earthvlm.data.x", "from earthvlm.scale.gsd import GSD\nfrom earthvlm.geo import raster"),
        ("earthvlm.data.x", "from .record import Record\nfrom ..errors import RecordError"),
        ("earthvlm.geo.x", "from earthvlm.errors import RasterError\nfrom earthvlm.io import x"),
        ("earthvlm.cli.main", "from earthvlm import __version__\nfrom earthvlm.data import jsonl"),
        ("earthvlm.scale.x", "import numpy\nimport torchmetrics_is_not_torch"),
    ],
)
def test_checker_accepts_downward_imports(module: str, source: str) -> None:
    assert violations(module, source) == []


# -- import circles ----------------------------------------------------------------------

#: Circles kept on purpose, each only through imports inside functions (never at module
#: level, so import order cannot break), with the reason.
ALLOWED_CIRCLES = {
    # EarthVLM.build / EarthVLM.load are the class's front door to the builder and the
    # loader, which construct EarthVLM (as transformers' from_pretrained does)
    frozenset({"earthvlm.models.earthvlm", "earthvlm.models.assemble", "earthvlm.models.saved"}),
    # the MCQ generator reads the package's generator registry, built from its modules
    frozenset({"earthvlm.synth.questions", "earthvlm.synth.questions.mcq"}),
}


def _import_graph(*, module_level: bool) -> dict[str, set[str]]:
    """``module -> earthvlm modules it imports`` (at module level only, or anywhere)."""
    modules = {_module_name(p): p for p in SRC.rglob("*.py")}

    def resolve(name: str) -> str | None:
        while name and name not in modules:
            name = name.rpartition(".")[0]
        return name or None

    graph: dict[str, set[str]] = {}
    for name, path in modules.items():
        tree = ast.parse(path.read_text(encoding="utf-8"))
        package = name if path.name == "__init__.py" else name.rpartition(".")[0]
        edges: set[str] = set()
        # imports under `if TYPE_CHECKING:` are for annotations only: never run
        typing_only = {
            id(n)
            for block in ast.walk(tree)
            if isinstance(block, ast.If)
            and getattr(block.test, "id", getattr(block.test, "attr", None)) == "TYPE_CHECKING"
            for n in ast.walk(block)
        }
        for node in tree.body if module_level else ast.walk(tree):
            if id(node) in typing_only:
                continue
            targets: list[str] = []
            if isinstance(node, ast.ImportFrom):
                base = node.module or ""
                if node.level:
                    up = package
                    for _ in range(node.level - 1):
                        up = up.rpartition(".")[0]
                    base = f"{up}.{base}" if base else up
                targets = [f"{base}.{a.name}" if f"{base}.{a.name}" in modules else base
                           for a in node.names]  # fmt: skip
            elif isinstance(node, ast.Import):
                targets = [a.name for a in node.names]
            for t in targets:
                found = resolve(t) if t.startswith("earthvlm") else None
                if found and found != name:
                    edges.add(found)
        graph[name] = edges
    return graph


def _circles(graph: dict[str, set[str]]) -> list[frozenset[str]]:
    """The strongly connected components of more than one module (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    out: list[frozenset[str]] = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        for w in sorted(graph[v]):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            comp = set()
            while True:
                w = stack.pop()
                comp.add(w)
                if w == v:
                    break
            if len(comp) > 1:
                out.append(frozenset(comp))

    for v in sorted(graph):
        if v not in index:
            visit(v)
    return out


def test_no_import_circles() -> None:
    assert _circles(_import_graph(module_level=True)) == []
    found = set(_circles(_import_graph(module_level=False)))
    assert found <= ALLOWED_CIRCLES, f"new import circles: {found - ALLOWED_CIRCLES}"
