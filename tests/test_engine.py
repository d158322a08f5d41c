"""The engine package: its names load on first use, and a plan starts rendering before it connects.

- `promote plan` must not pay for importing apply's modules (sync, gate, lock, health, results).
- A chart that renders the same on any cluster starts its first helm before the Kubernetes client is
  imported and connected, which otherwise holds the GIL the first render waits for.
"""

from __future__ import annotations

import asyncio
import importlib
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from helpers import make_repo

from promote import engine
from promote.engine import planning
from promote.engine.workspace import Options, Workspace


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


def test_first_render_starts_before_the_cluster_is_connected(
    tmp_path: Path, two_namespaces: tuple[str, str], monkeypatch: pytest.MonkeyPatch
) -> None:
    repo = make_repo(tmp_path, *two_namespaces)
    spawned: list[str] = []
    real_exec = asyncio.create_subprocess_exec

    async def observed(*argv: Any, **kw: Any) -> Any:
        spawned.append(str(argv[1]))
        return await real_exec(*argv, **kw)

    monkeypatch.setattr(asyncio, "create_subprocess_exec", observed)
    seen_at_connect: list[list[str]] = []
    opts = Options(root=repo)
    with Workspace(opts) as ws:
        targets = ws.targets(ws.defs.chain_to("prod"))
        assert all(t.chart.cluster_independent for t in targets)

        def connect() -> planning.Clusters:
            seen_at_connect.append(list(spawned))
            return planning._connect_all(opts, targets)

        plans = asyncio.run(planning._plan_all(targets, connect, []))
    assert [p.errors for p in plans] == [(), ()]
    assert seen_at_connect and "template" in seen_at_connect[0], seen_at_connect
