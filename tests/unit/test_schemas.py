"""The published JSON Schemas under schemas/ (the contract pipelines read) on their own: valid Draft 2020-12,
versioned, closed, and every command's error branch the one error document. That real output matches them
is checked on the cluster, in tests/cluster/test_contract.py."""

from __future__ import annotations

from jsonschema import Draft202012Validator

from tests.support.contract import assert_valid, schema


def test_every_command_schema_accepts_the_error_document_and_nothing_else() -> None:
    error = {"error": "unknown environment 'x': the chain defines default, prod", "exitCode": 1}
    for name in ("plan", "status", "apply-result", "history", "validate", "diff", "gate", "watch-event", "error"):
        assert_valid(error, name)
        for bad in ({}, {"error": "x"}, {"error": "x", "exitCode": 1, "extra": True}, {"error": "", "exitCode": 1}):
            assert list(Draft202012Validator(schema(name)).iter_errors(bad)), (name, bad)
    # The error branch of every command schema is the published error schema.
    standalone = {k: v for k, v in schema("error").items() if k not in ("$schema", "$id", "title")}
    for name in ("plan", "status", "apply-result", "history", "validate", "diff", "gate", "watch-event"):
        assert schema(name)["$defs"]["error"] == standalone, name


def test_schemas_are_valid_draft_2020_12_and_require_schema_version() -> None:
    for name, defn in (
        ("plan", "plan"),
        ("status", "status"),
        ("apply-result", "applyResult"),
        ("history", "history"),
        ("validate", "validate"),
        ("diff", "diff"),
        ("gate", "gate"),
        ("watch-event", "watchEvent"),
    ):
        doc = schema(name)
        Draft202012Validator.check_schema(doc)
        assert doc["$schema"] == "https://json-schema.org/draft/2020-12/schema"
        top = doc["$defs"][defn]
        assert "schemaVersion" in top["required"], name
        assert top["properties"]["schemaVersion"]["const"] == 1, name
        assert top["additionalProperties"] is False, name
