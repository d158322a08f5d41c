"""Syncing one release, as explicit phases: lock → recover → plan → upgrade → wait → record, or restore.

Each phase reads what it needs once and hands it on: helm's history is read when the lock is taken (and
again only after something changed it), the plan under the lock comes with the history it was made
from. A failure after helm wrote a revision restores the last good one, as `--atomic` would.
"""

from __future__ import annotations

import asyncio
import os
from collections.abc import Callable, Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass, field, replace
from enum import StrEnum
from typing import TYPE_CHECKING, Any

from promote import diff, health, record, sync
from promote.chart import chart_crds, hook_annotation
from promote.cluster import ApiError, Cluster
from promote.engine.core import Reconciled, reconcile
from promote.engine.runtime import Runtime
from promote.engine.workspace import ApplyOptions, Target
from promote.errors import GateBlocked, HelmError, Interrupted, PromoteError
from promote.lock import EnvLock
from promote.model import CrdPolicy
from promote.plan import ConflictPolicy
from promote.release import (
    ReleaseHistory,
    ReleaseRecord,
    applies_server_side,
    history,
    last_good,
    restore_point,
    stamp,
    unverified,
)
from promote.results import Event, Outcome, ReleaseResult

if TYPE_CHECKING:
    from promote.helm.client import Helm


class SyncMode(StrEnum):
    """Why a release is synced, which decides what is done with a revision nobody saw healthy."""

    PROMOTE = "promote"  # apply: first finish the wait of an unverified current revision, then sync Git
    RESYNC = "resync"  # rollback: sync an older commit's content, replacing whatever is current


