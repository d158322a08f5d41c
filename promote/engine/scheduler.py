"""How `reconcile` schedules its work; private to promote.engine.core.

Releases are rendered and compared in parallel, bounded by the number of cores for helm and by the
cluster client's rate limit for API calls. Charts whose render cannot depend on the cluster start
rendering before the cluster is connected. A render is kept in the render cache when it cannot read
live objects, and a deployed release whose cached render is provably what is live needs no helm at all.
"""

from __future__ import annotations

import asyncio
import os
from collections import Counter
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import replace
from typing import Any

from promote import diff, redact, rendercache
from promote.cluster import Cluster
from promote.engine.compare import Detail, compare, manifest_digest, prove_unchanged
from promote.engine.core import Reconciled
from promote.engine.runtime import Runtime
from promote.engine.workspace import Target
from promote.errors import PromoteError
from promote.plan import ReleasePlan
from promote.release import ReleaseHistory, applies_server_side
from promote.snapshot import FEW_RELEASES, Snapshot
from promote.values import Violation

API_THREADS = 16  # threads for API requests (reads, dry runs), within the client's QPS limit

Rendered = tuple[list[dict[str, Any]], str]  # objects, manifest digest


def _parallelism() -> int:
    # One helm more than cores, as `make -j N+1`: a slot is never idle while its next helm is spawned.
    return max(2, os.cpu_count() or 2) + 1


