"""Applying: sync each environment of the chain in order, behind its gate and lock.

Per environment: check the gate, then sync each release (promote.engine.syncing: lock, re-read under
it, helm, our own health wait, the promotion recorded in the helm revision's description). A failure is
rolled back to the last good revision, as `--atomic` would, and stops the chain, so later environments
are never touched.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from contextlib import AbstractContextManager, nullcontext
from dataclasses import dataclass, field
from typing import Any, NoReturn

from promote import gate, pin, record, saved, sync
from promote.engine import pool
from promote.engine.core import Reconciled, reconcile
from promote.engine.gating import gate_checks, pin_checks, pins_of
from promote.engine.planning import assemble
from promote.engine.runtime import Runtime
from promote.engine.syncing import ReleaseSync, env_health, env_locks
from promote.engine.workspace import ApplyOptions, Options, Target, Workspace
from promote.errors import (
    ClusterError,
    ConfigError,
    GateBlocked,
    Interrupted,
    PolicyViolation,
    PromoteError,
    ValidationError,
    exit_code_for,
)
from promote.lock import EnvLock
from promote.plan import Action, ConflictPolicy, Plan
from promote.results import ApplyResult, EnvResult, Event, GateCheck, GateResult, HealthStatus, Outcome, ReleaseResult
from promote.values import Violation


class _EnvFailed(Exception):
    """Carries the partial result of the environment that stopped the chain."""

    def __init__(self, result: EnvResult, error: PromoteError) -> None:
        super().__init__(str(error))
        self.result, self.error = result, error


def _ref_label(ws: Workspace, revision: str) -> str:
    ref = ws.opts.revision
    if ref is None:
        ref = ws.source.branch() or "HEAD"  # detached HEAD or no repository: the sha says it all
    return f"{ref} ({revision[:7]}{'-dirty' if revision.endswith('-dirty') else ''})"


def _fail_on_violations(violations: list[Violation], env_policies: set[tuple[str, str | None]], target: str) -> None:
    if not violations:
        return
    msg = f"{len(violations)} values violation(s):\n  " + "\n  ".join(str(v) for v in violations)
    if all(v.environment == target and (v.app, v.schema) in env_policies for v in violations):
        raise PolicyViolation(f"blocked by the policy of {target}: {msg}", list(violations))
    raise ValidationError(msg, list(violations))


@dataclass
class _Run:
    """One apply: what every environment's sync shares, and the events and results so far."""

    runtime: Runtime
    aopts: ApplyOptions
    emit: sync.Emit
    target: str = ""
    revision: str = "unknown"
    label: str = ""
    chain: tuple[str, ...] = ()  # the environments this apply syncs, in order
    events: list[Event] = field(default_factory=list)
    envs: list[EnvResult] = field(default_factory=list)

    # The releases of an environment sync on threads: one event at a time, so its lines never interleave.
    said: threading.Lock = field(default_factory=threading.Lock)

    def event(self, ev: Event) -> None:
        with self.said:
            self.events.append(ev)
            self.emit(ev)

    def waiting(self, lock: EnvLock, holder: str) -> None:
        """Said once when the environment's lock is busy."""
        at = self.runtime.clock.now()
        message = f"lock held by {holder}"
        self.event(
            Event(
                at=at,
                env=lock.env,
                kind="Lease",
                namespace=lock.namespace,
                name=lock.name,
                status="Waiting",
                message=message,
            )
        )

    def result(self, target: str, error: PromoteError | None = None) -> ApplyResult:
        reached = {e.name for e in self.envs}
        return ApplyResult(
            target=target,
            revision=self.revision,
            environments=tuple(self.envs),
            not_reached=tuple(e for e in self.chain if e not in reached) if error else (),
            events=tuple(self.events),
            error=str(error) if error else None,
            exit_code=int(exit_code_for(error)) if error else 0,
        )


