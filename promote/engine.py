"""The engine: the only module that composes model, values, render, cluster, diff and plan.

`validate` and `plan` are read-only: nothing is ever written to a cluster by them (object checks use
server-side dry runs). Releases are rendered and compared in parallel, bounded by the number of cores
for helm and by the cluster client's rate limit for API calls.
"""

from __future__ import annotations

import asyncio
import hashlib
import os
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from promote import diff, gate, health, model, record, render, sync, yamlio
from promote import values as vals
from promote.cluster import ApiError, Cluster, connect
from promote.errors import (
    ConfigError,
    GateBlocked,
    HelmError,
    PolicyViolation,
    PromoteError,
    ValidationError,
    exit_code_for,
)
from promote.gate import GateCheck
from promote.lock import EnvLock
from promote.plan import Action, EnvironmentPlan, HookPhase, Plan, ReleasePlan, ResourceChange
from promote.release import ReleaseHistory, history
from promote.results import ApplyResult, EnvResult, ReleaseResult
from promote.source import Source


@dataclass(frozen=True)
class Options:
    """What every command shares: where definitions live, which revision, and command-line values."""

    root: Path = field(default_factory=Path.cwd)
    env_dir: str = model.ENV_DIR
    revision: str | None = None
    apps: tuple[str, ...] = ()
    values_files: tuple[str, ...] = ()
    set_values: tuple[str, ...] = ()
    set_string: tuple[str, ...] = ()
    context: str | None = None
    kubeconfig: str | None = None


@dataclass(frozen=True)
class Target:
    """One app in one environment, resolved: chart on disk and values, ready to render."""

    app: model.App
    env: model.Environment
    chart: render.ChartInfo
    values: dict[str, Any]  # what helm gets (user layers; nulls kept so they delete chart defaults)
    effective: dict[str, Any]  # chart defaults merged in, as the templates see them
    app_values: dict[str, Any]  # the app-wide layers that make up the release artifact
    context: str | None

    @property
    def artifact_digest(self) -> str:
        """The release artifact: chart identity and content plus app-wide values, not env overrides."""
        h = hashlib.sha256()
        for part in (self.chart.name, self.chart.version, self.chart.digest, vals.digest(self.app_values)):
            h.update(part.encode() + b"\0")
        return h.hexdigest()

    @property
    def values_digest(self) -> str:
        """Digest of everything helm gets as values in this environment."""
        return vals.digest(self.values)


