"""The gate: may an environment be promoted now? Read-only, for apply and for `promote gate`."""

from __future__ import annotations

from promote import gate
from promote.engine.runtime import Runtime
from promote.engine.syncing import release_health
from promote.engine.workspace import Options, Target, Workspace
from promote.lock import EnvLock
from promote.release import history
from promote.results import GateCheck, GateResult


def gate_checks(
    ws: Workspace, runtime: Runtime, env: str, env_targets: list[Target], allow_dirty: bool
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
        up_cluster = runtime.cluster(up.context or ws.opts.context)
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
                now=runtime.clock.now(),
            )
        )
    return checks


def gate_report(opts: Options, env: str, allow_dirty: bool = False, runtime: Runtime | None = None) -> list[GateCheck]:
    """May `env` be promoted now? Every check apply would make, read-only, plus validity and the lock."""
    runtime = runtime or Runtime.for_options(opts)
    with Workspace(opts) as ws:
        chain = ws.defs.chain_to(env)
        targets = ws.targets((env,))
        violations = ws.validate(targets)
        if violations:
            shown = "; ".join(f"{v.environment}/{v.app} {v.path}: expected {v.expected}" for v in violations[:5])
            checks = [GateCheck("values-valid", GateResult.FAIL, f"{len(violations)} violation(s): {shown}")]
        else:
            checks = [GateCheck("values-valid", GateResult.PASS, "definitions and values are valid")]
        runtime.connect([t.context for t in targets])
        if len(chain) > 1:
            checks += gate_checks(ws, runtime, env, targets, allow_dirty)
        else:
            checks.append(GateCheck("upstream", GateResult.PASS, f"{env} is the first environment of the chain"))
        for t in targets:
            holder = EnvLock(runtime.cluster(t.context), t.env.namespace, env, "").current_holder()
            if holder:
                checks.append(GateCheck("lock", GateResult.FAIL, f"an apply by {holder} holds the lock", t.app.name))
            else:
                checks.append(GateCheck("lock", GateResult.PASS, "no apply holds the lock", t.app.name))
        return checks
