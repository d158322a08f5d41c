"""helm as the tests use it: its own CLI (to install behind promote's back, and to read what it holds),
its release storage read straight from the API, and promotion records in revision descriptions.

All of it is independent of promote, so that the oracle is not the code under test. `release_record`
is the exception: a stored revision as promote models it, for unit tests of what is made of a history.
"""

from __future__ import annotations

import hashlib
import json
import subprocess
from collections.abc import Mapping
from datetime import datetime
from pathlib import Path
from typing import Any

from devcluster.kube import Kube, KubeError
from promote.release import ReleaseRecord
from tests.support.repo import APP, PROD_RELEASE

HELM_TIMEOUT = 180
RECORD_PREFIX = "promote "
SYNCED_AT = "promote.dev/synced-at"


# --- helm's CLI ----------------------------------------------------------------------------------


def helm_run(
    *args: str, kubeconfig: str | None = None, context: str | None = None, timeout: float = 120
) -> subprocess.CompletedProcess[str]:
    """Run the helm on PATH (against KUBECONFIG unless told otherwise), whatever its exit code."""
    argv = ["helm", *args]
    if kubeconfig:
        argv += ["--kubeconfig", kubeconfig]
    if context:
        argv += ["--kube-context", context]
    return subprocess.run(argv, capture_output=True, text=True, timeout=timeout, check=False)


def helm(*args: str, kubeconfig: str | None = None, context: str | None = None) -> str:
    """Run helm, which must succeed; its stdout."""
    out = helm_run(*args, kubeconfig=kubeconfig, context=context)
    assert out.returncode == 0, f"helm {' '.join(args)} failed: {out.stderr}"
    return out.stdout


def helm_major() -> int:
    """The major version of the helm on PATH, which the tests' own helm calls run."""
    out = helm_run("version", "--template", "{{.Version}}", timeout=30)
    return int(out.stdout.strip().removeprefix("v").split(".")[0])


def helm_history(
    namespace: str, release: str, kubeconfig: str | None = None, context: str | None = None
) -> list[dict[str, Any]]:
    """`helm history -o json`: every revision, oldest first ([] when the release does not exist)."""
    args = ("history", release, "-n", namespace, "-o", "json", "--max", "100")
    out = helm_run(*args, kubeconfig=kubeconfig, context=context)
    if out.returncode != 0 and "release: not found" in out.stderr:
        return []
    assert out.returncode == 0, f"helm {' '.join(args)} failed: {out.stderr}"
    revisions: list[dict[str, Any]] = json.loads(out.stdout)
    return sorted(revisions, key=lambda r: int(r["revision"]))


def helm_values(namespace: str, release: str, revision: int | None = None) -> dict[str, Any]:
    """The user-supplied values of a revision (the deployed one by default)."""
    args = ["get", "values", release, "-n", namespace, "-o", "json"]
    if revision is not None:
        args += ["--revision", str(revision)]
    values: dict[str, Any] | None = json.loads(helm(*args))
    return values or {}


def _helm_argv(repo: Path, env: str, tmp: Path) -> list[str]:
    from promote.engine import Options, Workspace

    with Workspace(Options(root=repo)) as ws:
        (target,) = ws.targets((env,))
        values_file = tmp / f"values-{env}.json"
        values_file.write_text(json.dumps(target.values))
        return [
            "helm",
            "upgrade",
            "--install",
            target.env.release,
            str(target.chart.path),
            "--namespace",
            target.env.namespace,
            "--create-namespace",
            "-f",
            str(values_file),
            "--wait",
            "--timeout",
            "120s",
            # Under Helm 4's server-side apply, what promote runs: the chart's fields taken back from
            # whoever edited them by hand (see promote.helm.client.ArgvCommand).
            *(["--force-conflicts"] if helm_major() >= 4 else []),
        ]