class Workspace:
    """The source and definitions for one command run."""

    def __init__(self, opts: Options) -> None:
        self.opts = opts
        self.source = Source(opts.root, opts.revision)
        self.defs = model.load(self.source, opts.env_dir)
        self._cli_values: dict[str, Any] | None = None

    def close(self) -> None:
        """Remove temporary chart copies."""
        self.source.close()

    def __enter__(self) -> Workspace:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def cli_values(self) -> dict[str, Any]:
        """-f files, then --set, then --set-string: the highest layer."""
        if self._cli_values is None:
            layers: list[dict[str, Any]] = []
            for f in self.opts.values_files:
                try:
                    text = Path(f).read_text()
                except OSError as e:
                    raise ConfigError(f"cannot read values file {f}: {e.strerror}") from e
                doc = yamlio.load(text, name=f) or {}
                if not isinstance(doc, dict):
                    raise ConfigError(f"{f}: a values file must be a mapping")
                layers.append(doc)
            layers.append(vals.parse_set(self.opts.set_values))
            layers.append(vals.parse_set(self.opts.set_string, as_string=True))
            self._cli_values = vals.merge(*layers, keep_nulls=True)
        return self._cli_values

    def _values_file(self, rel: str) -> dict[str, Any]:
        doc = yamlio.load(self.source.read_text(rel), name=rel) or {}
        if not isinstance(doc, dict):
            raise ConfigError(f"{rel}: a values file must be a mapping")
        return doc

    def _schema(self, rel: str) -> dict[str, Any]:
        import json

        try:
            data: dict[str, Any] = json.loads(self.source.read_text(rel))
        except ValueError as e:
            raise ConfigError(f"{rel}: not valid JSON: {e}") from e
        return data

    def targets(self, env_names: tuple[str, ...]) -> list[Target]:
        """Every (app, environment) of the given environments, in chain order."""
        charts: dict[str, render.ChartInfo] = {}
        out: list[Target] = []
        for env_name in env_names:
            for app in self.defs.select(self.opts.apps):
                env = app.environment(env_name)
                if env is None:
                    continue
                if app.chart.local is None:
                    raise ConfigError(f"{app.file}: remote chart {app.chart.ref!r} is not supported yet; vendor it")
                if app.chart.local not in charts:
                    charts[app.chart.local] = render.chart_info(self.source.local_path(app.chart.local))
                chart = charts[app.chart.local]
                app_layers = [self._values_file(f) for f in app.values_files] + [app.values]
                env_layers = [self._values_file(f) for f in env.values_files] + [env.values]
                user = vals.merge(*app_layers, *env_layers, self.cli_values(), keep_nulls=True)
                effective = vals.merge(render.chart_default_values(chart), user)
                out.append(
                    Target(
                        app=app,
                        env=env,
                        chart=chart,
                        values=user,
                        effective=effective,
                        app_values=vals.merge(*app_layers, keep_nulls=True),
                        context=env.context or self.opts.context,
                    )
                )
        return out

    def validate(self, targets: list[Target]) -> list[vals.Violation]:
        """Check every target's effective values against chart schema, app schema and env policy."""
        out: list[vals.Violation] = []
        for t in targets:
            schemas: list[tuple[str, dict[str, Any]]] = []
            chart_schema = render.chart_schema(t.chart)
            if chart_schema is not None:
                schemas.append((f"{t.app.chart.local}/values.schema.json", chart_schema))
            if t.app.schema:
                schemas.append((t.app.schema, self._schema(t.app.schema)))
            if t.env.policy:
                schemas.append((t.env.policy, self._schema(t.env.policy)))
            hide: set[tuple[Any, ...]] = set()
            for _, s in schemas:
                hide |= vals.sensitive_paths(s, t.effective)
            for name, s in schemas:
                out.extend(
                    vals.validate(
                        t.effective,
                        s,
                        file=t.app.file,
                        app=t.app.name,
                        environment=t.env.name,
                        schema_name=name,
                        hide=hide,
                    )
                )
        return out


def validate(opts: Options, env: str | None = None) -> list[vals.Violation]:
    """Validate definitions and every environment's merged values (all of them, or the chain up to env)."""
    with Workspace(opts) as ws:
        chain = ws.defs.chain_to(env) if env else ws.defs.chain
        return ws.validate(ws.targets(chain))


# --- planning ---------------------------------------------------------------------------------------


def _parallelism() -> int:
    return max(2, os.cpu_count() or 2)


def plan(opts: Options, target: str) -> Plan:
    """What `apply target` would change, for each environment of the chain up to it, in order."""
    with Workspace(opts) as ws:
        chain = ws.defs.chain_to(target)
        targets = ws.targets(chain)
        violations = ws.validate(targets)
        clusters = _connect_all(opts, targets)
        releases = asyncio.run(_plan_all(targets, clusters, violations))
        envs: list[EnvironmentPlan] = []
        for env_name in chain:
            rel = tuple(r for t, r in zip(targets, releases, strict=True) if t.env.name == env_name)
            first = next((t for t in targets if t.env.name == env_name), None)
            envs.append(
                EnvironmentPlan(
                    name=env_name,
                    namespace=first.env.namespace if first else "",
                    context=rel[0].context if rel else (first.context if first else None),
                    releases=rel,
                )
            )
        return Plan(target=target, revision=ws.source.revision(), environments=tuple(envs))


def _connect_all(opts: Options, targets: list[Target]) -> dict[str | None, Cluster]:
    """Connect to every context once, up front, so an unknown context or dead cluster is one clear error."""
    clusters: dict[str | None, Cluster] = {}
    for t in targets:
        if t.context not in clusters:
            c = connect(t.context, opts.kubeconfig)
            c.server_version()
            clusters[t.context] = c
    return clusters


