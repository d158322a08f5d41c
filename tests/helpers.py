"""Shared test helpers: throwaway Git repositories of definitions, the CLI, helm and live snapshots.

A test repo is a real Git checkout in ``tmp_path`` holding a copy of ``charts/python-app`` and
``schemas/``, and ``environments/python-app.yaml`` with the two environments ``default`` and ``prod``
mapped to namespaces of the test's choosing, so tests never share cluster state.
"""

from __future__ import annotations

import copy
import json
import os
import re
import shutil
import subprocess
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import yaml
from click.testing import CliRunner, Result

from devcluster.kube import Kube, KubeError
from promote.cli import main
from promote.release import ReleaseRecord

REPO_ROOT = Path(__file__).resolve().parents[1]
CHART = "charts/python-app"
DEFINITION = "environments/python-app.yaml"
HELM_TIMEOUT = 180
APP = "python-app"
PROD_RELEASE = "python-app-prod"


# --- repositories --------------------------------------------------------------------------------


def definition(
    default_ns: str,
    prod_ns: str,
    *,
    default_values: Mapping[str, Any] | None = None,
    prod_values: Mapping[str, Any] | None = None,
    extra_default: Mapping[str, Any] | None = None,
    extra_prod: Mapping[str, Any] | None = None,
    top: Mapping[str, Any] | None = None,
) -> dict[str, Any]:
    """The python-app definition, as the repo's own, with both environments in the given namespaces."""
    return {
        "app": APP,
        "chart": "../charts/python-app",
        "valuesFiles": [],
        "values": {},
        "schema": "../schemas/python-app.values.schema.json",
        **(top or {}),
        "environments": [
            {
                "name": "default",
                "namespace": default_ns,
                "values": dict(default_values) if default_values is not None else {"replicaCount": 1},
                **(extra_default or {}),
            },
            {
                "name": "prod",
                "namespace": prod_ns,
                "release": PROD_RELEASE,
                "context": None,
                "policy": "../schemas/prod.policy.schema.json",
                "values": dict(prod_values) if prod_values is not None else {"replicaCount": 3},
                **(extra_prod or {}),
            },
        ],
    }


def write_definition(repo: Path, doc: Mapping[str, Any]) -> None:
    """Overwrite environments/python-app.yaml."""
    (repo / DEFINITION).write_text(yaml.safe_dump(dict(doc), sort_keys=False))


