"""Exit codes are part of the interface: every path of every command, on the real local control plane.

0 success, nothing to do; 1 error (bad input, cluster, helm, rollout); 2 changes pending (only with
--detailed-exitcode); 3 blocked by a gate or policy. A pipeline reads nothing else, so each code is
asserted here together with the JSON document's own `exitCode` where a command prints one.
"""

from __future__ import annotations

import json
import subprocess
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import yaml
from click.testing import Result
from helpers import APP, CHART, DEFINITION, PROD_RELEASE, cli, commit, git, kubectl, make_repo, write_definition


def run(repo: Path, *args: str, code: int) -> Result:
    """`promote -C repo ARGS`, asserting the exit code, and that a JSON document agrees with it."""
    result = cli(repo, *args)
    assert result.exit_code == code, (
        f"promote {' '.join(args)}: exit {result.exit_code}, expected {code}\n"
        f"stdout:\n{result.stdout}\nstderr:\n{result.stderr}"
    )
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


def definition_doc(repo: Path) -> dict[str, Any]:
    loaded: dict[str, Any] = yaml.safe_load((repo / DEFINITION).read_text())
    return loaded


def edit_env(repo: Path, env: str, **fields: Any) -> None:
    """Set fields of one environment of the definition (uncommitted)."""
    d = definition_doc(repo)
    (entry,) = [e for e in d["environments"] if e["name"] == env]
    entry.update(fields)
    write_definition(repo, d)


def gate(result: dict[str, Any], env: str) -> dict[str, str]:
    """check name → pass/fail for one environment of an apply result."""
    (e,) = [e for e in result["environments"] if e["name"] == env]
    return {g["name"]: g["result"] for g in e["gate"]}


def helm_revisions(namespace: str, release: str) -> list[int]:
    """Revision numbers helm holds for a release ([] when not installed), read with helm itself."""
    out = subprocess.run(
        ["helm", "history", release, "-n", namespace, "-o", "json"], capture_output=True, text=True, timeout=60
    )
    if out.returncode != 0 and "not found" in out.stderr:
        return []
    assert out.returncode == 0, out.stderr
    return [int(r["revision"]) for r in json.loads(out.stdout)]


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

    # Dirty tree: 3, only the clean-tree check failing.
    edit_env(repo, "prod", values={"replicaCount": 4})
    dirty = doc(repo, "apply", "prod", "--only", code=3)
    assert gate(dirty, "prod") == {"clean-tree": "fail", "upstream-artifact": "pass", "upstream-health": "pass"}
    git(repo, "checkout", "--", DEFINITION)

    # Upstream not on the artifact (--only does not sync default first): 3.
    d = definition_doc(repo)
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


# --- usage errors, tracebacks, --help (no cluster needed) ------------------------------------------


def test_help_lists_the_exit_codes(tmp_path: Path) -> None:
    result = cli(tmp_path, "--help")

    assert result.exit_code == 0
    text = " ".join(result.stdout.split())
    assert "Exit codes" in text
    for line in (
        "0 success, nothing to do",
        "1 error: bad input",
        "2 success with changes pending (only with --detailed-exitcode)",
        "3 blocked by a gate or policy",
    ):
        assert line in text, result.stdout


def test_debug_shows_a_traceback_and_only_then(tmp_path: Path) -> None:
    repo = make_repo(tmp_path, "t-unused-a", "t-unused-b")

    plain = cli(repo, "plan", "nosuch")
    debug = cli(repo, "--debug", "plan", "nosuch")

    assert plain.exit_code == debug.exit_code == 1
    assert "Traceback" not in plain.output
    assert plain.stderr.strip() == "Error: unknown environment 'nosuch': the chain defines default, prod"
    assert "Traceback (most recent call last)" in debug.stderr
    assert "ConfigError" in debug.stderr
    assert debug.stderr.rstrip().endswith("Error: unknown environment 'nosuch': the chain defines default, prod")


def _break_chart_values(repo: Path) -> list[str]:
    (repo / CHART / "values.yaml").write_text("replicaCount: [\n")
    return ["plan", "default"]


def _break_values_schema(repo: Path) -> list[str]:
    (repo / "schemas" / "python-app.values.schema.json").write_text("{not json")
    return ["validate"]


