"""Rolling an environment back: to the previous promotion, or to a named helm revision or Git sha.

When the target promotion's Git revision and values can be reproduced exactly, the rollback re-syncs
from that commit (a new promotion record, action rollback); otherwise it falls back to `helm rollback`,
which helm records as "Rollback to N".
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, replace

from promote import pin, record, sync
from promote.engine import pool
from promote.engine.runtime import Runtime
from promote.engine.syncing import (
    ReleaseSync,
    SyncMode,
    env_health,
    env_locks,
    recover_pending,
    release_health,
)
from promote.engine.workspace import ApplyOptions, Options, Target, Workspace
from promote.errors import HelmError, PromoteError, UnknownRevision, exit_code_for
from promote.lock import EnvLock
from promote.release import ReleaseHistory, history, promotion_of
from promote.results import ApplyResult, EnvResult, Outcome, ReleaseResult


def rollback(
    opts: Options, aopts: ApplyOptions, env: str, to: str | None, emit: sync.Emit, runtime: Runtime | None = None
) -> ApplyResult:
    """Roll every app release of `env` back together: to the previous promotion, or to `to`.

    `to` is a helm revision number or a Git sha (prefix) of a promotion.
    """
    runtime = runtime or Runtime.for_options(opts)
    emit = pool.serialized(emit)  # the releases roll back on several threads
    start = runtime.clock.monotonic()
    results: list[ReleaseResult] = []
    revision = "unknown"
    context: str | None = None
    try:
        with Workspace(opts) as ws:
            targets = ws.targets((ws.defs.chain_to(env)[-1],))
            runtime.connect([t.context for t in targets])
            revision = ws.source.revision()
            # One lock for the whole environment: what to roll back to is chosen under it, and the pin is
            # written before the first release changes, so no apply can slip in between.
            with env_locks(runtime, env, targets, aopts) as locks:
                steps = [_decide(runtime, t, to) for t in targets]
                if any(not s.stuck for s in steps):
                    _pin(runtime, env, targets, steps, aopts.reason)
                context = runtime.cluster(targets[0].context).context if targets else None

                def one(step: _Step) -> ReleaseResult:
                    lock = locks[(step.target.context, step.target.env.namespace)]
                    lock.ensure_held()
                    return _rollback_release(ws, runtime, step, aopts, emit, lock)

                # In dependsOn order, as apply: what an app needs is back before the app itself.
                index = {t.app.name: i for i, t in enumerate(targets)}
                after = [[index[d] for d in t.app.depends_on if d in index] for t in targets]
                ran = pool.run(steps, after, one, aopts.concurrency)
                results.extend(o.result for o in ran.outcomes if o.ok and o.result is not None)
                if ran.interrupted:
                    raise KeyboardInterrupt
                if (error := next((o.error for o in ran.outcomes if o.error is not None), None)) is not None:
                    raise error
        res = EnvResult(
            name=env,
            context=context,
            outcome=Outcome.ROLLED_BACK,
            health=env_health(runtime, targets),
            duration=runtime.clock.monotonic() - start,
            releases=tuple(results),
        )
        return ApplyResult(target=env, revision=revision, environments=(res,))
    except PromoteError as e:
        res = EnvResult(
            name=env,
            context=context,
            outcome=Outcome.FAILED,
            duration=runtime.clock.monotonic() - start,
            releases=tuple(results),
        )
        return ApplyResult(
            target=env, revision=revision, environments=(res,), error=str(e), exit_code=int(exit_code_for(e))
        )


@dataclass(frozen=True)
class _Step:
    """What rolling one release back will do, decided under the lock before anything changes."""

    target: Target
    hist: ReleaseHistory
    stuck: bool  # only the way out of a release left pending-* (not a decision about an artifact)
    number: int | None = None  # the helm revision to go back to
    promo: record.Promotion | None = None  # the promotion that revision carries
    away_from: str | None = None  # the artifact rolled back away from


def _decide(runtime: Runtime, t: Target, to: str | None) -> _Step:
    hist = history(runtime.cluster(t.context), t.env.namespace, t.env.release)
    if to is None and hist.latest is not None and hist.latest.status.startswith("pending-"):
        return _Step(t, hist, stuck=True)
    number, promo = pick(hist, to)
    current = promotion_of(hist, hist.deployed)
    return _Step(t, hist, stuck=False, number=number, promo=promo, away_from=current.artifact if current else None)


def _pin(runtime: Runtime, env: str, targets: list[Target], steps: list[_Step], reason: str) -> None:
    """Hold `env` at what it is being rolled back to, in every namespace its apps live in."""
    at = ", ".join(f"{s.target.app.name} revision {s.number}" for s in steps if not s.stuck)
    blocked = {s.target.app.name: s.away_from for s in steps if not s.stuck and s.away_from}
    p = pin.Pin(
        env=env, by=record.who(), at=runtime.clock.now().isoformat(), reason=reason, pinned_at=at, blocked=blocked
    )
    for ns, ctx in {(t.env.namespace, t.context) for t in targets}:
        pin.write(runtime.cluster(ctx), ns, p)


def unpin(opts: Options, env: str, runtime: Runtime | None = None) -> list[pin.Pin]:
    """Release `env` from the pin a rollback left: apply, self-heal and the next gate go back to Git."""
    runtime = runtime or Runtime.for_options(opts)
    with Workspace(opts) as ws:
        targets = ws.targets((ws.defs.chain_to(env)[-1],))
        runtime.connect([t.context for t in targets])
        released: list[pin.Pin] = []
        for ns, ctx in sorted({(t.env.namespace, t.context) for t in targets}, key=str):
            cluster = runtime.cluster(ctx)
            if (p := pin.read(cluster, ns, env)) is not None and pin.clear(cluster, ns, env):
                released.append(p)
        return released


def pick(hist: ReleaseHistory, to: str | None) -> tuple[int, record.Promotion | None]:
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
    ws: Workspace, runtime: Runtime, step: _Step, aopts: ApplyOptions, emit: sync.Emit, lock: EnvLock
) -> ReleaseResult:
    t = step.target
    if step.stuck:
        # The way out of a stuck release: its last good state (none, for an install that never completed).
        return _rolled_back(runtime, t, recover_pending(runtime, t, step.hist, aopts))
    assert step.number is not None
    if step.promo and not step.promo.revision.endswith("-dirty"):
        again = _resync(ws, runtime, t, step.promo, step.number, aopts, emit, lock)
        if again is not None:
            return again
    # Not reproducible from Git (dirty tree, command-line values, or a revision promote did not make).
    helm = runtime.helm_for(runtime.cluster(t.context), context=t.context, wait=aopts.timeout)
    target = next((r for r in step.hist.records if r.revision == step.number), None)
    server_side = target is not None and target.server_side
    asyncio.run(helm.rollback(t.env.release, t.env.namespace, step.number, aopts.timeout, server_side))
    return _rolled_back(runtime, t, f"helm rollback to revision {step.number}")


def _resync(
    ws: Workspace,
    runtime: Runtime,
    t: Target,
    promo: record.Promotion,
    number: int,
    aopts: ApplyOptions,
    emit: sync.Emit,
    lock: EnvLock,
) -> ReleaseResult | None:
    """Sync the commit and values of promotion `promo` again, when they can be reproduced exactly."""
    try:
        with Workspace(replace(ws.opts, revision=promo.revision)) as old:
            old_t = next((o for o in old.targets((t.env.name,)) if o.app.name == t.app.name), None)
            if old_t is None or old_t.values_digest != promo.values:
                return None
            again = replace(
                promo,
                by=record.who(),
                at=runtime.clock.now().isoformat(),
                action=record.RecordAction.ROLLBACK,
                rolled_back_to=number,
            )
            res = ReleaseSync(runtime, old_t, again, aopts, emit, lock, mode=SyncMode.RESYNC).run()
            return replace(
                res, outcome=Outcome.ROLLED_BACK, message=f"re-synced {promo.revision[:7]} (was revision {number})"
            )
    except UnknownRevision:
        return None  # the commit is gone (a rewritten branch, a shallow clone): helm's stored revision it is


def _rolled_back(runtime: Runtime, t: Target, message: str) -> ReleaseResult:
    cluster, ns = runtime.cluster(t.context), t.env.namespace
    after = history(cluster, ns, t.env.release)
    return ReleaseResult(
        app=t.app.name,
        release=t.env.release,
        namespace=ns,
        outcome=Outcome.ROLLED_BACK,
        revision=after.latest.revision if after.latest else None,
        health=release_health(cluster, ns, after).status,
        message=message,
    )