def git(repo: Path, *args: str) -> str:
    """Run git in the repo; its stdout."""
    out = subprocess.run(
        ["git", "-c", "user.name=promote tests", "-c", "user.email=tests@promote.invalid", *args],
        cwd=repo,
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    return out.stdout


def commit(repo: Path, message: str) -> str:
    """Stage everything in the test repo, commit, and return the new sha."""
    git(repo, "add", "-A")
    git(repo, "commit", "-q", "--no-verify", "-m", message)
    return git(repo, "rev-parse", "HEAD").strip()


def make_repo(tmp_path: Path, default_ns: str, prod_ns: str, **kw: Any) -> Path:
    """A committed Git repo with the chart, the schemas and a two-environment definition."""
    repo = tmp_path / "repo"
    (repo / "environments").mkdir(parents=True)
    shutil.copytree(REPO_ROOT / CHART, repo / CHART)
    shutil.copytree(REPO_ROOT / "schemas", repo / "schemas")
    (repo / "README.md").write_text("test repo\n")
    write_definition(repo, definition(default_ns, prod_ns, **kw))
    git(repo, "init", "-q", "-b", "main")
    commit(repo, "initial definitions")
    return repo


# --- the CLI -------------------------------------------------------------------------------------


def cli(repo: Path, *args: str, env: Mapping[str, str] | None = None, explicit_kubeconfig: bool = True) -> Result:
    """Run `promote -C repo ARGS` in-process, colour off so output can be compared exactly.

    The session cluster's kubeconfig is passed with --kubeconfig: the kubernetes client reads KUBECONFIG
    when it is imported, before the dev_cluster fixture sets it, so in-process runs cannot rely on it
    (see test_kubeconfig_from_the_environment_at_run_time).
    """
    pre = ["--no-color", "-C", str(repo)]
    if explicit_kubeconfig and os.environ.get("KUBECONFIG"):
        pre += ["--kubeconfig", os.environ["KUBECONFIG"]]
    return CliRunner().invoke(main, [*pre, *args], env=dict(env or {}), catch_exceptions=False)


def plan_json(repo: Path, target: str, *args: str, code: int = 0) -> dict[str, Any]:
    """`promote plan TARGET -o json`, asserting its exit code; the decoded plan."""
    result = cli(repo, "plan", target, "-o", "json", *args)
    assert result.exit_code == code, result.output
    doc: dict[str, Any] = json.loads(result.stdout)
    return doc


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


# --- helm and kubectl ----------------------------------------------------------------------------


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


def helm_major() -> int:
    """The major version of the helm on PATH, which the tests' own helm calls run."""
    out = subprocess.run(["helm", "version", "--template", "{{.Version}}"], capture_output=True, text=True, timeout=30)
    return int(out.stdout.strip().removeprefix("v").split(".")[0])


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


def kubectl(*args: str) -> str:
    """Run kubectl against the session cluster (KUBECONFIG); its stdout."""
    out = subprocess.run(["kubectl", *args], capture_output=True, text=True, timeout=60, check=False)
    assert out.returncode == 0, out.stderr
    return out.stdout


# --- live state ----------------------------------------------------------------------------------

# The kinds python-app renders (hooks aside), with their REST collections.
KINDS = {
    "ServiceAccount": "/api/v1/namespaces/{ns}/serviceaccounts",
    "Secret": "/api/v1/namespaces/{ns}/secrets",
    "ConfigMap": "/api/v1/namespaces/{ns}/configmaps",
    "Service": "/api/v1/namespaces/{ns}/services",
    "Deployment": "/apis/apps/v1/namespaces/{ns}/deployments",
}
_SERVER_METADATA = ("resourceVersion", "uid", "selfLink", "creationTimestamp", "generation", "managedFields")
_CONTROLLER_ANNOTATIONS = ("deployment.kubernetes.io/revision",)


def strip_server_fields(obj: Mapping[str, Any]) -> dict[str, Any]:
    """A copy without status and the metadata the apiserver and controllers own."""
    out = copy.deepcopy(dict(obj))
    out.pop("status", None)
    md = out.get("metadata", {})
    for k in _SERVER_METADATA:
        md.pop(k, None)
    ann = md.get("annotations") or {}
    for k in _CONTROLLER_ANNOTATIONS:
        ann.pop(k, None)
    return out


def snapshot(kube: Kube, namespace: str, release: str) -> dict[tuple[str, str], dict[str, Any]]:
    """Every live object helm manages for `release` in the namespace, server fields stripped."""
    out: dict[tuple[str, str], dict[str, Any]] = {}
    for kind, path in KINDS.items():
        try:
            items = kube.get(path.format(ns=namespace)).get("items") or []
        except KubeError as e:
            if e.status == 404:
                continue
            raise
        for item in items:
            md = item.get("metadata", {})
            if (md.get("annotations") or {}).get("meta.helm.sh/release-name") == release:
                out[(kind, md["name"])] = strip_server_fields(item)
    return out


def namespace_exists(kube: Kube, name: str) -> bool:
    """True when the namespace exists (in any phase)."""
    try:
        kube.get(f"/api/v1/namespaces/{name}")
    except KubeError as e:
        if e.status == 404:
            return False
        raise
    return True


def helm_release_secrets(kube: Kube, namespace: str) -> list[str]:
    """Names of helm's release storage Secrets in a namespace."""
    try:
        items = kube.get(f"/api/v1/namespaces/{namespace}/secrets", labelSelector="owner=helm").get("items") or []
    except KubeError as e:
        if e.status == 404:
            return []
        raise
    return [i["metadata"]["name"] for i in items]


# --- field paths as plans print them -------------------------------------------------------------

_STEP = re.compile(r'\.([A-Za-z_$][\w$-]*)|\[("(?:[^"\\]|\\.)*")\]|\[([^\]=]+)=([^\]]*)\]|\[(\d+)\]')
_MISSING = object()


def parse_path(path: str) -> list[Any]:
    """Steps of a plan field path such as `spec.template.spec.containers[name=app].ports[0]`.

    A step is a map key (str), a list index (int), or ("key", field, value) for a keyed list item.
    """
    text = path if path.startswith(("[", ".")) else "." + path
    steps: list[Any] = []
    pos = 0
    while pos < len(text):
        m = _STEP.match(text, pos)
        assert m, f"cannot parse field path {path!r} at {text[pos:]!r}"
        if m.group(1) is not None:
            steps.append(m.group(1))
        elif m.group(2) is not None:
            steps.append(json.loads(m.group(2)))
        elif m.group(3) is not None:
            steps.append(("key", m.group(3), m.group(4)))
        else:
            steps.append(int(m.group(5)))
        pos = m.end()
    return steps


def _child(cur: Any, step: Any) -> tuple[Any, Any]:
    """(container, accessor) for one step, or (None, None) when the path does not exist."""
    if isinstance(step, tuple):
        if not isinstance(cur, list):
            return None, None
        _, fld, val = step
        for i, item in enumerate(cur):
            if isinstance(item, dict) and str(item.get(fld)) == val:
                return cur, i
        return None, None
    if isinstance(step, int):
        return (cur, step) if isinstance(cur, list) and step < len(cur) else (None, None)
    return (cur, step) if isinstance(cur, dict) and step in cur else (None, None)


def resolve(obj: Any, path: str) -> Any:
    """The value at a plan field path, or None when absent (as plans report absence)."""
    cur = obj
    for step in parse_path(path):
        container, at = _child(cur, step)
        if container is None:
            return None
        cur = container[at]
    return cur


def apply_field(obj: Any, path: str, value: Any) -> None:
    """Set (or with None remove) the value at a plan field path, creating maps on the way."""
    steps = parse_path(path)
    cur = obj
    for i, step in enumerate(steps):
        last = i == len(steps) - 1
        container, at = _child(cur, step)
        if container is None:
            if value is None:
                return
            if isinstance(step, tuple):
                _, fld, val = step
                cur.append({fld: int(val) if val.isdigit() else val})
                container, at = cur, len(cur) - 1
            else:
                cur[step] = {}
                container, at = cur, step
        if last:
            if value is None:
                del container[at]
            else:
                container[at] = copy.deepcopy(value)
            return
        cur = container[at]


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