def helm_apply(repo: Path, *envs: str) -> None:
    """Apply environments with helm itself, in parallel, with exactly the values the engine would use."""
    tmp = repo.parent
    procs = [
        (env, subprocess.Popen(_helm_argv(repo, env, tmp), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True))
        for env in envs
    ]
    failures = []
    for env, proc in procs:
        try:
            _, err = proc.communicate(timeout=HELM_TIMEOUT)
        except subprocess.TimeoutExpired:
            proc.kill()
            _, err = proc.communicate()
        if proc.returncode != 0:
            failures.append(f"helm upgrade --install for {env} failed: {err}")
    assert not failures, "\n".join(failures)


# --- helm's release storage, read from the API ---------------------------------------------------


def storage(kube: Kube, namespace: str, release: str | None = None, **labels: str) -> list[dict[str, Any]]:
    """helm's storage Secrets `sh.helm.release.v1.<release>.v<N>` in a namespace, by release then revision.

    Every release's when `release` is None; `labels` narrow further (e.g. status="deployed"). [] when the
    namespace does not exist.
    """
    selector = ",".join(
        ["owner=helm", *([f"name={release}"] if release else []), *(f"{k}={v}" for k, v in labels.items())]
    )
    try:
        items = kube.get(f"/api/v1/namespaces/{namespace}/secrets", labelSelector=selector).get("items") or []
    except KubeError as e:
        if e.status == 404:
            return []
        raise
    secrets: list[dict[str, Any]] = items
    return sorted(secrets, key=lambda s: (s["metadata"]["labels"]["name"], int(s["metadata"]["labels"]["version"])))


def storage_names(kube: Kube, namespace: str, release: str | None = None) -> list[str]:
    """Names of helm's storage Secrets (see `storage`)."""
    return [s["metadata"]["name"] for s in storage(kube, namespace, release)]


def stored_revisions(kube: Kube, namespace: str, release: str) -> list[int]:
    """Revisions helm stores for a release, ascending."""
    return [int(s["metadata"]["labels"]["version"]) for s in storage(kube, namespace, release)]


def synced_stamps(kube: Kube, namespace: str, release: str) -> dict[int, str | None]:
    """revision → the promote.dev/synced-at stamp on its storage Secret (None when never seen healthy)."""
    return {
        int(s["metadata"]["labels"]["version"]): (s["metadata"].get("annotations") or {}).get(SYNCED_AT)
        for s in storage(kube, namespace, release)
    }


def synced_at(kube: Kube, namespace: str, release: str = PROD_RELEASE) -> datetime:
    """When apply stamped the deployed revision as synced (promote.dev/synced-at on helm's storage Secret)."""
    (secret,) = storage(kube, namespace, release, status="deployed")
    return datetime.fromisoformat(secret["metadata"]["annotations"][SYNCED_AT])


# --- promotion records ---------------------------------------------------------------------------


def record_of(revision: Mapping[str, Any]) -> dict[str, Any]:
    """The promotion record in a helm revision's description (fails when there is none)."""
    description = str(revision["description"])
    assert description.startswith(RECORD_PREFIX + "{"), f"no promotion record: {description!r}"
    doc: dict[str, Any] = json.loads(description[len(RECORD_PREFIX) :])
    return doc


def values_digest(values: Mapping[str, Any]) -> str:
    """The digest a promotion record gives to a values document (sha256 of canonical JSON)."""
    return hashlib.sha256(json.dumps(values, sort_keys=True, separators=(",", ":")).encode()).hexdigest()


def release_record(
    revision: int, status: str, description: str = "Upgrade complete", annotations: Mapping[str, str] | None = None
) -> ReleaseRecord:
    """A stored helm revision of python-app, for unit tests of what is made of a release's history."""
    return ReleaseRecord(
        name=APP,
        namespace="default",
        revision=revision,
        status=status,
        description=description,
        chart_name=APP,
        chart_version="0.1.0",
        manifest=(),
        hooks=(),
        deployed_at="",
        annotations=dict(annotations or {}),
    )
