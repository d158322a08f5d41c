"""The layer contract, checked on every run: cli → views | engine → concerns → adapters → definitions → data.

A module imports only from its own layer or the ones below it, function-level imports included (they are
how heavy modules load late, not a way around the contract). views and engine do not import each other:
the CLI hands what the engine returns to a view. The devcluster harness is not part of promote at all.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

from tests.support.paths import REPO_ROOT

PACKAGE = REPO_ROOT / "promote"

# Top first. A name stands for the module and, for a package, everything in it.
LAYERS: list[tuple[str, set[str]]] = [
    ("cli", {"cli"}),
    ("views and engine", {"views", "engine"}),
    (
        "concerns",
        {"diff", "health", "sync", "gate", "lock", "pin", "record", "release", "snapshot", "saved", "render"},
    ),
    ("adapters", {"cluster", "helm", "rendercache", "chartsource"}),
    ("definitions", {"model", "values", "source", "chart"}),
    ("data", {"errors", "fingerprint", "plan", "redact", "results", "yamlio"}),
]
INDEPENDENT = ("views", "engine")


def _modules() -> dict[str, Path]:
    found = {}
    for path in PACKAGE.rglob("*.py"):
        parts = path.relative_to(PACKAGE).with_suffix("").parts
        if parts[-1] == "__init__":
            parts = parts[:-1]
        found[".".join(parts)] = path
    return found


def _top(module: str) -> str:
    return module.split(".")[0]


def _layer(module: str) -> int:
    for index, (_, names) in enumerate(LAYERS):
        if _top(module) in names:
            return index
    raise AssertionError(f"promote.{module} is in no layer: add it to LAYERS in {Path(__file__).name}")


def _imports(path: Path) -> set[str]:
    """promote modules a file imports, anywhere in it, without the `promote.` prefix."""
    out: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            if node.module == "promote":
                out.update(alias.name for alias in node.names)
            elif node.module.startswith("promote."):
                out.add(node.module.removeprefix("promote."))
        elif isinstance(node, ast.Import):
            out.update(a.name.removeprefix("promote.") for a in node.names if a.name.startswith("promote."))
    return out


MODULES = _modules()


@pytest.mark.parametrize("module", sorted(m for m in MODULES if m))
def test_imports_go_down_the_layers(module: str) -> None:
    own = _layer(module)
    upward = [
        f"promote.{module} ({LAYERS[own][0]}) imports promote.{dep} ({LAYERS[_layer(dep)][0]})"
        for dep in sorted(_imports(MODULES[module]))
        if _layer(dep) < own
    ]
    assert not upward, "\n".join(upward)


def test_views_and_engine_do_not_import_each_other() -> None:
    for module, path in MODULES.items():
        if _top(module) in INDEPENDENT:
            other = next(name for name in INDEPENDENT if name != _top(module))
            assert not [d for d in _imports(path) if _top(d) == other], f"promote.{module} imports promote.{other}"


def test_every_module_has_a_layer() -> None:
    for module in MODULES:
        if module:
            _layer(module)


def test_the_contract_sees_a_violation(tmp_path: Path) -> None:
    """The checker itself: an upward import is found, function-level ones included."""
    source = tmp_path / "m.py"
    source.write_text("def f():\n    from promote import cli\n    import promote.engine.planning\n")
    assert _imports(source) == {"cli", "engine.planning"}
    assert _layer("engine.planning") < _layer("diff")


def test_no_product_module_imports_the_harness() -> None:
    for module, path in MODULES.items():
        text = path.read_text()
        assert "devcluster" not in text, f"promote.{module} mentions the devcluster harness"
