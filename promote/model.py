"""The environment model: app definitions in environments/, validated and resolved into a chain.

Each app file maps one chart to an ordered list of environments (the promotion chain). Files whose name
starts with `_` hold settings shared by every app's environment of the same name (context, policy,
soak), so they are not repeated per app. Every file is validated against
schemas/environment.schema.json, and all problems are reported together.
"""

from __future__ import annotations

import functools
import json
import posixpath
import re
from dataclasses import dataclass, field
from enum import StrEnum
from importlib import resources
from typing import Any

from promote import yamlio
from promote.errors import ConfigError, SourceError, did_you_mean
from promote.source import Source

ENV_DIR = "environments"


@dataclass(frozen=True)
class IgnoreRule:
    """Fields another controller owns (ignoreDifferences)."""

    json_pointers: tuple[str, ...]
    group: str | None = None
    kind: str | None = None
    name: str | None = None

    def matches(self, api_version: str, kind: str, name: str) -> bool:
        """True when this rule applies to the object."""
        group = api_version.split("/")[0] if "/" in api_version else ""
        return (
            (self.group is None or self.group == group)
            and (self.kind is None or self.kind == kind)
            and (self.name is None or self.name == name)
        )


class ChartSource(StrEnum):
    """Where a chart lives."""

    DIRECTORY = "directory"  # a chart folder in the source
    PACKAGE = "package"  # a packaged chart (.tgz) in the source
    REPOSITORY = "repository"  # a Helm repository: `repo:` URL and chart name, or `name/chart` helm knows
    URL = "url"  # a packaged chart at an http(s) URL
    OCI = "oci"  # an OCI registry: oci://host/path/chart with a version, or @sha256:digest


class CrdPolicy(StrEnum):
    """What apply does with the CustomResourceDefinitions of a chart's crds/ folder (helm's own rule:
    create on install, never upgrade, is the default; helm creates none that a later version adds)."""

    SKIP = "Skip"
    CREATE = "Create"
    CREATE_REPLACE = "CreateReplace"


@dataclass(frozen=True)
class ChartRef:
    """A chart: a folder or package in the source, or a reference into a repository or registry."""

    ref: str
    local: str | None = None  # path relative to the source root, for a folder or package in the source
    version: str | None = None  # exact, or a semver range (repositories and registries)
    repo: str | None = None
    source: ChartSource = ChartSource.DIRECTORY
    plain_http: bool = False  # helm's --plain-http, for a registry without TLS

    @property
    def remote(self) -> bool:
        """True when the chart is fetched, not read from the source."""
        return self.source not in (ChartSource.DIRECTORY, ChartSource.PACKAGE)


@dataclass(frozen=True)
class ValuesAt:
    """Values written in a definition file, and where: so that a violation can name the file and line."""

    file: str
    at: tuple[str | int, ...]  # the path of the values inside the file, e.g. ("environments", 1, "values")
    values: dict[str, Any]


@dataclass(frozen=True)
class Environment:
    """One app in one environment: where it goes and what it overrides."""

    name: str
    namespace: str
    release: str
    context: str | None
    policy: str | None  # path relative to the source root
    soak_seconds: float
    values_files: tuple[str, ...]
    values: dict[str, Any]
    ignore: tuple[IgnoreRule, ...]
    values_from: tuple[ValuesAt, ...] = ()  # what `values` merges, lowest first: shared file, then own
    chart_version: str | None = None  # this environment's own chart version (repositories and registries)


@dataclass(frozen=True)
class App:
    """An app definition file, resolved."""

    name: str
    file: str
    chart: ChartRef
    values_files: tuple[str, ...]
    values: dict[str, Any]
    schema: str | None
    environments: tuple[Environment, ...]
    crds: CrdPolicy = CrdPolicy.CREATE
    depends_on: tuple[str, ...] = ()  # apps synced healthy before this one, in each environment of both

    @property
    def values_at(self) -> ValuesAt:
        """The app-wide values and where they are written."""
        return ValuesAt(self.file, ("values",), self.values)

    def environment(self, name: str) -> Environment | None:
        """This app's settings for one environment, if it is deployed there."""
        return next((e for e in self.environments if e.name == name), None)