def apply(
    opts: Options,
    aopts: ApplyOptions,
    target: str,
    emit: sync.Emit,
    saved_plan: dict[str, Any] | None = None,
    runtime: Runtime | None = None,
    confirm: Callable[[Plan], bool] | None = None,
) -> ApplyResult:
    """Sync every environment of the chain up to `target`, in order, each only if its gate allows.

    With `saved_plan`, the plan is computed again first and the apply refuses unless nothing moved.
    With `confirm`, the plan is handed to it once the preflight passed, and nothing changes unless it
    says yes (terraform's question on a terminal); a plan without changes is not asked about.
    """
    runtime = runtime or Runtime.for_options(opts)
    runtime.prefetch_helm_version()  # overlaps the definitions' loading, if not remembered
    run = _Run(runtime, aopts, emit, target=target)
    try:
        with Workspace(opts) as ws:
            chain = ws.defs.chain_to(target)
            run.chain = (target,) if aopts.only else chain
            targets = ws.targets(chain)
            policies = {(t.app.name, t.env.policy) for t in targets if t.env.name == target}
            _fail_on_violations(ws.validate(targets), policies, target)
            done = reconcile(targets, runtime, while_rendering=ws.revision_soon)
            run.revision = ws.revision_soon().result()
            planned = assemble(target, chain, targets, [r.plan for r in done], run.revision, runtime.helm_major())
            if saved_plan is not None:
                if saved_plan.get("helmMajor") != planned.helm_major:
                    raise ConfigError(
                        f"the saved plan was made with Helm {saved_plan.get('helmMajor')}, this apply runs Helm "
                        f"{planned.helm_major}: they apply differently (client-side, server-side); plan again"
                    )
                saved.verify(saved_plan, planned)
            _refuse_conflicts(planned, aopts.on_conflict)
            run.label = _ref_label(ws, run.revision)
            _preflight(run, ws, target, [r for r in done if r.target.env.name in run.chain])
            if confirm is not None and planned.has_changes and not confirm(planned):
                raise ConfigError("apply cancelled: nothing was changed")
            for env in (target,) if aopts.only else chain:
                run.envs.append(_apply_env(run, ws, env, [r for r in done if r.target.env.name == env]))
        return run.result(target)
    except _EnvFailed as f:
        run.envs.append(f.result)
        return run.result(target, f.error)
    except PromoteError as e:
        return run.result(target, e)
    except KeyboardInterrupt:
        # Between syncs (planning, the gate, the lock): what was synced stays synced, the rest untouched.
        synced = ", ".join(e.name for e in run.envs) or "nothing"
        return run.result(target, Interrupted(f"interrupted; synced before that: {synced}; nothing else was changed"))


def _preflight(run: _Run, ws: Workspace, target: str, releases: list[Reconciled]) -> None:
    """Everything that can be checked before the first environment is touched: a problem found only at
    prod must not leave default changed. Errors of any release, pins, a clean tree where a gate needs
    one, and cluster-scoped objects two environments on one cluster would both claim."""
    for r in releases:
        if r.plan.errors:
            raise PromoteError(f"cannot apply {r.target.env.name}: {r.plan.app}: {'; '.join(r.plan.errors)}")
    for env in run.chain:
        if env == target and run.aopts.unpin:
            continue
        pinned = pin_checks(run.runtime, env, [r.target for r in releases if r.target.env.name == env])
        if pinned:
            _refuse(env, pinned)
    gated = next((env for env in run.chain if ws.defs.upstream_of(env)), None)
    if gated is not None:
        check = gate.clean_tree_check(ws.source.dirty_paths(), run.aopts.allow_dirty)
        if check.result == GateResult.FAIL:
            _refuse(gated, [check])
    claims: dict[tuple[str | None, str, str, str], Reconciled] = {}
    for r in releases:
        for c in r.plan.changes:
            if c.namespace is not None or c.hook is not None or c.kind == "Namespace":
                continue
            key = (r.target.context, c.api_version, c.kind, c.name)
            other = claims.setdefault(key, r)
            if other.target.env.namespace != r.target.env.namespace or other.target.env.release != r.target.env.release:
                a, b = other.target, r.target
                raise PromoteError(
                    f"{c.kind} {c.name} is cluster-scoped and both {a.env.name}/{a.app.name} (release "
                    f"{a.env.release} in {a.env.namespace}) and {b.env.name}/{b.app.name} (release {b.env.release} "
                    f"in {b.env.namespace}) render it on one cluster: helm would let only one own it; "
                    "name it per release in the chart (e.g. with .Release.Namespace)"
                )
    _cluster_permissions(run, releases)


# The verb helm needs for each planned action (an update is a patch, client- or server-side).
_VERBS = {Action.CREATE: "create", Action.UPDATE: "patch", Action.DELETE: "delete"}


