"""Reporting: promotion history, sync/health status with drift and runtime notes, and Git-vs-live diffs.

Drift (a live field that departs from what Git declares) and runtime fluctuation (pods restarting,
unready or recreated; Kubernetes heals those) are kept apart: only the first makes a release OutOfSync.
Everything here is read-only.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import replace
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any

import yaml

from promote import diff, health, record, sync
from promote.cluster import Cluster
from promote.engine.core import Reconciled, reconcile
from promote.engine.runtime import Runtime
from promote.engine.syncing import release_health
from promote.engine.workspace import Options, Target, Workspace
from promote.errors import ConfigError, PromoteError
from promote.plan import Action, ResourceChange
from promote.release import ReleaseHistory, history, promotion_of
from promote.results import (
    GateCheck,
    GateResult,
    HistoryEntry,
    ReleaseStatus,
    ResourceDiff,
    SyncStatus,
    WatchCheck,
    WatchEvent,
    WatchEventKind,
)

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
            if not sync.pod_ready(p) and not p["metadata"].get("deletionTimestamp"):
                notes.append(f"Pod {p['metadata']['name']}: not ready ({p.get('status', {}).get('phase', 'Pending')})")
        if synced_at is not None and synced_pods is not None:
            recreated = [p for p in pods if p["metadata"].get("uid") not in synced_pods]
            if recreated:
                notes.append(
                    f"{name}: {len(recreated)} pod(s) recreated since the last sync at {synced_at:%Y-%m-%d %H:%M:%S}"
                )
    return notes + sync.leftover_hooks(cluster, namespace, [h for r in hist.records for h in r.hooks])


def status(opts: Options, env: str | None, runtime: Runtime | None = None) -> tuple[str, list[ReleaseStatus]]:
    """Sync against the Git revision that would be applied now, health, and the three states kept apart:
    drift (live departs from the last promoted state), pending (Git departs from it) and runtime notes."""
    runtime = runtime or Runtime.for_options(opts)
    with Workspace(opts) as ws:
        envs = (ws.defs.chain_to(env)[-1],) if env else ws.defs.chain
        targets = ws.targets(envs)
        done = reconcile(targets, runtime, violations=ws.validate(targets), while_rendering=ws.revision_soon)
        revision = ws.revision_soon().result()
        reasons = _PendingReasons(ws, runtime, targets)
        return revision, [_release_status(runtime, r, revision, reasons) for r in done]


def _release_status(runtime: Runtime, r: Reconciled, revision: str, reasons: _PendingReasons) -> ReleaseStatus:
    t, p = r.target, r.plan
    cluster = runtime.cluster(t.context)
    hist = r.history or history(cluster, t.env.namespace, t.env.release)
    h = release_health(cluster, t.env.namespace, hist)
    promo = promotion_of(hist, hist.deployed)
    drift, pending = split_changes(p.changes, r.rendered, hist) if hist.deployed else ((), ())
    if hist.deployed is None:
        sync_status = SyncStatus.MISSING
    elif p.has_changes or p.errors:
        sync_status = SyncStatus.OUT_OF_SYNC
    else:
        sync_status = SyncStatus.SYNCED
    stuck = hist.latest is not None and hist.latest.status.startswith("pending-")
    return ReleaseStatus(
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
        helm_status=hist.latest.status if hist.latest else None,
        drift=drift,
        pending=pending,
        pending_reason=reasons.why(t, hist) if pending or stuck else "",
        runtime=tuple(runtime_notes(cluster, t.env.namespace, hist)),
        errors=p.errors,
    )


def split_changes(
    changes: tuple[ResourceChange, ...], rendered: list[dict[str, Any]] | None, hist: ReleaseHistory
) -> tuple[tuple[ResourceChange, ...], tuple[ResourceChange, ...]]:
    """(drift, pending) among a plan's resource changes, field by field.

    A field Git renders as the last promoted revision holds it, but live does not, is drift: only live
    moved. A field Git renders differently is pending promotion, and so is an object only one of them
    has. Secret values are compared by fingerprint, as the render cache keeps them.
    """
    assert hist.deployed is not None
    promoted = {_key(o): diff.fingerprint_secret(o) for o in hist.deployed.manifest if "metadata" in o}
    wanted = {_key(o): diff.fingerprint_secret(o) for o in rendered or () if "metadata" in o}
    drift: list[ResourceChange] = []
    pending: list[ResourceChange] = []
    for c in changes:
        if c.hook is not None or c.action == Action.UNCHANGED or c.kind == "Namespace":
            continue
        key = (c.api_version, c.kind, c.name)
        if key not in promoted or key not in wanted:
            pending.append(c)  # Git adds or drops the object
            continue
        if c.action != Action.UPDATE:  # live lost an object both Git and the promoted state have
            (drift if promoted[key] == wanted[key] else pending).append(c)
            continue
        moved = [
            f for f in c.fields if diff.value_at(promoted[key], f.segments) == diff.value_at(wanted[key], f.segments)
        ]
        git = [f for f in c.fields if f not in moved]
        drift += [replace(c, fields=tuple(moved))] if moved else []
        pending += [replace(c, fields=tuple(git))] if git else []
    return tuple(drift), tuple(pending)


def _key(obj: dict[str, Any]) -> tuple[str, str, str]:
    return str(obj.get("apiVersion", "")), str(obj.get("kind", "")), str(obj["metadata"].get("name", ""))


class _PendingReasons:
    """Why Git's content is not promoted yet, per release: the newest of a stuck or failed attempt,
    else what the environment's gate says (asked once per environment), else that nobody applied it."""

    def __init__(self, ws: Workspace, runtime: Runtime, targets: list[Target]) -> None:
        self.ws, self.runtime, self.targets = ws, runtime, targets
        self._gates: dict[str, list[str]] = {}

    def why(self, t: Target, hist: ReleaseHistory) -> str:
        latest, deployed = hist.latest, hist.deployed
        if latest is not None and latest.status.startswith("pending-"):
            return (
                f"helm left revision {latest.revision} {latest.status}: an apply was interrupted or is still "
                f"running; `promote rollback {t.env.name}` restores the last good revision"
            )
        if (
            latest is not None
            and latest.status == "failed"
            and (deployed is None or latest.revision > deployed.revision)
        ):
            retry = f"`promote apply {t.env.name}` to retry"
            return f"the last attempt (revision {latest.revision}) failed; fix Git, or {retry}"
        held = self._gate(t.env.name)
        if held:
            return "held by the gate: " + "; ".join(held)
        return f"not applied yet: `promote apply {t.env.name}`"

    def _gate(self, env: str) -> list[str]:
        if env not in self._gates:
            from promote.engine.gating import gate_checks

            env_targets = [t for t in self.targets if t.env.name == env]
            try:
                checks = gate_checks(self.ws, self.runtime, env, env_targets, allow_dirty=False)
            except PromoteError as e:
                checks = [GateCheck("gate", GateResult.FAIL, f"cannot evaluate the gate: {e}")]
            failed = [c for c in checks if c.result == GateResult.FAIL]
            self._gates[env] = [GateCheck.reasons([c]) for c in failed]
        return self._gates[env]


