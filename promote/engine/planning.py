"""Planning: what `apply` would change, environment by environment, read-only.

Nothing is written: the comparison with the live cluster is the engine core's (reconcile), whose
object checks are server-side dry runs.
"""

from __future__ import annotations

from dataclasses import replace

from promote.engine.core import reconcile
from promote.engine.runtime import Runtime
from promote.engine.workspace import Options, Target, Workspace
from promote.plan import EnvironmentPlan, Plan, ReleasePlan


def plan(opts: Options, target: str, runtime: Runtime | None = None) -> Plan:
    """What `apply target` would change, for each environment of the chain up to it, in order."""
    runtime = runtime or Runtime.for_options(opts)
    runtime.prefetch_helm_version()  # overlaps the definitions' loading, if not remembered
    with Workspace(opts) as ws:
        chain = ws.defs.chain_to(target)
        targets = ws.targets(chain)
        # Git is asked once the first renders run: not before them (GitPython's import would hold the
        # GIL the first helm waits for) nor after the last one.
        done = reconcile(targets, runtime, violations=ws.validate(targets), while_rendering=ws.revision_soon)
        revision = ws.revision_soon().result()
        return assemble(target, chain, targets, [r.plan for r in done], revision, runtime.helm_major())


def assemble(
    target: str,
    chain: tuple[str, ...],
    targets: list[Target],
    releases: list[ReleasePlan],
    revision: str,
    helm_major: int | None = None,
) -> Plan:
    """The Plan data for release plans computed in chain order."""
    envs: list[EnvironmentPlan] = []
    for env_name in chain:
        here = [(t, r) for t, r in zip(targets, releases, strict=True) if t.env.name == env_name]
        apps = {t.app.name for t, _ in here}
        rel = tuple(replace(r, after=tuple(d for d in t.app.depends_on if d in apps)) for t, r in here)
        first = next((t for t in targets if t.env.name == env_name), None)
        envs.append(
            EnvironmentPlan(
                name=env_name,
                namespace=first.env.namespace if first else "",
                context=rel[0].context if rel else (first.context if first else None),
                releases=rel,
            )
        )
    from promote import fingerprint

    key = fingerprint.key_id(fingerprint.plan_key())
    return Plan(target=target, revision=revision, environments=tuple(envs), digest_key=key, helm_major=helm_major)
