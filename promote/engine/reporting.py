"""Reporting: promotion history, sync/health status with drift and runtime notes, and Git-vs-live diffs.

Drift (a live field that departs from what Git declares) and runtime fluctuation (pods restarting,
unready or recreated; Kubernetes heals those) are kept apart: only the first makes a release OutOfSync.
Everything here is read-only.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from datetime import datetime
from typing import TYPE_CHECKING, Any

import yaml

from promote import diff, health, record, sync
from promote.cluster import Cluster
from promote.engine.core import reconcile
from promote.engine.runtime import Runtime
from promote.engine.syncing import release_health
from promote.engine.workspace import Options, Target, Workspace
from promote.errors import PromoteError
from promote.plan import Action
from promote.release import ReleaseHistory, history, promotion_of
from promote.results import HistoryEntry, ReleaseStatus, ResourceDiff, SyncStatus, WatchEvent, WatchEventKind

if TYPE_CHECKING:
    from promote.engine.workspace import ApplyOptions


def release_history(opts: Options, env: str, runtime: Runtime | None = None) -> list[HistoryEntry]:
    """Every helm revision of every app release of `env`, with its promotion record."""
    runtime = runtime or Runtime.for_options(opts)
    with Workspace(opts) as ws:
        targets = ws.targets((ws.defs.chain_to(env)[-1],))
        runtime.connect([t.context for t in targets])
        out: list[HistoryEntry] = []
        for t in targets:
            for r in history(runtime.cluster(t.context), t.env.namespace, t.env.release).records:
                p = record.Promotion.parse(r.description)
                out.append(
                    HistoryEntry(
                        app=t.app.name,
                        release=t.env.release,
                        revision=r.revision,
                        status=r.status,
                        chart=f"{r.chart_name}-{r.chart_version}",
                        updated=p.at if p else r.deployed_at,
                        git_revision=p.revision if p else None,
                        artifact=p.artifact if p else None,
                        values=p.values if p else None,
                        by=p.by if p else None,
                        action=p.action.value if p else None,
                        description="" if p else r.description,
                    )
                )
        return out


def _parse_time(ts: str) -> datetime | None:
    try:
        return datetime.fromisoformat(ts.replace("Z", "+00:00"))
    except ValueError:
        return None


def runtime_notes(cluster: Cluster, namespace: str, hist: ReleaseHistory) -> list[str]:
    """Restarts, unready or unavailable pods, and pods recreated since the last sync: observed, not drift."""
    deployed = hist.deployed
    if deployed is None:
        return []
    # When the last sync finished (stamped by apply); without it, a rollout's own pods would look recreated.
    stamp = deployed.annotations.get(record.SYNCED_AT_ANNOTATION)
    synced_at = _parse_time(stamp) if stamp else None
    known = deployed.annotations.get(record.SYNCED_PODS_ANNOTATION)
    synced_pods = set(known.split(",")) if known else None
    notes: list[str] = []
    for o in deployed.manifest:
        if not health.kind_of(o).long_running:
            continue
        live = cluster.get(o["apiVersion"], o["kind"], namespace, o["metadata"]["name"])
        if live is None:
            continue
        name = f"{o['kind']} {o['metadata']['name']}"
        st, want = live.get("status", {}), int(live.get("spec", {}).get("replicas", 1) or 0)
        unavailable = int(st.get("unavailableReplicas", 0) or 0)
        if health.kind_of(o).scales and unavailable:
            notes.append(f"{name}: {unavailable} of {want} replicas unavailable")
        pods = sync.workload_pods(cluster, namespace, live)
        restarts = {
            p["metadata"]["name"]: sum(
                int(c.get("restartCount", 0)) for c in p.get("status", {}).get("containerStatuses") or []
            )
            for p in pods
        }
        for pod, count in sorted(restarts.items()):
            if count:
                notes.append(f"Pod {pod}: {count} restart(s)")
        for p in pods:
            ready = any(
                c.get("type") == "Ready" and c.get("status") == "True"
                for c in p.get("status", {}).get("conditions") or []
            )
            if not ready and not p["metadata"].get("deletionTimestamp"):
                notes.append(f"Pod {p['metadata']['name']}: not ready ({p.get('status', {}).get('phase', 'Pending')})")
        if synced_at is not None and synced_pods is not None:
            recreated = [p for p in pods if p["metadata"].get("uid") not in synced_pods]
            if recreated:
                notes.append(
                    f"{name}: {len(recreated)} pod(s) recreated since the last sync at {synced_at:%Y-%m-%d %H:%M:%S}"
                )
    return notes


def status(opts: Options, env: str | None, runtime: Runtime | None = None) -> tuple[str, list[ReleaseStatus]]:
    """Sync against the Git revision that would be applied now, health, drift and runtime notes."""
    runtime = runtime or Runtime.for_options(opts)
    with Workspace(opts) as ws:
        envs = (ws.defs.chain_to(env)[-1],) if env else ws.defs.chain
        targets = ws.targets(envs)
        done = reconcile(targets, runtime, violations=ws.validate(targets), while_rendering=ws.revision_soon)
        revision = ws.revision_soon().result()
        out: list[ReleaseStatus] = []
        for r in done:
            t, p = r.target, r.plan
            cluster = runtime.cluster(t.context)
            hist = r.history or history(cluster, t.env.namespace, t.env.release)
            h = release_health(cluster, t.env.namespace, hist)
            promo = promotion_of(hist, hist.deployed)
            if hist.deployed is None:
                sync_status = SyncStatus.MISSING
            elif p.has_changes or p.errors:
                sync_status = SyncStatus.OUT_OF_SYNC
            else:
                sync_status = SyncStatus.SYNCED
            drift = tuple(c for c in p.changes if c.hook is None and c.action != Action.UNCHANGED)
            out.append(
                ReleaseStatus(
                    env=t.env.name,
                    app=t.app.name,
                    release=t.env.release,
                    namespace=t.env.namespace,
                    sync=sync_status,
                    health=h.status,
                    health_message=h.message,
                    revision=revision,
                    promoted_revision=promo.revision if promo else None,
                    helm_revision=hist.deployed.revision if hist.deployed else None,
                    drift=drift if hist.deployed else (),
                    runtime=tuple(runtime_notes(cluster, t.env.namespace, hist)),
                    errors=p.errors,
                )
            )
        return revision, out


def _yaml(obj: dict[str, Any] | None, target: Target, masked_changed: set[str], side: str) -> str:
    """An object as YAML, normalised, with Secret values masked and the changed ones marked per side."""
    if obj is None:
        return ""
    return yaml.safe_dump(diff.redact(diff.normalize(obj, target.env.ignore), masked_changed, side), sort_keys=True)


def diffs(opts: Options, env: str, runtime: Runtime | None = None) -> list[ResourceDiff]:
    """Git (as the server would persist it) versus live, for every drifted resource of `env`."""
    runtime = runtime or Runtime.for_options(opts)
    with Workspace(opts) as ws:
        targets = ws.targets((ws.defs.chain_to(env)[-1],))
        out: list[ResourceDiff] = []
        for r in reconcile(targets, runtime, violations=ws.validate(targets), objects=True):
            t = r.target
            if r.plan.errors:
                raise PromoteError(f"cannot diff {env}/{t.app.name}: {'; '.join(r.plan.errors)}")
            for change, live, wanted in r.objects:
                if change.action == Action.UNCHANGED:
                    continue
                changed = {f.path.split(".", 1)[1] for f in change.fields if f.sensitive and "." in f.path}
                if change.action == Action.CREATE and live is None:
                    changed = set((wanted or {}).get("data", {}) or {})
                out.append(
                    ResourceDiff(
                        env=env,
                        app=t.app.name,
                        kind=change.kind,
                        namespace=change.namespace,
                        name=change.name,
                        action=change.action.value,
                        git=_yaml(wanted, t, changed, "Git"),
                        live=_yaml(live, t, changed, "live"),
                    )
                )
        return out


def _check_events(at: datetime, s: ReleaseStatus) -> Iterator[WatchEvent]:
    """What one check of one release found: its errors, runtime notes, and drift field by field."""

    def event(what: WatchEventKind, /, **fields: Any) -> WatchEvent:
        return WatchEvent(event=what, at=at, env=s.env, app=s.app, **fields)

    for e in s.errors:
        yield event(WatchEventKind.ERROR, message=e)
    for note in s.runtime:
        yield event(WatchEventKind.RUNTIME, message=note)
    for c in s.drift:
        where = {"action": c.action, "kind": c.kind, "namespace": c.namespace, "name": c.name}
        if c.action != Action.UPDATE or not c.fields:
            yield event(WatchEventKind.DRIFT, **where)
        for f in c.fields:
            # A Secret's values stay out of the event itself, not just out of what a view prints.
            values = {} if f.sensitive else {"git": f.after, "live": f.before}
            yield event(WatchEventKind.DRIFT, path=f.path, sensitive=f.sensitive, **values, **where)


def watch(
    opts: Options,
    env: str,
    *,
    interval: float,
    self_heal: bool,
    max_iterations: int | None,
    duration: float | None,
    aopts: ApplyOptions | None = None,
    sleep: Callable[[float], None] | None = None,
) -> Iterator[WatchEvent]:
    """Check `env` in a loop, yielding drift and runtime notes as they are seen; with self-heal, revert drift.

    Runtime fluctuation is only reported: Kubernetes' controllers heal it. Events come as each check ends,
    so a consumer prints them live; the generator sleeps `interval` between checks and stops after
    `max_iterations` checks or before a check that would end past `duration`.
    """
    import time

    from promote.engine.applying import apply
    from promote.engine.workspace import ApplyOptions

    sleep = sleep or time.sleep
    start = time.monotonic()
    i = 0
    while True:
        i += 1
        at = record.now()
        _, statuses = status(opts, env)
        for s in statuses:
            yield from _check_events(at, s)
        if self_heal and any(s.drift for s in statuses):
            result = apply(opts, aopts or ApplyOptions(only=True), env, lambda ev: None)
            healed = record.now()
            if result.error:
                yield WatchEvent(event=WatchEventKind.HEAL_FAILED, at=healed, env=env, message=result.error)
            for env_result in result.environments:
                for r in env_result.releases:
                    for c in r.changes:
                        if c.hook is None and c.action != Action.UNCHANGED:
                            yield WatchEvent(
                                event=WatchEventKind.REVERTED,
                                at=healed,
                                env=env,
                                app=r.app,
                                action=c.action,
                                kind=c.kind,
                                namespace=c.namespace,
                                name=c.name,
                                paths=tuple(f.path for f in c.fields),
                            )
        if max_iterations is not None and i >= max_iterations:
            return
        if duration is not None and time.monotonic() - start + interval > duration:
            return
        sleep(interval)
