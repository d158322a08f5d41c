"""`promote validate` and the definition errors every command shares, with the session cluster present."""

from __future__ import annotations

import base64
import json
from pathlib import Path

import yaml

from devcluster.kube import Kube
from tests.support.cli import cli
from tests.support.helm import storage_names
from tests.support.kube import namespace_exists
from tests.support.repo import DEFINITION, definition, make_repo, write_definition

COLUMNS = ["FILE", "APP", "ENV", "PATH", "VALUE", "EXPECTED"]  # -o wide adds SCHEMA before EXPECTED


def _place(repo: Path, section: str, line: str) -> tuple[int, int]:
    """(line, column) of the value of `line` (e.g. "port: 70000"), first met after `section`, in the definition."""
    lines = (repo / DEFINITION).read_text().splitlines()
    start = lines.index(section)
    number = next(i for i in range(start, len(lines)) if lines[i].strip() == line)
    return number + 1, lines[number].index(line) + len(line.split(": ")[0]) + 3


def test_valid_definitions(tmp_path: Path, two_namespaces: tuple[str, str]) -> None:
    repo = make_repo(tmp_path, *two_namespaces)

    result = cli(repo, "validate")

    assert result.exit_code == 0, result.output
    assert result.stdout == "All 2 app environment(s) valid.\n"
    assert json.loads(cli(repo, "validate", "-o", "json").stdout) == {
        "schemaVersion": 1,
        "valid": True,
        "violations": [],
    }


def test_prod_policy_violations_name_prod_only_and_are_all_reported(
    tmp_path: Path, kube: Kube, two_namespaces: tuple[str, str]
) -> None:
    # replicaCount 1 is fine for default but breaks the prod policy (>= 3); so does a port out of range.
    repo = make_repo(tmp_path, *two_namespaces, prod_values={"replicaCount": 1, "service": {"port": 70000}})

    table = cli(repo, "validate")
    doc = json.loads(cli(repo, "validate", "-o", "json").stdout)

    assert table.exit_code == 1, table.output
    assert doc["valid"] is False
    assert sorted((v["path"], v["expected"], v["value"], v["schema"]) for v in doc["violations"]) == [
        ("$.replicaCount", ">= 3", 1, "schemas/prod.policy.schema.json"),
        ("$.service.port", "<= 65535", 70000, "charts/python-app/values.schema.json"),
    ]
    # each is placed where the value is written: prod's values in the definition file
    replicas, port = _place(repo, "- name: prod", "replicaCount: 1"), _place(repo, "- name: prod", "port: 70000")
    assert sorted((v["path"], v["line"], v["column"]) for v in doc["violations"]) == [
        ("$.replicaCount", *replicas),
        ("$.service.port", *port),
    ]
    for v in doc["violations"]:
        assert (v["file"], v["app"], v["environment"]) == (DEFINITION, "python-app", "prod")
    lines = table.stdout.splitlines()
    # In 80 columns, FILE (file:line:column, where to fix it) stays and APP is dropped for it.
    assert lines[0].split() == [c for c in COLUMNS if c != "APP"]
    assert all(len(line) <= 80 for line in lines), table.stdout
    wide = cli(repo, "validate", "-o", "wide").stdout.splitlines()
    assert wide[0].split() == [*COLUMNS[:-1], "SCHEMA", "EXPECTED"]
    rows = [line.split() for line in wide[1:3]]
    assert sorted(rows) == [
        [
            f"{DEFINITION}:{replicas[0]}:{replicas[1]}",
            "python-app",
            "prod",
            "$.replicaCount",
            "1",
            "schemas/prod.policy.schema.json",
            ">=",
            "3",
        ],
        [
            f"{DEFINITION}:{port[0]}:{port[1]}",
            "python-app",
            "prod",
            "$.service.port",
            "70000",
            "charts/python-app/values.schema.json",
            "<=",
            "65535",
        ],
    ]
    # the summary names the schema each violation breaks (the SCHEMA column is only in -o wide)
    summary = " ".join(table.stdout.split("\n\n")[-1].split())
    assert summary == "2 violation(s): 1 of charts/python-app/values.schema.json, 1 of schemas/prod.policy.schema.json."
    assert " default " not in table.stdout
    assert "Traceback" not in table.output

    # validating only the chain up to default finds nothing; plan reports prod's violations as its errors
    assert cli(repo, "validate", "default").exit_code == 0
    plan = cli(repo, "plan", "prod", "-o", "json")
    assert plan.exit_code == 1
    (default, prod) = json.loads(plan.stdout)["environments"]
    assert default["releases"][0]["errors"] == []
    assert len(prod["releases"][0]["errors"]) == 2
    assert all("environment prod" in e for e in prod["releases"][0]["errors"])
    # neither command wrote anything: prod's namespace got no release
    assert storage_names(kube, two_namespaces[1]) == []


def test_plan_attributes_a_bad_set_value_to_set(tmp_path: Path, kube: Kube, two_namespaces: tuple[str, str]) -> None:
    repo = make_repo(tmp_path, *two_namespaces)

    plan = cli(repo, "plan", "prod", "--set", "replicaCount=abc", "-o", "json")

    assert plan.exit_code == 1, plan.output
    for env in json.loads(plan.stdout)["environments"]:
        errors = env["releases"][0]["errors"]  # the chart's schema, and prod's policy too
        assert errors, env
        for error in errors:
            assert error.startswith(f"--set: app python-app, environment {env['name']}: $.replicaCount: "), error
            assert DEFINITION not in error
    assert storage_names(kube, two_namespaces[0]) == []


