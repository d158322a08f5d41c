"""Planning: render every release of the chain and compare it with the live cluster, read-only.

Releases are rendered and compared in parallel, bounded by the number of cores for helm and by the
cluster client's rate limit for API calls. Nothing is written: object checks are server-side dry runs.
"""

from __future__ import annotations

import asyncio
import hashlib
import os
from collections import Counter
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import replace
from typing import Any

from promote import diff, health, rendercache
from promote.chart import hook_annotation
from promote.cluster import ApiError, Cluster, connect
from promote.engine.workspace import Options, Target, Workspace
from promote.errors import PromoteError
from promote.helm import binary as helm_binary
from promote.plan import Action, EnvironmentPlan, FieldChange, HookPhase, Plan, ReleasePlan, ResourceChange
from promote.release import ReleaseHistory, unverified
from promote.snapshot import FEW_RELEASES, Snapshot
from promote.values import Violation

# A change with the live object and the object as Git wants it (the server's dry-run result), for diff.
Detail = tuple[ResourceChange, dict[str, Any] | None, dict[str, Any] | None]


API_THREADS = 16  # threads for API requests (reads, dry runs), within the client's QPS limit


def _parallelism() -> int:
    # One helm more than cores, as `make -j N+1`: a slot is never idle while its next helm is spawned.
    return max(2, os.cpu_count() or 2) + 1


def plan(opts: Options, target: str) -> Plan:
    """What `apply target` would change, for each environment of the chain up to it, in order."""
    helm_binary.prefetch_version(helm_binary.executable())  # overlaps the definitions' loading, if not remembered
    with Workspace(opts) as ws:
        chain = ws.defs.chain_to(target)
        targets = ws.targets(chain)
        violations = ws.validate(targets)

        def connect() -> Clusters:
            # Called once the first renders run: Git is asked now, not before them (GitPython's import
            # would hold the GIL the first helm waits for) nor after the last one.
            ws.revision_soon()
            return _connect_all(opts, targets)

        releases = asyncio.run(_plan_all(targets, connect, violations))
        return assemble(target, chain, targets, releases, ws.revision_soon().result())


def assemble(
    target: str, chain: tuple[str, ...], targets: list[Target], releases: list[ReleasePlan], revision: str
) -> Plan:
    """The Plan data for release plans computed in chain order."""
    envs: list[EnvironmentPlan] = []
    for env_name in chain:
        rel = tuple(r for t, r in zip(targets, releases, strict=True) if t.env.name == env_name)
        first = next((t for t in targets if t.env.name == env_name), None)
        envs.append(
            EnvironmentPlan(
                name=env_name,
                namespace=first.env.namespace if first else "",
                context=rel[0].context if rel else (first.context if first else None),
                releases=rel,
            )
        )
    return Plan(target=target, revision=revision, environments=tuple(envs))


def _connect_all(opts: Options, targets: list[Target]) -> dict[str | None, Cluster]:
    """Connect to every context once, up front, so an unknown context or dead cluster is one clear error."""
    clusters: dict[str | None, Cluster] = {}
    for t in targets:
        if t.context not in clusters:
            c = connect(t.context, opts.kubeconfig, opts.qps)
            c.server_version()
            clusters[t.context] = c
    return clusters


Clusters = dict[str | None, Cluster]


