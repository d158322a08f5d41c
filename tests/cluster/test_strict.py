"""Plan validates what apply will send with the apiserver itself (strict dry runs), so a field the schema
does not declare is an error at plan, naming the object and the field; apply spares helm its own
OpenAPI check only for releases whose every object plan checked that way."""

from __future__ import annotations

import secrets
import shutil
from collections.abc import Callable
from pathlib import Path

from devcluster.kube import Kube
from tests.support.cli import apply, cli, plan_json, release_of
from tests.support.helm import helm_history
from tests.support.kube import delete_namespace
from tests.support.repo import APP, CHART, commit, edit_env, env_values, make_repo

# A ConfigMap whose field is misspelt when the value `typo` is set: what plan must refuse.
TYPO_TEMPLATE = """apiVersion: v1
kind: ConfigMap
metadata:
  name: {{ .Release.Name }}-typo
{{- if .Values.typo }}
dataa:
{{- else }}
data:
{{- end }}
  key: value
"""


def _no_hooks(repo: Path, env: str) -> None:
    edit_env(repo, env, values={**env_values(repo, env), "hooks": {"enabled": False}})


def test_an_undeclared_field_is_an_error_at_plan_and_apply_changes_nothing(
    tmp_path: Path, two_namespaces: tuple[str, str]
) -> None:
    default_ns, _ = two_namespaces
    repo = make_repo(tmp_path, *two_namespaces)
    (repo / CHART / "templates" / "typo.yaml").write_text(TYPO_TEMPLATE)
    _no_hooks(repo, "default")
    edit_env(repo, "default", values={**env_values(repo, "default"), "typo": True})
    commit(repo, "a misspelt field in a new ConfigMap")

    # A create: the whole object is checked.
    plan = plan_json(repo, "default", code=1)
    (error,) = release_of(plan, "default")["errors"]
    assert "ConfigMap" in error and f"{APP}-typo" in error and "dataa" in error, error
    apply(repo, "default", code=1)
    assert helm_history(default_ns, APP) == []

    # An update: the release is live, then a change brings the misspelt field in.
    edit_env(repo, "default", values={**env_values(repo, "default"), "typo": False})
    commit(repo, "spelt right")
    apply(repo, "default", code=0)
    (before,) = helm_history(default_ns, APP)
    edit_env(repo, "default", values={**env_values(repo, "default"), "typo": True})
    commit(repo, "misspelt again")
    plan = plan_json(repo, "default", code=1)
    (error,) = release_of(plan, "default")["errors"]
    assert f"{APP}-typo" in error and "dataa" in error, error
    apply(repo, "default", code=1)
    assert helm_history(default_ns, APP) == [before]


def _counting_helm(tmp_path: Path) -> tuple[dict[str, str], Path]:
    """PROMOTE_HELM for a script that writes down each helm run's arguments and runs the real helm."""
    runs = tmp_path / "helm-argv"
    wrapper = tmp_path / "helm"
    wrapper.write_text(f'#!/bin/sh\necho "$*" >> {runs}\nexec {shutil.which("helm")} "$@"\n')
    wrapper.chmod(0o755)
    return {"PROMOTE_HELM": str(wrapper)}, runs


def _upgrades(runs: Path) -> list[str]:
    return [line for line in runs.read_text().splitlines() if line.startswith("upgrade ")]


def test_helm_skips_its_openapi_check_only_where_plan_checked_everything(
    tmp_path: Path, make_namespace: Callable[[], str], kube: Kube
) -> None:
    env, runs = _counting_helm(tmp_path)
    unborn = f"t-{secrets.token_hex(4)}"  # a namespace apply has to create: nothing was dry-run there
    try:
        repo = make_repo(tmp_path, make_namespace(), unborn)
        _no_hooks(repo, "default")
        _no_hooks(repo, "prod")
        commit(repo, "no hooks")

        # default's namespace exists: plan dry-ran every object strictly, helm need not check again.
        assert cli(repo, "apply", "default", env=env).exit_code == 0
        (first,) = _upgrades(runs)
        assert "--disable-openapi-validation" in first.split(), first

        # prod's namespace does not exist yet: helm keeps its own check.
        runs.unlink()
        result = cli(repo, "apply", "prod", env=env)
        assert result.exit_code == 0, result.output
        (prod,) = _upgrades(runs)
        assert " --namespace " + unborn in prod and "--disable-openapi-validation" not in prod.split(), prod

        # A release with install and upgrade hooks (not dry-run by plan): helm keeps its check.
        runs.unlink()
        # (with a change of a resource: hooks alone are no change to sync)
        values = {**env_values(repo, "default"), "hooks": {"enabled": True}, "config": {"greeting": "hooked"}}
        edit_env(repo, "default", values=values)
        commit(repo, "hooks back, and a new greeting")
        assert cli(repo, "apply", "default", env=env).exit_code == 0
        (hooked,) = _upgrades(runs)
        assert "--disable-openapi-validation" not in hooked.split(), hooked
    finally:
        delete_namespace(kube, unborn)
