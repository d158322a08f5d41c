"""Helpers for the apply, gate, lock, rollback and multi-cluster tests.

Built on ``helpers`` (throwaway Git repos of definitions, the in-process CLI). Here: `promote apply`
in-process with its JSON result, `promote` as a separate process (for locks and kill -9), edits of
environment definitions, and reads of what helm and the cluster really hold, through helm's own CLI
and the API rather than through promote, so that the oracle is independent of the code under test.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import subprocess
import sys
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml
from helpers import DEFINITION, cli, write_definition

from devcluster.kube import Kube, KubeError

# The same interpreter as the tests, so the subprocess runs the code under test.
PROMOTE = [sys.executable, "-m", "promote.cli"]
RECORD_PREFIX = "promote "


# --- running promote -----------------------------------------------------------------------------


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
    result = cli(repo, *args, "-o", "json")
    assert result.exit_code == code, (
        f"promote {' '.join(args)}: exit {result.exit_code}, expected {code}\n"
        f"stdout:\n{result.stdout}\nstderr:\n{result.stderr}"
    )
    return Run(result.exit_code, json.loads(result.stdout), result.stderr)


def apply(repo: Path, target: str, *args: str, code: int) -> Run:
    """`promote apply TARGET -o json` in-process, asserting its exit code."""
    return promote_json(repo, "apply", target, *args, code=code)


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
    """Start `promote -C repo ARGS` as its own process (group); stdout and stderr go to files in `logs`."""
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


# --- editing definitions -------------------------------------------------------------------------


def load_definition(repo: Path) -> dict[str, Any]:
    """environments/python-app.yaml, decoded."""
    doc: dict[str, Any] = yaml.safe_load((repo / DEFINITION).read_text())
    return doc


def edit_env(repo: Path, env: str, **fields: Any) -> None:
    """Set top-level fields (soak, context, values, ...) of one environment of the definition."""
    doc = load_definition(repo)
    (entry,) = [e for e in doc["environments"] if e["name"] == env]
    entry.update(fields)
    write_definition(repo, doc)


def env_values(repo: Path, env: str) -> dict[str, Any]:
    """The `values` of one environment in the definition."""
    (entry,) = [e for e in load_definition(repo)["environments"] if e["name"] == env]
    values: dict[str, Any] = entry.get("values") or {}
    return values


def set_app_values(repo: Path, values: Mapping[str, Any]) -> None:
    """Replace the app-wide `values` (the release artifact)."""
    doc = load_definition(repo)
    doc["values"] = dict(values)
    write_definition(repo, doc)


def fail_pre_sync() -> dict[str, Any]:
    """Values that make the pre-sync hook pod fail on the dev cluster."""
    return {"hooks": {"preSync": {"annotations": {"sim.promote.dev/fail": "true"}}}}


def delay_pre_sync(delay: str) -> dict[str, Any]:
    """Values that delay the pre-sync hook pod's start (and completion) on the dev cluster."""
    return {"hooks": {"preSync": {"annotations": {"sim.promote.dev/delay": delay}}}}


# --- what helm and the cluster hold --------------------------------------------------------------


def helm(*args: str, kubeconfig: str | None = None, context: str | None = None) -> str:
    """Run helm (against KUBECONFIG unless told otherwise); its stdout."""
    argv = ["helm", *args]
    if kubeconfig:
        argv += ["--kubeconfig", kubeconfig]
    if context:
        argv += ["--kube-context", context]
    out = subprocess.run(argv, capture_output=True, text=True, timeout=60, check=False)
    assert out.returncode == 0, f"{' '.join(argv)} failed: {out.stderr}"
    return out.stdout