@dataclass(frozen=True)
class Definitions:
    """Every app, and the global chain order across them."""

    apps: tuple[App, ...]
    chain: tuple[str, ...]
    files: tuple[str, ...] = field(default=())

    def chain_to(self, target: str) -> tuple[str, ...]:
        """Environments of the chain up to and including `target`."""
        if target not in self.chain:
            known = ", ".join(self.chain) or "none"
            hint = did_you_mean(target, self.chain)
            raise ConfigError(f"unknown environment {target!r}: the chain defines {known}{hint}")
        return self.chain[: self.chain.index(target) + 1]

    def upstream_of(self, env: str) -> str | None:
        """The previous environment in the chain."""
        i = self.chain.index(env)
        return self.chain[i - 1] if i > 0 else None

    def select(self, names: tuple[str, ...]) -> tuple[App, ...]:
        """The apps named (all when none is named)."""
        if not names:
            return self.apps
        defined = [a.name for a in self.apps]
        unknown = sorted(set(names) - set(defined))
        if unknown:
            named = ", ".join(f"{u}{did_you_mean(u, defined)}" for u in unknown)
            raise ConfigError(f"unknown app {named}: defined are {', '.join(defined)}")
        return tuple(a for a in self.apps if a.name in names)


_DURATION = re.compile(r"([0-9]+(?:\.[0-9]+)?)(ms|s|m|h)")


def parse_duration(text: str) -> float:
    """Seconds in a Go-style duration such as `10m` or `1h30m`."""
    text = text.strip()
    if not text:
        raise ConfigError("empty duration")
    total, pos = 0.0, 0
    for m in _DURATION.finditer(text):
        if m.start() != pos:
            break
        total += float(m.group(1)) * {"ms": 0.001, "s": 1, "m": 60, "h": 3600}[m.group(2)]
        pos = m.end()
    if pos != len(text):
        raise ConfigError(f"cannot parse duration {text!r}: use forms such as 30s, 10m, 1h30m")
    return total


@functools.cache
def _schema() -> dict[str, Any]:
    # The published schema lives in schemas/ at the repo top; the package links to it, and a built
    # package carries a copy.
    here = resources.files("promote").joinpath("environment.schema.json")
    if here.is_file():
        data: dict[str, Any] = json.loads(here.read_text())
        return data
    from pathlib import Path

    repo_copy = Path(__file__).resolve().parent.parent / "schemas" / "environment.schema.json"
    data = json.loads(repo_copy.read_text())
    return data


def _rel(base_file: str, ref: str) -> str:
    """Resolve `ref` relative to the directory of `base_file`, both relative to the source root."""
    return posixpath.normpath(posixpath.join(posixpath.dirname(base_file), ref))


_PACKAGE_SUFFIXES = (".tgz", ".tar.gz")


def _chart_ref(source: Source, file: _File, doc: dict[str, Any]) -> ChartRef:
    """What an app file's chart, version, repo and plainHttp say, checked: a path must exist in the
    source; `name/chart` that is not a folder here is a repository helm knows by that name."""
    ref, version, repo = doc["chart"], doc.get("version"), doc.get("repo")
    where = file.at(["chart"])
    plain = bool(doc.get("plainHttp"))
    if ref.startswith("oci://"):
        if not version and "@sha256:" not in ref:
            raise ConfigError(f"{where}: the OCI chart {ref!r} needs a version (or a @sha256: digest)")
        return ChartRef(ref=ref, version=version, source=ChartSource.OCI, plain_http=plain)
    if repo:
        return ChartRef(ref=ref, version=version, repo=repo, source=ChartSource.REPOSITORY)
    if "://" in ref:
        if not ref.startswith(("https://", "http://")) or not ref.endswith(_PACKAGE_SUFFIXES):
            raise ConfigError(f"{where}: chart {ref!r}: a URL must be oci://… or an http(s) URL of a .tgz")
        return ChartRef(ref=ref, source=ChartSource.URL)
    local = _rel(file.rel, ref)
    if ref.endswith(_PACKAGE_SUFFIXES):
        if not _found(source, file, ["chart"], local) or source.is_dir(local):
            raise ConfigError(f"{where}: chart {ref!r} not found: no file {local}")
        return ChartRef(ref=ref, local=local, source=ChartSource.PACKAGE)
    if _found(source, file, ["chart"], local) and source.is_dir(local) and source.exists(f"{local}/Chart.yaml"):
        return ChartRef(ref=ref, local=local, version=version)
    if "/" not in ref:
        raise ConfigError(
            f"{where}: chart {ref!r} is neither a local path, an oci:// ref, nor has a repo "
            "(a chart of a repository that helm repo add named is written name/chart)"
        )
    if ref.startswith((".", "/")) or ref.count("/") != 1:
        raise ConfigError(f"{where}: chart {ref!r} not found: no Chart.yaml in {local}/")
    # `stable/redis`: a repository that `helm repo add` named.
    return ChartRef(ref=ref, version=version, source=ChartSource.REPOSITORY)


