"""Credentials kept out of what promote prints (promote.redact), and the CLI's one way out passing through it:
views, errors, --debug tracebacks and library log records. The token audit on the real cluster, as a
least-privileged ServiceAccount, is in tests/cluster/test_rbac.py."""

from __future__ import annotations

import json
import logging
import secrets
from pathlib import Path

import pytest

from promote import redact
from promote.cli import AppContext, _EchoHandler, _route_library_logs
from promote.cluster import _register


def _token() -> str:
    return "eyJ" + secrets.token_urlsafe(48)


def _app(debug: bool = False, fmt: str = "table") -> AppContext:
    return AppContext(debug=debug, root=Path("."), kubeconfig=None, context=None, color=False, fmt=fmt)


def test_a_registered_token_is_masked_as_is_trimmed_and_escaped() -> None:
    token = _token()
    redact.register(token + "\n")

    assert redact.scrub(f"header {token}\n!") == "header ***!"
    assert redact.scrub(repr(f"Bearer {token}\n")) == "'Bearer ***'"
    assert token not in redact.scrub(json.dumps({"e": f"x {token}\n"}))


def test_an_unregistered_bearer_token_is_masked_and_prose_is_not() -> None:
    token = _token()

    assert redact.scrub(f"Authorization: Bearer {token}") == "Authorization: Bearer ***"
    assert redact.scrub("a bearer of bad news; basic authentication") == "a bearer of bad news; basic authentication"


def test_short_strings_are_not_registered() -> None:
    redact.register("abc")
    redact.register("")
    redact.register(None)

    assert redact.scrub("abc abcdef") == "abc abcdef"


def test_the_cluster_adapter_registers_a_basic_auth_password() -> None:
    import base64

    password = secrets.token_hex(8)
    _register("Basic " + base64.b64encode(f"ci:{password}".encode()).decode())

    assert redact.scrub(f"password {password}") == "password ***"


@pytest.mark.parametrize("fmt", ["table", "json"])
def test_errors_and_debug_tracebacks_are_masked(fmt: str, capsys: pytest.CaptureFixture[str]) -> None:
    token = _token()
    redact.register(token)
    try:
        raise ValueError(f"Invalid header value b'Bearer {token}'")
    except ValueError as e:
        error = e
    with pytest.raises(SystemExit) as exit_:
        _app(debug=True, fmt=fmt).abort(error)

    out, err = capsys.readouterr()
    assert exit_.value.code == 1
    assert "Traceback" in err and "Invalid header value b'Bearer ***'" in out + err
    assert token not in out + err


def test_library_log_records_go_out_masked(capsys: pytest.CaptureFixture[str]) -> None:
    token = _token()
    redact.register(token)
    _route_library_logs(_app())
    try:
        logging.getLogger("kubernetes.config").error("exec: plugin said %s", token)
        logging.getLogger("urllib3").debug("not shown: %s", "below warning")
    finally:
        root = logging.getLogger()
        for handler in [h for h in root.handlers if isinstance(h, _EchoHandler)]:
            root.removeHandler(handler)

    err = capsys.readouterr().err
    assert err == "error: exec: plugin said ***\n"


def test_rendered_secret_values_are_masked_too_base64_and_decoded() -> None:
    import base64

    password = "pw-" + secrets.token_hex(8)
    string = "st-" + secrets.token_hex(8)
    encoded = base64.b64encode(password.encode()).decode()
    secret = {"kind": "Secret", "data": {"pw": encoded}, "stringData": {"s": string}}
    config = {"kind": "ConfigMap", "data": {"c": "cm-" + secrets.token_hex(8)}}
    redact.register_rendered(secret)
    redact.register_rendered(config)
    text = f"422: Secret data {encoded} ({password}), stringData {string}; ConfigMap {config['data']['c']}"
    out = redact.scrub(text)
    assert password not in out and encoded not in out and string not in out
    assert config["data"]["c"] in out, "only Secrets are registered: a ConfigMap's values are not secret"


def test_an_apps_write_only_values_are_registered_when_its_targets_are_built(tmp_path: Path) -> None:
    from promote.engine import workspace

    value = "wo-" + secrets.token_hex(8)
    assert workspace._registered(frozenset({value})) == frozenset({value})
    assert value not in redact.scrub(f"helm: quoted {value}")