class Scheduler:
    """One reconcile: its helm slots, API threads, early renders and pacing."""

    def __init__(self, targets: list[Target], runtime: Runtime, violations: list[Violation], objects: bool) -> None:
        self.targets, self.runtime, self.objects = targets, runtime, objects
        self.errors = [
            [str(v) for v in violations if v.app == t.app.name and v.environment == t.env.name] for t in targets
        ]
        self.helm_slots = asyncio.Semaphore(_parallelism())
        self.pool = ThreadPoolExecutor(max_workers=API_THREADS, thread_name_prefix="promote-api")
        self.helm_version = runtime.helm_version()
        self.helm_major = int(self.helm_version.lstrip("v").split(".")[0] or 3)
        self.early: dict[int, asyncio.Task[tuple[list[dict[str, Any]], str, bool]]] = {}
        self.snapshots: dict[str | None, Snapshot] = {}
        self.pacer: Pacer | None = None

    async def run(self, while_rendering: Callable[[], object] | None) -> list[Reconciled]:
        """Start the early renders, connect, then plan every target; always stop every helm started."""
        loop = asyncio.get_running_loop()
        for i, t in enumerate(self.targets):
            if t.chart.cluster_independent and not self.errors[i]:
                self.early[i] = loop.create_task(self._early(t))
        if self.early:
            # Let the first renders spawn their helm before connecting: importing the Kubernetes client
            # takes a few hundred milliseconds of the GIL, which would otherwise delay the first helm, and
            # with it the other core, by as much.
            await asyncio.sleep(0)
        try:
            connected = await loop.run_in_executor(self.pool, self._connect, while_rendering)
            self._prepare(connected)
            return list(await asyncio.gather(*(self._one(i, t) for i, t in enumerate(self.targets))))
        finally:
            # A release that failed before it awaited its early render leaves the task to us: stop its helm.
            for task in self.early.values():
                task.cancel()
            await asyncio.gather(*self.early.values(), return_exceptions=True)
            self.pool.shutdown(wait=False)

    def _connect(self, while_rendering: Callable[[], object] | None) -> dict[str | None, Cluster]:
        if while_rendering is not None:
            while_rendering()
        return self.runtime.connect([t.context for t in self.targets])

    def _prepare(self, connected: dict[str | None, Cluster]) -> None:
        releases_in = Counter((t.context, t.env.namespace) for t in self.targets)
        for ctx, c in connected.items():
            sparse = [ns for (cx, ns), n in releases_in.items() if cx == ctx and n <= FEW_RELEASES]
            self.snapshots[ctx] = Snapshot(c, sparse=sparse)
        self.pacer = Pacer(sum(1 for e in self.errors if not e), hold=any(c.local for c in connected.values()))

    # --- rendering ---------------------------------------------------------------------------------

    def _cache_key(self, t: Target, independent: bool, kube_version: str | None, upgrade: bool) -> str | None:
        """The render cache key, None when the render may read live objects; a cluster-independent chart's
        key leaves the cluster's version and the install/upgrade state out."""
        if t.chart.reads_cluster(t.values):
            return None
        kv, up = ("any", "any") if independent else (str(kube_version), str(upgrade))
        apis = ""
        if not independent and t.chart.uses_api_versions:
            apis = "\n".join(self.runtime.cluster(t.context).api_versions())
        return rendercache.key(
            t.chart.digest, t.cache_digest, self.helm_version, kv, t.env.release, t.env.namespace, up, apis
        )

    async def _render_and_store(
        self, t: Target, independent: bool, kube_version: str | None, upgrade: bool, cluster: Cluster | None = None
    ) -> Rendered:
        """(objects, manifest digest) from helm, saved in the render cache when that is safe.

        A chart that reads live objects (`lookup`: a password generated once and kept, as Bitnami's charts
        do) renders against its cluster, so that plan and upgrade agree; `helm template` alone would see
        nothing and render a new password every time.
        """
        from promote import render  # only now: pyhelm3 is slow to import, and a cached plan runs no helm

        live = cluster is not None and t.chart.reads_cluster(t.values)
        # .Capabilities.APIVersions as the upgrade will see it, not helm's built-in list.
        apis = cluster.api_versions() if cluster is not None and not independent and t.chart.uses_api_versions else ()
        if live and cluster is not None:
            helm = self.runtime.helm_for(cluster, context=t.context)
        else:
            helm = self.runtime.render_helm(None if independent else kube_version)
        async with self.helm_slots:
            rendered = await render.render(
                helm,
                t.chart,
                release=t.env.release,
                namespace=t.env.namespace,
                values=t.values,
                is_upgrade=upgrade,
                against_cluster=live,
                api_versions=apis,
            )
        digest = manifest_digest(rendered)
        for o in rendered:
            redact.register_rendered(o)
        if (k := self._cache_key(t, independent, kube_version, upgrade)) is not None:
            # writeOnly values rendered into any kind stay off the disk too (such a render is then never
            # proven unchanged from the cache: it differs from what helm stored, so it is rendered again).
            rendercache.store(k, [diff.mask_values(diff.fingerprint_secret(o), t.hidden) for o in rendered], digest)
        return rendered, digest

    async def _early(self, t: Target) -> tuple[list[dict[str, Any]], str, bool]:
        """(objects, manifest digest, from the cache) of a chart that renders the same on any cluster."""
        k = self._cache_key(t, True, None, False)
        if not self.objects and k is not None and (hit := rendercache.load(k)) is not None:
            return hit[0], hit[1], True
        return (*await self._render_and_store(t, True, None, False), False)

    async def _cached_or_fresh(
        self, i: int, t: Target, cluster: Cluster, upgrade: bool
    ) -> tuple[Rendered | None, Rendered | None]:
        """(cached, fresh): a render from the cache (Secret values fingerprinted) or one helm just made."""
        if i in self.early:
            objs, digest, from_cache = await self.early[i]
            return ((objs, digest), None) if from_cache else (None, (objs, digest))
        if not self.objects and upgrade and (k := self._cache_key(t, False, cluster.server_version(), True)):
            return rendercache.load(k), None
        return None, None

    # --- one target --------------------------------------------------------------------------------

    async def _one(self, i: int, t: Target) -> Reconciled:
        cluster = self.runtime.cluster(t.context)
        base = ReleasePlan(
            app=t.app.name,
            release=t.env.release,
            namespace=t.env.namespace,
            context=cluster.context,
            chart=t.chart.name,
            chart_version=t.chart.version,
            chart_digest=t.chart.source_digest,
            artifact_digest=t.artifact_digest,
            values_digest=t.values_digest,
        )
        if self.errors[i]:
            return Reconciled(target=t, plan=replace(base, errors=tuple(self.errors[i])))
        hist: ReleaseHistory | None = None
        try:
            hist, proven, rendered = await self._render(i, t, cluster, base)
            if proven is not None:
                return Reconciled(target=t, plan=proven, history=hist, rendered=rendered[0])
            details: list[Detail] | None = [] if self.objects else None
            assert self.pacer is not None
            async with self.pacer.slots:
                plan = await asyncio.get_running_loop().run_in_executor(
                    self.pool,
                    compare,
                    self.snapshots[t.context],
                    t,
                    rendered[0],
                    hist,
                    base,
                    rendered[1],
                    details,
                    applies_server_side(hist, self.helm_major),
                )
            return Reconciled(target=t, plan=plan, history=hist, rendered=rendered[0], objects=tuple(details or ()))
        except PromoteError as e:
            return Reconciled(target=t, plan=replace(base, errors=(diff.mask_text(str(e), t.hidden),)), history=hist)

    async def _render(
        self, i: int, t: Target, cluster: Cluster, base: ReleasePlan
    ) -> tuple[ReleaseHistory, ReleasePlan | None, Rendered]:
        """(history, plan proven from the cache or None, render): the render from the cache when a
        deployed release can be proven unchanged with it, else from helm."""
        loop = asyncio.get_running_loop()
        snap = self.snapshots[t.context]
        assert self.pacer is not None
        try:
            hist = await loop.run_in_executor(self.pool, snap.release, t.env.namespace, t.env.release)
            upgrade = hist.deployed is not None
            cached, fresh = await self._cached_or_fresh(i, t, cluster, upgrade)
            # Only a deployed release can be proven unchanged from a cached render.
            if cached is not None and upgrade:
                ssa = applies_server_side(hist, self.helm_major)
                quick = await loop.run_in_executor(
                    self.pool, prove_unchanged, snap, t, cached[0], hist, base, cached[1], ssa
                )
                if quick is not None:
                    return hist, quick, ([dict(o) for o in cached[0]], cached[1])
            if fresh is None:
                # Not cached, or cached (Secrets fingerprinted) but not provably unchanged: render for real.
                fresh = await self._render_and_store(t, i in self.early, cluster.server_version(), upgrade, cluster)
            return hist, None, fresh
        finally:
            self.pacer.rendered()


class Pacer:
    """Holds the compares (each a handful of server-side dry runs) until helm has rendered everything,
    when the cluster runs on this machine.

    Then the apiserver, helm and promote share the same cores, and interleaving the dry runs with the
    renders costs more than it overlaps: any thread holding the GIL delays the event loop that refills
    helm's slots, and the apiserver takes the cores helm needs. A cold plan of 100 releases on the dev
    cluster took 4.20-4.25 s interleaved and 3.26-3.88 s this way (medians of 6 alternated runs). A
    remote cluster's dry runs are mostly network latency, which is better hidden behind the renders.
    """

    def __init__(self, renders: int, hold: bool) -> None:
        self._left = renders
        self.slots = asyncio.Semaphore(0 if hold else API_THREADS)
        self._held = hold
        if renders == 0:
            self._open()

    def rendered(self) -> None:
        """One release has its render (from helm or the cache), or will not get one."""
        self._left -= 1
        if self._left == 0:
            self._open()

    def _open(self) -> None:
        if self._held:
            self._held = False
            for _ in range(API_THREADS):
                self.slots.release()