async def _plan_all(
    targets: list[Target],
    clusters: Clusters | Callable[[], Clusters],
    violations: list[Violation],
    details: dict[int, list[Detail]] | None = None,
    renders: dict[int, list[dict[str, Any]]] | None = None,
) -> list[ReleasePlan]:
    """Plan every target in parallel.

    `clusters` may be a function that connects: charts whose render cannot depend on the cluster are then
    rendered while it connects. By target index, `details` collects objects for `promote diff`, and
    `renders` what was rendered (from the cache, Secret values fingerprinted), for apply to know a
    release's workloads without rendering again.
    """
    helm_slots = asyncio.Semaphore(_parallelism())
    pool = ThreadPoolExecutor(max_workers=API_THREADS, thread_name_prefix="promote-api")
    loop = asyncio.get_running_loop()
    use_cache = details is None
    helm_ver = helm_binary.version(helm_binary.executable())

    async def helm_render(t: Target, kube_version: str | None, upgrade: bool) -> list[dict[str, Any]]:
        # Only now: pyhelm3 is slow to import, and a cached plan runs no helm.
        from promote import render
        from promote.helm.client import connect

        helm = connect(kube_version=kube_version)
        async with helm_slots:
            return await render.render(
                helm, t.chart, release=t.env.release, namespace=t.env.namespace, values=t.values, is_upgrade=upgrade
            )

    def cache_key(t: Target, independent: bool, kube_version: str | None, upgrade: bool) -> str | None:
        """The render cache key, None when the render may read live objects; a cluster-independent chart's
        key leaves the cluster's version and the install/upgrade state out."""
        if t.chart.reads_cluster(t.values):
            return None
        kv, up = ("any", "any") if independent else (str(kube_version), str(upgrade))
        return rendercache.key(t.chart.digest, t.values_digest, helm_ver, kv, t.env.release, t.env.namespace, up)

    async def render_and_store(
        t: Target, independent: bool, kube_version: str | None, upgrade: bool
    ) -> tuple[list[dict[str, Any]], str]:
        """(objects, manifest digest) from helm, saved in the render cache when that is safe."""
        rendered = await helm_render(t, None if independent else kube_version, upgrade)
        digest = manifest_digest(rendered)
        if (k := cache_key(t, independent, kube_version, upgrade)) is not None:
            rendercache.store(k, [diff.fingerprint_secret(o) for o in rendered], digest)
        return rendered, digest

    async def early(t: Target) -> tuple[list[dict[str, Any]], str, bool]:
        """(objects, manifest digest, from the cache) of a chart that renders the same on any cluster."""
        k = cache_key(t, True, None, False)
        if use_cache and k is not None and (hit := rendercache.load(k)) is not None:
            return hit[0], hit[1], True
        return (*await render_and_store(t, True, None, False), False)

    def errors_of(t: Target) -> list[str]:
        return [str(v) for v in violations if v.app == t.app.name and v.environment == t.env.name]

    early_tasks = {
        i: loop.create_task(early(t)) for i, t in enumerate(targets) if t.chart.cluster_independent and not errors_of(t)
    }
    if early_tasks and callable(clusters):
        # Let the first renders spawn their helm before connecting: importing the Kubernetes client
        # takes a few hundred milliseconds of the GIL, which would otherwise delay the first helm, and
        # with it the other core, by as much.
        await asyncio.sleep(0)

    async def settle() -> None:
        # A release that failed before it awaited its early render leaves the task to us: stop its helm.
        for task in early_tasks.values():
            task.cancel()
        await asyncio.gather(*early_tasks.values(), return_exceptions=True)
        pool.shutdown(wait=False)

    try:
        connected: Clusters = await loop.run_in_executor(pool, clusters) if callable(clusters) else clusters
    except BaseException:
        await settle()
        raise
    releases_in = Counter((t.context, t.env.namespace) for t in targets)
    snapshots = {
        ctx: Snapshot(c, sparse=[ns for (cx, ns), n in releases_in.items() if cx == ctx and n <= FEW_RELEASES])
        for ctx, c in connected.items()
    }

    pacer = _Pacer(sum(1 for t in targets if not errors_of(t)), hold=any(c.local for c in connected.values()))

    async def one(i: int, t: Target) -> ReleasePlan:
        cluster, snap = connected[t.context], snapshots[t.context]
        errors = errors_of(t)
        base = ReleasePlan(
            app=t.app.name,
            release=t.env.release,
            namespace=t.env.namespace,
            context=cluster.context,
            chart=t.chart.name,
            chart_version=t.chart.version,
            artifact_digest=t.artifact_digest,
            values_digest=t.values_digest,
        )
        if errors:
            return replace(base, errors=tuple(errors))
        try:
            try:
                hist = await loop.run_in_executor(pool, snap.release, t.env.namespace, t.env.release)
                upgrade = hist.deployed is not None
                independent = i in early_tasks
                cached: tuple[list[dict[str, Any]], str] | None = None
                fresh: tuple[list[dict[str, Any]], str] | None = None
                if independent:
                    objs, digest, from_cache = await early_tasks[i]
                    if from_cache:
                        cached = objs, digest
                    else:
                        fresh = objs, digest
                elif use_cache and upgrade and (k := cache_key(t, False, cluster.server_version(), True)) is not None:
                    cached = rendercache.load(k)
                # Only a deployed release can be proven unchanged from a cached render.
                if cached is not None and upgrade:
                    if renders is not None:
                        renders[i] = [dict(o) for o in cached[0]]
                    quick = await loop.run_in_executor(pool, prove_unchanged, snap, t, cached[0], hist, base, cached[1])
                    if quick is not None:
                        return quick
                if fresh is not None:
                    rendered, digest = fresh
                else:
                    # Not cached, or cached (Secrets fingerprinted) but not provably unchanged: render for real.
                    rendered, digest = await render_and_store(t, independent, cluster.server_version(), upgrade)
            finally:
                pacer.rendered()
            if renders is not None:
                renders[i] = rendered
            sink = details.setdefault(i, []) if details is not None else None
            async with pacer.slots:
                return await loop.run_in_executor(pool, compare, snap, t, rendered, hist, base, digest, sink)
        except PromoteError as e:
            return replace(base, errors=(str(e),))

    try:
        return list(await asyncio.gather(*(one(i, t) for i, t in enumerate(targets))))
    finally:
        await settle()