async def _plan_all(
    targets: list[Target], clusters: dict[str | None, Cluster], violations: list[vals.Violation]
) -> list[ReleasePlan]:
    helm_slots = asyncio.Semaphore(_parallelism())
    pool = ThreadPoolExecutor(max_workers=16, thread_name_prefix="promote-api")
    loop = asyncio.get_running_loop()

    async def one(t: Target) -> ReleasePlan:
        cluster = clusters[t.context]
        errors = [str(v) for v in violations if v.app == t.app.name and v.environment == t.env.name]
        base = ReleasePlan(
            app=t.app.name,
            release=t.env.release,
            namespace=t.env.namespace,
            context=cluster.context,
            chart=t.chart.name,
            chart_version=t.chart.version,
            artifact_digest=t.artifact_digest,
            values_digest=t.values_digest,
        )
        if errors:
            return _replace(base, errors=tuple(errors))
        try:
            hist = await loop.run_in_executor(pool, history, cluster, t.env.namespace, t.env.release)
            async with helm_slots:
                helm = render.client(kubeconfig=None, context=None, kube_version=cluster.server_version())
                rendered = await render.render(
                    helm,
                    t.chart,
                    release=t.env.release,
                    namespace=t.env.namespace,
                    values=t.values,
                    is_upgrade=hist.deployed is not None,
                )
            return await loop.run_in_executor(pool, compare, cluster, t, rendered, hist, base)
        except PromoteError as e:
            return _replace(base, errors=(str(e),))

    try:
        return list(await asyncio.gather(*(one(t) for t in targets)))
    finally:
        pool.shutdown(wait=False)


def _replace(r: ReleasePlan, **kw: Any) -> ReleasePlan:
    from dataclasses import replace

    return replace(r, **kw)


def manifest_digest(objs: list[dict[str, Any]]) -> str:
    """Digest of rendered manifests, Secrets included, for saved-plan verification without storing them."""
    import json

    h = hashlib.sha256()
    for o in sorted(objs, key=lambda o: diff.identity(o)):
        h.update(json.dumps(o, sort_keys=True, separators=(",", ":")).encode())
    return h.hexdigest()


def compare(
    cluster: Cluster, t: Target, rendered: list[dict[str, Any]], hist: ReleaseHistory, base: ReleasePlan
) -> ReleasePlan:
    """Compare rendered objects with the live cluster through server-side dry runs."""
    ns = t.env.namespace
    resources: list[dict[str, Any]] = []
    hooks: list[dict[str, Any]] = []
    for obj in rendered:
        (hooks if render.hook_annotation(obj) else resources).append(obj)
    deployed = hist.deployed
    ns_exists = cluster.namespace_exists(ns)
    changes: list[ResourceChange] = []
    errors: list[str] = []
    if not ns_exists:
        changes.append(ResourceChange(Action.CREATE, "v1", "Namespace", None, ns))

    # Namespace every namespaced object the way helm will, and index the old manifest by identity.
    for obj in resources:
        res = cluster.resource(obj["apiVersion"], obj["kind"])
        md = obj.setdefault("metadata", {})
        if res.namespaced:
            md.setdefault("namespace", ns)
        else:
            md.pop("namespace", None)
    old: dict[tuple[str, str, str, str], dict[str, Any]] = {}
    for obj in deployed.manifest if deployed else ():
        res = cluster.resource(obj["apiVersion"], obj["kind"])
        md = obj.setdefault("metadata", {})
        if res.namespaced:
            md.setdefault("namespace", ns)
        old[diff.identity(obj)] = obj

    live: dict[tuple[str, str, str, str], dict[str, Any]] = {}
    if ns_exists:
        kinds = {(o["apiVersion"], o["kind"], o["metadata"].get("namespace")) for o in resources + list(old.values())}
        for api_version, kind, kns in sorted(kinds, key=lambda k: (k[0], k[1], k[2] or "")):
            for item in cluster.list(api_version, kind, kns or None):
                item["apiVersion"], item["kind"] = api_version, kind
                live[diff.identity(item)] = item

    rendered_ids = set()
    for obj in resources:
        ident = diff.identity(obj)
        rendered_ids.add(ident)
        api_version, kind, ons, name = ident
        current = live.get(ident)
        try:
            if current is None:
                if ns_exists:
                    cluster.create(obj, ons or None, dry_run=True)
                changes.append(ResourceChange(Action.CREATE, api_version, kind, ons or None, name))
                continue
            owner = (current.get("metadata", {}).get("annotations") or {}).get("meta.helm.sh/release-name")
            if ident not in old and owner != t.env.release:
                errors.append(
                    f"{kind} {ons}/{name} exists and is not part of release {t.env.release}: "
                    "helm would refuse to adopt it; delete it or label it for this release"
                )
                continue
            patch = diff.three_way_patch(old.get(ident), obj)
            predicted = cluster.patch(api_version, kind, ons or None, name, patch, dry_run=True)
            fields = diff.field_changes(
                kind, diff.normalize(current, t.env.ignore), diff.normalize(predicted, t.env.ignore)
            )
            changes.append(
                ResourceChange(
                    Action.UPDATE if fields else Action.UNCHANGED,
                    api_version,
                    kind,
                    ons or None,
                    name,
                    fields=tuple(fields),
                    resource_version=current.get("metadata", {}).get("resourceVersion"),
                )
            )
        except ApiError as e:
            errors.append(str(e))

    for ident, obj in old.items():
        if ident in rendered_ids:
            continue
        policy = (obj.get("metadata", {}).get("annotations") or {}).get("helm.sh/resource-policy")
        current = live.get(ident)
        if current is None or policy == "keep":
            continue
        api_version, kind, ons, name = ident
        changes.append(
            ResourceChange(
                Action.DELETE,
                api_version,
                kind,
                ons or None,
                name,
                resource_version=current.get("metadata", {}).get("resourceVersion"),
            )
        )

    will_sync = (
        deployed is None
        or (hist.latest is not None and hist.latest.status != "deployed")
        or any(c.action != Action.UNCHANGED for c in changes)
    )
    for obj in hooks:
        phase = HookPhase.from_helm(render.hook_annotation(obj) or "", upgrade=deployed is not None)
        if phase is None:
            continue
        api_version, kind, _, name = diff.identity(obj)
        changes.append(
            ResourceChange(Action.CREATE if will_sync else Action.UNCHANGED, api_version, kind, ns, name, hook=phase)
        )
    return _replace(
        base,
        context=cluster.context,
        current_revision=hist.latest.revision if hist.latest else None,
        current_status=hist.latest.status if hist.latest else None,
        manifest_digest=manifest_digest(rendered),
        errors=tuple(errors),
        changes=tuple(changes),
    )


