"""The engine package (promote/engine/__init__.py): its names load on first use, so `promote plan` does not
pay for importing apply's modules (sync, gate, lock, health, results)."""

from __future__ import annotations

import importlib
import subprocess
import sys

import pytest

from promote import engine


def test_every_public_name_resolves_to_its_module() -> None:
    assert sorted(engine.__all__) == sorted(engine._HOME)
    for name, module in engine._HOME.items():
        assert getattr(engine, name) is getattr(importlib.import_module(f"promote.engine.{module}"), name)
    with pytest.raises(AttributeError, match="no attribute 'nothing'"):
        engine.nothing  # noqa: B018


def test_plan_does_not_import_apply() -> None:
    code = (
        "import sys; from promote import engine; engine.plan\n"
        "print('promote.engine.applying' in sys.modules, 'promote.sync' in sys.modules)\n"
        "engine.apply; print('promote.engine.applying' in sys.modules)"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60, check=True)
    assert out.stdout.split() == ["False", "False", "True"]