def helm_history(namespace: str, release: str, **kw: str | None) -> list[dict[str, Any]]:
    """`helm history -o json`: every revision, oldest first ([] when the release does not exist)."""
    argv = ["helm", "history", release, "-n", namespace, "-o", "json", "--max", "100"]
    if kw.get("kubeconfig"):
        argv += ["--kubeconfig", str(kw["kubeconfig"])]
    if kw.get("context"):
        argv += ["--kube-context", str(kw["context"])]
    out = subprocess.run(argv, capture_output=True, text=True, timeout=60, check=False)
    if out.returncode != 0 and "release: not found" in out.stderr:
        return []
    assert out.returncode == 0, f"{' '.join(argv)} failed: {out.stderr}"
    revisions: list[dict[str, Any]] = json.loads(out.stdout)
    return sorted(revisions, key=lambda r: int(r["revision"]))


def helm_values(namespace: str, release: str, revision: int | None = None) -> dict[str, Any]:
    """The user-supplied values of a revision (the deployed one by default)."""
    args = ["get", "values", release, "-n", namespace, "-o", "json"]
    if revision is not None:
        args += ["--revision", str(revision)]
    values: dict[str, Any] | None = json.loads(helm(*args))
    return values or {}


def record_of(revision: Mapping[str, Any]) -> dict[str, Any]:
    """The promotion record in a helm revision's description (fails when there is none)."""
    description = str(revision["description"])
    assert description.startswith(RECORD_PREFIX + "{"), f"no promotion record: {description!r}"
    doc: dict[str, Any] = json.loads(description[len(RECORD_PREFIX) :])
    return doc


def values_digest(values: Mapping[str, Any]) -> str:
    """The digest a promotion record gives to a values document (sha256 of canonical JSON)."""
    return hashlib.sha256(json.dumps(values, sort_keys=True, separators=(",", ":")).encode()).hexdigest()


def release_secret_names(kube: Kube, namespace: str, release: str) -> list[str]:
    """helm's storage Secrets `sh.helm.release.v1.<release>.v<N>` of one release, sorted by N."""
    try:
        items = kube.get(f"/api/v1/namespaces/{namespace}/secrets", labelSelector=f"owner=helm,name={release}")
    except KubeError as e:
        if e.status == 404:
            return []
        raise
    names = [i["metadata"]["name"] for i in items.get("items") or []]
    return sorted(names, key=lambda n: int(n.rsplit(".v", 1)[1]))


def deployment(kube: Kube, namespace: str, name: str) -> dict[str, Any] | None:
    """A live Deployment, or None."""
    try:
        return kube.get(f"/apis/apps/v1/namespaces/{namespace}/deployments/{name}")
    except KubeError as e:
        if e.status == 404:
            return None
        raise


def lease(kube: Kube, namespace: str, name: str) -> dict[str, Any] | None:
    """A live Lease, or None."""
    try:
        return kube.get(f"/apis/coordination.k8s.io/v1/namespaces/{namespace}/leases/{name}")
    except KubeError as e:
        if e.status == 404:
            return None
        raise


def pods(kube: Kube, namespace: str) -> list[dict[str, Any]]:
    """Every pod in a namespace."""
    items: list[dict[str, Any]] = kube.get(f"/api/v1/namespaces/{namespace}/pods").get("items") or []
    return items


def available(dep: Mapping[str, Any] | None) -> tuple[int, int]:
    """(available replicas, wanted replicas) of a Deployment, the way `kubectl get` shows READY."""
    assert dep is not None, "the Deployment does not exist"
    return int(dep.get("status", {}).get("availableReplicas", 0)), int(dep["spec"]["replicas"])


def image_of(dep: Mapping[str, Any] | None) -> str:
    """The image of the Deployment's only container."""
    assert dep is not None, "the Deployment does not exist"
    (container,) = dep["spec"]["template"]["spec"]["containers"]
    return str(container["image"])


def wait_until(check: Callable[[], Any], timeout: float, what: str, interval: float = 0.2) -> Any:
    """Poll until `check()` is truthy; its value. Fails saying what was awaited."""
    deadline = time.monotonic() + timeout
    while True:
        value = check()
        if value:
            return value
        if time.monotonic() >= deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for {what}")
        time.sleep(interval)