@dataclass
class ReleaseSync:
    """One release of one environment, synced under the environment's lock, which the caller holds
    (see env_locks) for the whole change of the environment, gate check included.

    `planned` is the plan made before taking the lock; when we had to wait for the lock, took over a
    crashed apply's, or find the release moved since, it is planned again under it.
    """

    runtime: Runtime
    target: Target
    promo: record.Promotion
    aopts: ApplyOptions
    emit: sync.Emit
    lock: EnvLock
    mode: SyncMode = SyncMode.PROMOTE
    planned: Reconciled | None = None
    cluster: Cluster = field(init=False)

    def __post_init__(self) -> None:
        self.cluster = self.runtime.cluster(self.target.context)

    @property
    def helm(self) -> Helm:
        """helm for this release's cluster, allowed to wait as long as apply's timeout."""
        return self.runtime.helm_for(self.cluster, context=self.target.context, wait=self.aopts.timeout)

    def run(self) -> ReleaseResult:
        """All phases; a ReleaseResult for a synced or unchanged release, a PromoteError otherwise (its
        message with any writeOnly value masked: helm and the API quote values they refuse)."""
        try:
            return self._phases()
        except PromoteError as e:
            masked = diff.mask_text(str(e), self.target.hidden)
            if masked == str(e):
                raise
            raise HelmError(masked) from None

    def _phases(self) -> ReleaseResult:
        hist, crashed = self._recover()
        done, message, hist = self._plan(hist, crashed)
        conflicts = [f"{c.kind} {c.name} .{x.field} ({x.manager})" for c in done.plan.changes for x in c.conflicts]
        if conflicts and self.aopts.on_conflict is ConflictPolicy.STOP:
            # Appeared since the plan the apply started from (which is checked first): still nothing forced.
            raise GateBlocked(
                f"release {self.target.env.release}: fields owned by other managers, nothing was applied "
                f"(--on-conflict stop): {', '.join(conflicts)}"
            )
        if not done.plan.has_changes:
            return self._result(Outcome.UNCHANGED, done.plan.current_revision, message)
        return self._upgrade(done, hist)

    # --- phases ------------------------------------------------------------------------------------

    def _recover(self) -> tuple[ReleaseHistory, str | None]:
        """(history, who crashed): a release left pending-* by an apply that died is restored first."""
        t = self.target
        hist = history(self.cluster, t.env.namespace, t.env.release)
        crashed = self.lock.crashed_on(t.env.release)  # evidence that an apply of this release died midway
        if hist.latest and hist.latest.status.startswith("pending-"):
            if not crashed:
                raise HelmError(stuck_message(t.env.name, t.env.release, t.env.namespace, hist))
            # We took the lock of an apply that crashed mid-helm: its pending state is ours to clear.
            why = f"recovering: the apply of {crashed} crashed and left it {hist.latest.status}"
            self._say("Release", t.env.release, hist.latest.status, why)
            recover_pending(self.runtime, t, hist, self.aopts)
            hist = history(self.cluster, t.env.namespace, t.env.release)
        return hist, crashed

    def _plan(self, hist: ReleaseHistory, crashed: str | None) -> tuple[Reconciled, str, ReleaseHistory]:
        """The plan to carry out under the lock, what to say if it has nothing to do, and helm's history
        as it stands under the lock (all of it: a failure goes back to the last good revision)."""
        done = self.planned
        stale = done is None or done.rendered is None or self.lock.waited > 0 or bool(self.lock.took_over)
        if done is not None and not done.plan.has_changes:
            stale = True  # here only to check an unverified revision, which someone may have done since
        latest = (hist.latest.revision, hist.latest.status) if hist.latest else (None, None)
        if done is not None and latest != (done.plan.current_revision, done.plan.current_status):
            stale = True  # someone changed the release between our plan and our lock
        # Plan again under the lock when stale: an apply we waited for may already have done the work.
        # Else the plan stands, with the history as read under the lock.
        done = self._replan() if stale or done is None else replace(done, history=hist)
        message = "already in sync (another apply did it while we waited)"
        rec = unverified(hist)
        if self.mode == SyncMode.PROMOTE and rec is not None and not done.plan.has_changes:
            # Git still wants what that revision holds: finish the wait its apply began.
            message = verify_unverified(self.runtime, self.target, hist, rec, crashed, self.aopts, self.emit)
            done = self._replan()
            hist = history(self.cluster, self.target.env.namespace, self.target.env.release)
        return done, message, hist

    def _replan(self) -> Reconciled:
        done = reconcile([self.target], self.runtime)[0]
        if done.plan.errors:
            t = self.target
            raise PromoteError(f"cannot sync {t.env.release} in {t.env.namespace}: {'; '.join(done.plan.errors)}")
        return done

    def _upgrade(self, done: Reconciled, hist: ReleaseHistory) -> ReleaseResult:
        """helm upgrade, then our wait (or helm's, when post-* hooks need it), then record; or restore."""
        t, ns = self.target, self.target.env.namespace
        rendered = done.rendered
        assert rendered is not None
        objs = [o for o in rendered if not hook_annotation(o)]
        hooks = [o for o in rendered if hook_annotation(o)]
        workloads = [(o["apiVersion"], o["kind"], o["metadata"]["name"]) for o in objs if health.kind_of(o).runs_pods]
        jobs = [(o["apiVersion"], o["metadata"]["name"], sync.hook_phase(o)) for o in hooks if o.get("kind") == "Job"]
        # helm waits only when post-* hooks must see ready resources; else our wait is faster.
        helm_waits = sync.runs_post_hooks(rendered)
        good, newest = restore_point(hist), hist.latest.revision if hist.latest else 0
        self.lock.ensure_held()
        if t.app.crds is not CrdPolicy.SKIP:
            crds = chart_crds(t.chart)
            for name, what in sync.apply_crds(self.cluster, crds, t.app.crds is CrdPolicy.CREATE_REPLACE):
                self._say("CustomResourceDefinition", name, "Synced", what)
        runs_hooks = any(sync.hook_phase(o) for o in hooks)
        with sync.Watcher(self.cluster, t.env.name, ns, workloads, self.emit, hook_jobs=jobs, watch_pods=runs_hooks):
            try:
                rev = asyncio.run(
                    sync.helm_upgrade(
                        self.helm,
                        chart=t.chart,
                        release=t.env.release,
                        namespace=ns,
                        values=t.values,
                        description=self.promo.description(),
                        timeout=self.aopts.timeout,
                        wait=helm_waits,
                        server_side=applies_server_side(hist, self.helm.major),
                        server_validated=sync.server_validated(
                            done.plan.changes, rendered, rendered_as_install=hist.deployed is None and bool(hist.latest)
                        ),
                    )
                )
            except PromoteError as e:
                why = sync.explain(self.cluster, ns, objs, hooks)
                undone = restore_after_failure(self.runtime, t, good, newest, self.aopts)
                because = f"; {why}" if why else ""
                raise type(e)(f"sync of release {t.env.release} in {ns} failed, {undone}: {e}{because}") from e
            except KeyboardInterrupt as e:
                raise self._interrupted(good, newest) from e
            try:
                h = sync.wait_healthy(self.cluster, ns, objs, self.aopts.timeout)
            except KeyboardInterrupt as e:
                raise self._interrupted(good, newest) from e
        if h.status != health.HealthStatus.HEALTHY:
            why = sync.explain(self.cluster, ns, objs)
            undone = restore_after_failure(self.runtime, t, good, newest, self.aopts)
            raise sync.health_error(t.env.release, ns, h, self.aopts.timeout, undone, why)
        stamp_synced(self.cluster, t, rev, objs)
        return ReleaseResult(
            app=t.app.name,
            release=t.env.release,
            namespace=ns,
            outcome=Outcome.SYNCED,
            revision=rev,
            health=h.status,
            message=h.message,
            changes=done.plan.changes,
        )

    def _interrupted(self, good: ReleaseRecord | None, newest: int) -> Interrupted:
        """Ctrl-C or SIGTERM mid-sync: helm was stopped; go back to the last good revision (a stopped
        helm leaves the release pending-upgrade, which nobody else may touch) and say where it is."""
        t = self.target
        self._say("Release", t.env.release, "Interrupted", "interrupted: restoring the last good revision")
        undone = restore_after_failure(self.runtime, t, good, newest, self.aopts)
        return Interrupted(f"interrupted during the sync of release {t.env.release} in {t.env.namespace}: {undone}")

    # --- reporting ---------------------------------------------------------------------------------

    def _result(self, outcome: Outcome, revision: int | None, message: str) -> ReleaseResult:
        t = self.target
        return ReleaseResult(
            app=t.app.name,
            release=t.env.release,
            namespace=t.env.namespace,
            outcome=outcome,
            revision=revision,
            message=message,
        )

    def _say(self, kind: str, name: str, status: str, message: str) -> None:
        t = self.target
        self.emit(
            Event(
                at=self.runtime.clock.now(),
                env=t.env.name,
                kind=kind,
                namespace=t.env.namespace,
                name=name,
                status=status,
                message=message,
            )
        )