def _ignore_rules(raw: list[dict[str, Any]] | None) -> tuple[IgnoreRule, ...]:
    return tuple(
        IgnoreRule(json_pointers=tuple(r["jsonPointers"]), group=r.get("group"), kind=r.get("kind"), name=r.get("name"))
        for r in raw or []
    )


@dataclass(frozen=True)
class _File:
    """A definition file's name and text, to place an error on its line and column."""

    rel: str
    text: str

    def at(self, path: list[Any], *, key: bool = False) -> str:
        """`file:line:column` of the value (or key) at `path`, or the file alone."""
        return yamlio.where(self.rel, self.text, path, key=key)


def _schema_problems(file: _File, err: Any) -> list[tuple[tuple[int, int], str]]:
    """One line per problem a schema error stands for, placed where it is in the file, with its position."""
    path = list(err.absolute_path)
    shown = "/".join(str(p) for p in path) or "(top level)"
    if err.validator == "additionalProperties" and isinstance(err.instance, dict):
        known = list(err.schema.get("properties", {}))
        out = []
        for extra in (k for k in err.instance if k not in known):
            pos = yamlio.position(file.text, [*path, extra], key=True)
            where = f"{file.rel}:{pos[0]}:{pos[1]}" if pos else f"{file.rel}: {shown}"
            out.append((pos or (0, 0), f"{where}: unknown key {extra!r}{did_you_mean(str(extra), known)}"))
        return out
    pos = yamlio.position(file.text, path)
    where = f"{file.rel}:{pos[0]}:{pos[1]}" if pos else file.rel
    return [(pos or (0, 0), f"{where}: {shown}: {err.message}")]


