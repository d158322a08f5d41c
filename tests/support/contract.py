"""The pipeline contract: the JSON Schemas under ``schemas/`` that pipelines read, checked against real
command output, and Secret values that must appear in no output, plain or base64."""

from __future__ import annotations

import json
import secrets
from collections.abc import Iterable
from functools import cache
from typing import Any

import yaml
from click.testing import Result
from jsonschema import Draft202012Validator

from tests.support.kube import b64
from tests.support.paths import SCHEMAS


@cache
def schema(name: str) -> dict[str, Any]:
    """One published schema, e.g. `plan` for schemas/plan.schema.json."""
    doc: dict[str, Any] = json.loads((SCHEMAS / f"{name}.schema.json").read_text())
    return doc


def assert_valid(doc: Any, name: str) -> None:
    """Fail listing every way `doc` breaks schemas/NAME.schema.json."""
    validator = Draft202012Validator(schema(name), format_checker=Draft202012Validator.FORMAT_CHECKER)
    errors = sorted(validator.iter_errors(doc), key=lambda e: list(e.absolute_path))
    lines = []
    for e in errors:
        lines.append(f"{'/'.join(map(str, e.absolute_path)) or '(top level)'}: {e.message}")
        # oneOf failures hide the real reason in the branches.
        lines.extend(f"    {'/'.join(map(str, c.absolute_path))}: {c.message}" for c in e.context or ())
    assert not errors, f"output does not match schemas/{name}.schema.json:\n" + "\n".join(lines)


def assert_branch(doc: Any, name: str, branch: str) -> None:
    """Valid against schemas/NAME.schema.json *and* through the given $defs branch (e.g. `error`)."""
    assert_valid(doc, name)
    root = schema(name)
    sub = {"$schema": root["$schema"], "$defs": root["$defs"], "$ref": f"#/$defs/{branch}"}
    errors = list(Draft202012Validator(sub).iter_errors(doc))
    assert not errors, f"not a {branch} document: {[e.message for e in errors]}"


def json_doc(result: Result) -> Any:
    """The single JSON document on stdout."""
    return json.loads(result.stdout)


def yaml_doc(result: Result) -> Any:
    """The single YAML document on stdout."""
    return yaml.safe_load(result.stdout)


def everything(result: Result) -> str:
    """stdout and stderr together."""
    return result.stdout + "\n" + result.stderr


def new_password() -> str:
    """A password no chart or definition contains until a test puts it there."""
    return f"Pw-{secrets.token_hex(8)}"


def forms(secret: str) -> list[str]:
    """Every way a Secret value could leak: plain, and base64 as Secret `data` holds it."""
    encoded = b64(secret)
    return [secret, encoded, encoded.rstrip("=")]


def assert_no_secret(text: str, values: Iterable[str], what: str) -> None:
    """None of the values, plain or base64, appears in the text."""
    for value in values:
        for form in forms(value):
            assert form not in text, f"{what} leaks a Secret value ({form!r}):\n{text}"
