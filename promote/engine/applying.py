"""Applying: sync each environment of the chain in order, behind its gate and lock; and rolling back.

Per environment: check the gate, then per release take the environment's Lease, re-read the release
under it, run helm, wait for our own health checks, and record the promotion in the helm revision's
description. A failure is rolled back to the last good revision, as `--atomic` would, and stops the
chain, so later environments are never touched.
"""

from __future__ import annotations

import asyncio
import os
import time
from dataclasses import dataclass, replace
from typing import Any

from promote import gate, health, record, saved, sync
from promote.chart import hook_annotation
from promote.cluster import Cluster, connect
from promote.engine.planning import _connect_all, _plan_all, assemble
from promote.engine.workspace import Options, Target, Workspace
from promote.errors import (
    GateBlocked,
    HelmError,
    PolicyViolation,
    PromoteError,
    UnknownRevision,
    ValidationError,
    exit_code_for,
)
from promote.helm import binary as helm_binary
from promote.lock import EnvLock
from promote.plan import ReleasePlan
from promote.release import (
    ReleaseHistory,
    ReleaseRecord,
    history,
    last_good,
    promotion_of,
    restore_point,
    stamp,
    unverified,
)
from promote.results import ApplyResult, EnvResult, Event, GateCheck, GateResult, HealthStatus, Outcome, ReleaseResult
from promote.values import Violation


@dataclass(frozen=True)
class ApplyOptions:
    """Knobs of apply and rollback."""

    timeout: float = 300.0
    lock_timeout: float = 60.0
    lock_ttl: float = 30.0
    only: bool = False
    allow_dirty: bool = False


class _EnvFailed(Exception):
    """Carries the partial result of the environment that stopped the chain."""

    def __init__(self, result: EnvResult, error: PromoteError) -> None:
        super().__init__(str(error))
        self.result, self.error = result, error


def release_health(cluster: Cluster, namespace: str, hist: ReleaseHistory) -> health.Health:
    """Health of the deployed revision's objects, read live."""
    deployed = hist.deployed
    if deployed is None:
        return health.Health(health.HealthStatus.MISSING, "not installed")
    return sync.release_health(cluster, namespace, [o for o in deployed.manifest if "metadata" in o])


def gate_checks(
    ws: Workspace, clusters: dict[str | None, Cluster], env: str, env_targets: list[Target], allow_dirty: bool
) -> list[GateCheck]:
    """Every gate check for promoting `env` now (none for the first environment of the chain)."""
    upstream = ws.defs.upstream_of(env)
    if upstream is None:
        return []
    checks = [gate.clean_tree_check(ws.source.dirty_paths(), allow_dirty)]
    for t in env_targets:
        up = t.app.environment(upstream)
        if up is None:
            continue
        up_context = up.context or ws.opts.context
        up_cluster = clusters.get(up_context) or connect(up_context, ws.opts.kubeconfig, ws.opts.qps)
        hist = history(up_cluster, up.namespace, up.release)
        checks.extend(
            gate.upstream_checks(
                app=t.app.name,
                env=env,
                upstream=upstream,
                artifact=t.artifact_digest,
                soak_seconds=t.env.soak_seconds,
                hist=hist,
                health=release_health(up_cluster, up.namespace, hist),
                now=record.now(),
            )
        )
    return checks


def _ref_label(ws: Workspace, revision: str) -> str:
    ref = ws.opts.revision
    if ref is None:
        ref = ws.source.branch() or "HEAD"  # detached HEAD or no repository: the sha says it all
    return f"{ref} ({revision[:7]}{'-dirty' if revision.endswith('-dirty') else ''})"


def _fail_on_violations(violations: list[Violation], targets: list[Target], target: str) -> None:
    if not violations:
        return
    policies = {(t.app.name, t.env.policy) for t in targets if t.env.name == target}
    msg = f"{len(violations)} values violation(s):\n  " + "\n  ".join(str(v) for v in violations)
    if all(v.environment == target and (v.app, v.schema) in policies for v in violations):
        raise PolicyViolation(f"blocked by the policy of {target}: {msg}", list(violations))
    raise ValidationError(msg, list(violations))


