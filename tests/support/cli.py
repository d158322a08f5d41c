"""Running promote: in-process through click's runner (the one way every test calls the CLI), or as its own
process where a test needs a real one (locks, kill -9, a KUBECONFIG of its own); and reading the JSON
documents it prints.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import subprocess
import sys
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from click.testing import CliRunner, Result

from devcluster.kube import Kube
from promote.cli import main
from tests.support.repo import PROD_RELEASE, make_repo

# The same interpreter as the tests, so a separate process runs the code under test.
PROMOTE = [sys.executable, "-m", "promote.cli"]
APPLY_TIMEOUT = "120s"
ANSI = re.compile(r"\x1b\[[0-9;]*m")


# --- in-process ----------------------------------------------------------------------------------


def cli(
    repo: Path,
    *args: str,
    env: Mapping[str, str] | None = None,
    no_color: bool = True,
    color: bool = False,
    explicit_kubeconfig: bool = True,
) -> Result:
    """Run `promote -C repo ARGS` in-process; by default with --no-color, so output compares exactly.

    `color=True` makes CliRunner behave like a terminal (click keeps ANSI codes); `no_color=False` drops
    --no-color. The session cluster's kubeconfig is passed with --kubeconfig: the kubernetes client reads
    KUBECONFIG when it is imported, before the dev_cluster fixture sets it, so in-process runs cannot rely
    on it (see tests/cluster/test_plan.py::test_kubeconfig_from_the_environment_at_run_time).
    """
    pre = ["--no-color"] if no_color else []
    pre += ["-C", str(repo)]
    if explicit_kubeconfig and os.environ.get("KUBECONFIG"):
        pre += ["--kubeconfig", os.environ["KUBECONFIG"]]
    return CliRunner().invoke(main, [*pre, *args], env=dict(env or {}), color=color, catch_exceptions=False)


def expect(result: Result, code: int, what: str) -> Result:
    """Assert an exit code, showing both streams on failure."""
    assert result.exit_code == code, (
        f"promote {what}: exit {result.exit_code}, expected {code}\nstdout:\n{result.stdout}\nstderr:\n{result.stderr}"
    )
    return result


@dataclass(frozen=True)
class Run:
    """One finished `promote ... -o json`: exit code, decoded stdout, and the progress on stderr."""

    code: int
    doc: dict[str, Any]
    stderr: str

    def env(self, name: str) -> dict[str, Any]:
        """The result of one environment."""
        (env,) = [e for e in self.doc["environments"] if e["name"] == name]
        found: dict[str, Any] = env
        return found

    def release(self, env: str) -> dict[str, Any]:
        """The only release result of an environment."""
        (rel,) = self.env(env)["releases"]
        found: dict[str, Any] = rel
        return found

    def events(self, env: str) -> list[dict[str, Any]]:
        """Progress events of one environment, in the order they were emitted."""
        return [e for e in self.doc["events"] if e["env"] == env]


def promote_json(repo: Path, *args: str, code: int) -> Run:
    """`promote -C repo ARGS -o json` in-process, asserting its exit code."""
    result = expect(cli(repo, *args, "-o", "json"), code, " ".join(args))
    return Run(result.exit_code, json.loads(result.stdout), result.stderr)


def apply(repo: Path, target: str, *args: str, code: int) -> Run:
    """`promote apply TARGET -o json` in-process, asserting its exit code."""
    return promote_json(repo, "apply", target, *args, code=code)


def apply_prod(repo: Path, *args: str) -> Result:
    """`promote apply prod` (default, then prod), which must succeed."""
    return expect(cli(repo, "apply", "prod", "--timeout", APPLY_TIMEOUT, *args), 0, "apply prod")


def plan_json(repo: Path, target: str, *args: str, code: int = 0) -> dict[str, Any]:
    """`promote plan TARGET -o json`, asserting its exit code; the decoded plan."""
    return promote_json(repo, "plan", target, *args, code=code).doc


def status_json(repo: Path, *args: str, code: int = 0) -> dict[str, Any]:
    """`promote status ARGS -o json`, asserting the exit code; the decoded document."""
    return promote_json(repo, "status", *args, code=code).doc


def strip_ansi(text: str) -> str:
    """Text without ANSI escape sequences."""
    return ANSI.sub("", text)


# --- reading plans and statuses ------------------------------------------------------------------


def release_of(plan: Mapping[str, Any], env: str) -> dict[str, Any]:
    """The only release of an environment in a JSON plan."""
    (environment,) = [e for e in plan["environments"] if e["name"] == env]
    (release,) = environment["releases"]
    rel: dict[str, Any] = release
    return rel


def resources(plan: Mapping[str, Any], env: str) -> list[dict[str, Any]]:
    """Non-hook changes of an environment's release."""
    return [c for c in release_of(plan, env)["changes"] if c["hook"] is None]


