"""Exit codes are part of the interface: every path of every command, on the real local control plane.

0 success, nothing to do; 1 error (bad input, cluster, helm, rollout); 2 changes pending (only with
--detailed-exitcode); 3 blocked by a gate or policy. A pipeline reads nothing else, so each code is
asserted here together with the JSON document's own `exitCode` where a command prints one. Bad input and
usage errors, which need no cluster, are in tests/unit/test_cli.py.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from click.testing import Result

from tests.support.cli import cli, expect
from tests.support.helm import helm_history
from tests.support.kube import kubectl
from tests.support.repo import (
    APP,
    DEFINITION,
    PROD_RELEASE,
    commit,
    edit_env,
    git,
    load_definition,
    make_repo,
    write_definition,
)


def run(repo: Path, *args: str, code: int) -> Result:
    """`promote -C repo ARGS`, asserting the exit code, and that a JSON document agrees with it."""
    result = expect(cli(repo, *args), code, " ".join(args))
    assert "Traceback" not in result.output, result.output
    if "-o" in args and args[args.index("-o") + 1] == "json":
        doc = json.loads(result.stdout)
        if "exitCode" in doc:
            assert doc["exitCode"] == code, doc
    return result


def doc(repo: Path, *args: str, code: int) -> dict[str, Any]:
    """`promote ARGS -o json`, asserting the exit code; the document."""
    out: dict[str, Any] = json.loads(run(repo, *args, "-o", "json", code=code).stdout)
    return out


def gate(result: dict[str, Any], env: str) -> dict[str, str]:
    """check name → pass/fail for one environment of an apply result."""
    (e,) = [e for e in result["environments"] if e["name"] == env]
    return {g["name"]: g["result"] for g in e["gate"]}


def helm_revisions(namespace: str, release: str) -> list[int]:
    """Revision numbers helm holds for a release ([] when not installed), read with helm itself."""
    return [int(r["revision"]) for r in helm_history(namespace, release)]


def drift_config_map(namespace: str) -> None:
    """Change the live ConfigMap behind Git's back, as a person with kubectl would."""
    patch = json.dumps({"data": {"config.yaml": "greeting: drifted\n"}})
    kubectl("-n", namespace, "patch", "configmap", "my-app-config", "--type", "merge", "-p", patch)


# --- with nothing deployed -----------------------------------------------------------------------


def test_exit_codes_before_anything_is_deployed(tmp_path: Path, two_namespaces: tuple[str, str]) -> None:
    default_ns, prod_ns = two_namespaces
    repo = make_repo(tmp_path, default_ns, prod_ns)

    # validate: 0 valid, 1 violations (chart schema; prod's policy), 1 unknown environment.
    run(repo, "validate", code=0)
    run(repo, "validate", "prod", code=0)
    assert doc(repo, "validate", "--set", "replicaCount=-1", code=1)["valid"] is False
    assert doc(repo, "validate", "prod", "--set", "replicaCount=1", code=1)["valid"] is False
    run(repo, "validate", "nosuch", code=1)

    # plan: changes exit 0 without --detailed-exitcode, 2 with it; errors 1 either way.
    assert doc(repo, "plan", "prod", code=0)["summary"]["create"] > 0
    run(repo, "plan", "prod", "--detailed-exitcode", code=2)
    run(repo, "plan", "nosuch", code=1)
    run(repo, "plan", "nosuch", "--detailed-exitcode", code=1)
    # Errors win over changes: an invalid value makes the plan fail, not "changes pending".
    run(repo, "plan", "prod", "--detailed-exitcode", "--set", "replicaCount=-1", code=1)

    # status: Missing is pending (2) only with --detailed-exitcode.
    assert [s["sync"] for s in doc(repo, "status", code=0)["releases"]] == ["Missing", "Missing"]
    run(repo, "status", "--detailed-exitcode", code=2)
    run(repo, "status", "nosuch", code=1)
    run(repo, "status", "nosuch", "--detailed-exitcode", code=1)

    # diff: everything is to be created.
    run(repo, "diff", "default", code=0)
    run(repo, "diff", "default", "--detailed-exitcode", code=2)
    run(repo, "diff", "nosuch", code=1)

    # history: nothing recorded is not an error; an unknown environment is.
    assert doc(repo, "history", "default", code=0)["history"] == []
    run(repo, "history", "nosuch", code=1)

    # rollback: nothing to roll back.
    rolled = doc(repo, "rollback", "default", code=1)
    assert "nothing to roll back" in rolled["error"]

    # apply: 3 when the upstream does not run the artifact (--only skips syncing it).
    blocked = doc(repo, "apply", "prod", "--only", code=3)
    assert gate(blocked, "prod")["upstream-artifact"] == "fail"
    assert "default has no deployed release" in blocked["error"]
    # apply: 3 when the target's policy rejects the values, before anything is synced.
    policy = doc(repo, "apply", "prod", "--set", "replicaCount=1", code=3)
    assert "blocked by the policy of prod" in policy["error"]
    # apply: 1 for an unknown environment.
    run(repo, "apply", "nosuch", code=1)

    assert helm_revisions(default_ns, APP) == []
    assert helm_revisions(prod_ns, PROD_RELEASE) == []


