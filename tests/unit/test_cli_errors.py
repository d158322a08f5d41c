"""Errors as the command line prints them, without a cluster: each names the file, line and column of the
mistake (definitions, shared `_*.yaml` files, `-f` values files, schemas), suggests the name meant for
a misspelt key, environment or app, and attributes a bad value to whoever set it: `--set`, a `-f` file,
or the definition."""

from __future__ import annotations

import json
from pathlib import Path

import yaml

from tests.support.cli import cli
from tests.support.repo import DEFINITION, definition, make_repo, write_definition


def _repo(tmp_path: Path) -> Path:
    return make_repo(tmp_path, "t-unused-a", "t-unused-b")


def _lines(path: Path) -> list[str]:
    return path.read_text().splitlines()


def test_a_value_set_with_set_is_attributed_to_set(tmp_path: Path) -> None:
    repo = _repo(tmp_path)

    table = cli(repo, "validate", "--set", "replicaCount=abc")
    doc = json.loads(cli(repo, "validate", "--set", "replicaCount=abc", "-o", "json").stdout)

    assert table.exit_code == 1, table.output
    assert {(v["file"], v["line"], v["path"], v["expected"]) for v in doc["violations"]} == {
        ("--set", None, "$.replicaCount", "type integer")
    }
    rows = [line.split() for line in table.stdout.split("\n\n")[0].splitlines()[1:]]
    assert {row[0] for row in rows} == {"--set"}
    assert DEFINITION not in table.stdout


def test_a_value_from_a_values_file_names_that_file_and_line(tmp_path: Path) -> None:
    repo = _repo(tmp_path)
    extra = repo / "extra.yaml"
    extra.write_text("# raise the port\nservice:\n  port: 70000\n")

    doc = json.loads(cli(repo, "validate", "default", "-f", str(extra), "-o", "json").stdout)
    table = cli(repo, "validate", "default", "-f", str(extra))
    wide = cli(repo, "validate", "default", "-f", str(extra), "-o", "wide")

    (v,) = doc["violations"]
    assert (v["file"], v["line"], v["column"], v["path"]) == (str(extra), 3, 9, "$.service.port")
    assert wide.stdout.splitlines()[1].split()[:4] == [f"{extra}:3:9", "python-app", "default", "$.service.port"]
    # In 80 columns the long path is cut in the middle: its start, and the file name and place, stay.
    cell = table.stdout.splitlines()[1].split()[0]
    assert cell.startswith(str(extra)[:8]) and cell.endswith("extra.yaml:3:9") and "…" in cell, cell


def test_a_value_from_the_definition_names_its_line(tmp_path: Path) -> None:
    repo = _repo(tmp_path)
    doc = definition("t-unused-a", "t-unused-b", prod_values={"replicaCount": 1})
    write_definition(repo, doc)
    lines = _lines(repo / DEFINITION)
    line = lines.index("    replicaCount: 1", lines.index("- name: prod")) + 1

    result = cli(repo, "validate", "prod")

    assert result.exit_code == 1
    assert f"{DEFINITION}:{line}:19 " in result.stdout, result.stdout


def test_a_value_from_a_shared_file_names_the_shared_file(tmp_path: Path) -> None:
    repo = _repo(tmp_path)
    shared = repo / "environments" / "_shared.yaml"
    shared.write_text("environments:\n  - name: prod\n    values:\n      service: {port: 0}\n")

    doc = json.loads(cli(repo, "validate", "-o", "json").stdout)

    (v,) = doc["violations"]
    assert (v["file"], v["line"], v["column"], v["environment"]) == ("environments/_shared.yaml", 4, 23, "prod")


def test_a_misspelt_key_is_placed_and_the_key_meant_suggested(tmp_path: Path) -> None:
    repo = _repo(tmp_path)
    text = (repo / DEFINITION).read_text().replace("  namespace: t-unused-b", "  namespce: t-unused-b")
    (repo / DEFINITION).write_text(text)
    line = _lines(repo / DEFINITION).index("  namespce: t-unused-b") + 1

    result = cli(repo, "plan", "prod")

    assert result.exit_code == 1
    assert result.stderr == (
        "Error: invalid environment definitions:\n"
        f"  {DEFINITION}:{line}:3: unknown key 'namespce' (did you mean 'namespace'?)\n"
    )


def test_a_misspelt_key_in_a_shared_file(tmp_path: Path) -> None:
    repo = _repo(tmp_path)
    (repo / "environments" / "_shared.yaml").write_text("environments:\n  - name: prod\n    sook: 10m\n")

    result = cli(repo, "validate")

    assert result.exit_code == 1
    assert "environments/_shared.yaml:3:5: unknown key 'sook' (did you mean 'soak'?)" in result.stderr


def test_a_misspelt_environment_or_app_name_gets_a_suggestion(tmp_path: Path) -> None:
    repo = _repo(tmp_path)

    env = cli(repo, "plan", "prdo")
    app = cli(repo, "validate", "--app", "pyhton-app")

    assert env.exit_code == app.exit_code == 1
    assert env.stderr == "Error: unknown environment 'prdo': the chain defines default, prod (did you mean 'prod'?)\n"
    assert app.stderr == "Error: unknown app pyhton-app (did you mean 'python-app'?): defined are python-app\n"


def test_a_schema_that_is_not_json_names_line_and_column(tmp_path: Path) -> None:
    repo = _repo(tmp_path)
    (repo / "schemas" / "python-app.values.schema.json").write_text('{\n  "type": "object",\n  oops\n}\n')

    result = cli(repo, "validate")

    assert result.exit_code == 1
    assert result.stderr.startswith("Error: schemas/python-app.values.schema.json:3:3: not valid JSON: "), result.stderr


def test_a_definition_of_the_wrong_type_names_line_and_path(tmp_path: Path) -> None:
    repo = _repo(tmp_path)
    doc = yaml.safe_load((repo / DEFINITION).read_text())
    doc["environments"][1]["soak"] = "ten minutes"
    write_definition(repo, doc)
    line = next(i for i, text in enumerate(_lines(repo / DEFINITION), 1) if "soak:" in text)

    result = cli(repo, "validate")

    assert result.exit_code == 1
    assert f"  {DEFINITION}:{line}:9: environments/1/soak: 'ten minutes' does not match" in result.stderr