def raise_on_violations(violations: list[vals.Violation]) -> None:
    """Turn collected violations into one ValidationError listing all of them."""
    if violations:
        raise ValidationError(
            f"{len(violations)} values violation(s):\n  " + "\n  ".join(str(v) for v in violations),
            list(violations),
        )


# --- applying ---------------------------------------------------------------------------------------


@dataclass(frozen=True)
class ApplyOptions:
    """Knobs of apply and rollback."""

    timeout: float = 300.0
    lock_timeout: float = 60.0
    lock_ttl: float = 30.0
    only: bool = False
    allow_dirty: bool = False


def _env_targets(targets: list[Target], plans: list[ReleasePlan], env: str) -> list[tuple[Target, ReleasePlan]]:
    return [(t, p) for t, p in zip(targets, plans, strict=True) if t.env.name == env]


def _upstream_health(cluster: Cluster, namespace: str, hist: ReleaseHistory) -> health.Health:
    deployed = hist.deployed
    if deployed is None:
        return health.Health(health.HealthStatus.MISSING, "not installed")
    return sync.release_health(cluster, namespace, [o for o in deployed.manifest if "metadata" in o])


def gate_checks(
    ws: Workspace, clusters: dict[str | None, Cluster], env: str, env_targets: list[Target], allow_dirty: bool
) -> list[GateCheck]:
    """Every gate check for promoting `env` now (empty for the first environment of the chain)."""
    upstream = ws.defs.upstream_of(env)
    if upstream is None:
        return []
    checks = [gate.clean_tree_check(ws.source.dirty_paths(), allow_dirty)]
    for t in env_targets:
        up = t.app.environment(upstream)
        if up is None:
            continue
        up_cluster = clusters.get(up.context or ws.opts.context) or connect(
            up.context or ws.opts.context, ws.opts.kubeconfig
        )
        hist = history(up_cluster, up.namespace, up.release)
        checks.extend(
            gate.upstream_checks(
                app=t.app.name,
                env=env,
                upstream=upstream,
                artifact=t.artifact_digest,
                soak_seconds=t.env.soak_seconds,
                hist=hist,
                health=_upstream_health(up_cluster, up.namespace, hist),
                now=record.now(),
            )
        )
    return checks


