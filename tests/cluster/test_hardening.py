"""Hardening on the real local control plane (issue 19): a writeOnly value rendered into a ConfigMap
shows nowhere, rollback waits for the environment's lock, and two first applies do not race on the
namespace."""

from __future__ import annotations

import json
import secrets
from datetime import UTC, datetime
from pathlib import Path

import pytest

from devcluster.kube import Kube
from tests.support.cli import apply, cli, expect, promote_json, release_of, start_promote
from tests.support.helm import helm_apply, helm_history
from tests.support.repo import APP, commit, make_repo, set_app_values


def _write_only_greeting(repo: Path) -> None:
    path = repo / "schemas" / "python-app.values.schema.json"
    schema = json.loads(path.read_text())
    schema["properties"]["config"]["properties"]["greeting"]["writeOnly"] = True
    path.write_text(json.dumps(schema, indent=2))


def test_a_write_only_value_rendered_into_a_config_map_shows_nowhere(
    tmp_path: Path, two_namespaces: tuple[str, str], monkeypatch: pytest.MonkeyPatch
) -> None:
    cache = tmp_path / "cache"
    monkeypatch.setenv("PROMOTE_CACHE", str(cache))
    repo = make_repo(tmp_path, *two_namespaces)
    _write_only_greeting(repo)
    commit(repo, "the greeting is a secret")
    apply(repo, "default", code=0)
    secret = f"s3cr3t-{secrets.token_hex(6)}"
    set_app_values(repo, {"config": {"greeting": f"hello {secret}"}})
    commit(repo, "a new greeting")

    outputs = [
        cli(repo, "plan", "default", "-o", "json"),
        cli(repo, "plan", "default", "--out", str(tmp_path / "plan.json")),
        cli(repo, "status", "default", "-o", "yaml"),
        cli(repo, "status", "default"),
        cli(repo, "diff", "default"),
        cli(repo, "diff", "default", "-o", "json"),
        cli(repo, "plan", "default", "--set", f"config.greeting={secret}x", "-o", "json"),
    ]

    plan = json.loads(outputs[0].stdout)
    (release,) = plan["environments"][0]["releases"]
    (cm,) = [c for c in release["changes"] if c["kind"] == "ConfigMap"]
    assert cm["action"] == "update" and cm["fields"][0]["sensitive"] is True, cm
    for result in outputs:
        assert secret not in result.stdout + result.stderr, result.stdout
    assert secret not in (tmp_path / "plan.json").read_text()
    for f in cache.rglob("*"):
        if f.is_file():
            assert secret.encode() not in f.read_bytes(), f


def test_rollback_waits_for_the_environments_lock_and_names_its_holder(
    tmp_path: Path, kube: Kube, two_namespaces: tuple[str, str]
) -> None:
    default_ns, prod_ns = two_namespaces
    repo = make_repo(tmp_path, default_ns, prod_ns)
    helm_apply(repo, "default")  # revision 1 by plain helm: no promotion to re-sync, so `helm rollback` it is
    set_app_values(repo, {"image": {"tag": "1.1.0"}})
    commit(repo, "1.1.0")
    apply(repo, "default", code=0)
    now = datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")
    kube.post(
        f"/apis/coordination.k8s.io/v1/namespaces/{default_ns}/leases",
        {
            "apiVersion": "coordination.k8s.io/v1",
            "kind": "Lease",
            "metadata": {"name": "promote-default"},
            "spec": {"holderIdentity": "ci@runner/42", "leaseDurationSeconds": 600, "renewTime": now},
        },
    )

    run = promote_json(repo, "rollback", "default", "--to", "1", "--lock-timeout", "2s", code=1)

    assert "ci@runner/42" in run.doc["error"], run.doc["error"]
    assert [r["revision"] for r in helm_history(default_ns, APP)] == [1, 2]  # nothing rolled back


def test_two_first_applies_do_not_race_on_the_namespace(tmp_path: Path, kube: Kube, namespace: str) -> None:
    fresh = f"{namespace}-new"
    repo = make_repo(tmp_path, fresh, f"{namespace}-unused")
    procs = [
        start_promote(repo, tmp_path / "logs", f"apply{i}", "apply", "default", "--lock-timeout", "120s", "-o", "json")
        for i in range(2)
    ]
    try:
        codes = [p.wait(300) for p in procs]
        assert codes == [0, 0], [p.stderr() for p in procs]
        assert [r["status"] for r in helm_history(fresh, APP)] == ["deployed"]
    finally:
        kube.delete(f"/api/v1/namespaces/{fresh}", {"propagationPolicy": "Background"})


def test_a_saved_plan_applies_only_where_its_digests_can_be_checked(
    tmp_path: Path, two_namespaces: tuple[str, str]
) -> None:
    """Manifest digests cover Secret values, so they are keyed: another machine cannot check them
    (nor a guess at a password) unless both share PROMOTE_PLAN_KEY."""
    default_ns, _ = two_namespaces
    repo = make_repo(tmp_path, *two_namespaces)
    apply(repo, "default", code=0)
    set_app_values(repo, {"image": {"tag": "1.1.0"}})
    commit(repo, "1.1.0")
    here = {"PROMOTE_CACHE": str(tmp_path / "machine-a")}
    there = {"PROMOTE_CACHE": str(tmp_path / "machine-b")}
    plan_file = str(tmp_path / "plan.json")

    digests = []
    for machine in (here, there):
        doc = json.loads(expect(cli(repo, "plan", "default", "-o", "json", env=machine), 0, "plan").stdout)
        digests.append((doc["digestKey"], release_of(doc, "default")["manifestDigest"]))
    assert digests[0][0] != digests[1][0] and digests[0][1] != digests[1][1], "each machine its own key"

    expect(cli(repo, "plan", "default", "--out", plan_file, env=here), 0, "plan --out")
    refused = expect(cli(repo, "apply", "default", "--plan", plan_file, env=there), 1, "apply --plan elsewhere")
    assert "planned with another digest key" in refused.stderr and "PROMOTE_PLAN_KEY" in refused.stderr
    assert "Traceback" not in refused.stderr
    assert len(helm_history(default_ns, APP)) == 1, "nothing applied"

    shared = {"PROMOTE_PLAN_KEY": secrets.token_hex(16)}
    expect(cli(repo, "plan", "default", "--out", plan_file, env={**here, **shared}), 0, "plan --out, shared key")
    expect(cli(repo, "apply", "default", "--plan", plan_file, env={**there, **shared}), 0, "apply --plan, shared key")
    assert len(helm_history(default_ns, APP)) == 2, "the saved plan was applied on the other machine"
