"""Values: merge precedence, helm-style --set parsing, and schema violations with writeOnly masking."""

from __future__ import annotations

from typing import Any

import pytest
import yaml

from promote import values as vals
from promote.errors import ConfigError

# --- merge ---------------------------------------------------------------------------------------

CHART = {"replicaCount": 1, "image": {"repository": "r", "tag": "1.0"}, "config": {"a": 1, "b": 2}}
VALUES_FILE = {"image": {"tag": "2.0"}, "config": {"b": 20}}
APP = {"image": {"tag": "3.0"}, "extra": "app"}
ENV = {"replicaCount": 3, "image": {"tag": "4.0"}}
CLI = {"image": {"tag": "5.0"}}


def test_merge_precedence_chart_values_files_app_env_cli() -> None:
    assert vals.merge(CHART, VALUES_FILE, APP, ENV, CLI) == {
        "replicaCount": 3,
        "image": {"repository": "r", "tag": "5.0"},
        "config": {"a": 1, "b": 20},
        "extra": "app",
    }


@pytest.mark.parametrize(
    ("layers", "tag"),
    [
        ((CHART,), "1.0"),
        ((CHART, VALUES_FILE), "2.0"),
        ((CHART, VALUES_FILE, APP), "3.0"),
        ((CHART, VALUES_FILE, APP, ENV), "4.0"),
        ((CHART, VALUES_FILE, APP, ENV, CLI), "5.0"),
    ],
)
def test_each_layer_overrides_the_ones_below(layers: tuple[dict[str, Any], ...], tag: str) -> None:
    assert vals.merge(*layers)["image"]["tag"] == tag


def test_null_deletes_a_lower_layers_key() -> None:
    merged = vals.merge(CHART, {"config": {"a": None}, "image": None})
    assert merged == {"replicaCount": 1, "config": {"b": 2}}


def test_keep_nulls_passes_deletions_on_to_helm() -> None:
    assert vals.merge({"a": 1}, {"a": None, "b": {"c": None}}, keep_nulls=True) == {"a": None, "b": {"c": None}}


def test_non_maps_replace_and_inputs_are_not_mutated() -> None:
    base = {"list": [1, 2], "map": {"x": 1}}
    over = {"list": [3], "map": "scalar"}
    assert vals.merge(base, over) == {"list": [3], "map": "scalar"}
    assert base == {"list": [1, 2], "map": {"x": 1}}
    merged = vals.merge(base, {"extra": {"deep": [1]}})
    merged["map"]["x"] = 99
    assert base["map"]["x"] == 1


def test_empty_and_missing_layers_are_skipped() -> None:
    assert vals.merge(None, {}, {"a": 1}, None) == {"a": 1}


# --- --set ---------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("assignments", "expected"),
    [
        (["a=b"], {"a": "b"}),
        (["a.b.c=1"], {"a": {"b": {"c": 1}}}),
        (["a=1,b=two"], {"a": 1, "b": "two"}),
        (["a=1", "a=2"], {"a": 2}),
        (["t=true,f=false,n=null"], {"t": True, "f": False, "n": None}),
        (["i=-12,z=0,lead=007,f=1.5"], {"i": -12, "z": 0, "lead": "007", "f": "1.5"}),
        (["list={a,b,3}"], {"list": ["a", "b", 3]}),
        (["list={}"], {"list": []}),
        (["a[0]=x,a[2]=z"], {"a": ["x", None, "z"]}),
        (["a[0].name=x,a[0].port=80"], {"a": [{"name": "x", "port": 80}]}),
        (["m.k[1][0]=v"], {"m": {"k": [None, ["v"]]}}),
        (["esc=a\\,b"], {"esc": "a,b"}),
        (["nodeSelector.kubernetes\\.io/role=master"], {"nodeSelector": {"kubernetes.io/role": "master"}}),
        (["eq=a=b"], {"eq": "a=b"}),
        (["empty="], {"empty": ""}),
        (["a.b=1,a.c=2"], {"a": {"b": 1, "c": 2}}),
    ],
)
def test_parse_set(assignments: list[str], expected: dict[str, Any]) -> None:
    assert vals.parse_set(assignments) == expected