def _ref_label(ws: Workspace, revision: str) -> str:
    ref = ws.opts.revision
    if ref is None:
        try:
            import git

            ref = git.Repo(ws.source.root, search_parent_directories=True).active_branch.name
        except Exception:
            ref = "HEAD"
    return f"{ref} ({revision[:7]}{'-dirty' if revision.endswith('-dirty') else ''})"


def apply(opts: Options, aopts: ApplyOptions, target: str, emit: sync.Emit) -> ApplyResult:
    """Sync every environment of the chain up to `target`, in order, each only if its gate allows."""
    events: list[sync.Event] = []

    def record_event(ev: sync.Event) -> None:
        events.append(ev)
        emit(ev)

    env_results: list[EnvResult] = []
    revision = "unknown"
    try:
        with Workspace(opts) as ws:
            chain = ws.defs.chain_to(target)
            targets = ws.targets(chain)
            violations = ws.validate(targets)
            if violations:
                policy_only = all(
                    v.environment == target
                    and v.schema
                    == next((t.env.policy for t in targets if t.env.name == target and t.app.name == v.app), None)
                    for v in violations
                )
                msg = f"{len(violations)} values violation(s):\n  " + "\n  ".join(str(v) for v in violations)
                if policy_only:
                    raise PolicyViolation(f"blocked by the policy of {target}: {msg}", list(violations))
                raise ValidationError(msg, list(violations))
            clusters = _connect_all(opts, targets)
            plans = asyncio.run(_plan_all(targets, clusters, []))
            revision = ws.source.revision()
            label = _ref_label(ws, revision)
            to_sync = (target,) if aopts.only else chain
            for env in to_sync:
                pairs = _env_targets(targets, plans, env)
                env_results.append(_apply_env(ws, clusters, aopts, env, pairs, revision, label, record_event))
        return ApplyResult(target, revision, tuple(env_results), tuple(events), None, 0)
    except _EnvFailed as f:
        env_results.append(f.result)
        return ApplyResult(
            target, revision, tuple(env_results), tuple(events), str(f.error), int(exit_code_for(f.error))
        )
    except PromoteError as e:
        return ApplyResult(target, revision, tuple(env_results), tuple(events), str(e), int(exit_code_for(e)))


class _EnvFailed(Exception):
    def __init__(self, result: EnvResult, error: PromoteError) -> None:
        super().__init__(str(error))
        self.result, self.error = result, error