class _Pacer:
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


def manifest_digest(objs: list[dict[str, Any]]) -> str:
    """Digest of rendered manifests, Secrets included, for saved-plan verification without storing them."""
    import json

    h = hashlib.sha256()
    for o in sorted(objs, key=lambda o: diff.identity(o)):
        h.update(json.dumps(o, sort_keys=True, separators=(",", ":")).encode())
    return h.hexdigest()


def _owned_elsewhere(f: FieldChange, live: dict[str, Any], kind: str, name: str, hpa: set[tuple[str, str]]) -> bool:
    """Fields another controller owns are neither drift nor a change to report."""
    if f.segments == ("spec", "replicas") and (kind, name) in hpa:
        return True
    return diff.owned_by_other_controller(live, f.segments) is not None


Ident = tuple[str, str, str, str]


def _split(
    cluster: Cluster, t: Target, rendered: list[dict[str, Any]], hist: ReleaseHistory
) -> tuple[list[dict[str, Any]], list[dict[str, Any]], dict[Ident, dict[str, Any]]]:
    """Resources and hooks of a render, namespaced the way helm will, and the old manifest by identity."""
    ns = t.env.namespace
    resources: list[dict[str, Any]] = []
    hooks: list[dict[str, Any]] = []
    for obj in rendered:
        (hooks if hook_annotation(obj) else resources).append(obj)
    for obj in resources:
        md = obj.setdefault("metadata", {})
        if cluster.resource(obj["apiVersion"], obj["kind"]).namespaced:
            md.setdefault("namespace", ns)
        else:
            md.pop("namespace", None)
    old: dict[Ident, dict[str, Any]] = {}
    for obj in hist.deployed.manifest if hist.deployed else ():
        md = obj.setdefault("metadata", {})
        if cluster.resource(obj["apiVersion"], obj["kind"]).namespaced:
            md.setdefault("namespace", ns)
        old[diff.identity(obj)] = obj
    return resources, hooks, old


def _live(snap: Snapshot, objs: list[dict[str, Any]], namespace: str) -> dict[Ident, dict[str, Any]]:
    if not snap.namespace_exists(namespace):
        return {}
    return snap.find(diff.identity(o) for o in objs)


def _hooks(hooks: list[dict[str, Any]], ns: str, upgrade: bool, will_sync: bool) -> list[ResourceChange]:
    out = []
    for obj in hooks:
        phase = HookPhase.from_helm(hook_annotation(obj) or "", upgrade=upgrade)
        if phase is None:
            continue
        api_version, kind, _, name = diff.identity(obj)
        out.append(
            ResourceChange(Action.CREATE if will_sync else Action.UNCHANGED, api_version, kind, ns, name, hook=phase)
        )
    return out


def prove_unchanged(
    snap: Snapshot, t: Target, cached: list[dict[str, Any]], hist: ReleaseHistory, base: ReleasePlan, digest: str
) -> ReleasePlan | None:
    """The all-unchanged plan of a release, from a cached render, when it can be proven without helm.

    Proven means: the release is deployed, the cached render equals the deployed manifest (so helm's
    patch has nothing to delete), and every live object already holds every field the chart sets. Anything
    else returns None, and the caller renders and compares for real.
    """
    ns = t.env.namespace
    latest = hist.latest
    if latest is None or latest.status != "deployed" or hist.deployed is None:
        return None
    resources, hooks, old = _split(snap.cluster, t, cached, hist)
    live = _live(snap, resources + list(old.values()), ns)
    rendered_ids = {diff.identity(o) for o in resources}
    if set(old) != rendered_ids:
        return None
    changes: list[ResourceChange] = []
    for obj in resources:
        ident = diff.identity(obj)
        current = live.get(ident)
        if current is None or diff.fingerprint_secret(old[ident]) != obj:
            return None
        if not diff.covers(diff.fingerprint_secret(current), obj):
            return None
        md = current.get("metadata", {})
        changes.append(ResourceChange(Action.UNCHANGED, *_parts(ident), resource_version=md.get("resourceVersion")))
    changes += _hooks(hooks, ns, upgrade=True, will_sync=False)
    return replace(
        base,
        context=snap.cluster.context,
        current_revision=latest.revision,
        current_status=latest.status,
        current_unverified=unverified(hist) is not None,
        manifest_digest=digest,
        changes=tuple(changes),
    )


