"""What the fault suite (bench/faults.py) found, each pinned as pure logic: a bad input is one clear error
naming its file and place, never a traceback, a hang, or an input helm would refuse taken as valid."""

from __future__ import annotations

import asyncio
import json
import re
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner

from promote import chart, fingerprint, saved, yamlio
from promote import values as vals
from promote.cli import main
from promote.cluster import Cluster
from promote.errors import ChartError, ConfigError
from promote.helm.client import connect
from tests.support.charts import small_chart
from tests.support.cli import cli
from tests.support.repo import load_definition, make_repo, write_definition
from tests.unit.test_saved import REPLICAS_CHANGE, _plan, saved_doc

# --- the chart's values.yaml is read as strictly as every other file ------------------------------

BOMB = "a: &a [x, x, x, x, x, x, x, x, x]\n" + "".join(
    f"{chr(98 + i)}: &{chr(98 + i)} [{', '.join(['*' + chr(97 + i)] * 9)}]\n" for i in range(8)
)


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("a: !!binary aGVsbG8=\n", "binary"),
        ("a: !!set {x, y}\n", "set"),
        ("a: 1\na: 2\n", "duplicate key"),
        (BOMB, "expands to more than"),
        ("- a\n- b\n", "must be a mapping"),
    ],
)
def test_a_charts_values_yaml_is_read_strictly(tmp_path: Path, text: str, message: str) -> None:
    info = chart.chart_info(small_chart(tmp_path, {"values.yaml": text}))
    with pytest.raises(ConfigError, match=message) as e:
        chart.chart_default_values(info)
    assert "values.yaml" in str(e.value)


def test_a_plain_equals_sign_is_text_as_helm_reads_it() -> None:
    assert yamlio.load("a: =\n", name="v.yaml") == {"a": "="}


def test_an_empty_values_yaml_is_no_values(tmp_path: Path) -> None:
    assert chart.chart_default_values(chart.chart_info(small_chart(tmp_path, {"values.yaml": ""}))) == {}


# --- schemas with a $ref that does not resolve ---------------------------------------------------


@pytest.mark.parametrize("ref", ["http://127.0.0.1:9/x.json", "missing.json", "#/$defs/nope"])
def test_an_unresolvable_ref_names_the_schema_and_the_ref(ref: str) -> None:
    with pytest.raises(ConfigError, match=r"s\.json: cannot resolve \$ref") as e:
        vals.validate({"a": 1}, {"$ref": ref}, file="f", app="a", environment="e", schema_name="s.json")
    assert ref.lstrip("#") in str(e.value)


# --- Chart.yaml that pyhelm3's model refuses, and templates rendering what helm would refuse ----------


@pytest.mark.parametrize(
    ("chart_yaml", "field"),
    [
        ("apiVersion: v3\nname: c\nversion: 0.1.0\n", "apiVersion"),
        ("apiVersion: v2\nname: c\nversion: one\n", "version"),
        ("apiVersion: v2\nversion: 0.1.0\n", "name"),
    ],
)
def test_a_chart_yaml_pyhelm3_refuses_is_a_chart_error(tmp_path: Path, chart_yaml: str, field: str) -> None:
    info = chart.chart_info(small_chart(tmp_path, {"Chart.yaml": chart_yaml}))
    with pytest.raises(ChartError, match=field) as e:
        connect().chart(info)
    assert "Chart.yaml" in str(e.value)


@pytest.mark.parametrize(
    ("template", "problem"),
    [
        ("apiVersion: v1\nmetadata:\n  name: x\n", "has no kind"),
        ("kind: ConfigMap\nmetadata:\n  name: x\n", "has no apiVersion"),
        ("apiVersion: v1\nkind: ConfigMap\nmetadata: null\n", "has no metadata.name"),
    ],
)
def test_a_rendered_object_helm_would_refuse_names_its_template(tmp_path: Path, template: str, problem: str) -> None:
    info = chart.chart_info(small_chart(tmp_path, {"templates/extra.yaml": template}))
    helm = connect()
    with pytest.raises(ChartError, match=f"c/templates/extra.yaml: a rendered document {problem}"):
        asyncio.run(helm.template(info, release="r", namespace="n", values={}, is_upgrade=False))