# --- health -----------------------------------------------------------------------------------------


def release_health(cluster: Cluster, namespace: str, hist: ReleaseHistory) -> health.Health:
    """Health of the deployed revision's objects, read live."""
    deployed = hist.deployed
    if deployed is None:
        return health.Health(health.HealthStatus.MISSING, "not installed")
    return sync.release_health(cluster, namespace, [o for o in deployed.manifest if "metadata" in o])


def env_health(runtime: Runtime, targets: list[Target]) -> health.HealthStatus:
    """The worst health of an environment's releases, read live."""
    hs = []
    for t in targets:
        c = runtime.cluster(t.context)
        hs.append(release_health(c, t.env.namespace, history(c, t.env.namespace, t.env.release, current_only=True)))
    return health.worst(hs).status


def ensure_namespace(cluster: Cluster, namespace: str) -> None:
    """Create the namespace the Lease lives in, unless it exists. Two first applies may race here:
    the one whose create comes second finds it made (409), which is what it wanted."""
    if cluster.namespace_exists(namespace):
        return
    try:
        cluster.create({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": namespace}}, None)
    except ApiError as e:
        if e.status != 409:
            raise


@contextmanager
def env_locks(
    runtime: Runtime,
    env: str,
    targets: list[Target],
    aopts: ApplyOptions,
    on_wait: Callable[[EnvLock, str], None] | None = None,
) -> Iterator[dict[tuple[str | None, str], EnvLock]]:
    """The environment's Leases, one per (context, namespace) its releases live in, by that key, held for
    a whole change of the environment (gate check, pins, every release). Taken in one order, so two
    applies never hold one each while waiting for the other."""
    owner = f"{record.who()}/{os.getpid()}"
    with ExitStack() as stack:
        locks: dict[tuple[str | None, str], EnvLock] = {}
        for ctx, ns in sorted({(t.context, t.env.namespace) for t in targets}, key=lambda k: (str(k[0]), k[1])):
            cluster = runtime.cluster(ctx)
            ensure_namespace(cluster, ns)
            releases = ",".join(sorted(t.env.release for t in targets if (t.context, t.env.namespace) == (ctx, ns)))
            lock = EnvLock(cluster, ns, env, owner, ttl=aopts.lock_ttl, subject=releases)
            lock.acquire(aopts.lock_timeout, on_wait=(lambda holder, lk=lock: on_wait(lk, holder)) if on_wait else None)
            stack.callback(lock.release)
            locks[(ctx, ns)] = lock
        yield locks


@contextmanager
def env_locked(runtime: Runtime, t: Target, aopts: ApplyOptions) -> Iterator[EnvLock]:
    """The environment's Lease in one release's namespace, around a change of that release alone."""
    with env_locks(runtime, t.env.name, [t], aopts) as locks:
        yield locks[(t.context, t.env.namespace)]


# --- self-heal --------------------------------------------------------------------------------------


def restore_promoted(runtime: Runtime, t: Target, aopts: ApplyOptions) -> str:
    """Put back the last promoted state of one release over drift: `helm rollback` to the revision that
    is deployed now (the same manifest, applied again), under the environment's lock; then wait for
    health and stamp it. Git is not rendered: new Git content is apply's to promote, through the gate,
    and a pinned environment stays at its pin. What was done, for the report."""
    cluster, ns, release = runtime.cluster(t.context), t.env.namespace, t.env.release
    with env_locked(runtime, t, aopts) as lock:
        hist = history(cluster, ns, release)
        if hist.latest and hist.latest.status.startswith("pending-"):
            raise HelmError(stuck_message(t.env.name, release, ns, hist))
        deployed = hist.deployed
        if deployed is None:
            raise HelmError(f"nothing to restore: release {release} in {ns} has no deployed revision")
        helm = runtime.helm_for(cluster, context=t.context, wait=aopts.timeout)
        lock.ensure_held()
        asyncio.run(helm.rollback(release, ns, deployed.revision, aopts.timeout, deployed.server_side))
        objs = [o for o in deployed.manifest if "metadata" in o]
        h = sync.wait_healthy(cluster, ns, objs, aopts.timeout)
        if h.status != health.HealthStatus.HEALTHY:
            why = sync.explain(cluster, ns, objs)
            raise sync.health_error(release, ns, h, aopts.timeout, "", why)
        now = history(cluster, ns, release).deployed
        if now is not None:
            stamp_synced(cluster, t, now.revision, objs)
        return f"restored revision {deployed.revision} (as revision {now.revision if now else '?'})"


# --- restoring --------------------------------------------------------------------------------------


def restore_after_failure(
    runtime: Runtime, t: Target, good: ReleaseRecord | None, newest: int, aopts: ApplyOptions
) -> str:
    """Undo a failed sync, as --atomic would; what was done, for the error (which must keep the cause)."""
    try:
        latest = history(runtime.cluster(t.context), t.env.namespace, t.env.release).latest
        if latest is None or latest.revision <= newest:
            return "nothing was changed"  # helm failed before it wrote a revision
        return restore(runtime, t, good, aopts)
    except PromoteError as e:
        return f"and restoring the last good revision failed too ({e})"


def restore(runtime: Runtime, t: Target, good: ReleaseRecord | None, aopts: ApplyOptions) -> str:
    """Back to the last good revision, or uninstall when there was none, as helm's --atomic does."""
    ns, release = t.env.namespace, t.env.release
    helm = runtime.helm_for(runtime.cluster(t.context), context=t.context, wait=aopts.timeout)
    if good is None:
        asyncio.run(helm.uninstall(release, ns, aopts.timeout))
        return "uninstalled (it had no earlier good revision)"
    asyncio.run(helm.rollback(release, ns, good.revision, aopts.timeout, good.server_side))
    return f"rolled back to revision {good.revision}"


def recover_pending(runtime: Runtime, t: Target, hist: ReleaseHistory, aopts: ApplyOptions) -> str:
    """Clear a pending-* state: back to the last good revision, or uninstall a never-completed install."""
    good = restore_point(hist)
    restore(runtime, t, good, aopts)
    return (
        "uninstalled the install that never completed" if good is None else f"helm rollback to revision {good.revision}"
    )


def stuck_message(env: str, release: str, ns: str, hist: ReleaseHistory) -> str:
    """What a release stuck in pending-* is, and the ways out."""
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


# --- recording --------------------------------------------------------------------------------------


def stamp_synced(cluster: Cluster, t: Target, rev: int, objs: list[dict[str, Any]]) -> None:
    """Mark revision `rev` as seen healthy, with its workloads' pods (a later pod was recreated since)."""
    ns = t.env.namespace
    current = history(cluster, ns, t.env.release).deployed
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


def verify_unverified(
    runtime: Runtime,
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
    cluster, ns, release = runtime.cluster(t.context), t.env.namespace, t.env.release
    why = f" (the apply of {crashed} crashed while waiting)" if crashed else ""

    def say(message: str) -> None:
        at = runtime.clock.now()
        emit(
            Event(at=at, env=t.env.name, kind="Release", namespace=ns, name=release, status=rec.status, message=message)
        )

    say(f"recovering: revision {rec.revision} was never seen healthy{why}; waiting for it")
    objs = [o for o in rec.manifest if "metadata" in o]
    h = sync.wait_healthy(cluster, ns, objs, aopts.timeout)
    if h.status == health.HealthStatus.HEALTHY:
        stamp_synced(cluster, t, rec.revision, objs)
        say(f"recovered: revision {rec.revision} is healthy")
        return f"revision {rec.revision} seen healthy"
    if not crashed:
        raise sync.health_error(
            release, ns, h, aopts.timeout, f"revision {rec.revision} was never seen healthy; `promote rollback`"
        )
    done = restore(runtime, t, last_good(hist, below=rec.revision), aopts)
    say(f"recovered: {done}")
    # Not tried again: that change just failed. Fix it in Git (or apply again to retry).
    raise sync.health_error(release, ns, h, aopts.timeout, f"revision {rec.revision} was never seen healthy, {done}")
