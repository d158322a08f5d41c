"""helm run through pyhelm3: pyhelm3 builds each subcommand's argv; we run it with an argv list (never
a shell), a timeout, and the child killed on cancel, and classify its failures (failure.py).

Values travel on stdin and never appear in logs or errors. Import this module only where helm runs:
pyhelm3 costs ~0.1 s to load.
"""

from __future__ import annotations

import asyncio
import contextvars
import json
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pydantic
import yaml
from pyhelm3 import Client
from pyhelm3.command import Command
from pyhelm3.models import Chart

from promote import chart
from promote.chart import ChartInfo
from promote.errors import ChartError, HelmTimeout
from promote.helm import binary
from promote.helm.failure import classify

HELM_TIMEOUT = 300.0
# Whether the helm upgrade or rollback this task runs applies server-side (Helm 4): only then may it
# force conflicts (helm refuses --force-conflicts for a release it applies client-side).
_SERVER_SIDE: contextvars.ContextVar[bool] = contextvars.ContextVar("promote_helm_server_side", default=False)
# Whether the apiserver already validated, in plan's strict dry runs, every object this upgrade sends
# (sync.server_validated): helm's own check downloads and parses the cluster's OpenAPI schema on every
# run, ~0.5 s of CPU, two thirds of an upgrade's.
_SERVER_VALIDATED: contextvars.ContextVar[bool] = contextvars.ContextVar("promote_server_validated", default=False)
# helm template prints each manifest after a `---` line, headed by `# Source: CHART/templates/FILE`.
_MANIFEST = re.compile(rb"^---[ \t]*$", re.M)
_SOURCE = re.compile(rb"^# Source: (.+)$", re.M)


class ArgvCommand(Command):  # type: ignore[misc]
    """pyhelm3's Command, run with exec instead of a shell, with a timeout, killing helm on cancel."""

    def __init__(self, *, timeout: float = HELM_TIMEOUT, kube_version: str | None = None, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.timeout = timeout
        self.kube_version = kube_version
        self.helm_major = 3

    def _argv(self, command: list[Any]) -> list[str]:
        argv = [self._executable, *(str(p) for p in command)]
        if self.helm_major >= 4 and command[:1] in (["upgrade"], ["rollback"]) and _SERVER_SIDE.get():
            # Helm 4 applies server-side: after `kubectl scale`, kubectl owns .spec.replicas and the
            # upgrade would stop on the conflict. Git is the source of truth, so helm takes the fields
            # the chart declares back, as Helm 3's three-way merge does.
            argv.append("--force-conflicts")
        if command[:1] == ["upgrade"] and _SERVER_VALIDATED.get():
            argv.append("--disable-openapi-validation")  # not pyhelm3's flag, which splits it into letters
        if self._kubeconfig:
            argv += ["--kubeconfig", str(self._kubeconfig)]
        if self._kubecontext:
            argv += ["--kube-context", self._kubecontext]
        return argv

    async def run(self, command: list[Any], input: bytes | None = None, env: dict[str, str] | None = None) -> bytes:
        argv = self._argv(command)
        what = " ".join(argv[1:3])
        if env is None and command[:1] == ["upgrade"] and "--wait" not in command:
            # An upgrade that does not wait exits once applied: Go's collector off, as for helm template.
            # Not the small-catalogue locale: helm may start the kubeconfig's credential plugin.
            env = binary.short_lived_env()
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
                raise HelmTimeout(f"helm {what} did not finish within {self.timeout:.0f}s and was stopped") from e
            raise
        if proc.returncode != 0:
            raise classify(what, stderr.decode(errors="replace"))
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
        server_side: bool = False,
        api_versions: tuple[str, ...] = (),
        **_: Any,
    ) -> list[Any]:
        """helm template, as pyhelm3 builds it, plus --kube-version, parsed with libyaml.

        `server_side` renders against the cluster this command talks to (--dry-run=server): `lookup`
        reads live objects there, as it will in the upgrade, instead of returning nothing.
        """
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
        if server_side:
            command.append("--dry-run=server")
        for api_version in api_versions:
            command += ["--api-versions", api_version]
        if self.kube_version:
            # helm otherwise assumes its own built-in kube version, and charts that branch on
            # .Capabilities.KubeVersion would render for a cluster we are not planning against.
            command += ["--kube-version", self.kube_version]
        out = await self.run(command, json.dumps(values or {}).encode(), env=binary.short_lived_env(self._executable))
        # pyhelm3 parses with pure-Python PyYAML, which dominates a plan's CPU time; libyaml is ~10x faster.
        docs = list(yaml.load_all(out, Loader=chart.YamlLoader))
        if any(chart.object_problem(d) for d in docs):
            # Rare, so only then: the manifests one by one, to name the template that rendered the bad one.
            for manifest in _MANIFEST.split(out):
                source = _SOURCE.search(manifest)
                for doc in yaml.load_all(manifest, Loader=chart.YamlLoader):
                    problem = chart.object_problem(doc)
                    if problem and source:
                        raise ChartError(f"{source.group(1).decode(errors='replace')}: a rendered document {problem}")
        return docs

    def client_version(self) -> Any:
        """helm's version, remembered per binary (see binary.version)."""
        import semver

        return semver.Version.parse(binary.version(self._executable))


