"""Applying: sync each environment of the chain in order, behind its gate and lock.

Per environment: check the gate, then sync each release (promote.engine.syncing: lock, re-read under
it, helm, our own health wait, the promotion recorded in the helm revision's description). A failure is
rolled back to the last good revision, as `--atomic` would, and stops the chain, so later environments
are never touched.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, NoReturn

from promote import gate, pin, record, saved, sync
from promote.engine.core import Reconciled, reconcile
from promote.engine.gating import gate_checks, pin_checks, pins_of
from promote.engine.planning import assemble
from promote.engine.runtime import Runtime
from promote.engine.syncing import ReleaseSync, env_health
from promote.engine.workspace import ApplyOptions, Options, Target, Workspace
from promote.errors import GateBlocked, Interrupted, PolicyViolation, PromoteError, ValidationError, exit_code_for
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
    revision: str = "unknown"
    label: str = ""
    chain: tuple[str, ...] = ()  # the environments this apply syncs, in order
    events: list[Event] = field(default_factory=list)
    envs: list[EnvResult] = field(default_factory=list)

    def event(self, ev: Event) -> None:
        self.events.append(ev)
        self.emit(ev)

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
) -> ApplyResult:
    """Sync every environment of the chain up to `target`, in order, each only if its gate allows.

    With `saved_plan`, the plan is computed again first and the apply refuses unless nothing moved.
    """
    runtime = runtime or Runtime.for_options(opts)
    runtime.prefetch_helm_version()  # overlaps the definitions' loading, if not remembered
    run = _Run(runtime, aopts, emit)
    try:
        with Workspace(opts) as ws:
            chain = ws.defs.chain_to(target)
            run.chain = (target,) if aopts.only else chain
            targets = ws.targets(chain)
            policies = {(t.app.name, t.env.policy) for t in targets if t.env.name == target}
            _fail_on_violations(ws.validate(targets), policies, target)
            soon = ws.revision_soon()
            runtime.connect([t.context for t in targets])
            done = reconcile(targets, runtime)
            run.revision = soon.result()
            if saved_plan is not None:
                saved.verify(saved_plan, assemble(target, chain, targets, [r.plan for r in done], run.revision))
            run.label = _ref_label(ws, run.revision)
            _preflight(run, ws, target, [r for r in done if r.target.env.name in run.chain])
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


def _refuse(env: str, failed: list[GateCheck]) -> NoReturn:
    """Stop the apply before anything changed: `env` is blocked by these checks."""
    why = "; ".join(f"{c.app + ': ' if c.app else ''}{c.reason}" for c in failed)
    result = EnvResult(name=env, context=None, outcome=Outcome.BLOCKED, gate=tuple(failed))
    raise _EnvFailed(result, GateBlocked(f"promotion to {env} blocked: {why}"))


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

    for r in releases:
        if r.plan.errors:
            error = PromoteError(f"cannot apply {env}: {r.plan.app}: {'; '.join(r.plan.errors)}")
            raise _EnvFailed(result(Outcome.FAILED, [], []), error)
    targets = [r.target for r in releases]
    if run.aopts.unpin:
        _unpin(run, env, targets)
    checks = gate_checks(ws, run.runtime, env, targets, run.aopts.allow_dirty)
    if failed := [c for c in checks if c.result == GateResult.FAIL]:
        why = "; ".join(f"{c.app + ': ' if c.app else ''}{c.reason}" for c in failed)
        raise _EnvFailed(result(Outcome.BLOCKED, [], checks), GateBlocked(f"promotion to {env} blocked: {why}"))
    results: list[ReleaseResult] = []
    for r in releases:
        try:
            results.append(_sync(run, env, r))
        except PromoteError as e:
            t = r.target
            failed_release = ReleaseResult(
                app=t.app.name, release=t.env.release, namespace=t.env.namespace, outcome=Outcome.FAILED, message=str(e)
            )
            raise _EnvFailed(
                result(Outcome.FAILED, [*results, failed_release], checks, HealthStatus.DEGRADED), e
            ) from e
    outcome = Outcome.SYNCED if any(r.outcome == Outcome.SYNCED for r in results) else Outcome.UNCHANGED
    return result(outcome, results, checks, env_health(run.runtime, targets))


def _unpin(run: _Run, env: str, targets: list[Target]) -> None:
    """apply --unpin: release the environment's pin, and say so, before its gate is checked."""
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


def _sync(run: _Run, env: str, r: Reconciled) -> ReleaseResult:
    """One release: unchanged when the plan says so, else synced under the lock."""
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
    return ReleaseSync(run.runtime, t, promo, run.aopts, run.event, planned=r).run()
