"""Helpers for the drift, watch and diff tests: a release applied to prod, the CLI with colour control,
status and drift read from `-o json`, edits of live objects as a person or a controller would make them,
and what helm and the pods really hold, read through the API rather than through promote.

Built on ``helpers`` (throwaway Git repos of definitions pointing at per-test namespaces).
"""

from __future__ import annotations

import base64
import json
import os
import re
import subprocess
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from click.testing import CliRunner, Result
from helpers import PROD_RELEASE, make_repo

from devcluster.kube import Kube, KubeError
from promote.cli import main

# Values the chart renders into the Secret python-app-secret (charts/python-app/values.yaml).
GIT_PASSWORD = "change-me-please"
SECRET = "python-app-secret"
CONFIGMAP = "my-app-config"
ANSI = re.compile(r"\x1b\[[0-9;]*m")
APPLY_TIMEOUT = "120s"


def b64(text: str) -> str:
    """Base64 of a UTF-8 string, as Secret data holds it."""
    return base64.b64encode(text.encode()).decode()


# --- the CLI ---------------------------------------------------------------------------------------


def run(
    repo: Path,
    *args: str,
    no_color: bool = True,
    color: bool = False,
    env: Mapping[str, str] | None = None,
) -> Result:
    """`promote -C repo ARGS` in-process with the session kubeconfig; colour as a terminal would get it.

    `color=True` makes CliRunner behave like a terminal (click keeps ANSI codes); `no_color` adds --no-color.
    """
    pre = ["--no-color"] if no_color else []
    pre += ["-C", str(repo), "--kubeconfig", os.environ["KUBECONFIG"]]
    runner = CliRunner()
    return runner.invoke(main, [*pre, *args], env=dict(env or {}), color=color, catch_exceptions=False)


def expect(result: Result, code: int, what: str) -> Result:
    """Assert an exit code, showing both streams on failure."""
    assert result.exit_code == code, (
        f"promote {what}: exit {result.exit_code}, expected {code}\nstdout:\n{result.stdout}\nstderr:\n{result.stderr}"
    )
    return result


def apply_prod(repo: Path, *args: str) -> Result:
    """`promote apply prod` (default, then prod), which must succeed."""
    return expect(run(repo, "apply", "prod", "--timeout", APPLY_TIMEOUT, *args), 0, "apply prod")


def status_json(repo: Path, *args: str, code: int = 0) -> dict[str, Any]:
    """`promote status ARGS -o json`, asserting the exit code; the decoded document."""
    result = expect(run(repo, "status", *args, "-o", "json"), code, f"status {' '.join(args)}")
    doc: dict[str, Any] = json.loads(result.stdout)
    return doc


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


# --- a deployed app --------------------------------------------------------------------------------


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


def deploy(tmp_path: Path, make_namespace: Callable[[], str], **definition: Any) -> Deployed:
    """A fresh repo (definition keywords as `helpers.definition`), `promote apply prod` done."""
    default_ns, prod_ns = make_namespace(), make_namespace()
    repo = make_repo(tmp_path, default_ns, prod_ns, **definition)
    apply_prod(repo)
    return Deployed(repo, default_ns, prod_ns)


# --- live edits ------------------------------------------------------------------------------------


def kubectl(*args: str) -> str:
    """Run kubectl against the session cluster (KUBECONFIG); its stdout."""
    out = subprocess.run(["kubectl", *args], capture_output=True, text=True, timeout=60, check=False)
    assert out.returncode == 0, f"kubectl {' '.join(args)} failed: {out.stderr}"
    return out.stdout


def patch_as(kube: Kube, path: str, patch: Mapping[str, Any], manager: str) -> dict[str, Any]:
    """A merge patch under an explicit field manager, as a controller (not a person) writes."""
    obj: dict[str, Any] = kube.request(
        "PATCH",
        path,
        body=dict(patch),
        content_type="application/merge-patch+json",
        query={"fieldManager": manager},
    )
    return obj


def managers(obj: Mapping[str, Any]) -> set[str]:
    """Every field manager recorded on a live object."""
    return {str(e.get("manager")) for e in (obj.get("metadata") or {}).get("managedFields") or []}