@dataclass(frozen=True)
class Helm:
    """One helm binary talking to one cluster: pyhelm3's client and our argv command under it."""

    client: Client
    command: ArgvCommand

    @property
    def major(self) -> int:
        """helm's major version: 3 or 4 change flags and how objects are applied."""
        return self.command.helm_major

    def chart(self, info: ChartInfo) -> Chart:
        """A pyhelm3 Chart for a local directory, built from Chart.yaml without another helm call."""
        try:
            return Chart(self.command, ref=info.path, metadata=chart.parsed(info, "Chart.yaml"))
        except pydantic.ValidationError as e:
            # pyhelm3 models Chart.yaml: say what is wrong in which file, as helm would.
            wrong = "; ".join(f"{'.'.join(map(str, err['loc'][1:] or err['loc']))}: {err['msg']}" for err in e.errors())
            raise ChartError(f"{info.path / 'Chart.yaml'}: {wrong}") from None

    async def template(
        self,
        info: ChartInfo,
        *,
        release: str,
        namespace: str,
        values: dict[str, Any],
        is_upgrade: bool,
        against_cluster: bool = False,
        api_versions: tuple[str, ...] = (),
    ) -> list[dict[str, Any]]:
        """Every object the chart renders, hooks included, in helm's order; `against_cluster` for a chart
        that reads live objects (`lookup`), with a Helm made for that cluster (Runtime.helm_for);
        `api_versions`, the cluster's, for a chart that asks .Capabilities.APIVersions."""
        if against_cluster or api_versions:
            docs = await self.command.template(
                release,
                info.path,
                values,
                is_upgrade=is_upgrade,
                namespace=namespace,
                server_side=against_cluster,
                api_versions=api_versions,
            )
        else:
            docs = await self.client.template_resources(
                self.chart(info), release, values, namespace=namespace, is_upgrade=is_upgrade
            )
        return [d for d in docs if d is not None]

    async def upgrade(
        self,
        info: ChartInfo,
        *,
        release: str,
        namespace: str,
        values: dict[str, Any],
        description: str,
        timeout: float,
        wait: bool,
        server_side: bool = False,
        server_validated: bool = False,
    ) -> int:
        """helm upgrade --install (rolling back on failure and waiting when `wait`); the new revision.

        `server_side`: Helm 4 applies this one server-side (release.applies_server_side); it then takes the
        fields the chart sets from any other field manager, as a three-way merge does.
        `server_validated`: the plan's strict dry runs checked every object, so helm skips its own check.
        """
        _SERVER_SIDE.set(server_side)
        _SERVER_VALIDATED.set(server_validated)
        rev = await self.client.install_or_upgrade_release(
            release,
            self.chart(info),
            values,
            # promote restores a failed sync itself (after reading why it failed, which helm's own
            # rollback would erase): neither --atomic nor Helm 4's --rollback-on-failure.
            atomic=False,
            wait=wait,
            # promote creates the namespace itself, under the environment's lock, and only when it is
            # missing: helm's --create-namespace asks to create it every time, which needs the cluster-
            # wide `create namespaces` that a CI account with namespaced rights does not have.
            create_namespace=False,
            # promote makes the chart's crds/ live itself, per the app's crds policy (sync.apply_crds).
            skip_crds=True,
            namespace=namespace,
            timeout=f"{int(timeout)}s",
            description=description,
        )
        return int(rev.revision)

    async def rollback(
        self, release: str, namespace: str, revision: int | None, timeout: float, server_side: bool = False
    ) -> None:
        """helm rollback to a revision (the previous one when None), waiting for it; `server_side` when
        Helm 4 applied that revision server-side (it rolls back the same way)."""
        _SERVER_SIDE.set(server_side)
        await self.command.rollback(release, revision, namespace=namespace, wait=True, timeout=f"{int(timeout)}s")

    async def uninstall(self, release: str, namespace: str, timeout: float) -> None:
        """helm uninstall, waiting for it: the way out of an install that never completed."""
        await self.command.uninstall(release, namespace=namespace, wait=True, timeout=f"{int(timeout)}s")


def connect(
    *,
    kubeconfig: str | None = None,
    context: str | None = None,
    kube_version: str | None = None,
    wait: float | None = None,
) -> Helm:
    """A Helm for one (binary, kubeconfig, context, kube version, wait); the engine's Runtime keeps it
    for the run. helm's version is remembered per binary, so this runs no helm.

    `wait` is the longest helm itself may wait (its --timeout): the process gets a minute more than
    that before it is stopped, so a slow rollout never leaves a release pending because we killed helm.
    """
    timeout = max(HELM_TIMEOUT, (wait or 0) + 60)
    executable = binary.executable()
    command = ArgvCommand(
        executable=executable,
        kubeconfig=Path(kubeconfig) if kubeconfig else None,
        kubecontext=context,
        kube_version=kube_version,
        timeout=timeout,
    )
    client = Client(command=command, executable=executable)
    command.helm_major = int(client.version.major)
    return Helm(client, command)
