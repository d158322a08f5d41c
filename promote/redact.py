"""Credentials this process holds (kube bearer tokens, basic-auth passwords), kept out of every byte it prints.

The cluster adapter registers each credential as it loads or refreshes it; the CLI passes every text it
prints (views, errors, tracebacks, library log records) through `scrub` on the way out. One place masks,
so a new output path cannot forget to. Chart values (Secret data, writeOnly values) are masked where
they are compared (diff); they are registered here as well, as a backstop for the texts nobody shaped:
a library's error quoting an object, a `--debug` traceback.
"""

from __future__ import annotations

import json
import re
import threading

MASK = "***"
# Shorter "secrets" would mask ordinary words in the output; no real token is this short.
MIN_LENGTH = 6
# A bearer token we were never told about, as an Authorization header carries it (RFC 6750's token68;
# long enough not to be a word of prose).
_BEARER = re.compile(r"(?i)\b(bearer)(\s+)[A-Za-z0-9\-._~+/]{16,}=*")

_lock = threading.Lock()
_secrets: set[str] = set()


def register(secret: str | None) -> None:
    """Mask `secret` from now on, in the forms a text may quote it: as is, trimmed, and escaped (repr, JSON)."""
    if not secret:
        return
    forms = {secret, secret.strip(), repr(secret)[1:-1], json.dumps(secret)[1:-1]}
    with _lock:
        _secrets.update(f for f in forms if len(f) >= MIN_LENGTH)


def register_rendered(obj: object) -> None:
    """Register the values of a rendered Secret: its data as sent (base64) and decoded, its stringData."""
    import base64
    import binascii
    import contextlib

    if not isinstance(obj, dict) or obj.get("kind") != "Secret":
        return
    for key in ("data", "stringData"):
        section = obj.get(key)
        if not isinstance(section, dict):
            continue
        for value in section.values():
            if not isinstance(value, str):
                continue
            register(value)
            if key == "data":
                with contextlib.suppress(binascii.Error, UnicodeDecodeError):
                    register(base64.b64decode(value, validate=True).decode())


def scrub(text: str) -> str:
    """`text` with every registered credential, and anything shaped like a bearer token, masked."""
    with _lock:
        known = sorted(_secrets, key=len, reverse=True)  # longest first: a form may contain another
    for secret in known:
        if secret in text:
            text = text.replace(secret, MASK)
    return _BEARER.sub(lambda m: f"{m.group(1)}{m.group(2)}{MASK}", text)
