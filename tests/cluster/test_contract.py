"""The pipeline contract on the real local control plane: every `-o json` document matches its published
schema under schemas/, `-o yaml` is the same document, errors are documents too, and no Secret value
(plain or base64) appears in any output, human or machine, stdout or stderr.

One scenario serves the module (applying is what costs time): default and prod are promoted with
prod's password P1, prod is promoted again with P2, then rolled back to P1, so Git (P2) and prod (P1)
differ in a Secret value only. The schemas on their own are checked in tests/unit/test_schemas.py.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
import yaml
from click.testing import Result
from jsonschema import Draft202012Validator

from devcluster.kube import Kube
from tests.support.cli import cli
from tests.support.contract import (
    assert_branch,
    assert_no_secret,
    assert_valid,
    everything,
    json_doc,
    new_password,
    schema,
    yaml_doc,
)
from tests.support.kube import namespaces
from tests.support.repo import APP, CHART_PASSWORD, PROD_RELEASE, commit, definition, make_repo, write_definition


@dataclass
class World:
    """The module's promoted repo, and every output the scenario produced on the way."""

    repo: Path
    default_ns: str
    prod_ns: str
    secrets: list[str]
    results: dict[str, Result] = field(default_factory=dict)

    def run(self, *args: str, code: int | None) -> Result:
        """`promote -C repo ARGS`, asserting the exit code (unless None) and that no Secret value leaks."""
        result = cli(self.repo, *args)
        assert code is None or result.exit_code == code, (
            f"promote {' '.join(args)}: exit {result.exit_code}, expected {code}\n"
            f"stdout:\n{result.stdout}\nstderr:\n{result.stderr}"
        )
        assert_no_secret(everything(result), self.secrets, f"promote {' '.join(args)}")
        return result


@pytest.fixture(scope="module")
def world(kube: Kube, tmp_path_factory: pytest.TempPathFactory) -> Iterator[World]:
    p1, p2 = new_password(), new_password()
    with namespaces(kube, 2) as (default_ns, prod_ns):
        repo = make_repo(
            tmp_path_factory.mktemp("contract"),
            default_ns,
            prod_ns,
            prod_values={"replicaCount": 3, "secret": {"password": p1}},
        )
        w = World(repo, default_ns, prod_ns, [CHART_PASSWORD, p1, p2])
        w.results["apply-json"] = w.run("apply", "prod", "-o", "json", code=0)
        w.results["apply-table"] = w.run("apply", "prod", code=0)
        write_definition(
            repo, definition(default_ns, prod_ns, prod_values={"replicaCount": 3, "secret": {"password": p2}})
        )
        commit(repo, "prod: rotate the password")
        w.results["apply-yaml"] = w.run("apply", "prod", "--only", "-o", "yaml", code=0)
        w.results["rollback-json"] = w.run("rollback", "prod", "-o", "json", code=0)
        yield w


# --- apply and rollback --------------------------------------------------------------------------


def test_apply_json_matches_schema(world: World) -> None:
    doc = json_doc(world.results["apply-json"])

    assert_branch(doc, "apply-result", "applyResult")
    assert (doc["exitCode"], doc["error"]) == (0, None)
    assert [(e["name"], e["outcome"]) for e in doc["environments"]] == [("default", "synced"), ("prod", "synced")]
    assert doc["events"], "an apply that synced reports progress events"


def test_apply_table_says_unchanged(world: World) -> None:
    out = world.results["apply-table"].stdout

    assert "Environment default" in out
    assert "Environment prod" in out
    assert "unchanged" in out


def test_apply_yaml_matches_schema(world: World) -> None:
    doc = yaml_doc(world.results["apply-yaml"])

    assert_branch(doc, "apply-result", "applyResult")
    assert [(e["name"], e["outcome"]) for e in doc["environments"]] == [("prod", "synced")]
    (release,) = doc["environments"][0]["releases"]
    (secret,) = [c for c in release["changes"] if c["kind"] == "Secret"]
    assert secret["action"] == "update"
    assert secret["fields"] == [
        {"path": "data.password", "from": "(sensitive)", "to": "(sensitive)", "sensitive": True}
    ]


def test_rollback_json_matches_schema(world: World) -> None:
    doc = json_doc(world.results["rollback-json"])

    assert_branch(doc, "apply-result", "applyResult")
    assert [(e["name"], e["outcome"]) for e in doc["environments"]] == [("prod", "rolled-back")]
    assert [r["outcome"] for r in doc["environments"][0]["releases"]] == ["rolled-back"]


# --- plan ----------------------------------------------------------------------------------------


