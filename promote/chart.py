"""Charts on disk: identity, defaults and schema, and what a render of them can depend on.

Reading a chart needs neither helm nor pyhelm3 (whose import alone costs ~0.1 s), so a plan proven from
the render cache never loads them.
"""

from __future__ import annotations

import copy
import hashlib
import io
import json
import re
import tarfile
import zlib
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from promote import yamlio
from promote.errors import ChartError, ConfigError, HelmError


class YamlLoader(getattr(yaml, "CSafeLoader", yaml.SafeLoader)):  # type: ignore[misc]
    """libyaml when available; as in pyhelm3 (and helm), a plain `=` is a string, not YAML's value tag."""


YamlLoader.add_constructor("tag:yaml.org,2002:value", lambda loader, node: loader.construct_scalar(node))


@dataclass(frozen=True)
class ChartInfo:
    """A chart on disk with the identity that makes up the release artifact."""

    path: Path
    name: str
    version: str
    digest: str
    uses_lookup: bool
    # False when a template may read the cluster's version or APIs, or whether this is an install or an
    # upgrade (or runs `tpl`, or Chart.yaml constrains kubeVersion): then a render waits for the cluster.
    cluster_independent: bool = False
    uses_tpl: bool = False  # then values may carry template code, `lookup` included
    uses_api_versions: bool = False  # a template asks .Capabilities.APIVersions: render with the cluster's
    # A fetched chart: the digest of what was pulled (sha256:… of the package, or the OCI manifest's), and
    # the reference it came from.
    source_digest: str | None = None
    origin: str | None = None

    def reads_cluster(self, values: dict[str, Any]) -> bool:
        """True when rendering with these values may read live objects (`lookup`): never cache it."""
        return self.uses_lookup or (self.uses_tpl and "lookup" in json.dumps(values))


# Template text that makes a render depend on the cluster or the release's state, not on values alone.
# `tpl` renders text from values or files, which may say anything, so it counts too.
_CLUSTER_WORDS = re.compile(rb"Capabilities|IsUpgrade|IsInstall|lookup|\btpl\b")


@dataclass
class _Scan:
    uses_lookup: bool = False
    uses_tpl: bool = False
    uses_api_versions: bool = False
    independent: bool = True
    lookup_elsewhere: bool = False  # in a file `tpl` may render: values.yaml, files read with .Files.Get

    def file(self, rel: str, data: bytes) -> None:
        """Look at one file of the chart, or of a dependency packaged as .tgz (scanned inside)."""
        parts = rel.split("/")
        if rel.endswith((".tgz", ".tar.gz")):
            try:
                with tarfile.open(fileobj=io.BytesIO(data), mode="r:gz") as tar:
                    for member in tar:
                        f = tar.extractfile(member) if member.isfile() else None
                        if f is not None:
                            self.file(f"{rel}/{member.name}", f.read())
            except (tarfile.TarError, OSError, EOFError, zlib.error):
                self.independent = False  # unreadable: assume the worst
        elif "templates" in parts[:-1]:  # the chart's and its subcharts' templates
            words = set(_CLUSTER_WORDS.findall(data))
            self.uses_lookup = self.uses_lookup or b"lookup" in words
            self.uses_tpl = self.uses_tpl or b"tpl" in words
            self.uses_api_versions = self.uses_api_versions or b"APIVersions" in data
            self.independent = self.independent and not words
        else:
            self.lookup_elsewhere = self.lookup_elsewhere or b"lookup" in data
            if parts[-1] == "Chart.yaml" and b"kubeVersion" in data:
                self.independent = False


def chart_info(path: Path) -> ChartInfo:
    """Read a chart directory's metadata and digest its content (every file, sorted by path)."""
    chart_yaml = path / "Chart.yaml"
    try:
        meta = yamlio.load(yamlio.read_text(chart_yaml), name=str(chart_yaml))
    except OSError as e:
        raise HelmError(f"cannot read chart metadata {chart_yaml}: {e}") from e
    if not isinstance(meta, dict):
        raise HelmError(f"cannot read chart metadata {chart_yaml}: not a mapping")
    h = hashlib.sha256()
    scan = _Scan()
    for f in sorted(p for p in path.rglob("*") if p.is_file()):
        rel = f.relative_to(path).as_posix()
        data = f.read_bytes()
        h.update(rel.encode() + b"\0" + hashlib.sha256(data).digest())
        scan.file(rel, data)
    return ChartInfo(
        path=path,
        name=str(meta.get("name")),
        version=str(meta.get("version")),
        digest=h.hexdigest(),
        # `tpl` can run a `lookup` written anywhere in the chart.
        uses_lookup=scan.uses_lookup or (scan.uses_tpl and scan.lookup_elsewhere),
        cluster_independent=scan.independent,
        uses_tpl=scan.uses_tpl,
        uses_api_versions=scan.uses_api_versions or scan.uses_tpl,
    )