# --- once default runs ---------------------------------------------------------------------------


def test_exit_codes_once_default_runs(tmp_path: Path, two_namespaces: tuple[str, str]) -> None:
    default_ns, prod_ns = two_namespaces
    repo = make_repo(tmp_path, default_ns, prod_ns)
    assert doc(repo, "apply", "default", code=0)["error"] is None

    # In sync: 0 with or without --detailed-exitcode.
    run(repo, "plan", "default", "--detailed-exitcode", code=0)
    run(repo, "status", "default", "--detailed-exitcode", code=0)
    run(repo, "diff", "default", "--detailed-exitcode", code=0)
    run(repo, "apply", "default", code=0)
    assert len(doc(repo, "history", "default", code=0)["history"]) == 1
    # One revision only: nothing to roll back to.
    assert "nothing to roll back to" in doc(repo, "rollback", "default", code=1)["error"]

    # Drift: 2 with --detailed-exitcode, 0 without.
    drift_config_map(default_ns)
    status = doc(repo, "status", "default", "--detailed-exitcode", code=2)
    assert [(s["sync"], s["drift"][0]["kind"]) for s in status["releases"]] == [("OutOfSync", "ConfigMap")]
    run(repo, "status", "default", code=0)
    run(repo, "diff", "default", "--detailed-exitcode", code=2)
    run(repo, "diff", "default", code=0)
    run(repo, "plan", "default", "--detailed-exitcode", code=2)

    # Soak not elapsed: 3, only the soak check failing.
    edit_env(repo, "prod", soak="10m")
    commit(repo, "prod: soak 10m")
    soak = doc(repo, "apply", "prod", "--only", code=3)
    assert gate(soak, "prod") == {
        "clean-tree": "pass",
        "upstream-artifact": "pass",
        "upstream-health": "pass",
        "soak": "fail",
    }
    edit_env(repo, "prod", soak="0s")
    commit(repo, "prod: no soak")

    # Dirty tree: 3, refused by the clean-tree check before anything else is asked.
    edit_env(repo, "prod", values={"replicaCount": 4})
    dirty = doc(repo, "apply", "prod", "--only", code=3)
    assert gate(dirty, "prod") == {"clean-tree": "fail"}
    git(repo, "checkout", "--", DEFINITION)

    # Upstream not on the artifact (--only does not sync default first): 3.
    d = load_definition(repo)
    d["values"] = {"image": {"tag": "2.0.0"}}
    write_definition(repo, d)
    commit(repo, "python-app 2.0.0")
    moved = doc(repo, "apply", "prod", "--only", code=3)
    assert gate(moved, "prod") == {"clean-tree": "pass", "upstream-artifact": "fail"}
    assert "apply default first" in moved["error"]

    # None of it touched prod.
    assert helm_revisions(prod_ns, PROD_RELEASE) == []
    assert helm_revisions(default_ns, APP) == [1]


def test_apply_exits_1_when_the_rollout_fails(tmp_path: Path, two_namespaces: tuple[str, str]) -> None:
    default_ns, prod_ns = two_namespaces
    failing_hook = {"replicaCount": 1, "hooks": {"preSync": {"annotations": {"sim.promote.dev/fail": "true"}}}}
    repo = make_repo(tmp_path, default_ns, prod_ns, default_values=failing_hook)

    result = doc(repo, "apply", "prod", "--timeout", "60s", code=1)

    assert [(e["name"], e["outcome"]) for e in result["environments"]] == [("default", "failed")]
    assert "pre-sync" in result["error"]
    assert helm_revisions(prod_ns, PROD_RELEASE) == []


def test_lock_ttl_under_a_second_is_bad_input(tmp_path: Path, two_namespaces: tuple[str, str]) -> None:
    default_ns, prod_ns = two_namespaces
    repo = make_repo(tmp_path, default_ns, prod_ns)

    result = cli(repo, "apply", "default", "--lock-ttl", "0s", "--lock-timeout", "3s")

    assert result.exit_code == 1, result.output
    assert "--lock-ttl" in result.output, result.output
    assert helm_revisions(default_ns, APP) == []
