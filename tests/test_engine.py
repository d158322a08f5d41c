"""The engine package: its names load on first use, and a plan starts rendering before it connects.

- `promote plan` must not pay for importing apply's modules (sync, gate, lock, health, results).
- A chart that renders the same on any cluster starts its first helm before the Kubernetes client is
  imported and connected, which otherwise holds the GIL the first render waits for.
- On a cluster running on this machine, the dry runs wait until helm has rendered everything.
"""

from __future__ import annotations

import asyncio
import importlib
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest
import yaml
from helpers import DEFINITION, commit, make_repo

from promote import engine
from promote.cluster import Cluster
from promote.engine.core import reconcile
from promote.engine.runtime import Runtime
from promote.engine.scheduler import Pacer
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
        done = reconcile(
            targets, Runtime.for_options(opts), while_rendering=lambda: seen_at_connect.append(list(spawned))
        )
        plans = [r.plan for r in done]
    assert [p.errors for p in plans] == [(), ()]
    assert seen_at_connect and "template" in seen_at_connect[0], seen_at_connect


def test_dry_runs_wait_for_the_last_render_on_a_local_cluster(
    tmp_path: Path, two_namespaces: tuple[str, str], monkeypatch: pytest.MonkeyPatch
) -> None:
    from promote import cluster as cluster_mod
    from promote.helm import client as helm_client

    repo = make_repo(tmp_path, *two_namespaces)
    # Twelve releases for a few helm slots: without the hold, the first dry runs would start while helm
    # still renders the last ones.
    doc = yaml.safe_load((repo / DEFINITION).read_text())
    for n in range(1, 6):
        doc["app"] = f"app{n}"
        for env in doc["environments"]:
            env["release"] = f"app{n}-{env['name']}"
        (repo / "environments" / f"app{n}.yaml").write_text(yaml.safe_dump(doc, sort_keys=False))
    commit(repo, "five more apps")
    events: list[tuple[float, str]] = []
    real_run, real_create = helm_client.ArgvCommand.run, cluster_mod.Cluster.create

    async def run(self: Any, command: list[Any], *a: Any, **kw: Any) -> bytes:
        out: bytes = await real_run(self, command, *a, **kw)
        events.append((time.monotonic(), "rendered"))
        return out

    def create(self: Any, obj: dict[str, Any], *a: Any, **kw: Any) -> Any:
        events.append((time.monotonic(), "dry-run" if kw.get("dry_run") else "create"))
        return real_create(self, obj, *a, **kw)

    monkeypatch.setattr(helm_client.ArgvCommand, "run", run)
    monkeypatch.setattr(cluster_mod.Cluster, "create", create)
    result = engine.plan(Options(root=repo), "prod")

    assert [r.errors for e in result.environments for r in e.releases] == [()] * 12
    kinds = [k for _, k in sorted(events)]
    assert kinds.count("rendered") == 12 and "dry-run" in kinds, kinds
    assert kinds.index("dry-run") > max(i for i, k in enumerate(kinds) if k == "rendered"), kinds


@pytest.mark.parametrize(
    ("host", "local"),
    [
        ("https://127.0.0.1:6443", True),
        ("https://127.5.0.1", True),
        ("https://localhost:8443", True),
        ("https://[::1]:6443", True),
        ("https://10.0.0.1:6443", False),
        ("https://kube.example.com", False),
    ],
)
def test_a_cluster_on_a_loopback_address_is_local(host: str, local: bool) -> None:
    c = Cluster.__new__(Cluster)
    c.host = host
    assert c.local is local


def test_the_pacer_opens_when_the_last_release_has_its_render() -> None:
    async def scenario() -> list[str]:
        seen: list[str] = []
        pacer = Pacer(2, hold=True)

        async def compare() -> None:
            async with pacer.slots:
                seen.append("compare")

        task = asyncio.create_task(compare())
        await asyncio.sleep(0)
        pacer.rendered()
        seen.append("rendered")
        await asyncio.sleep(0)
        pacer.rendered()
        seen.append("rendered")
        await task
        return seen

    assert asyncio.run(scenario()) == ["rendered", "rendered", "compare"]
    assert not Pacer(0, hold=True).slots.locked()
    assert not Pacer(3, hold=False).slots.locked()