def apply(
    opts: Options, aopts: ApplyOptions, target: str, emit: sync.Emit, saved_plan: dict[str, Any] | None = None
) -> ApplyResult:
    """Sync every environment of the chain up to `target`, in order, each only if its gate allows.

    With `saved_plan`, the plan is computed again first and the apply refuses unless nothing moved.
    """
    events: list[Event] = []

    def record_event(ev: Event) -> None:
        events.append(ev)
        emit(ev)

    env_results: list[EnvResult] = []
    revision = "unknown"
    try:
        helm_binary.prefetch_version(helm_binary.executable())  # overlaps the definitions' loading, if not remembered
        with Workspace(opts) as ws:
            chain = ws.defs.chain_to(target)
            targets = ws.targets(chain)
            _fail_on_violations(ws.validate(targets), targets, target)
            soon = ws.revision_soon()
            clusters = _connect_all(opts, targets)
            renders: dict[int, list[dict[str, Any]]] = {}
            plans = asyncio.run(_plan_all(targets, clusters, [], renders=renders))
            revision = soon.result()
            if saved_plan is not None:
                saved.verify(saved_plan, assemble(target, chain, targets, plans, revision))
            label = _ref_label(ws, revision)
            for env in (target,) if aopts.only else chain:
                pairs = [
                    (t, p, renders.get(i))
                    for i, (t, p) in enumerate(zip(targets, plans, strict=True))
                    if t.env.name == env
                ]
                env_results.append(_apply_env(ws, clusters, aopts, env, pairs, revision, label, record_event))
        return ApplyResult(target=target, revision=revision, environments=tuple(env_results), events=tuple(events))
    except _EnvFailed as f:
        env_results.append(f.result)
        return ApplyResult(
            target=target,
            revision=revision,
            environments=tuple(env_results),
            events=tuple(events),
            error=str(f.error),
            exit_code=int(exit_code_for(f.error)),
        )
    except PromoteError as e:
        return ApplyResult(
            target=target,
            revision=revision,
            environments=tuple(env_results),
            events=tuple(events),
            error=str(e),
            exit_code=int(exit_code_for(e)),
        )


def _apply_env(
    ws: Workspace,
    clusters: dict[str | None, Cluster],
    aopts: ApplyOptions,
    env: str,
    pairs: list[tuple[Target, ReleasePlan, list[dict[str, Any]] | None]],
    revision: str,
    label: str,
    emit: sync.Emit,
) -> EnvResult:
    start = time.monotonic()
    context = pairs[0][1].context if pairs else None  # (target, plan, rendered)

    def result(
        outcome: Outcome, releases: list[ReleaseResult], checks: list[GateCheck], env_health: HealthStatus | None = None
    ) -> EnvResult:
        return EnvResult(
            name=env,
            context=context,
            outcome=outcome,
            synced_to=label,
            health=env_health,
            duration=time.monotonic() - start,
            releases=tuple(releases),
            gate=tuple(checks),
        )

    for _, p, _ in pairs:
        if p.errors:
            raise _EnvFailed(
                result(Outcome.FAILED, [], []), PromoteError(f"cannot apply {env}: {p.app}: {'; '.join(p.errors)}")
            )
    checks = gate_checks(ws, clusters, env, [t for t, _, _ in pairs], aopts.allow_dirty)
    failed = [c for c in checks if c.result == GateResult.FAIL]
    if failed:
        why = "; ".join(f"{c.app + ': ' if c.app else ''}{c.reason}" for c in failed)
        raise _EnvFailed(result(Outcome.BLOCKED, [], checks), GateBlocked(f"promotion to {env} blocked: {why}"))
    results: list[ReleaseResult] = []
    for t, p, rendered in pairs:
        if not p.needs_apply:
            results.append(
                ReleaseResult(
                    app=t.app.name,
                    release=t.env.release,
                    namespace=t.env.namespace,
                    outcome=Outcome.UNCHANGED,
                    revision=p.current_revision,
                    message="live matches Git: no helm upgrade",
                )
            )
            continue
        promo = record.Promotion(
            env=env,
            revision=revision,
            artifact=t.artifact_digest,
            values=t.values_digest,
            by=record.who(),
            at=record.now().isoformat(),
        )
        try:
            results.append(sync_release(clusters[t.context], t, promo, aopts, emit, changes=p, rendered=rendered))
        except PromoteError as e:
            results.append(
                ReleaseResult(
                    app=t.app.name,
                    release=t.env.release,
                    namespace=t.env.namespace,
                    outcome=Outcome.FAILED,
                    message=str(e),
                )
            )
            raise _EnvFailed(result(Outcome.FAILED, results, checks, HealthStatus.DEGRADED), e) from e
    outcome = Outcome.SYNCED if any(r.outcome == Outcome.SYNCED for r in results) else Outcome.UNCHANGED
    return result(outcome, results, checks, _env_health(clusters, [t for t, _, _ in pairs]))