def _apply_env(
    ws: Workspace,
    clusters: dict[str | None, Cluster],
    aopts: ApplyOptions,
    env: str,
    pairs: list[tuple[Target, ReleasePlan]],
    revision: str,
    label: str,
    emit: sync.Emit,
) -> EnvResult:
    start = time.monotonic()
    context = pairs[0][1].context if pairs else None
    for _, p in pairs:
        if p.errors:
            err = PromoteError(f"cannot apply {env}: {p.app}: " + "; ".join(p.errors))
            raise _EnvFailed(EnvResult(env, context, "failed", label, duration=time.monotonic() - start), err)
    checks = gate_checks(ws, clusters, env, [t for t, _ in pairs], aopts.allow_dirty)
    failed = [c for c in checks if c.result == gate.GateResult.FAIL]
    if failed:
        why = "; ".join(f"{c.app + ': ' if c.app else ''}{c.reason}" for c in failed)
        res = EnvResult(env, context, "blocked", label, duration=time.monotonic() - start, gate=tuple(checks))
        raise _EnvFailed(res, GateBlocked(f"promotion to {env} blocked: {why}"))
    if not any(p.has_changes for _, p in pairs):
        releases = tuple(
            ReleaseResult(
                t.app.name,
                t.env.release,
                t.env.namespace,
                "unchanged",
                p.current_revision,
                message="live matches Git; no helm upgrade",
            )
            for t, p in pairs
        )
        env_h = _env_health(clusters, pairs)
        return EnvResult(env, context, "unchanged", label, env_h, time.monotonic() - start, releases, tuple(checks))
    results: list[ReleaseResult] = []
    by = record.who()
    for t, p in pairs:
        cluster = clusters[t.context]
        if not p.has_changes:
            results.append(ReleaseResult(t.app.name, t.env.release, t.env.namespace, "unchanged", p.current_revision))
            continue
        lock = EnvLock(cluster, t.env.namespace, env, by + f"/{os.getpid()}", ttl=aopts.lock_ttl)
        try:
            if not cluster.namespace_exists(t.env.namespace):
                cluster.create({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": t.env.namespace}}, None)
            lock.acquire(
                aopts.lock_timeout,
                on_wait=lambda holder, t=t: emit(
                    sync.Event(
                        record.now(),
                        env,
                        "Lease",
                        t.env.namespace,
                        f"promote-{env}",
                        "Waiting",
                        "",
                        "",
                        f"waiting for the lock held by {holder}",
                    )
                ),
            )
            # Re-read the release under the lock: the apply we waited for may have changed it.
            hist = history(cluster, t.env.namespace, t.env.release)
            if hist.latest and hist.latest.status.startswith("pending-"):
                raise HelmError(
                    f"release {t.env.release} in {t.env.namespace} is stuck in {hist.latest.status} "
                    f"(revision {hist.latest.revision}), left by a helm process that was killed. Way out: "
                    f"`promote rollback {env}` or `helm rollback {t.env.release} -n {t.env.namespace}`"
                )
            rendered = asyncio.run(
                render.render(
                    render.client(kube_version=cluster.server_version()),
                    t.chart,
                    release=t.env.release,
                    namespace=t.env.namespace,
                    values=t.values,
                    is_upgrade=hist.deployed is not None,
                )
            )
            objs = [o for o in rendered if not render.hook_annotation(o)]
            workloads = [
                (o["apiVersion"], o["kind"], o["metadata"]["name"])
                for o in objs
                if o.get("kind") in sync.WORKLOAD_KINDS
            ]
            promo = record.Promotion(
                env=env,
                revision=revision,
                artifact=t.artifact_digest,
                values=t.values_digest,
                by=by,
                at=record.now().isoformat(),
            )
            with sync.Watcher(cluster, env, t.env.namespace, workloads, emit):
                rev = asyncio.run(
                    sync.helm_upgrade(
                        cluster=cluster,
                        context=t.context,
                        chart=t.chart,
                        release=t.env.release,
                        namespace=t.env.namespace,
                        values=t.values,
                        description=promo.description(),
                        timeout=aopts.timeout,
                    )
                )
                h = sync.wait_healthy(cluster, t.env.namespace, objs, aopts.timeout)
            if h.status != health.HealthStatus.HEALTHY:
                previous = hist.deployed.revision if hist.deployed else None
                if previous is not None:
                    asyncio.run(
                        sync.helm_rollback(
                            cluster=cluster,
                            context=t.context,
                            release=t.env.release,
                            namespace=t.env.namespace,
                            revision=previous,
                            timeout=aopts.timeout,
                        )
                    )
                raise sync.health_error(t.env.release, t.env.namespace, h, aopts.timeout)
            results.append(
                ReleaseResult(
                    t.app.name, t.env.release, t.env.namespace, "synced", rev, h.status.value, h.message, p.changes
                )
            )
        except PromoteError as e:
            results.append(ReleaseResult(t.app.name, t.env.release, t.env.namespace, "failed", message=str(e)))
            res = EnvResult(
                env, context, "failed", label, "Degraded", time.monotonic() - start, tuple(results), tuple(checks)
            )
            raise _EnvFailed(res, e) from e
        finally:
            lock.release()
    env_h = _env_health(clusters, pairs)
    return EnvResult(env, context, "synced", label, env_h, time.monotonic() - start, tuple(results), tuple(checks))


def _env_health(clusters: dict[str | None, Cluster], pairs: list[tuple[Target, ReleasePlan]]) -> str:
    hs = []
    for t, _ in pairs:
        c = clusters[t.context]
        hs.append(_upstream_health(c, t.env.namespace, history(c, t.env.namespace, t.env.release)))
    return health.worst(hs).status.value
