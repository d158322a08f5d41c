"""The gate: may an environment be promoted now? Read-only, for apply and for `promote gate`."""

from __future__ import annotations

from promote import gate, pin
from promote.engine.runtime import Runtime
from promote.engine.syncing import release_health
from promote.engine.workspace import Options, Target, Workspace
from promote.lock import EnvLock
from promote.release import history
from promote.results import GateCheck, GateResult


def gate_checks(
    ws: Workspace, runtime: Runtime, env: str, env_targets: list[Target], allow_dirty: bool, own_pin: bool = True
) -> list[GateCheck]:
    """Every gate check for promoting `env` now: its own pin (unless `own_pin` is False: apply --unpin
    releases it once the rest passes), then, after the first environment of the chain, a clean tree and,
    per app, what the upstream environment runs."""
    checks = pin_checks(runtime, env, env_targets) if own_pin else []
    upstream = ws.defs.upstream_of(env)
    if upstream is None:
        return checks
    checks.append(gate.clean_tree_check(ws.source.dirty_paths(), allow_dirty))
    for t in env_targets:
        up = t.app.environment(upstream)
        if up is None:
            continue
        up_cluster = runtime.cluster(up.context or ws.opts.context)
        up_pin = pin.read(up_cluster, up.namespace, upstream)
        if up_pin is not None:
            checks.append(_upstream_pin_check(up_pin, t, upstream))
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


def pins_of(runtime: Runtime, env: str, targets: list[Target]) -> dict[str, pin.Pin]:
    """The pins of `env`, by namespace (an environment's apps may live in several)."""
    out: dict[str, pin.Pin] = {}
    for t in targets:
        if t.env.namespace not in out and (p := pin.read(runtime.cluster(t.context), t.env.namespace, env)):
            out[t.env.namespace] = p
    return out


def pin_checks(runtime: Runtime, env: str, targets: list[Target]) -> list[GateCheck]:
    """A failing check per pin of `env` (none when it is not pinned)."""
    return [
        GateCheck("pin", GateResult.FAIL, f"{p.describe()}; `promote unpin {env}` releases it")
        for p in pins_of(runtime, env, targets).values()
    ]


def _upstream_pin_check(up_pin: pin.Pin, t: Target, upstream: str) -> GateCheck:
    """Upstream pinned: nothing goes further down the chain, least of all the artifact it rolled back from."""
    blocked = up_pin.blocked.get(t.app.name)
    if blocked is not None and blocked == t.artifact_digest:
        why = f"artifact {blocked[:8]} was rolled back away from in {upstream} ({up_pin.describe()})"
    else:
        why = f"upstream {up_pin.describe()}"
    return GateCheck("upstream-pin", GateResult.FAIL, f"{why}; `promote unpin {upstream}` releases it", t.app.name)


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
        checks += gate_checks(ws, runtime, env, targets, allow_dirty)
        if len(chain) == 1:
            checks.append(GateCheck("upstream", GateResult.PASS, f"{env} is the first environment of the chain"))
        for t in targets:
            holder = EnvLock(runtime.cluster(t.context), t.env.namespace, env, "").current_holder()
            if holder:
                checks.append(GateCheck("lock", GateResult.FAIL, f"an apply by {holder} holds the lock", t.app.name))
            else:
                checks.append(GateCheck("lock", GateResult.PASS, "no apply holds the lock", t.app.name))
        return checks