def test_plan_json_matches_schema_and_masks_the_secret(world: World) -> None:
    doc = json_doc(world.run("plan", "prod", "-o", "json", code=0))

    assert_branch(doc, "plan", "plan")
    assert doc["target"] == "prod"
    assert [e["name"] for e in doc["environments"]] == ["default", "prod"]
    prod = doc["environments"][1]["releases"][0]
    assert (prod["app"], prod["release"], prod["namespace"]) == (APP, PROD_RELEASE, world.prod_ns)
    changed = [(c["kind"], c["action"]) for c in prod["changes"] if c["hook"] is None and c["action"] != "unchanged"]
    assert changed == [("Secret", "update")]
    (secret,) = [c for c in prod["changes"] if c["kind"] == "Secret"]
    assert secret["fields"] == [
        {"path": "data.password", "from": "(sensitive)", "to": "(sensitive)", "sensitive": True}
    ]
    assert doc["summary"]["update"] == 1


def test_plan_yaml_is_the_json_document(world: World) -> None:
    as_json = json_doc(world.run("plan", "prod", "-o", "json", code=0))
    as_yaml = yaml_doc(world.run("plan", "prod", "-o", "yaml", code=0))

    assert as_yaml == as_json


def test_plan_table_masks_the_secret(world: World) -> None:
    out = world.run("plan", "prod", code=0).stdout

    assert "data.password: (sensitive value changed)" in out
    assert "1 to update" in out


def test_plan_with_a_password_on_the_command_line_does_not_print_it(world: World) -> None:
    cli_password = new_password()
    world.secrets.append(cli_password)
    try:
        for fmt in ("table", "json", "yaml"):
            result = world.run("plan", "prod", "--set", f"secret.password={cli_password}", "-o", fmt, code=0)
            if fmt == "json":
                assert_branch(json_doc(result), "plan", "plan")
        result = world.run("plan", "prod", "--set-string", f"secret.password={cli_password}", "-o", "json", code=0)
        assert_branch(json_doc(result), "plan", "plan")
    finally:
        world.secrets.remove(cli_password)


# --- status, diff, history -----------------------------------------------------------------------


def test_status_json_matches_schema(world: World) -> None:
    doc = json_doc(world.run("status", "-o", "json", code=0))

    assert_branch(doc, "status", "status")
    assert [(s["env"], s["sync"], s["health"]) for s in doc["releases"]] == [
        ("default", "Synced", "Healthy"),
        ("prod", "OutOfSync", "Healthy"),
    ]
    # prod was rolled back to the old password, which Git has since rotated: pending, not drift.
    prod = doc["releases"][1]
    (pending,) = prod["pending"]
    assert prod["drift"] == []
    assert (pending["kind"], pending["action"]) == ("Secret", "update")
    assert pending["fields"][0]["sensitive"] is True
    assert "prod is pinned" in prod["pendingReason"]


def test_status_yaml_and_table(world: World) -> None:
    as_json = json_doc(world.run("status", "prod", "-o", "json", code=0))
    as_yaml = yaml_doc(world.run("status", "prod", "-o", "yaml", code=0))
    table = world.run("status", "prod", code=0).stdout

    assert_branch(as_yaml, "status", "status")
    assert [(s["env"], s["sync"]) for s in as_yaml["releases"]] == [(s["env"], s["sync"]) for s in as_json["releases"]]
    assert "(sensitive value changed)" in table


def test_diff_json_masks_the_secret(world: World) -> None:
    doc = json_doc(world.run("diff", "prod", "-o", "json", code=0))
    table = world.run("diff", "prod", code=0).stdout
    as_yaml = yaml_doc(world.run("diff", "prod", "-o", "yaml", code=0))

    errors = [e.message for e in Draft202012Validator(schema("diff")).iter_errors(doc)]
    assert not errors, errors
    assert as_yaml == doc
    assert [(d["kind"], d["action"]) for d in doc["diffs"]] == [("Secret", "update")]
    assert "password" in doc["diffs"][0]["git"]
    # People read the table: a drifted Secret must show there too, its values masked.
    assert "python-app-secret" in table
    assert "password" in table


def test_gate_json_matches_schema_and_its_verdict_matches_the_exit_code(world: World) -> None:
    result = world.run("gate", "prod", "-o", "json", code=None)
    doc = json_doc(result)
    as_yaml = yaml_doc(world.run("gate", "prod", "-o", "yaml", code=None))

    assert_branch(doc, "gate", "gate")
    assert as_yaml == doc
    assert result.exit_code == (0 if doc["allowed"] else 3)
    assert {c["name"] for c in doc["checks"]} >= {"values-valid", "clean-tree", "upstream-artifact", "lock"}
    # A failing check makes the document invalid when it claims to be allowed.
    forged = {**doc, "allowed": True, "checks": [*doc["checks"], {**doc["checks"][0], "result": "fail"}]}
    assert list(Draft202012Validator(schema("gate")).iter_errors(forged))