def _parts(ident: Ident) -> tuple[str, str, str | None, str]:
    return ident[0], ident[1], ident[2] or None, ident[3]


def compare(
    snap: Snapshot,
    t: Target,
    rendered: list[dict[str, Any]],
    hist: ReleaseHistory,
    base: ReleasePlan,
    digest: str,
    details: list[Detail] | None = None,
) -> ReleasePlan:
    """Compare rendered objects with the live cluster; server-side dry runs where a change is possible."""
    cluster, ns = snap.cluster, t.env.namespace
    deployed = hist.deployed
    resources, hooks, old = _split(cluster, t, rendered, hist)
    ns_exists = snap.namespace_exists(ns)
    changes: list[ResourceChange] = []
    errors: list[str] = []
    if not ns_exists:
        changes.append(ResourceChange(Action.CREATE, "v1", "Namespace", None, ns))
    live = _live(snap, resources + list(old.values()), ns)

    rendered_ids = set()
    for obj in resources:
        ident = diff.identity(obj)
        rendered_ids.add(ident)
        api_version, kind, ons, name = ident
        current = live.get(ident)
        try:
            if current is None:
                predicted = cluster.create(obj, ons or None, dry_run=True) if ns_exists else obj
                change = ResourceChange(Action.CREATE, api_version, kind, ons or None, name)
                changes.append(change)
                if details is not None:
                    details.append((change, None, predicted))
                continue
            owner = (current.get("metadata", {}).get("annotations") or {}).get("meta.helm.sh/release-name")
            if ident not in old and owner != t.env.release:
                errors.append(
                    f"{kind} {ons}/{name} exists and is not part of release {t.env.release}: "
                    "helm would refuse to adopt it; delete it or label it for this release"
                )
                continue
            rv = current.get("metadata", {}).get("resourceVersion")
            if details is None and old.get(ident) == obj and diff.covers(current, obj):
                # Git did not change and live holds every field the chart sets: nothing to dry-run.
                changes.append(
                    ResourceChange(Action.UNCHANGED, api_version, kind, ons or None, name, resource_version=rv)
                )
                continue
            patch = diff.three_way_patch(old.get(ident), obj)
            predicted = cluster.patch(api_version, kind, ons or None, name, patch, dry_run=True)
            hpa = snap.hpa_targets(ns) if health.kind_of(obj).scales else set()
            fields = [
                f
                for f in diff.field_changes(
                    kind, diff.normalize(current, t.env.ignore), diff.normalize(predicted, t.env.ignore)
                )
                if not _owned_elsewhere(f, current, kind, name, hpa)
            ]
            change = ResourceChange(
                Action.UPDATE if fields else Action.UNCHANGED,
                api_version,
                kind,
                ons or None,
                name,
                fields=tuple(fields),
                resource_version=rv,
            )
            changes.append(change)
            if details is not None:
                details.append((change, current, predicted))
        except ApiError as e:
            errors.append(str(e))

    for ident, obj in old.items():
        if ident in rendered_ids:
            continue
        policy = (obj.get("metadata", {}).get("annotations") or {}).get("helm.sh/resource-policy")
        current = live.get(ident)
        if current is None or policy == "keep":
            continue
        change = ResourceChange(
            Action.DELETE, *_parts(ident), resource_version=current.get("metadata", {}).get("resourceVersion")
        )
        changes.append(change)
        if details is not None:
            details.append((change, current, None))

    will_sync = (
        deployed is None
        or (hist.latest is not None and hist.latest.status != "deployed")
        or any(c.action != Action.UNCHANGED for c in changes)
    )
    changes += _hooks(hooks, ns, upgrade=deployed is not None, will_sync=will_sync)
    return replace(
        base,
        context=cluster.context,
        current_revision=hist.latest.revision if hist.latest else None,
        current_status=hist.latest.status if hist.latest else None,
        current_unverified=unverified(hist) is not None,
        manifest_digest=digest,
        errors=tuple(errors),
        changes=tuple(changes),
    )