def _cluster_permissions(run: _Run, releases: list[Reconciled]) -> None:
    """Stop before anything changes when the credentials lack a cluster-scoped permission the changes
    need (creating the namespace, the chart's cluster-scoped objects and CRDs): a CI account with
    namespaced rights would otherwise fail halfway through helm's install. The apiserver's authorizer is
    asked (a SelfSubjectAccessReview per verb and resource), only for cluster-scoped changes; an answer
    it cannot give lets helm find out, as before."""
    needed: dict[tuple[str | None, str, str, str], list[str]] = {}
    for r in releases:
        for c in r.plan.changes:
            if c.namespace is None and c.hook is None and c.action in _VERBS:
                key = (r.target.context, _VERBS[c.action], c.api_version, c.kind)
                needed.setdefault(key, []).append(f"{r.target.env.name}/{r.plan.app}: {c.kind} {c.name}")
    denied = []
    for (context, verb, api_version, kind), uses in needed.items():
        cluster = run.runtime.cluster(context)
        resource = cluster.resource(api_version, kind)
        if cluster.allowed(verb, resource) is False:
            group = resource.group_version.rpartition("/")[0]
            what = f"{resource.plural}.{group}" if group else resource.plural
            denied.append(f"{verb} {what} at the cluster scope (for {', '.join(sorted(set(uses)))})")
    if denied:
        raise ClusterError(
            "cannot apply: the credentials in use lack cluster-scoped permission to "
            + "; ".join(denied)
            + ": a RoleBinding cannot grant that; it takes a ClusterRole and a ClusterRoleBinding, or keep "
            "cluster-scoped objects out of the chart and create the namespace beforehand"
        )


def _refuse(env: str, failed: list[GateCheck]) -> NoReturn:
    """Stop the apply before anything changed: `env` is blocked by these checks."""
    result = EnvResult(name=env, context=None, outcome=Outcome.BLOCKED, gate=tuple(failed))
    raise _EnvFailed(result, GateBlocked(f"promotion to {env} blocked: {GateCheck.reasons(failed)}"))


def _refuse_conflicts(planned: Plan, policy: ConflictPolicy) -> None:
    """--on-conflict stop: fields other managers own that the upgrade would change stop the apply before
    anything changes, each named with its manager (plan showed them)."""
    if policy is not ConflictPolicy.STOP:
        return
    found = [
        f"{e.name}/{r.app}: {c.kind} {c.name} .{x.field} (owned by {x.manager})"
        for e in planned.environments
        for r in e.releases
        for c in r.changes
        for x in c.conflicts
    ]
    if found:
        raise GateBlocked(
            "server-side apply conflicts, nothing was applied (--on-conflict stop; take them over with "
            "--on-conflict take, or hand the fields back in the cluster):\n  " + "\n  ".join(found)
        )


def _apply_env(run: _Run, ws: Workspace, env: str, releases: list[Reconciled]) -> EnvResult:
    start = run.runtime.clock.monotonic()
    context = releases[0].plan.context if releases else None

    def result(
        outcome: Outcome, results: list[ReleaseResult], checks: list[GateCheck], health: HealthStatus | None = None
    ) -> EnvResult:
        return EnvResult(
            name=env,
            context=context,
            outcome=outcome,
            synced_to=run.label,
            health=health,
            duration=run.runtime.clock.monotonic() - start,
            releases=tuple(results),
            gate=tuple(checks),
        )

    targets = [r.target for r in releases]
    unpinning = run.aopts.unpin and env == run.target
    # The lock covers the gate, the pins and every release: nothing may be promoted past a pin or a
    # rollback that lands between the check and the change. With nothing to change, nothing to lock.
    work = unpinning or any(r.plan.needs_apply for r in releases)
    held: AbstractContextManager[dict[tuple[str | None, str], EnvLock]] = (
        env_locks(run.runtime, env, targets, run.aopts, on_wait=run.waiting) if work else nullcontext({})
    )
    with held as locks:
        # Only what changes passes the gate: a release staying as it is (prod kept on its own chart version
        # while default runs the next) is no promotion. With nothing to change, the checks are only shown.
        pending = [r.target for r in releases if r.plan.needs_apply] or targets
        checks = gate_checks(ws, run.runtime, env, pending, run.aopts.allow_dirty, own_pin=not unpinning)
        if work and (failed := [c for c in checks if c.result == GateResult.FAIL]):
            blocked = GateBlocked(f"promotion to {env} blocked: {GateCheck.reasons(failed)}")
            raise _EnvFailed(result(Outcome.BLOCKED, [], checks), blocked)
        if unpinning:
            _unpin(run, env, targets)
        ran = pool.run(releases, _after(releases), lambda r: _sync(run, env, r, locks), run.aopts.concurrency)
        results, error = _release_results(releases, ran)
        if error is not None:
            raise _EnvFailed(result(Outcome.FAILED, results, checks, HealthStatus.DEGRADED), error)
    outcome = Outcome.SYNCED if any(r.outcome == Outcome.SYNCED for r in results) else Outcome.UNCHANGED
    return result(outcome, results, checks, env_health(run.runtime, targets))