def load(source: Source, env_dir: str = ENV_DIR) -> Definitions:
    """Load, validate and resolve every definition file; all problems are reported together."""
    from jsonschema import Draft202012Validator

    if not source.is_dir(env_dir):
        raise ConfigError(f"no {env_dir}/ directory in {source.root}: nothing defines any environment")
    validator = Draft202012Validator(_schema())
    problems: list[str] = []
    app_docs: list[tuple[_File, dict[str, Any]]] = []
    shared: dict[str, dict[str, Any]] = {}
    shared_at: dict[str, tuple[str, int]] = {}  # environment name → (shared file, index of its entry)
    shared_order: list[str] = []
    files: list[str] = []
    for name in source.list_dir(env_dir):
        if not name.endswith((".yaml", ".yml")):
            continue
        rel = f"{env_dir}/{name}"
        files.append(rel)
        try:
            text = source.read_text(rel)
            doc = yamlio.load(text, name=rel)
        except ConfigError as e:
            problems.append(str(e))
            continue
        if not isinstance(doc, dict):
            problems.append(f"{rel}: expected a mapping with app, chart and environments")
            continue
        is_shared = name.startswith("_")
        file = _File(rel, text)
        sub = validator.evolve(schema={"$ref": "#/$defs/sharedFile" if is_shared else "#/$defs/appFile", **_defs()})
        placed = [p for err in sub.iter_errors(doc) for p in _schema_problems(file, err)]
        problems.extend(text for _, text in sorted(placed))  # in the order of the file, as a compiler lists them
        if is_shared and not problems:
            for i, env in enumerate(doc.get("environments", [])):
                at = ["environments", i]
                if env["name"] in shared:
                    problems.append(
                        f"{file.at([*at, 'name'])}: environment {env['name']!r} is defined twice in shared settings"
                    )
                shared[env["name"]] = env
                shared_at[env["name"]] = (rel, i)
                shared_order.append(env["name"])
                # Checked here, not only when an app uses the environment: a policy that does not exist
                # would otherwise leave every app of it unguarded without a word.
                for ref in [env["policy"]] if env.get("policy") else []:
                    if not _found(source, file, [*at, "policy"], _rel(rel, ref)):
                        problems.append(
                            f"{file.at([*at, 'policy'])}: environment {env['name']}: policy {ref!r} not found"
                        )
                for j, ref in enumerate(env.get("valuesFiles", []) or []):
                    if not _found(source, file, [*at, "valuesFiles", j], _rel(rel, ref)):
                        problems.append(
                            f"{file.at([*at, 'valuesFiles', j])}: environment {env['name']}: "
                            f"values file {ref!r} not found"
                        )
        elif not is_shared:
            app_docs.append((file, doc))
    if problems:
        raise ConfigError("invalid environment definitions:\n  " + "\n  ".join(problems))
    if not app_docs:
        raise ConfigError(f"no app definitions in {env_dir}/: add one YAML file per app")

    apps: list[App] = []
    seen_apps: dict[str, str] = {}
    for file, doc in app_docs:
        try:
            apps.append(_resolve_app(source, file, doc, shared, shared_at))
        except ConfigError as e:
            problems.append(str(e))
            continue
        if doc["app"] in seen_apps:
            problems.append(f"{file.at(['app'])}: app {doc['app']!r} is already defined in {seen_apps[doc['app']]}")
        seen_apps[doc["app"]] = file.rel
    problems.extend(_dependency_problems(apps))
    if problems:
        raise ConfigError("invalid environment definitions:\n  " + "\n  ".join(problems))
    chain = _chain(apps, shared_order)
    return Definitions(apps=tuple(apps), chain=chain, files=tuple(files))


def _dependency_problems(apps: list[App]) -> list[str]:
    """dependsOn naming an app nobody defines, or going round in a cycle (which apply could never start)."""
    by_name = {a.name: a for a in apps}
    problems = [
        f"{a.file}: dependsOn: unknown app {d!r}{did_you_mean(d, list(by_name))}"
        for a in apps
        for d in a.depends_on
        if d not in by_name
    ]
    state: dict[str, int] = {}  # 1: being visited, 2: done
    cycles: list[list[str]] = []

    def visit(name: str, path: list[str]) -> None:
        state[name] = 1
        for d in by_name[name].depends_on:
            if d not in by_name:
                continue
            if state.get(d) == 1:
                cycles.append([*path[path.index(d) :], d])
            elif d not in state:
                visit(d, [*path, d])
        state[name] = 2

    for a in apps:
        if a.name not in state:
            visit(a.name, [a.name])
    for cycle in cycles:
        files = ", ".join(dict.fromkeys(by_name[n].file for n in cycle[:-1]))
        problems.append(f"{files}: dependsOn goes round in a cycle: {' → '.join(cycle)}")
    return problems


def _defs() -> dict[str, Any]:
    return {"$defs": _schema()["$defs"]}