# --- kubeconfig files ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("content", "message"),
    [
        ("current-context: x\n# café\n".encode("latin-1"), "not UTF-8"),
        (b"- a\n- b\n", "is a mapping"),
        (BOMB.encode(), "expands to more than"),
        (b"clusters: 5\ncontexts: 5\nusers: 5\ncurrent-context: x\n", "not a kubeconfig"),
    ],
)
def test_a_broken_kubeconfig_is_a_clear_error_naming_it(tmp_path: Path, content: bytes, message: str) -> None:
    path = tmp_path / "kubeconfig"
    path.write_bytes(content)
    with pytest.raises(ConfigError, match=message) as e:
        Cluster(None, str(path))
    assert str(path) in str(e.value)


# --- saved plans that were edited ----------------------------------------------------------------


def _keyed(doc: dict[str, Any], monkeypatch: pytest.MonkeyPatch) -> dict[str, Any]:
    """A saved plan as this machine writes it: with the id of the digest key (PROMOTE_PLAN_KEY's here)."""
    monkeypatch.setenv(fingerprint.PLAN_KEY_ENV, "fault suite")
    for env in doc["environments"]:
        for release in env["releases"]:
            for field in ("artifactDigest", "valuesDigest", "manifestDigest"):
                release[field] = "0" * 64  # test_saved's placeholders are not hex
    return {**doc, "digestKey": fingerprint.key_id(fingerprint.plan_key())}


