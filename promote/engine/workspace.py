"""The workspace of one command run: source, definitions, and every (app, environment) resolved.

Values are layered here in helm's precedence and validated against every schema; the release artifact
(chart identity plus app-wide values) is defined here too, because plan, gate and record all need it.
"""

from __future__ import annotations

import functools
import hashlib
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from promote import model, redact, yamlio
from promote import values as vals
from promote.chart import ChartInfo, chart_default_values, chart_info, chart_schema, parsed
from promote.errors import ConfigError
from promote.plan import ConflictPolicy
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
    qps: float = 500.0


@dataclass(frozen=True)
class ApplyOptions:
    """Knobs of apply and rollback."""

    timeout: float = 300.0
    lock_timeout: float = 60.0
    lock_ttl: float = 30.0
    concurrency: int = 4  # releases of one environment synced at once (1: one after another)
    only: bool = False
    allow_dirty: bool = False
    unpin: bool = False  # release a pin left by `promote rollback` instead of respecting it
    reason: str = ""  # why a rollback was made, recorded on the pin it leaves
    on_conflict: ConflictPolicy = ConflictPolicy.TAKE  # fields other managers own (Helm 4 server-side apply)


@dataclass(frozen=True)
class Target:
    """One app in one environment, resolved: chart on disk and values, ready to render."""

    app: model.App
    env: model.Environment
    chart: ChartInfo
    values: dict[str, Any]  # what helm gets (user layers; nulls kept so they delete chart defaults)
    effective: dict[str, Any]  # chart defaults merged in, as the templates see them
    app_values: dict[str, Any]  # the app-wide layers that make up the release artifact
    context: str | None
    # Values a schema marks writeOnly, as text: masked wherever they show, whatever kind renders them.
    hidden: frozenset[str] = frozenset()
    # Where those are: in the values (every schema), and in the app-wide values (the chart's and the app's
    # schemas only, so that every environment computes the same artifact).
    hidden_paths: frozenset[tuple[Any, ...]] = frozenset()
    artifact_hidden_paths: frozenset[tuple[Any, ...]] = frozenset()
    # Every layer of `effective`, lowest first, with where it is written: what a violation is attributed to.
    layers: tuple[vals.Layer, ...] = ()

    @functools.cached_property
    def artifact_digest(self) -> str:
        """The release artifact: chart identity and content plus app-wide values, not env overrides.

        It is recorded in the cluster and compared by whichever machine gates the next environment, so it
        cannot be keyed per machine; writeOnly values are left out of it instead (a plain digest over a
        weak password is a guess checked offline). Mark secret values writeOnly.
        """
        h = hashlib.sha256()
        public = vals.masked_at(self.app_values, self.artifact_hidden_paths)
        for part in (self.chart.name, self.chart.version, self.chart.digest, vals.digest(public)):
            h.update(part.encode() + b"\0")
        return h.hexdigest()

    @functools.cached_property
    def values_digest(self) -> str:
        """Digest of the values helm gets in this environment, writeOnly values left out (as above)."""
        return vals.digest(vals.masked_at(self.values, self.hidden_paths))

    @property
    def cache_digest(self) -> str:
        """Digest of every value, writeOnly ones included: only ever fed to a keyed digest (the render
        cache's), never shown or stored."""
        return vals.digest(self.values)