def _yaml(obj: dict[str, Any] | None, target: Target, masked_changed: set[str], side: str) -> str:
    """An object as YAML, normalised, with Secret values masked and the changed ones marked per side."""
    if obj is None:
        return ""
    shown = diff.mask_values(diff.normalize(obj, target.env.ignore), target.hidden)
    return yaml.safe_dump(diff.redact(shown, masked_changed, side), sort_keys=True)


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
            if (r.plan.current_status or "").startswith("pending-"):
                raise PromoteError(
                    f"cannot diff {env}/{t.app.name}: release {t.env.release} in {t.env.namespace} is "
                    f"{r.plan.current_status} (revision {r.plan.current_revision}): a helm operation was stopped "
                    f"midway or still runs, so live is not what any revision says; `promote rollback {env}`"
                )
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
    """What one check of one release found: its errors, runtime notes, drift field by field, and what
    Git holds that is not promoted yet."""

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
    if s.pending or s.pending_reason:
        # One event per release, not per field: it is news for whoever promotes, not something to revert.
        kinds = sorted({f"{c.kind} {c.name}" for c in s.pending})
        what = f" ({', '.join(kinds)})" if kinds else ""
        yield event(WatchEventKind.PENDING, message=f"{s.pending_reason}{what}")


def watch(opts: Options, env: str, **kw: Any) -> Iterator[WatchEvent]:
    """Every event of every check of `watch_checks` (same arguments), in order: what pipelines print."""
    for c in watch_checks(opts, env, **kw):
        yield from c.events