def test_a_plan_edited_out_of_shape_is_refused_by_where(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = tmp_path / "plan.json"
    doc = _keyed(saved_doc(_plan()), monkeypatch)
    doc["environments"][0]["releases"][0]["changes"][0]["kind"] = {"x": 1}
    path.write_text(json.dumps(doc))
    with pytest.raises(ConfigError, match=r"plan\.json is not a plan promote wrote: \$\.environments\[0\]"):
        saved.read(str(path))


def test_a_plan_in_shape_is_read(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = tmp_path / "plan.json"
    doc = _keyed(saved_doc(_plan(fields=REPLICAS_CHANGE)), monkeypatch)
    path.write_text(json.dumps(doc))
    assert saved.read(str(path)) == doc


# --- --set that helm refuses ---------------------------------------------------------------------


@pytest.mark.parametrize("assignment", ["a..b=1", "a.=1", "a={b", "a=1,,b=2", "a\\=1", "a=1,"])
def test_set_refuses_what_helm_refuses(assignment: str) -> None:
    with pytest.raises(ConfigError, match="cannot parse --set"):
        vals.parse_set([assignment])


def test_set_string_errors_name_set_string() -> None:
    with pytest.raises(ConfigError, match=r"cannot parse --set-string 'a\.\.b=\.\.\.'"):
        vals.parse_set(["a..b=1"], as_string=True)


@pytest.mark.parametrize(
    ("assignment", "values"),
    [("a\\=b=1", {"a=b": 1}), ("a={1,2}", {"a": [1, 2]}), ("a=[1", {"a": "[1"}), ("{a}=1", {"{a}": 1})],
)
def test_set_keeps_what_helm_accepts(assignment: str, values: dict[str, Any]) -> None:
    assert vals.parse_set([assignment]) == values


# --- schemas that are no schema, and durations, named by place -------------------------------------


def test_an_invalid_schema_names_the_place_in_it() -> None:
    with pytest.raises(ConfigError, match=r"s\.json is not a valid JSON schema at \$\.properties\.a\.type"):
        vals.validate({}, {"properties": {"a": {"type": 5}}}, file="f", app="a", environment="e", schema_name="s.json")


def test_a_chart_schema_that_is_null_is_refused_by_name(tmp_path: Path) -> None:
    info = chart.chart_info(small_chart(tmp_path, {"values.schema.json": "null"}))
    with pytest.raises(ConfigError, match=r"values\.schema\.json: a JSON schema must be an object"):
        chart.chart_schema(info)


@pytest.mark.parametrize(
    ("args", "option"),
    [
        (["apply", "prod", "--timeout", "abc"], "--timeout"),
        (["apply", "prod", "--lock-timeout", "-5s"], "--lock-timeout"),
        (["rollback", "prod", "--timeout", "soon"], "--timeout"),
        (["watch", "prod", "--interval", "often"], "--interval"),
    ],
)
def test_a_bad_duration_names_its_option(tmp_path: Path, args: list[str], option: str) -> None:
    result = CliRunner().invoke(main, ["--no-color", "-C", str(tmp_path), *args])
    assert result.exit_code == 1, result.output
    assert f"{option}: cannot parse duration" in result.stderr, result.stderr


# --- a definition naming a file outside the repository, or a folder --------------------------------


@pytest.mark.parametrize(
    ("key", "value", "message"),
    [
        ("chart", "/etc", "resolves outside the repository"),
        ("valuesFiles", ["../../../../../../etc/hostname"], "resolves outside the repository"),
        ("schema", "/etc/hostname", "resolves outside the repository"),
        ("schema", "../schemas", "is a folder, not a file"),
    ],
)
def test_a_definition_naming_a_path_it_cannot_use_is_named_with_the_key(
    tmp_path: Path, key: str, value: Any, message: str
) -> None:
    repo = make_repo(tmp_path, "d", "p")
    doc = load_definition(repo)
    doc[key] = value
    write_definition(repo, doc)
    result = cli(repo, "validate")
    assert result.exit_code == 1, result.output
    assert re.search(rf"environments/python-app\.yaml:\d+:\d+: .*{message}", result.stderr), result.stderr


# --- an explicit null in an environment's values -------------------------------------------------


def test_a_null_in_an_environments_values_deletes_the_key_below_it(tmp_path: Path) -> None:
    repo = make_repo(tmp_path, "d", "p")
    doc = load_definition(repo)
    doc["values"] = {"secret": {"password": "long-enough"}}
    doc["environments"][0]["values"] = {"replicaCount": 1, "secret": None}
    write_definition(repo, doc)
    result = cli(repo, "validate", "default", "-o", "json")
    assert result.exit_code == 1, result.output
    (violation,) = json.loads(result.stdout)["violations"]
    assert (violation["environment"], violation["path"]) == ("default", "$"), violation
    assert "'secret' is a required property" in violation["expected"], violation


def test_a_required_key_deleted_by_a_null_names_the_file_of_the_null(tmp_path: Path) -> None:
    repo = make_repo(tmp_path, "d", "p")
    nulls = tmp_path / "nulls.yaml"
    nulls.write_text("replicaCount: 2\nsecret: null\n")
    result = cli(repo, "validate", "default", "-f", str(nulls), "-o", "json")
    assert result.exit_code == 1, result.output
    (violation,) = json.loads(result.stdout)["violations"]
    assert (violation["file"], violation["line"], violation["path"]) == (str(nulls), 2, "$"), violation


# --- a violation of a whole map shows its keys, not its values -----------------------------------


def test_a_required_key_violation_shows_the_maps_keys_not_its_values() -> None:
    # A value that goes into a Secret is marked by no schema here: only its keys may be shown.
    values = {"secret": {"password": "hunter2hunter2"}, "items": [1, 2, 3]}
    (v,) = vals.validate(values, {"required": ["mustHave"]}, file="f", app="a", environment="e", schema_name="s.json")
    assert (v.path, v.value) == ("$", "{secret, items}")
    assert "hunter2" not in str(v)