def test_write_only_values_are_masked_in_violations(tmp_path: Path, two_namespaces: tuple[str, str]) -> None:
    short = "shhh42"  # shorter than the chart's minLength 8, and writeOnly
    repo = make_repo(tmp_path, *two_namespaces, default_values={"replicaCount": 1, "secret": {"password": short}})

    table = cli(repo, "validate")
    as_json = cli(repo, "validate", "-o", "json")
    plan = cli(repo, "plan", "default", "-o", "json")

    assert table.exit_code == 1
    (violation,) = json.loads(as_json.stdout)["violations"]
    line, column = _place(repo, "- name: default", f"password: {short}")
    assert violation == {
        "file": DEFINITION,
        "line": line,
        "column": column,
        "app": "python-app",
        "environment": "default",
        "schema": "charts/python-app/values.schema.json",
        "path": "$.secret.password",
        "expected": "at least 8 characters",
        "value": "(sensitive)",
    }
    assert '"(sensitive)"' in table.stdout
    assert plan.exit_code == 1
    for out in (table.output, as_json.output, plan.output):
        assert short not in out
        assert base64.b64encode(short.encode()).decode() not in out


def test_validate_writes_nothing(tmp_path: Path, kube: Kube, namespace: str) -> None:
    prod_ns = f"{namespace}-prod"
    repo = make_repo(tmp_path, namespace, prod_ns)

    assert cli(repo, "validate").exit_code == 0

    assert not namespace_exists(kube, prod_ns)
    assert storage_names(kube, namespace) == []


# --- bad input: one clear paragraph, exit 1, never a traceback -----------------------------------


def _assert_clear_error(repo: Path, expected: str, *, env: str = "prod") -> str:
    for args in (["validate"], ["plan", env]):
        result = cli(repo, *args)
        assert result.exit_code == 1, result.output
        assert "Traceback" not in result.output
        assert result.stdout == ""
        assert result.stderr.startswith("Error: "), result.stderr
        assert "\n\n" not in result.stderr.strip()
        assert expected in result.stderr, result.stderr
        doc = json.loads(cli(repo, *args, "-o", "json").stdout)
        assert doc["exitCode"] == 1 and expected in doc["error"]
    return result.stderr


def test_unknown_environment(tmp_path: Path, two_namespaces: tuple[str, str]) -> None:
    repo = make_repo(tmp_path, *two_namespaces)
    for args in (["plan", "staging"], ["validate", "staging"]):
        result = cli(repo, *args)
        assert result.exit_code == 1
        assert result.stderr == "Error: unknown environment 'staging': the chain defines default, prod\n"


def test_yaml_syntax_error_names_file_and_line(tmp_path: Path, two_namespaces: tuple[str, str]) -> None:
    repo = make_repo(tmp_path, *two_namespaces)
    text = (repo / DEFINITION).read_text().splitlines()
    broken = len(text) + 1
    (repo / DEFINITION).write_text("\n".join([*text, "  - name: [staging"]) + "\n")

    error = _assert_clear_error(repo, f"{DEFINITION}:{broken}")
    assert "YAML syntax error" in error


def test_unknown_key_in_a_definition(tmp_path: Path, two_namespaces: tuple[str, str]) -> None:
    repo = make_repo(tmp_path, *two_namespaces, extra_prod={"replicas": 3})

    line, _ = _place(repo, "- name: prod", "replicas: 3")

    error = _assert_clear_error(repo, f"{DEFINITION}:{line}:3: unknown key 'replicas'")
    assert "(did you mean 'release'?)" not in error  # no suggestion that is not close


def test_duplicate_environment_names(tmp_path: Path, two_namespaces: tuple[str, str]) -> None:
    doc = definition(*two_namespaces)
    doc["environments"][1]["name"] = "default"
    repo = make_repo(tmp_path, *two_namespaces)
    write_definition(repo, doc)

    _assert_clear_error(repo, "environment 'default' is listed twice for app python-app", env="default")


def test_duplicate_key_in_yaml(tmp_path: Path, two_namespaces: tuple[str, str]) -> None:
    repo = make_repo(tmp_path, *two_namespaces)
    (repo / DEFINITION).write_text((repo / DEFINITION).read_text() + "app: other\n")

    _assert_clear_error(repo, "found duplicate key 'app'")


def test_missing_chart(tmp_path: Path, two_namespaces: tuple[str, str]) -> None:
    repo = make_repo(tmp_path, *two_namespaces, top={"chart": "../charts/no-such-chart"})

    _assert_clear_error(repo, "chart '../charts/no-such-chart' not found")


def test_missing_values_file_and_policy_are_reported(tmp_path: Path, two_namespaces: tuple[str, str]) -> None:
    doc = definition(*two_namespaces)
    doc["environments"][1]["policy"] = "../schemas/missing.json"
    repo = make_repo(tmp_path, *two_namespaces)
    write_definition(repo, doc)

    _assert_clear_error(repo, "'../schemas/missing.json' not found")


def test_definition_that_is_not_a_mapping(tmp_path: Path, two_namespaces: tuple[str, str]) -> None:
    repo = make_repo(tmp_path, *two_namespaces)
    (repo / DEFINITION).write_text(yaml.safe_dump(["just", "a", "list"]))

    _assert_clear_error(repo, "expected a mapping")