def test_set_string_keeps_strings() -> None:
    assert vals.parse_set(["a=1,b=true,c=null"], as_string=True) == {"a": "1", "b": "true", "c": "null"}


@pytest.mark.parametrize("bad", ["novalue", "=x", "[0]=x"])
def test_parse_set_rejects_malformed(bad: str) -> None:
    with pytest.raises(ConfigError, match="cannot parse --set"):
        vals.parse_set([bad])


def test_parse_set_rejects_index_into_a_map() -> None:
    with pytest.raises(ConfigError, match="non-list"):
        vals.parse_set(["a.b=1", "a[0]=2"])


# --- validation ----------------------------------------------------------------------------------

SCHEMA: dict[str, Any] = {
    "$schema": "https://json-schema.org/draft/2020-12/schema",
    "type": "object",
    "required": ["replicaCount"],
    "properties": {
        "replicaCount": {"type": "integer", "minimum": 3},
        "secret": {
            "type": "object",
            "required": ["username"],
            "properties": {"password": {"$ref": "#/$defs/password"}, "username": {"type": "string"}},
        },
        "tokens": {"type": "array", "items": {"type": "string", "writeOnly": True, "minLength": 4}},
        "env": {"type": "object", "additionalProperties": {"type": "string", "writeOnly": True}},
        "port": {"type": "integer", "maximum": 65535},
    },
    "$defs": {"password": {"type": "string", "minLength": 8, "writeOnly": True}},
}


def _validate(values: dict[str, Any], schema: dict[str, Any] = SCHEMA, **kw: Any) -> list[vals.Violation]:
    return vals.validate(values, schema, file="f.yaml", app="app", environment="prod", schema_name="s.json", **kw)


def test_every_violation_is_reported_with_its_context() -> None:
    out = _validate({"replicaCount": 1, "port": 70000})
    assert [v.to_dict() for v in out] == [
        {
            "file": "f.yaml",
            "line": None,
            "column": None,
            "app": "app",
            "environment": "prod",
            "schema": "s.json",
            "path": "$.port",
            "expected": "<= 65535",
            "value": 70000,
        },
        {
            "file": "f.yaml",
            "line": None,
            "column": None,
            "app": "app",
            "environment": "prod",
            "schema": "s.json",
            "path": "$.replicaCount",
            "expected": ">= 3",
            "value": 1,
        },
    ]
    assert str(out[1]) == ("f.yaml: app app, environment prod: $.replicaCount: expected >= 3, got 1 (schema s.json)")


def test_write_only_value_is_masked() -> None:
    (v,) = _validate({"replicaCount": 3, "secret": {"username": "u", "password": "short"}})
    assert (v.path, v.expected, v.value) == ("$.secret.password", "at least 8 characters", vals.MASK)
    assert "short" not in str(v)


def test_write_only_value_is_masked_inside_a_parent_violation() -> None:
    (v,) = _validate({"replicaCount": 3, "secret": {"password": "hunter2hunter2"}})
    assert v.path == "$.secret"
    assert v.value == "{password}"  # a map is shown by its keys (see test_faults_found)
    assert "hunter2" not in str(v)


def test_write_only_items_and_additional_properties_are_masked() -> None:
    out = _validate({"replicaCount": 3, "tokens": ["abcdefg", "xy"], "env": {"KEY": 12345}})
    assert {(v.path, v.value) for v in out} == {("$.env.KEY", vals.MASK), ("$.tokens[1]", vals.MASK)}


def test_hide_masks_paths_another_schema_marks_write_only() -> None:
    plain = {"type": "object", "properties": {"secret": {"properties": {"password": {"maxLength": 3}}}}}
    values = {"secret": {"password": "not-shown"}}
    (v,) = _validate(values, plain, hide=vals.sensitive_paths(SCHEMA, values))
    assert v.value == vals.MASK


def test_sensitive_paths() -> None:
    values = {"secret": {"password": "p", "username": "u"}, "tokens": ["a", "b"], "env": {"A": "1"}}
    assert vals.sensitive_paths(SCHEMA, values) == {
        ("secret", "password"),
        ("tokens", 0),
        ("tokens", 1),
        ("env", "A"),
    }