def hooks(plan: Mapping[str, Any], env: str) -> list[dict[str, Any]]:
    """Hook entries of an environment's release."""
    return [c for c in release_of(plan, env)["changes"] if c["hook"] is not None]


def release_status(doc: Mapping[str, Any], env: str) -> dict[str, Any]:
    """The only release of `env` in a status document."""
    (rel,) = [r for r in doc["releases"] if r["env"] == env]
    found: dict[str, Any] = rel
    return found


def drift_fields(rel: Mapping[str, Any]) -> dict[tuple[str, str], dict[str, Any]]:
    """Drifted fields of a release status, by (kind, field path)."""
    return {(c["kind"], f["path"]): f for c in rel["drift"] for f in c["fields"]}


def drifted(rel: Mapping[str, Any]) -> list[tuple[str, str, str]]:
    """(action, kind, name) of every drifted resource of a release status."""
    return sorted((c["action"], c["kind"], c["name"]) for c in rel["drift"])


# --- a deployed app ------------------------------------------------------------------------------


@dataclass(frozen=True)
class Deployed:
    """A test repo applied to default and prod, each in its own namespace."""

    repo: Path
    default_ns: str
    prod_ns: str

    @property
    def deployment_path(self) -> str:
        """API path of the prod Deployment."""
        return f"/apis/apps/v1/namespaces/{self.prod_ns}/deployments/{PROD_RELEASE}"


def replicas(kube: Kube, d: Deployed) -> int:
    """spec.replicas of the prod Deployment, read live."""
    obj = kube.get(d.deployment_path)
    return int(obj["spec"]["replicas"])


def deploy(tmp_path: Path, make_namespace: Callable[[], str], **definition: Any) -> Deployed:
    """A fresh repo (definition keywords as `repo.definition`), `promote apply prod` done."""
    default_ns, prod_ns = make_namespace(), make_namespace()
    repo = make_repo(tmp_path, default_ns, prod_ns, **definition)
    apply_prod(repo)
    return Deployed(repo, default_ns, prod_ns)


# --- as its own process --------------------------------------------------------------------------


@dataclass
class Process:
    """`promote` running as a separate process, in its own process group, output going to files."""

    proc: subprocess.Popen[bytes]
    out: Path
    err: Path

    @property
    def pid(self) -> int:
        return self.proc.pid

    def wait(self, timeout: float) -> int:
        """Wait for exit; on timeout kill the group and fail."""
        try:
            return self.proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            self.kill()
            raise AssertionError(f"promote (pid {self.pid}) did not finish in {timeout}s:\n{self.stderr()}") from None

    def kill(self) -> None:
        """SIGKILL the whole group (promote and its helm child), as a cancelled CI job would be."""
        if self.proc.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.proc.pid, 9)
        self.proc.wait(timeout=30)

    def stdout(self) -> str:
        return self.out.read_text()

    def stderr(self) -> str:
        return self.err.read_text()

    def result(self) -> dict[str, Any]:
        """The JSON document on stdout."""
        doc: dict[str, Any] = json.loads(self.stdout())
        return doc


def start_promote(repo: Path, logs: Path, name: str, *args: str, env: Mapping[str, str] | None = None) -> Process:
    """Start `promote --no-color -C repo ARGS` as its own process (group); stdout and stderr go to files in `logs`.

    It inherits the environment (KUBECONFIG included), with `env` on top.
    """
    logs.mkdir(parents=True, exist_ok=True)
    out, err = logs / f"{name}.out", logs / f"{name}.err"
    with out.open("wb") as o, err.open("wb") as e:
        proc = subprocess.Popen(
            [*PROMOTE, "--no-color", "-C", str(repo), *args],
            stdout=o,
            stderr=e,
            stdin=subprocess.DEVNULL,
            env={**os.environ, **(env or {})},
            start_new_session=True,
        )
    return Process(proc, out, err)
