"""Keyed fingerprints: how promote proves two secret values equal without keeping either.

A plain SHA-256 of a weak password is reversed offline in seconds (every other value is in Git, so
a guess is cheap to check). So every digest that covers Secret content is an HMAC:

- under the *machine key* (32 random bytes, created 0600 in the 0700 cache folder on first use) for
  what never leaves this machine: the render cache's Secret fingerprints and its file names;
- under the *plan key* for the manifest digests a plan prints and a saved plan carries. It is the
  machine key, or PROMOTE_PLAN_KEY when set (a CI secret shared by the plan job and the apply job
  that run on different machines). A saved plan names its key by an id, so an apply holding another
  key says so instead of calling every release stale.

Digests that are recorded in the cluster and compared across machines (the artifact and values
digests) cannot be keyed per machine; they leave writeOnly values out instead (workspace.Target).
"""

from __future__ import annotations

import functools
import hashlib
import hmac
import os
from pathlib import Path

KEY_BYTES = 32
PLAN_KEY_ENV = "PROMOTE_PLAN_KEY"


def cache_root() -> Path:
    """promote's cache folder; PROMOTE_CACHE moves it (tests, read-only homes)."""
    root = os.environ.get("PROMOTE_CACHE") or os.path.join(os.path.expanduser("~"), ".cache", "promote")
    return Path(root)


@functools.cache
def _machine_key(path: Path) -> bytes:
    try:
        data = path.read_bytes()
        if len(data) == KEY_BYTES:
            return data
    except OSError:
        pass
    try:
        path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
        key = os.urandom(KEY_BYTES)
        tmp = path.with_name(f".key.{os.getpid()}.tmp")
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "wb") as f:
            f.write(key)
        try:
            # link, not replace: when two runs create the key at once, the first one wins for both.
            os.link(tmp, path)
        except FileExistsError:
            pass
        finally:
            os.unlink(tmp)
        data = path.read_bytes()
        if len(data) == KEY_BYTES:
            return data
    except OSError:
        pass
    # No writable cache (a read-only home): a key for this run only. Nothing keyed by it is reused.
    return os.urandom(KEY_BYTES)


def machine_key() -> bytes:
    """This machine's key, created on first use."""
    return _machine_key(cache_root() / "key")


def plan_key() -> bytes:
    """The key of the digests a plan shows and a saved plan carries."""
    shared = os.environ.get(PLAN_KEY_ENV)
    if shared:
        return hashlib.sha256(b"promote plan key\0" + shared.encode()).digest()
    return machine_key()


def key_id(key: bytes) -> str:
    """A name for a key that tells keys apart and nothing else."""
    return hmac.new(key, b"promote key id", hashlib.sha256).hexdigest()[:16]


def keyed(data: bytes, key: bytes) -> str:
    """The HMAC-SHA256 of data, hex."""
    return hmac.new(key, data, hashlib.sha256).hexdigest()