def _after(releases: list[Reconciled]) -> list[list[int]]:
    """For each release, the releases of the same environment its app depends on (dependsOn); an app
    this apply leaves out (--app) is not waited for."""
    index = {r.target.app.name: i for i, r in enumerate(releases)}
    return [[index[d] for d in r.target.app.depends_on if d in index] for r in releases]


def _release_results(
    releases: list[Reconciled], ran: pool.Ran[ReleaseResult]
) -> tuple[list[ReleaseResult], PromoteError | None]:
    """Every release's result in definition order, and the error that fails the environment, if any:
    the interrupt, else the first failure."""
    results: list[ReleaseResult] = []
    errors: list[PromoteError] = []
    failed = [r.target.app.name for r, o in zip(releases, ran.outcomes, strict=True) if o.error is not None]
    for r, o in zip(releases, ran.outcomes, strict=True):
        t = r.target
        if o.ok and o.result is not None:
            results.append(o.result)
            continue
        if o.error is None:
            why = f"{', '.join(failed)} failed" if failed else "the apply stopped"
            message = f"not started: {why}" + (" (Ctrl-C or SIGTERM)" if ran.interrupted and not failed else "")
        else:
            if isinstance(o.error, Exception) and not isinstance(o.error, PromoteError):
                raise o.error  # a bug: as unexpected as it was before releases ran on threads
            e = o.error if isinstance(o.error, PromoteError) else _interrupted(t)
            errors.append(e)
            message = str(e)
        outcome = Outcome.FAILED if o.error is not None else Outcome.SKIPPED
        results.append(
            ReleaseResult(
                app=t.app.name, release=t.env.release, namespace=t.env.namespace, outcome=outcome, message=message
            )
        )
    if ran.interrupted:
        said = [str(e) for e in errors if isinstance(e, Interrupted)] or ["interrupted"]
        return results, Interrupted("; ".join(said))
    return results, errors[0] if errors else None


def _interrupted(t: Target) -> Interrupted:
    """Ctrl-C or SIGTERM that stopped a release's sync before helm changed it (else the sync says so)."""
    return Interrupted(f"interrupted during the sync of release {t.env.release} in {t.env.namespace}")


def _unpin(run: _Run, env: str, targets: list[Target]) -> None:
    """apply --unpin: release the environment's pin, and say so (under its lock, once the gate passed)."""
    for ns, p in pins_of(run.runtime, env, targets).items():
        cluster = run.runtime.cluster(next(t.context for t in targets if t.env.namespace == ns))
        pin.clear(cluster, ns, env)
        at = run.runtime.clock.now()
        run.event(
            Event(
                at=at,
                env=env,
                kind="ConfigMap",
                namespace=ns,
                name=f"promote-pin-{env}",
                status="Deleted",
                message=f"unpinned: {p.describe()}",
            )
        )


def _sync(run: _Run, env: str, r: Reconciled, locks: dict[tuple[str | None, str], EnvLock]) -> ReleaseResult:
    """One release: unchanged when the plan says so, else synced under the environment's lock."""
    t = r.target
    if not r.plan.needs_apply:
        return ReleaseResult(
            app=t.app.name,
            release=t.env.release,
            namespace=t.env.namespace,
            outcome=Outcome.UNCHANGED,
            revision=r.plan.current_revision,
            message="live matches Git: no helm upgrade",
        )
    promo = record.Promotion(
        env=env,
        revision=run.revision,
        artifact=t.artifact_digest,
        values=t.values_digest,
        by=record.who(),
        at=run.runtime.clock.now().isoformat(),
    )
    lock = locks[(t.context, t.env.namespace)]
    return ReleaseSync(run.runtime, t, promo, run.aopts, run.event, lock, planned=r).run()