def test_one_of_matching_several_branches_is_a_violation() -> None:
    schema = {"properties": {"x": {"oneOf": [{"type": "integer"}, {"minimum": 0}]}}}
    (v,) = _validate({"x": 5}, schema)
    assert v.path == "$.x"


def test_any_of_failure_is_reported() -> None:
    schema = {"properties": {"x": {"anyOf": [{"type": "integer"}, {"type": "boolean"}]}}}
    (v,) = _validate({"x": "s"}, schema)
    assert (v.path, v.value) == ("$.x", "s")


def test_an_invalid_schema_is_a_config_error() -> None:
    with pytest.raises(ConfigError, match=r"s\.json is not a valid JSON schema"):
        _validate({}, {"type": "no-such-type"})


# --- where a violating value was set --------------------------------------------------------------

DEFINITION_TEXT = """\
app: web
values:
  replicaCount: 2
environments:
  - name: prod
    values:
      replicaCount: 1
      secret:
        username: u
"""


def _layers(*, set_values: tuple[str, ...] = (), values_file: str | None = None) -> list[vals.Layer]:
    """Definition layers (app values, then prod's), a -f file, then --set: as the workspace stacks them."""
    layers = [
        vals.Layer("environments/web.yaml", {"replicaCount": 2}, ("values",), read=lambda: DEFINITION_TEXT),
        vals.Layer(
            "environments/web.yaml",
            {"replicaCount": 1, "secret": {"username": "u"}},
            ("environments", 0, "values"),
            read=lambda: DEFINITION_TEXT,
        ),
    ]
    if values_file is not None:
        layers.append(vals.Layer("extra.yaml", yaml.safe_load(values_file), read=lambda: values_file))
    layers.append(vals.Layer("--set", vals.parse_set(set_values)))
    return layers


def test_a_violation_names_the_file_and_line_that_set_the_value() -> None:
    (v,) = _validate({"replicaCount": 1}, layers=_layers())
    assert (v.file, v.line, v.column, v.location) == ("environments/web.yaml", 7, 21, "environments/web.yaml:7:21")
    assert str(v).startswith("environments/web.yaml:7:21: app app, environment prod: $.replicaCount: expected >= 3")


def test_a_value_set_on_the_command_line_is_attributed_to_the_option() -> None:
    (v,) = _validate({"replicaCount": "abc"}, layers=_layers(set_values=("replicaCount=abc",)))
    assert (v.location, v.expected) == ("--set", "type integer")
    (v,) = _validate({"replicaCount": 2}, layers=_layers(values_file="# extra\nreplicaCount: 2\n"))
    assert (v.location, v.expected) == ("extra.yaml:2:15", ">= 3")


def test_a_missing_key_is_attributed_to_the_layer_of_its_parent() -> None:
    (v,) = _validate({"replicaCount": 3, "secret": {"password": "longenough"}}, layers=_layers())
    assert (v.path, v.location) == ("$.secret", "environments/web.yaml:8:7")


def test_nothing_placed_falls_back_to_the_definition_file() -> None:
    (v,) = _validate({}, layers=_layers())
    assert (v.path, v.location) == ("$", "f.yaml")


def test_an_unknown_key_is_placed_at_the_key_with_a_suggestion() -> None:
    schema = {"type": "object", "properties": {"replicaCount": {}, "image": {}}, "additionalProperties": False}
    text = "image: x\nreplicaCont: 3\nzzz: 1\n"
    layers = [vals.Layer("extra.yaml", yaml.safe_load(text), read=lambda: text)]
    out = _validate({"image": "x", "replicaCont": 3, "zzz": 1}, schema, layers=layers)
    assert [(v.path, v.expected, v.location) for v in out] == [
        ("$.replicaCont", "no unknown key (did you mean 'replicaCount'?)", "extra.yaml:2:1"),
        ("$.zzz", "no unknown key", "extra.yaml:3:1"),
    ]


def test_json_path() -> None:
    assert vals.json_path(["a", 0, "b-c", "kubernetes.io/role"]) == '$.a[0].b-c["kubernetes.io/role"]'