def _resolve_app(
    source: Source,
    file: _File,
    doc: dict[str, Any],
    shared: dict[str, dict[str, Any]],
    shared_at: dict[str, tuple[str, int]],
) -> App:
    rel = file.rel
    name = doc["app"]
    chart = _chart_ref(source, file, doc)
    values_files = tuple(
        _checked(source, file, f, ["valuesFiles", i]) for i, f in enumerate(doc.get("valuesFiles", []))
    )
    schema = _checked(source, file, doc["schema"], ["schema"]) if doc.get("schema") else None
    envs: list[Environment] = []
    seen: set[str] = set()
    app_ignore = _ignore_rules(doc.get("ignoreDifferences"))
    for i, raw in enumerate(doc["environments"]):
        at: list[str | int] = ["environments", i]
        if raw["name"] in seen:
            raise ConfigError(f"{file.at([*at, 'name'])}: environment {raw['name']!r} is listed twice for app {name}")
        seen.add(raw["name"])
        base = shared.get(raw["name"], {})
        merged = {**base, **raw}
        values_from = [ValuesAt(rel, (*at, "values"), raw.get("values") or {})]
        if raw["name"] in shared_at:
            shared_file, index = shared_at[raw["name"]]
            values_from.insert(0, ValuesAt(shared_file, ("environments", index, "values"), base.get("values") or {}))
        policy = merged.get("policy")
        # A shared file's paths are relative to the shared file, which lives in the same directory.
        policy_path = _checked(source, file, policy, [*at, "policy"]) if policy else None
        if merged.get("version") and not chart.remote:
            raise ConfigError(
                f"{file.at([*at, 'version'])}: environment {raw['name']}: a version applies to a chart from a "
                f"repository or registry; {chart.ref!r} has the version its Chart.yaml says"
            )
        try:
            soak = parse_duration(merged["soak"]) if merged.get("soak") else 0.0
        except ConfigError as e:
            raise ConfigError(f"{file.at([*at, 'soak'])}: environment {raw['name']}: {e}") from e
        envs.append(
            Environment(
                name=raw["name"],
                namespace=merged.get("namespace", raw["name"]),
                release=merged.get("release", name),
                context=merged.get("context"),
                policy=policy_path,
                soak_seconds=soak,
                values_files=tuple(
                    _checked(source, file, f, [*at, "valuesFiles", j])
                    for j, f in enumerate(merged.get("valuesFiles", []))
                ),
                values=_merge_values(base.get("values"), raw.get("values")),
                values_from=tuple(values_from),
                chart_version=merged.get("version"),
                ignore=app_ignore
                + _ignore_rules(base.get("ignoreDifferences"))
                + _ignore_rules(raw.get("ignoreDifferences")),
            )
        )
    return App(
        name=name,
        file=rel,
        chart=chart,
        values_files=values_files,
        values=doc.get("values") or {},
        schema=schema,
        environments=tuple(envs),
        crds=CrdPolicy(doc.get("crds") or CrdPolicy.CREATE),
        depends_on=tuple(doc.get("dependsOn") or ()),
    )


def _merge_values(base: dict[str, Any] | None, over: dict[str, Any] | None) -> dict[str, Any]:
    from promote.values import merge

    # Nulls kept: `key: null` in an environment's values deletes that key from the layers below (the
    # app-wide values, the chart's), as in helm; dropped here, it silently did nothing.
    return merge(base, over, keep_nulls=True)


def _checked(source: Source, file: _File, ref: str, at: list[Any]) -> str:
    path = _rel(file.rel, ref)
    if not _found(source, file, at, path):
        raise ConfigError(f"{file.at(at)}: {ref!r} not found (looked for {path})")
    if source.is_dir(path):
        raise ConfigError(f"{file.at(at)}: {ref!r} is a folder, not a file")
    return path


def _found(source: Source, file: _File, at: list[Any], path: str) -> bool:
    """Whether a path a definition names exists; one leading out of the repository is an error saying
    where the definition names it (the source's own error knows only the path)."""
    try:
        return source.exists(path)
    except SourceError as e:
        raise ConfigError(f"{file.at(at)}: {e}") from None


def _chain(apps: list[App], shared_order: list[str]) -> tuple[str, ...]:
    """One global order over every app's chain; apps that disagree on the order are an error."""
    order: list[str] = list(shared_order)
    for app in apps:
        names = [e.name for e in app.environments]
        positions = [order.index(n) for n in names if n in order]
        if positions != sorted(positions):
            raise ConfigError(
                f"{app.file}: app {app.name} orders its environments {' → '.join(names)}, "
                f"which contradicts the chain {' → '.join(order)}"
            )
        for i, n in enumerate(names):
            if n not in order:
                # insert right after the previous environment of this app, keeping relative order
                prev = names[i - 1] if i > 0 else None
                order.insert(order.index(prev) + 1 if prev else 0, n)
    return tuple(order)