# --- what the cluster holds ------------------------------------------------------------------------


def helm_revisions(kube: Kube, namespace: str, release: str) -> list[int]:
    """Revisions helm stores for a release (its storage Secrets), ascending."""
    items = kube.get(f"/api/v1/namespaces/{namespace}/secrets", labelSelector=f"owner=helm,name={release}")
    return sorted(int(i["metadata"]["labels"]["version"]) for i in items.get("items") or [])


def get(kube: Kube, path: str) -> dict[str, Any] | None:
    """A live object, or None when it does not exist."""
    try:
        obj: dict[str, Any] = kube.get(path)
    except KubeError as e:
        if e.status == 404:
            return None
        raise
    return obj


def pods(kube: Kube, namespace: str, release: str = PROD_RELEASE) -> list[dict[str, Any]]:
    """The live pods of a release's Deployment (by its selector labels), not being deleted."""
    items = (
        kube.get(f"/api/v1/namespaces/{namespace}/pods", labelSelector=f"app.kubernetes.io/instance={release}").get(
            "items"
        )
        or []
    )
    return [p for p in items if not p["metadata"].get("deletionTimestamp") and not _is_hook(p)]


def _is_hook(pod: Mapping[str, Any]) -> bool:
    return "helm.sh/hook" in ((pod.get("metadata") or {}).get("annotations") or {})


def restarts(pod: Mapping[str, Any]) -> int:
    """Total container restarts of a pod."""
    return sum(int(c.get("restartCount", 0)) for c in (pod.get("status") or {}).get("containerStatuses") or [])


def wait_for(what: str, check: Callable[[], Any], timeout: float = 60.0, interval: float = 0.5) -> Any:
    """Poll until `check` returns something truthy; that value. Fails after `timeout` seconds."""
    deadline = time.monotonic() + timeout
    last: Any = None
    while time.monotonic() < deadline:
        last = check()
        if last:
            return last
        time.sleep(interval)
    raise AssertionError(f"timed out after {timeout}s waiting for {what} (last: {last!r})")


def strip_ansi(text: str) -> str:
    """Text without ANSI escape sequences."""
    return ANSI.sub("", text)


def synced_at(kube: Kube, namespace: str, release: str = PROD_RELEASE) -> datetime:
    """When apply stamped the deployed revision as synced (promote.dev/synced-at on helm's storage Secret)."""
    items = (
        kube.get(
            f"/api/v1/namespaces/{namespace}/secrets", labelSelector=f"owner=helm,name={release},status=deployed"
        ).get("items")
        or []
    )
    (secret,) = items
    return datetime.fromisoformat(secret["metadata"]["annotations"]["promote.dev/synced-at"])


def wait_past_sync_second(kube: Kube, namespace: str, release: str = PROD_RELEASE) -> None:
    """Sleep until the wall clock is in a later whole second than the sync stamp.

    Pods' creationTimestamp has one-second resolution while the stamp has microseconds, so a pod
    recreated in the very second of the stamp reads as older than the sync (see the report on
    runtime_notes); waiting makes the scenario unambiguous.
    """
    boundary = synced_at(kube, namespace, release).replace(microsecond=0) + timedelta(seconds=1)
    delay = (boundary - datetime.now(UTC)).total_seconds()
    if delay > 0:
        time.sleep(delay + 0.05)


def delete_a_pod(kube: Kube, namespace: str) -> tuple[str, str]:
    """Delete one pod of the prod Deployment and wait for its replacement: (deleted, replacement) names."""
    before = {p["metadata"]["name"] for p in pods(kube, namespace)}
    victim = sorted(before)[0]
    kube.delete(f"/api/v1/namespaces/{namespace}/pods/{victim}")

    def replacement() -> str | None:
        now = {p["metadata"]["name"] for p in pods(kube, namespace)}
        new = now - before
        return next(iter(new)) if new and victim not in now else None

    found: str = wait_for(f"a pod replacing {victim}", replacement)
    return victim, found