class Workspace:
    """The source and definitions for one command run."""

    def __init__(self, opts: Options) -> None:
        self.opts = opts
        self.source = Source(opts.root, opts.revision)
        self.defs = model.load(self.source, opts.env_dir)
        self._cli_values: dict[str, Any] | None = None
        self._cli_layers: list[vals.Layer] = []
        self._schema_files: dict[str, dict[str, Any]] = {}
        self._git: ThreadPoolExecutor | None = None
        self._revision: Future[str] | None = None

    def close(self) -> None:
        """Remove temporary chart copies."""
        if self._git is not None:
            self._git.shutdown(wait=True)
        self.source.close()

    def revision_soon(self) -> Future[str]:
        """The source's revision, asked of Git in the background on the first call, the same answer after.

        Call it first once every file the command depends on has been read: importing GitPython and
        running `git status` then overlap with connecting to the cluster or rendering.
        """
        if self._revision is None:
            self._git = ThreadPoolExecutor(max_workers=1, thread_name_prefix="promote-git")
            self._revision = self._git.submit(self.source.revision)
        return self._revision

    def __enter__(self) -> Workspace:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def cli_values(self) -> dict[str, Any]:
        """-f files, then --set, then --set-string: the highest layer."""
        if self._cli_values is None:
            layers: list[vals.Layer] = []
            for f in self.opts.values_files:
                try:
                    text = yamlio.read_text(Path(f), name=f)
                except OSError as e:
                    raise ConfigError(f"cannot read values file {f}: {e.strerror}") from e
                doc = yamlio.load(text, name=f) or {}
                if not isinstance(doc, dict):
                    raise ConfigError(f"{f}: a values file must be a mapping")
                layers.append(vals.Layer(f, doc, read=_constant(text)))
            layers.append(vals.Layer("--set", vals.parse_set(self.opts.set_values)))
            layers.append(vals.Layer("--set-string", vals.parse_set(self.opts.set_string, as_string=True)))
            self._cli_layers = layers
            self._cli_values = vals.merge(*(layer.values for layer in layers), keep_nulls=True)
        return self._cli_values

    def _values_file(self, rel: str) -> dict[str, Any]:
        doc = yamlio.load(self.source.read_text(rel), name=rel) or {}
        if not isinstance(doc, dict):
            raise ConfigError(f"{rel}: a values file must be a mapping")
        return doc

    def _layer(self, rel: str, values: dict[str, Any], at: tuple[str | int, ...] = ()) -> vals.Layer:
        """Values from a file of the source; its text is read again only if a violation needs a line."""
        return vals.Layer(rel, values, at, read=lambda: self.source.read_text(rel))

    def _schemas_for(
        self, app: model.App, env: model.Environment, chart: ChartInfo
    ) -> list[tuple[str, dict[str, Any]]]:
        """(name, schema) of every schema an app's values in an environment answer to."""
        schemas: list[tuple[str, dict[str, Any]]] = []
        own = chart_schema(chart)
        if own is not None:
            schemas.append((f"{_label(app, chart)}/values.schema.json", own))
        if app.schema:
            schemas.append((app.schema, self._schema(app.schema)))
        if env.policy:
            schemas.append((env.policy, self._schema(env.policy)))
        return schemas

    def _schema(self, rel: str) -> dict[str, Any]:
        """A schema file, read once per run."""
        import json

        if rel not in self._schema_files:
            try:
                data = json.loads(self.source.read_text(rel))
            except json.JSONDecodeError as e:
                raise ConfigError(f"{rel}:{e.lineno}:{e.colno}: not valid JSON: {e.msg}") from e
            except ValueError as e:
                raise ConfigError(f"{rel}: not valid JSON: {e}") from e
            if not isinstance(data, dict):
                raise ConfigError(f"{rel}: a JSON schema must be an object")
            self._schema_files[rel] = data
        return self._schema_files[rel]

    def _chart(self, app: model.App, version: str | None) -> ChartInfo:
        """An app's chart at a version: read from the source, or fetched into the cache; with its
        dependencies (fetched into a copy in the cache when its charts/ folder lacks them)."""
        if app.chart.source is model.ChartSource.DIRECTORY and app.chart.local is not None:
            info = chart_info(self.source.local_path(app.chart.local))
        else:
            from promote import chartsource
            from promote.helm.binary import executable

            fetched = chartsource.fetch(app.chart, version, self.source, executable(), where=app.file)
            info = replace(chart_info(fetched.path), source_digest=fetched.digest, origin=app.chart.ref)
        if not parsed(info, "Chart.yaml").get("dependencies"):
            return info
        from promote import chartsource
        from promote.helm.binary import executable

        complete = chartsource.with_dependencies(info.path, info.digest, executable(), where=app.file)
        if complete == info.path:
            return info
        return replace(chart_info(complete), source_digest=info.source_digest, origin=info.origin)

    def targets(self, env_names: tuple[str, ...]) -> list[Target]:
        """Every (app, environment) of the given environments, in chain order."""
        charts: dict[tuple[model.ChartRef, str | None], ChartInfo] = {}
        out: list[Target] = []
        for env_name in env_names:
            for app in self.defs.select(self.opts.apps):
                env = app.environment(env_name)
                if env is None:
                    continue
                version = env.chart_version or app.chart.version
                if (app.chart, version) not in charts:
                    charts[app.chart, version] = self._chart(app, version)
                chart = charts[app.chart, version]
                app_files = [self._layer(f, self._values_file(f)) for f in app.values_files]
                env_files = [self._layer(f, self._values_file(f)) for f in env.values_files]
                app_layers = [layer.values for layer in app_files] + [app.values]
                env_layers = [layer.values for layer in env_files] + [env.values]
                user = vals.merge(*app_layers, *env_layers, self.cli_values(), keep_nulls=True)
                app_values = vals.merge(*app_layers, self.cli_values(), keep_nulls=True)
                defaults = chart_default_values(chart)
                effective = vals.merge(defaults, user)
                # The same layers with where each is written, for violations to name the file and line.
                defaults_file = chart.path / "values.yaml"
                layers = (
                    vals.Layer(f"{_label(app, chart)}/values.yaml", defaults, read=_reader(defaults_file)),
                    *app_files,
                    self._layer(app.file, app.values, app.values_at.at),
                    *env_files,
                    *(self._layer(v.file, v.values, v.at) for v in env.values_from),
                    *self._cli_layers,
                )
                paths: set[tuple[Any, ...]] = set()
                artifact_paths: set[tuple[Any, ...]] = set()
                for name, s in self._schemas_for(app, env, chart):
                    paths |= vals.sensitive_paths(s, effective)
                    if name != env.policy:
                        artifact_paths |= vals.sensitive_paths(s, app_values)
                out.append(
                    Target(
                        app=app,
                        env=env,
                        chart=chart,
                        values=user,
                        effective=effective,
                        # Command-line values reach every environment, so they are part of the artifact.
                        app_values=app_values,
                        context=env.context or self.opts.context,
                        hidden=_registered(vals.values_at(effective, paths)),
                        hidden_paths=frozenset(paths),
                        artifact_hidden_paths=frozenset(artifact_paths),
                        layers=layers,
                    )
                )
        return out

    def validate(self, targets: list[Target]) -> list[vals.Violation]:
        """Check every target's effective values against chart schema, app schema and env policy."""
        out: list[vals.Violation] = []
        for t in targets:
            schemas = self._schemas_for(t.app, t.env, t.chart)
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
                        layers=t.layers,
                    )
                )
        return out


def _constant(text: str) -> Callable[[], str]:
    return lambda: text


def _reader(path: Path) -> Callable[[], str]:
    return lambda: yamlio.read_text(path)


def validate(opts: Options, env: str | None = None) -> list[vals.Violation]:
    """Validate definitions and every environment's merged values (all of them, or the chain up to env)."""
    with Workspace(opts) as ws:
        chain = ws.defs.chain_to(env) if env else ws.defs.chain
        return ws.validate(ws.targets(chain))


def _label(app: model.App, chart: ChartInfo) -> str:
    """How messages name a chart's files: its folder in the source, or name-version when fetched."""
    if chart.origin is None and app.chart.local is not None:
        return app.chart.local
    return f"{chart.name}-{chart.version}"


def _registered(hidden: frozenset[str]) -> frozenset[str]:
    """writeOnly values, also masked from every text the command prints (redact: the backstop)."""
    for value in hidden:
        redact.register(value)
    return hidden