def _env_health(clusters: dict[str | None, Cluster], targets: list[Target]) -> HealthStatus:
    hs = []
    for t in targets:
        c = clusters[t.context]
        hs.append(release_health(c, t.env.namespace, history(c, t.env.namespace, t.env.release, current_only=True)))
    return health.worst(hs).status


def sync_release(
    cluster: Cluster,
    t: Target,
    promo: record.Promotion,
    aopts: ApplyOptions,
    emit: sync.Emit,
    *,
    changes: ReleasePlan | None = None,
    rendered: list[dict[str, Any]] | None = None,
    verify: bool = True,
) -> ReleaseResult:
    """Lock the environment, helm upgrade one release, wait until healthy; roll back on failure.

    `changes` and `rendered` are the plan made before taking the lock; when we had to wait for the lock
    (or took over a crashed apply's), the release is planned again under it. `verify` first finishes the
    health check of a current revision nobody saw healthy (a rollback replaces it instead).
    """
    env, ns, release = t.env.name, t.env.namespace, t.env.release
    lock = EnvLock(cluster, ns, env, f"{promo.by}/{os.getpid()}", ttl=aopts.lock_ttl, subject=release)
    if not cluster.namespace_exists(ns):
        cluster.create({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": ns}}, None)

    def waiting(holder: str) -> None:
        emit(
            Event(
                at=record.now(),
                env=env,
                kind="Lease",
                namespace=ns,
                name=lock.name,
                status="Waiting",
                message=f"lock held by {holder}",
            )
        )

    lock.acquire(aopts.lock_timeout, on_wait=waiting)
    try:
        hist = history(cluster, ns, release)
        crashed = lock.crashed_on(release)  # evidence that an apply of this release died midway
        if hist.latest and hist.latest.status.startswith("pending-"):
            if not crashed:
                raise HelmError(_stuck_message(env, release, ns, hist))
            # We took the lock of an apply that crashed mid-helm: its pending state is ours to clear.
            emit(
                Event(
                    at=record.now(),
                    env=env,
                    kind="Release",
                    namespace=ns,
                    name=release,
                    status=hist.latest.status,
                    message=f"recovering: the apply of {crashed} crashed and left it {hist.latest.status}",
                )
            )
            recover_pending(cluster, t, hist, aopts)
            hist = history(cluster, ns, release)
        replan = changes is None or rendered is None or lock.waited > 0 or bool(lock.took_over)
        if changes is not None and not changes.has_changes:
            replan = True  # here only to check an unverified revision, which someone may have done since
        if replan:
            # Plan again under the lock: an apply we waited for may already have done the work.
            changes, rendered = _replan(cluster, t)
        assert changes is not None and rendered is not None
        message = "already in sync (another apply did it while we waited)"
        if verify and (rec := unverified(hist)) is not None and not changes.has_changes:
            # Git still wants what that revision holds: finish the wait its apply began.
            message = _verify_unverified(cluster, t, hist, rec, crashed, aopts, emit)
            hist = history(cluster, ns, release)
            changes, rendered = _replan(cluster, t)
        if not changes.has_changes:
            return ReleaseResult(
                app=t.app.name,
                release=release,
                namespace=ns,
                outcome=Outcome.UNCHANGED,
                revision=changes.current_revision,
                message=message,
            )
        objs = [o for o in rendered if not hook_annotation(o)]
        workloads = [(o["apiVersion"], o["kind"], o["metadata"]["name"]) for o in objs if health.kind_of(o).runs_pods]
        # helm waits (atomically) only when post-* hooks must see ready resources; else our wait is faster.
        helm_waits = sync.runs_post_hooks(rendered)
        good = restore_point(hist)
        newest = hist.latest.revision if hist.latest else 0
        with sync.Watcher(cluster, env, ns, workloads, emit):
            try:
                rev = asyncio.run(
                    sync.helm_upgrade(
                        cluster=cluster,
                        context=t.context,
                        chart=t.chart,
                        release=release,
                        namespace=ns,
                        values=t.values,
                        description=promo.description(),
                        timeout=aopts.timeout,
                        wait=helm_waits,
                    )
                )
            except PromoteError as e:
                if helm_waits:
                    raise
                done = _restore_after_failure(cluster, t, good, newest, aopts)
                raise HelmError(f"sync of release {release} in {ns} failed, {done}: {e}") from e
            h = sync.wait_healthy(cluster, ns, objs, aopts.timeout)
        if h.status != health.HealthStatus.HEALTHY:
            done = _restore_after_failure(cluster, t, good, newest, aopts)
            raise sync.health_error(release, ns, h, aopts.timeout, done)
        _stamp_synced(cluster, ns, release, rev, objs)
        return ReleaseResult(
            app=t.app.name,
            release=release,
            namespace=ns,
            outcome=Outcome.SYNCED,
            revision=rev,
            health=h.status,
            message=h.message,
            changes=changes.changes,
        )
    finally:
        lock.release()


def _replan(cluster: Cluster, t: Target) -> tuple[ReleasePlan, list[dict[str, Any]]]:
    renders: dict[int, list[dict[str, Any]]] = {}
    changes = asyncio.run(_plan_all([t], {t.context: cluster}, [], renders=renders))[0]
    if changes.errors:
        raise PromoteError(f"cannot sync {t.env.release} in {t.env.namespace}: {'; '.join(changes.errors)}")
    return changes, renders.get(0, [])


def _restore_after_failure(
    cluster: Cluster, t: Target, good: ReleaseRecord | None, newest: int, aopts: ApplyOptions
) -> str:
    """Undo a failed sync, as --atomic would; what was done, for the error (which must keep the cause)."""
    try:
        latest = history(cluster, t.env.namespace, t.env.release).latest
        if latest is None or latest.revision <= newest:
            return "nothing was changed"  # helm failed before it wrote a revision
        return restore(cluster, t, good, aopts)
    except PromoteError as e:
        return f"and restoring the last good revision failed too ({e})"


def _stamp_synced(cluster: Cluster, ns: str, release: str, rev: int, objs: list[dict[str, Any]]) -> None:
    """Mark revision `rev` as seen healthy, with its workloads' pods (a later pod was recreated since)."""
    current = history(cluster, ns, release).deployed
    if current is None or current.revision != rev:
        return
    uids = sorted(
        p["metadata"]["uid"]
        for o in objs
        if health.kind_of(o).long_running
        and (w := cluster.get(o["apiVersion"], o["kind"], ns, o["metadata"]["name"])) is not None
        for p in sync.workload_pods(cluster, ns, w)
    )
    stamp(
        cluster,
        ns,
        current,
        {record.SYNCED_AT_ANNOTATION: record.now().isoformat(), record.SYNCED_PODS_ANNOTATION: ",".join(uids)},
    )


def _verify_unverified(
    cluster: Cluster,
    t: Target,
    hist: ReleaseHistory,
    rec: ReleaseRecord,
    crashed: str | None,
    aopts: ApplyOptions,
    emit: sync.Emit,
) -> str:
    """Finish the wait an apply began but never ended: stamp the revision, or restore the one before.

    With a crashed apply's lock in hand this is what its `--atomic` would have done: the environment
    ends at a revision seen healthy, and the failure is reported (exit 1). Without that evidence (say
    the stamp itself once failed), a revision that stays unhealthy is reported, not rolled back.
    Returns what was done when the revision is healthy.
    """
    ns, release = t.env.namespace, t.env.release
    why = f" (the apply of {crashed} crashed while waiting)" if crashed else ""

    def say(message: str) -> None:
        emit(
            Event(
                at=record.now(),
                env=t.env.name,
                kind="Release",
                namespace=ns,
                name=release,
                status=rec.status,
                message=message,
            )
        )

    say(f"recovering: revision {rec.revision} was never seen healthy{why}; waiting for it")
    objs = [o for o in rec.manifest if "metadata" in o]
    h = sync.wait_healthy(cluster, ns, objs, aopts.timeout)
    if h.status == health.HealthStatus.HEALTHY:
        _stamp_synced(cluster, ns, release, rec.revision, objs)
        say(f"recovered: revision {rec.revision} is healthy")
        return f"revision {rec.revision} seen healthy"
    if not crashed:
        raise sync.health_error(
            release, ns, h, aopts.timeout, f"revision {rec.revision} was never seen healthy; `promote rollback`"
        )
    done = restore(cluster, t, last_good(hist, below=rec.revision), aopts)
    say(f"recovered: {done}")
    # Not tried again: that change just failed. Fix it in Git (or apply again to retry).
    raise sync.health_error(release, ns, h, aopts.timeout, f"revision {rec.revision} was never seen healthy, {done}")


def restore(cluster: Cluster, t: Target, good: ReleaseRecord | None, aopts: ApplyOptions) -> str:
    """Back to the last good revision, or uninstall when there was none, as helm's --atomic does."""
    ns, release = t.env.namespace, t.env.release
    if good is None:
        asyncio.run(
            sync.helm_uninstall(
                cluster=cluster, context=t.context, release=release, namespace=ns, timeout=aopts.timeout
            )
        )
        return "uninstalled (it had no earlier good revision)"
    _helm_rollback(cluster, t, good.revision, aopts)
    return f"rolled back to revision {good.revision}"


# --- rollback ---------------------------------------------------------------------------------------


def rollback(opts: Options, aopts: ApplyOptions, env: str, to: str | None, emit: sync.Emit) -> ApplyResult:
    """Roll every app release of `env` back together: to the previous promotion, or to `to`.

    `to` is a helm revision number or a Git sha (prefix) of a promotion. When the target promotion's Git
    revision and values can be reproduced exactly, the rollback re-syncs from that commit and records a
    rollback promotion; otherwise it falls back to `helm rollback`, which helm records as "Rollback to N".
    """
    start = time.monotonic()
    results: list[ReleaseResult] = []
    revision = "unknown"
    context: str | None = None
    try:
        with Workspace(opts) as ws:
            targets = ws.targets((ws.defs.chain_to(env)[-1],))
            clusters = _connect_all(opts, targets)
            revision = ws.source.revision()
            for t in targets:
                cluster = clusters[t.context]
                context = cluster.context
                results.append(_rollback_release(ws, cluster, t, aopts, to, emit))
        res = EnvResult(
            name=env,
            context=context,
            outcome=Outcome.ROLLED_BACK,
            health=_env_health(clusters, targets),
            duration=time.monotonic() - start,
            releases=tuple(results),
        )
        return ApplyResult(target=env, revision=revision, environments=(res,))
    except PromoteError as e:
        res = EnvResult(
            name=env,
            context=context,
            outcome=Outcome.FAILED,
            duration=time.monotonic() - start,
            releases=tuple(results),
        )
        return ApplyResult(
            target=env, revision=revision, environments=(res,), error=str(e), exit_code=int(exit_code_for(e))
        )


def _stuck_message(env: str, release: str, ns: str, hist: ReleaseHistory) -> str:
    assert hist.latest is not None
    state = f"release {release} in {ns} is stuck in {hist.latest.status} (revision {hist.latest.revision})"
    good = restore_point(hist)  # where recover_pending goes
    if good is None:
        way = (
            f"`promote rollback {env}` (uninstalls the install that never completed), "
            f"or `helm uninstall {release} -n {ns}`"
        )
    else:
        way = f"`promote rollback {env}` (back to revision {good.revision}), or `helm rollback {release} -n {ns}`"
    return f"{state}, left by a helm process that was killed or is still running. Way out: {way}"


def _helm_rollback(cluster: Cluster, t: Target, revision: int, aopts: ApplyOptions) -> None:
    asyncio.run(
        sync.helm_rollback(
            cluster=cluster,
            context=t.context,
            release=t.env.release,
            namespace=t.env.namespace,
            revision=revision,
            timeout=aopts.timeout,
        )
    )


def recover_pending(cluster: Cluster, t: Target, hist: ReleaseHistory, aopts: ApplyOptions) -> str:
    """Clear a pending-* state: back to the last good revision, or uninstall a never-completed install."""
    good = restore_point(hist)
    if good is None:
        restore(cluster, t, None, aopts)
        return "uninstalled the install that never completed"
    restore(cluster, t, good, aopts)
    return f"helm rollback to revision {good.revision}"


def _pick(hist: ReleaseHistory, to: str | None) -> tuple[int, record.Promotion | None]:
    """The revision to roll back to, and the promotion it carries (following helm's own rollbacks)."""
    current = hist.deployed
    if current is None:
        raise HelmError("nothing to roll back: the release has no deployed revision")
    if to is None:
        candidates = [
            r for r in hist.records if r.revision < current.revision and r.status in ("superseded", "deployed")
        ]
        if not candidates:
            raise HelmError(f"nothing to roll back to: revision {current.revision} is the first")
        chosen = candidates[-1]
    else:
        # A number is a helm revision when there is one; else (a sha prefix can be all digits) a Git sha.
        by_number = next((r for r in hist.records if to.isdigit() and r.revision == int(to)), None)
        found = [r for r in hist.records if (p := record.Promotion.parse(r.description)) and p.revision.startswith(to)]
        if by_number is not None:
            chosen = by_number
        elif found:
            chosen = found[-1]
        elif to.isdigit():
            raise HelmError(f"no helm revision {to}: revisions are {[r.revision for r in hist.records]}")
        else:
            raise HelmError(f"no promotion of Git revision {to} in this release's history")
    return chosen.revision, promotion_of(hist, chosen)


def _rollback_release(
    ws: Workspace, cluster: Cluster, t: Target, aopts: ApplyOptions, to: str | None, emit: sync.Emit
) -> ReleaseResult:
    ns, release = t.env.namespace, t.env.release
    hist = history(cluster, ns, release)
    if hist.latest and hist.latest.status.startswith("pending-") and to is None:
        # The way out of a stuck release: its last good state (none, for an install that never completed).
        done = recover_pending(cluster, t, hist, aopts)
        after = history(cluster, ns, release)
        revision = after.latest.revision if after.latest else None
        return ReleaseResult(
            app=t.app.name,
            release=release,
            namespace=ns,
            outcome=Outcome.ROLLED_BACK,
            revision=revision,
            health=release_health(cluster, ns, after).status,
            message=done,
        )
    number, promo = _pick(hist, to)
    if promo and not promo.revision.endswith("-dirty"):
        try:
            with Workspace(replace(ws.opts, revision=promo.revision)) as old:
                old_t = next((o for o in old.targets((t.env.name,)) if o.app.name == t.app.name), None)
                if old_t is not None and old_t.values_digest == promo.values:
                    again = replace(
                        promo,
                        by=record.who(),
                        at=record.now().isoformat(),
                        action=record.RecordAction.ROLLBACK,
                        rolled_back_to=number,
                    )
                    res = sync_release(cluster, old_t, again, aopts, emit, verify=False)
                    return replace(
                        res,
                        outcome=Outcome.ROLLED_BACK,
                        message=f"re-synced {promo.revision[:7]} (was revision {number})",
                    )
        except UnknownRevision:
            pass  # the commit is gone (a rewritten branch, a shallow clone): helm's stored revision it is
    # Not reproducible from Git (dirty tree, command-line values, or a revision promote did not make).
    _helm_rollback(cluster, t, number, aopts)
    after = history(cluster, ns, release)
    return ReleaseResult(
        app=t.app.name,
        release=release,
        namespace=ns,
        outcome=Outcome.ROLLED_BACK,
        revision=after.latest.revision if after.latest else None,
        health=release_health(cluster, ns, after).status,
        message=f"helm rollback to revision {number}",
    )


# --- the pipeline gate ------------------------------------------------------------------------------


def gate_report(opts: Options, env: str, allow_dirty: bool = False) -> list[GateCheck]:
    """May `env` be promoted now? Every check apply would make, read-only, plus validity and the lock."""
    with Workspace(opts) as ws:
        chain = ws.defs.chain_to(env)
        targets = ws.targets((env,))
        violations = ws.validate(targets)
        if violations:
            shown = "; ".join(f"{v.environment}/{v.app} {v.path}: expected {v.expected}" for v in violations[:5])
            checks = [GateCheck("values-valid", GateResult.FAIL, f"{len(violations)} violation(s): {shown}")]
        else:
            checks = [GateCheck("values-valid", GateResult.PASS, "definitions and values are valid")]
        clusters = _connect_all(opts, targets)
        if len(chain) > 1:
            checks += gate_checks(ws, clusters, env, targets, allow_dirty)
        else:
            checks.append(GateCheck("upstream", GateResult.PASS, f"{env} is the first environment of the chain"))
        for t in targets:
            cluster = clusters[t.context]
            holder = EnvLock(cluster, t.env.namespace, env, "").current_holder()
            if holder:
                checks.append(GateCheck("lock", GateResult.FAIL, f"an apply by {holder} holds the lock", t.app.name))
            else:
                checks.append(GateCheck("lock", GateResult.PASS, "no apply holds the lock", t.app.name))
        return checks
