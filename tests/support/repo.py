"""Throwaway Git repositories of definitions, and edits of their definition.

A test repo is a real Git checkout in ``tmp_path`` holding a copy of ``charts/python-app`` and
``schemas/``, and ``environments/python-app.yaml`` with the two environments ``default`` and ``prod``
mapped to namespaces of the test's choosing, so tests never share cluster state.
"""

from __future__ import annotations

import shutil
import subprocess
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import yaml

from tests.support.paths import REPO_ROOT

CHART = "charts/python-app"
DEFINITION = "environments/python-app.yaml"
APP = "python-app"
PROD_RELEASE = "python-app-prod"
# What charts/python-app renders, with its values.yaml: the Secret, its password, the ConfigMap.
SECRET = "python-app-secret"
CHART_PASSWORD = "change-me-please"
CONFIGMAP = "my-app-config"


# --- the definition ------------------------------------------------------------------------------


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


def load_definition(repo: Path) -> dict[str, Any]:
    """environments/python-app.yaml, decoded."""
    doc: dict[str, Any] = yaml.safe_load((repo / DEFINITION).read_text())
    return doc


def edit_env(repo: Path, env: str, **fields: Any) -> None:
    """Set top-level fields (soak, context, values, ...) of one environment of the definition (uncommitted)."""
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


# --- Git -----------------------------------------------------------------------------------------


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
    """A committed Git repo with the chart, the schemas and a two-environment definition (keywords as `definition`)."""
    repo = tmp_path / "repo"
    (repo / "environments").mkdir(parents=True)
    shutil.copytree(REPO_ROOT / CHART, repo / CHART)
    shutil.copytree(REPO_ROOT / "schemas", repo / "schemas")
    (repo / "README.md").write_text("test repo\n")
    write_definition(repo, definition(default_ns, prod_ns, **kw))
    git(repo, "init", "-q", "-b", "main")
    commit(repo, "initial definitions")
    return repo