def test_history_json_matches_schema(world: World) -> None:
    doc = json_doc(world.run("history", "prod", "-o", "json", code=0))
    as_yaml = yaml_doc(world.run("history", "prod", "-o", "yaml", code=0))
    world.run("history", "prod", code=0)

    assert_branch(doc, "history", "history")
    assert as_yaml == doc
    assert [(h["revision"], h["status"], h["action"]) for h in doc["history"]] == [
        (1, "superseded", "sync"),
        (2, "superseded", "sync"),
        (3, "deployed", "rollback"),
    ]


# --- watch ---------------------------------------------------------------------------------------


def _without_time(docs: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [{k: v for k, v in d.items() if k != "time"} for d in docs if d["event"] == "pending"]


def test_watch_prints_json_lines_that_match_the_schema_and_mask_the_secret(world: World) -> None:
    as_json = world.run("watch", "prod", "--max-iterations", "1", "-o", "json", code=0)
    as_yaml = world.run("watch", "prod", "--max-iterations", "1", "-o", "yaml", code=0)
    table = world.run("watch", "prod", "--max-iterations", "1", code=0).stdout

    docs = [json.loads(line) for line in as_json.stdout.splitlines()]
    for doc in docs:
        assert_branch(doc, "watch-event", "watchEvent")
    # The rotated password is pending (prod was rolled back and pinned): one event, no value in it.
    pending = [(d["app"], d["event"]) for d in docs if d["event"] == "pending"]
    assert pending == [("python-app", "pending")], docs
    assert {d["event"] for d in docs} <= {"pending", "runtime"}, docs
    (message,) = [d["message"] for d in docs if d["event"] == "pending"]
    assert "prod is pinned" in message and "Secret python-app-secret" in message
    yaml_docs = list(yaml.safe_load_all(as_yaml.stdout))
    for doc in yaml_docs:
        assert_branch(doc, "watch-event", "watchEvent")
    assert _without_time(yaml_docs) == _without_time(docs)
    assert "pending held by the gate: prod is pinned" in table


# --- validate ------------------------------------------------------------------------------------


def test_validate_json_matches_schema_when_valid(world: World) -> None:
    doc = json_doc(world.run("validate", "-o", "json", code=0))

    assert_branch(doc, "validate", "validate")
    assert doc["valid"] is True
    assert doc["violations"] == []


def test_validate_json_matches_schema_and_masks_a_short_password(world: World) -> None:
    short = "Pw" + new_password()[-5:]  # 7 characters: breaks the chart's minLength 8
    world.secrets.append(short)
    try:
        result = world.run("validate", "--set", f"secret.password={short}", "-o", "json", code=1)
        table = world.run("validate", "--set", f"secret.password={short}", code=1).stdout
    finally:
        world.secrets.remove(short)
    doc = json_doc(result)

    assert_branch(doc, "validate", "validate")
    assert doc["valid"] is False
    assert {(v["environment"], v["path"], v["value"]) for v in doc["violations"]} == {
        ("default", "$.secret.password", "(sensitive)"),
        ("prod", "$.secret.password", "(sensitive)"),
    }
    assert "$.secret.password" in table


# --- errors are documents too --------------------------------------------------------------------

ERROR_CASES = [
    ("plan", ["plan", "nosuch"]),
    ("status", ["status", "nosuch"]),
    ("history", ["history", "nosuch"]),
    ("validate", ["validate", "nosuch"]),
    ("error", ["diff", "nosuch"]),
    ("plan", ["plan", "prod", "--set", "no-equals-sign"]),
    ("plan", ["plan", "prod", "-f", "/nonexistent/values.yaml"]),
    ("apply-result", ["apply", "prod", "--timeout", "banana"]),
    ("apply-result", ["rollback", "prod", "--lock-timeout", "banana"]),
    ("watch-event", ["watch", "nosuch"]),
    ("watch-event", ["watch", "prod", "--interval", "banana"]),
]


@pytest.mark.parametrize(("name", "args"), ERROR_CASES, ids=[" ".join(a) for _, a in ERROR_CASES])
def test_an_error_is_one_document_in_the_machine_format(world: World, name: str, args: list[str]) -> None:
    as_json = json_doc(world.run(*args, "-o", "json", code=1))
    as_yaml = yaml_doc(world.run(*args, "-o", "yaml", code=1))

    if name == "error":
        assert_valid(as_json, "error")
    else:
        assert_branch(as_json, name, "error")
    assert as_yaml == as_json
    assert as_json["exitCode"] == 1
    assert "Traceback" not in as_json["error"]


@pytest.mark.parametrize("command", ["apply", "rollback"])
def test_apply_and_rollback_of_an_unknown_environment_report_in_their_own_document(world: World, command: str) -> None:
    doc = json_doc(world.run(command, "nosuch", "-o", "json", code=1))

    assert_valid(doc, "apply-result")
    assert doc["exitCode"] == 1
    assert "unknown environment 'nosuch'" in (doc.get("error") or "")