def _break_definition_yaml(repo: Path) -> list[str]:
    (repo / DEFINITION).write_text("app: [unclosed\n")
    return ["plan", "default"]


def _definition_is_a_list(repo: Path) -> list[str]:
    (repo / DEFINITION).write_text("- just\n- a list\n")
    return ["status"]


def _values_file_is_a_list(repo: Path) -> list[str]:
    (repo / "list.yaml").write_text("- a\n- b\n")
    return ["plan", "default", "-f", str(repo / "list.yaml")]


def _values_file_is_broken(repo: Path) -> list[str]:
    (repo / "bad.yaml").write_text("a: [\n")
    return ["validate", "-f", str(repo / "bad.yaml")]


def _plain(*args: str) -> Callable[[Path], list[str]]:
    return lambda repo: list(args)


BAD_INPUTS: dict[str, Callable[[Path], list[str]]] = {
    "broken chart values.yaml": _break_chart_values,
    "app schema not JSON": _break_values_schema,
    "definition not YAML": _break_definition_yaml,
    "definition is a list": _definition_is_a_list,
    "values file is a list": _values_file_is_a_list,
    "values file not YAML": _values_file_is_broken,
    "missing values file": _plain("plan", "default", "-f", "/nonexistent/values.yaml"),
    "--set without =": _plain("plan", "default", "--set", "replicaCount"),
    "--set with an empty key": _plain("validate", "--set", "=1"),
    "unknown revision": _plain("plan", "default", "--revision", "no-such-ref"),
    "unknown app": _plain("plan", "default", "--app", "no-such-app"),
    "bad duration": _plain("apply", "default", "--timeout", "banana"),
    "negative duration": _plain("apply", "default", "--timeout", "-5s"),
    "bad watch interval": _plain("watch", "default", "--interval", "soon"),
    "unknown kube context": _plain("--context", "no-such-context", "plan", "default"),
    "missing kubeconfig": _plain("--kubeconfig", "/nonexistent/kubeconfig", "plan", "default"),
    "not a repository": _plain("-C", "/nonexistent/dir", "plan", "default"),
}


@pytest.mark.parametrize("case", list(BAD_INPUTS))
def test_bad_input_exits_1_with_one_clear_message_and_no_traceback(tmp_path: Path, case: str) -> None:
    repo = make_repo(tmp_path, "t-unused-a", "t-unused-b")
    args = BAD_INPUTS[case](repo)

    for fmt in ("table", "json"):
        result = cli(repo, *args, "-o", fmt)
        assert result.exit_code == 1, f"{case}: exit {result.exit_code}\n{result.output}"
        assert "Traceback" not in result.output, result.output
        # Bad input is something promote expects: a message saying what was wrong, not "unexpected SomeError".
        assert "unexpected" not in result.output, result.output
        if fmt == "json":
            assert json.loads(result.stdout)["exitCode"] == 1
        else:
            assert result.stderr.startswith("Error: "), result.output


def test_lock_ttl_under_a_second_is_bad_input(tmp_path: Path, two_namespaces: tuple[str, str]) -> None:
    default_ns, prod_ns = two_namespaces
    repo = make_repo(tmp_path, default_ns, prod_ns)

    result = cli(repo, "apply", "default", "--lock-ttl", "0s", "--lock-timeout", "3s")

    assert result.exit_code == 1, result.output
    assert "--lock-ttl" in result.output, result.output
    assert helm_revisions(default_ns, APP) == []


USAGE_ERRORS = [
    ["plan"],
    ["plan", "prod", "-o", "xml"],
    ["plan", "prod", "--no-such-option"],
    ["no-such-command"],
    ["watch", "default", "--max-iterations", "0"],
]


@pytest.mark.parametrize("args", USAGE_ERRORS, ids=[" ".join(a) for a in USAGE_ERRORS])
def test_a_usage_error_is_bad_input_exit_1_never_2(tmp_path: Path, args: list[str]) -> None:
    # 2 means "changes pending": a pipeline that treats 2 as success must not pass on a typo.
    repo = make_repo(tmp_path, "t-unused-a", "t-unused-b")

    result = cli(repo, *args)

    assert result.exit_code == 1, f"exit {result.exit_code}\n{result.output}"
    assert "Traceback" not in result.output
    assert "Error:" in result.stderr
