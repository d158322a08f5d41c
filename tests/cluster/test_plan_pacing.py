"""How `promote plan` paces helm and the cluster, on the real local control plane.

- A chart that renders the same on any cluster starts its first helm before the Kubernetes client is
  imported and connected, which otherwise holds the GIL the first render waits for.
- On a cluster running on this machine, the dry runs wait until helm has rendered everything.
"""

from __future__ import annotations

import asyncio
import time
from pathlib import Path
from typing import Any

import pytest
import yaml

from promote import engine
from promote.engine.core import reconcile
from promote.engine.runtime import Runtime
from promote.engine.workspace import Options, Workspace
from tests.support.repo import DEFINITION, commit, make_repo


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