# Parsed once per chart content and run: 100 releases of one chart would otherwise parse its files 100 times.
_PARSED: dict[tuple[Path, str, str], Any] = {}


def parsed(info: ChartInfo, name: str) -> Any:
    """A YAML file of the chart, parsed once per run (a copy: callers may change it)."""
    key = (info.path, info.digest, name)
    if key not in _PARSED:
        # Strictly, as every file a user hands promote: no tags JSON cannot carry, no alias bombs.
        _PARSED[key] = yamlio.load(yamlio.read_text(info.path / name), name=str(info.path / name))
    return copy.deepcopy(_PARSED[key])


def chart_default_values(info: ChartInfo) -> dict[str, Any]:
    """The chart's own values.yaml, the lowest layer of values."""
    f = info.path / "values.yaml"
    if not f.exists():
        return {}
    data = parsed(info, "values.yaml")
    if data is None:
        return {}
    if not isinstance(data, dict):
        # helm refuses it too; said here, the error names this file instead of a schema violation elsewhere.
        raise ConfigError(f"{f}: the chart's values must be a mapping, not a {type(data).__name__}")
    return data


def chart_schema(info: ChartInfo) -> dict[str, Any] | None:
    """The chart's values.schema.json, if it ships one."""
    f = info.path / "values.schema.json"
    if not f.exists():
        return None
    try:
        data = json.loads(yamlio.read_text(f))
    except ValueError as e:
        raise HelmError(f"chart {info.name}: values.schema.json is not valid JSON: {e}") from e
    if not isinstance(data, dict):
        # `null` read as "no schema" here while helm refused every value against it.
        raise ConfigError(f"{f}: a JSON schema must be an object, not {json.dumps(data)[:20]}")
    return data


def chart_crds(info: ChartInfo) -> list[dict[str, Any]]:
    """The CustomResourceDefinitions in the chart's crds/ folder: helm creates them on the first install
    (and never changes them after), apart from the templates."""
    folder = info.path / "crds"
    if not folder.is_dir():
        return []
    out: list[dict[str, Any]] = []
    for f in sorted(folder.iterdir()):
        if f.suffix not in (".yaml", ".yml", ".json") or not f.is_file():
            continue
        try:
            docs = yamlio.load_all(yamlio.read_text(f), name=f"{info.name}/crds/{f.name}")
        except OSError as e:
            raise ChartError(f"cannot read {info.name}/crds/{f.name}: {e.strerror}") from e
        for d in docs:
            if isinstance(d, dict) and d.get("kind") == "CustomResourceDefinition":
                if not isinstance(d.get("metadata"), dict) or not d["metadata"].get("name"):
                    raise ChartError(f"{info.name}/crds/{f.name}: a CustomResourceDefinition has no metadata.name")
                out.append(d)
    return out


def object_problem(doc: Any) -> str | None:
    """Why helm would refuse to install a rendered document (not an object; no apiVersion, kind or
    metadata.name), or None. An empty document is no object, and no problem: helm skips it."""
    if not isinstance(doc, dict):
        return f"is a {type(doc).__name__}, not an object" if doc is not None else None
    if not doc:
        return None
    md = doc.get("metadata")
    name = md.get("name") if isinstance(md, dict) else None
    for field, value in (("apiVersion", doc.get("apiVersion")), ("kind", doc.get("kind")), ("metadata.name", name)):
        if not isinstance(value, str) or not value:
            return f"has no {field}"
    return None


def hook_annotation(obj: dict[str, Any]) -> str | None:
    """helm.sh/hook of an object, if it is a hook."""
    ann = (obj.get("metadata") or {}).get("annotations") or {}
    value = ann.get("helm.sh/hook")
    return str(value) if value else None
