"""A render cache: helm template is the slowest step of a plan, and its output is a pure function of
the chart's content, the values, helm's and the cluster's versions, the release name and the namespace.

Entries live in ~/.cache/promote/render (mode 0600) and never hold a Secret value: Secret data is kept
as fingerprints, enough to prove a live Secret unchanged. Whenever a plan needs the real objects (to
dry-run a change), the release is rendered again. Charts that call `lookup` (or may, through `tpl`)
read the cluster while rendering and are never cached.
"""

from __future__ import annotations

import contextlib
import json
import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

from promote import fingerprint

VERSION = 3  # 3: Secret stringData folded into data (diff.fingerprint_secret)


def cache_dir() -> Path:
    """Where entries live; PROMOTE_CACHE moves the whole cache."""
    return fingerprint.cache_root() / "render"


def key(*parts: str) -> str:
    """The cache key over everything a render depends on, keyed: a file name must not let anyone test a
    guess at the values. The plan key's id is part of it, as entries keep manifest digests made with it."""
    ident = fingerprint.key_id(fingerprint.plan_key())
    return fingerprint.keyed("\0".join((str(VERSION), ident, *parts)).encode(), fingerprint.machine_key())


def load(k: str) -> tuple[list[dict[str, Any]], str] | None:
    """(objects with Secret data fingerprinted, manifest digest), or None on a miss."""
    if os.environ.get("PROMOTE_NO_RENDER_CACHE"):
        return None
    try:
        doc = json.loads((cache_dir() / f"{k}.json").read_text())
        return list(doc["objects"]), str(doc["manifestDigest"])
    except (OSError, ValueError, KeyError):
        return None


def store(k: str, fingerprinted: list[dict[str, Any]], manifest_digest: str) -> None:
    """Save a render whose Secret data the caller has fingerprinted (diff.fingerprint_secret), so that no
    Secret value reaches the disk; a failure to write is not an error, the cache is only an accelerator."""
    try:
        d = cache_dir()
        d.mkdir(parents=True, exist_ok=True, mode=0o700)
        tmp = d / f".{k}.{os.getpid()}.tmp"
        doc = {"objects": fingerprinted, "manifestDigest": manifest_digest}
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w") as f:
            # dumps, not dump: json.dump streams through the pure-Python encoder, several times slower.
            f.write(json.dumps(doc, separators=(",", ":")))
        os.replace(tmp, d / f"{k}.json")
    except OSError:
        return


def recall(kind: str, parts: tuple[str, ...]) -> str | None:
    """A fact `remembered` before, or None."""
    try:
        return (cache_dir() / f"{kind}-{key(*parts)[:32]}").read_text()
    except OSError:
        return None


def forget(kind: str, parts: tuple[str, ...]) -> None:
    """Drop a fact `remembered` before (it was found damaged)."""
    with contextlib.suppress(OSError):
        (cache_dir() / f"{kind}-{key(*parts)[:32]}").unlink()


def remembered(kind: str, parts: tuple[str, ...], compute: Callable[[], str]) -> str:
    """A small string fact about a tool (e.g. helm's version for a binary), computed once per `parts`."""
    f = cache_dir() / f"{kind}-{key(*parts)[:32]}"
    known = recall(kind, parts)
    if known is not None:
        return known
    value = compute()
    try:
        f.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
        tmp = f.with_name(f".{f.name}.{os.getpid()}.tmp")
        tmp.write_text(value)
        os.replace(tmp, f)
    except OSError:
        pass
    return value