def watch_checks(
    opts: Options,
    env: str,
    *,
    interval: float,
    self_heal: bool,
    max_iterations: int | None,
    duration: float | None,
    aopts: ApplyOptions | None = None,
    runtime: Runtime | None = None,
    check: Callable[[], list[ReleaseStatus]] | None = None,
    heal: Callable[[ReleaseStatus], None] | None = None,
) -> Iterator[WatchCheck]:
    """Check `env` in a loop, yielding each check whole: drift, pending and runtime notes seen, and with
    self-heal, what putting drifted releases back to what was promoted did.

    Runtime fluctuation is only reported: Kubernetes' controllers heal it; pending Git content is apply's
    to promote, through the gate. A check comes as soon as it ends, so a consumer prints it live; the
    generator sleeps `interval` (on the runtime's clock) between checks and stops after `max_iterations`
    checks or before a check that would end past `duration`. `check` (one status of env) and `heal` (one
    drifted release) default to the real ones.
    """
    from promote.engine.workspace import ApplyOptions

    runtime = runtime or Runtime.for_options(opts)
    clock = runtime.clock
    check = check or (lambda: status(opts, env, runtime)[1])
    heal = heal or _healer(opts, env, runtime, aopts or ApplyOptions(only=True))
    start = clock.monotonic()
    i = 0
    while True:
        i += 1
        at = clock.now()
        statuses = check()
        events = [e for s in statuses for e in _check_events(at, s)]
        for s in statuses if self_heal else ():
            if s.drift:
                events.extend(_healed(clock.now, env, s, heal))
        last = (max_iterations is not None and i >= max_iterations) or (
            duration is not None and clock.monotonic() - start + interval > duration
        )
        next_at = None if last else clock.now() + timedelta(seconds=interval)
        yield WatchCheck(at=at, env=env, apps=tuple(s.app for s in statuses), events=tuple(events), next_at=next_at)
        if last:
            return
        clock.sleep(interval)


def _healer(opts: Options, env: str, runtime: Runtime, aopts: ApplyOptions) -> Callable[[ReleaseStatus], None]:
    """Self-heal of one release: back to what was promoted (never to newer Git content)."""
    from promote.engine.syncing import restore_promoted

    def heal(s: ReleaseStatus) -> None:
        with Workspace(opts) as ws:
            target = next((t for t in ws.targets((env,)) if t.app.name == s.app), None)
        if target is None:
            raise ConfigError(f"app {s.app} is no longer defined for {env}: nothing to restore it to")
        restore_promoted(runtime, target, aopts)

    return heal


def _healed(
    now: Callable[[], datetime], env: str, s: ReleaseStatus, heal: Callable[[ReleaseStatus], None]
) -> Iterator[WatchEvent]:
    """Heal one drifted release; what was reverted, or why it could not be."""
    try:
        heal(s)
    except PromoteError as e:
        yield WatchEvent(event=WatchEventKind.HEAL_FAILED, at=now(), env=env, message=f"{s.app}: {e}")
        return
    at = now()
    for c in s.drift:
        yield WatchEvent(
            event=WatchEventKind.REVERTED,
            at=at,
            env=env,
            app=s.app,
            action=c.action,
            kind=c.kind,
            namespace=c.namespace,
            name=c.name,
            paths=tuple(f.path for f in c.fields),
        )
