"""Charts from where they live: a package in the source, a Helm repository, an OCI registry, a URL.

Every chart that is not a folder in the source is pulled once with helm (so helm's own registry logins
and repository credentials apply, and nothing secret passes through promote), unpacked into the cache
by the SHA-256 of its package, and rendered from there like a local chart. An exact version or a digest
is remembered, so later runs neither pull nor ask the network; a range is resolved by helm on every
run, and what it resolved to is the chart's version in the plan and the record.
"""

from __future__ import annotations

import contextlib
import hashlib
import io
import json
import os
import re
import shutil
import subprocess
import tarfile
import tempfile
import zlib
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from promote import fingerprint, yamlio
from promote.errors import ChartError, ConfigError
from promote.model import ChartRef, ChartSource
from promote.source import Source

PULL_TIMEOUT = 120.0
MAX_PACKAGE = 64 << 20  # bytes of a packaged chart
MAX_UNPACKED = 256 << 20  # bytes of its files, unpacked
INDEX_VERSION = 1
_EXACT = re.compile(r"^v?\d+\.\d+\.\d+(-[0-9A-Za-z.-]+)?(\+[0-9A-Za-z.-]+)?$")
_DIGEST_LINE = re.compile(r"^Digest:\s*(sha256:[0-9a-f]{64})\s*$", re.M)


@dataclass(frozen=True)
class Fetched:
    """A chart unpacked in the cache."""

    path: Path  # the chart folder (Chart.yaml inside)
    digest: str  # sha256:… of the package; for OCI, the manifest digest the registry names it by


def cache_dir() -> Path:
    """Where pulled charts are unpacked."""
    return fingerprint.cache_root() / "charts"


def is_exact(version: str | None) -> bool:
    """An exact version (1.2.3), not a range."""
    return version is not None and bool(_EXACT.match(version))


def fetch(ref: ChartRef, version: str | None, source: Source, helm: str, where: str) -> Fetched:
    """The chart `ref` at `version` (an environment's own, or the app's), unpacked in the cache.

    `where` names the definition (file:line) in errors.
    """
    if ref.source is ChartSource.PACKAGE:
        assert ref.local is not None
        data = source.read_bytes(ref.local, MAX_PACKAGE)
        return Fetched(_unpacked(data, where), "sha256:" + hashlib.sha256(data).hexdigest())
    key = _index_key(ref, version)
    if key is not None and (hit := _recall(key)) is not None:
        return hit
    data, oci_digest = _pull(ref, version, helm, where)
    fetched = Fetched(_unpacked(data, where), oci_digest or "sha256:" + hashlib.sha256(data).hexdigest())
    if key is not None:
        _remember(key, fetched)
    return fetched


# --- pulling -------------------------------------------------------------------------------------------


def _index_key(ref: ChartRef, version: str | None) -> str | None:
    """The key an exact reference is remembered by; None for a range or the latest (asked every run)."""
    if ref.source is ChartSource.URL or "@sha256:" in ref.ref:
        return json.dumps([ref.source.value, ref.ref, ref.repo])
    if not is_exact(version):
        return None
    return json.dumps([ref.source.value, ref.ref, ref.repo, version])


def _pull(ref: ChartRef, version: str | None, helm: str, where: str) -> tuple[bytes, str | None]:
    """(package bytes, OCI manifest digest) from `helm pull`."""
    named = _repository_name(ref)
    with tempfile.TemporaryDirectory(prefix="promote-pull-") as tmp:
        argv = [helm, "pull", *_pull_args(ref, version, named), "--destination", tmp]
        if named is not None and not is_exact(version):
            # A named repository is read from helm's cached index, which may predate the newest version
            # a range should resolve to: refresh it first, as `helm dependency update` does.
            _run([helm, "repo", "update", named], where, ref, version)
        done = _run(argv, where, ref, version)
        retry = done.returncode != 0 and named is not None and is_exact(version)
        # ... or predate the exact version asked for.
        if retry and _run([helm, "repo", "update", str(named)], where, ref, version).returncode == 0:
            done = _run(argv, where, ref, version)
        if done.returncode != 0:
            raise ChartError(f"{where}: cannot pull chart {_describe(ref, version)}: {_reason(done.stderr)}")
        packages = [p for p in Path(tmp).iterdir() if p.name.endswith(".tgz")]
        if len(packages) != 1:
            raise ChartError(f"{where}: helm pull of {_describe(ref, version)} left no chart package")
        if packages[0].stat().st_size > MAX_PACKAGE:
            raise ChartError(f"{where}: chart {_describe(ref, version)} is larger than {MAX_PACKAGE >> 20} MiB")
        data = packages[0].read_bytes()
        found = _DIGEST_LINE.search(done.stdout + "\n" + done.stderr)
        return data, (found.group(1) if ref.source is ChartSource.OCI and found else None)


def _repository_name(ref: ChartRef) -> str | None:
    """The name helm knows a repository chart's repository by, if it does."""
    if ref.source is not ChartSource.REPOSITORY:
        return None
    if ref.repo is None:
        return ref.ref.split("/", 1)[0]
    return _named_repository(ref.repo)


def _pull_args(ref: ChartRef, version: str | None, named: str | None) -> list[str]:
    args: list[str] = []
    if ref.source is ChartSource.REPOSITORY and ref.repo:
        args += [f"{named}/{ref.ref}"] if named else [ref.ref, "--repo", ref.repo]
    else:
        args.append(ref.ref)
    if version and "@sha256:" not in ref.ref:
        args += ["--version", version]
    if ref.plain_http:
        args.append("--plain-http")
    return args


def _named_repository(url: str) -> str | None:
    """The name `helm repo add` gave this URL: pulling through it uses the credentials stored with it."""
    config = os.environ.get("HELM_REPOSITORY_CONFIG") or os.path.join(
        os.environ.get("XDG_CONFIG_HOME") or os.path.join(os.path.expanduser("~"), ".config"),
        "helm",
        "repositories.yaml",
    )
    try:
        doc = yamlio.load(yamlio.read_text(Path(config)), name=config)
    except (OSError, ConfigError):  # no (readable) helm config: pull anonymously
        return None
    entries = doc.get("repositories") if isinstance(doc, dict) else None
    for entry in entries if isinstance(entries, list) else []:
        if isinstance(entry, dict) and str(entry.get("url", "")).rstrip("/") == url.rstrip("/"):
            return str(entry.get("name")) or None
    return None


def _run(argv: list[str], where: str, ref: ChartRef, version: str | None) -> subprocess.CompletedProcess[str]:
    try:
        return subprocess.run(argv, capture_output=True, text=True, timeout=PULL_TIMEOUT, check=False)
    except subprocess.TimeoutExpired as e:
        raise ChartError(
            f"{where}: pulling chart {_describe(ref, version)} took over {PULL_TIMEOUT:.0f} s; is it reachable?"
        ) from e
    except OSError as e:
        raise ChartError(f"{where}: cannot run helm to pull chart {_describe(ref, version)}: {e.strerror}") from e


def _describe(ref: ChartRef, version: str | None) -> str:
    where = f" from {ref.repo}" if ref.repo else ""
    return f"{ref.ref}{where}" + (f" version {version}" if version else "")


def _reason(stderr: str) -> str:
    """helm's error in one line, said plainly for the failures users meet."""
    text = " ".join(line.strip() for line in stderr.strip().splitlines() if line.strip())
    text = text.removeprefix("Error: ")
    low = text.lower()
    if "401" in low or "unauthorized" in low or "authorization failed" in low or "access denied" in low:
        return f"the server refused the credentials (helm registry login / helm repo add --username): {text}"
    if "connection refused" in low or "no such host" in low or "i/o timeout" in low:
        return f"the server is unreachable: {text}"
    return text or "helm failed without saying why"


# --- dependencies --------------------------------------------------------------------------------------


def with_dependencies(chart: Path, digest: str, helm: str, where: str) -> Path:
    """The chart with every dependency of its Chart.yaml in charts/, as helm needs to render it.

    A chart whose dependencies are all there is used as it is. Otherwise a copy in the cache gets them,
    at the versions Chart.lock names when there is one, fetched as `helm dependency build` would (a
    repository URL, a repository helm knows by name or @alias, an OCI registry, a file:// folder):
    the user's tree is never written.
    """
    meta = yamlio.load(yamlio.read_text(chart / "Chart.yaml"), name=f"{where}: Chart.yaml") or {}
    deps = [d for d in (meta.get("dependencies") or []) if isinstance(d, dict) and d.get("name")]
    missing = [d for d in deps if not _present(chart / "charts", str(d["name"]))]
    if not missing:
        return chart
    home = cache_dir() / f"deps-{digest}"
    if (home / "chart" / "Chart.yaml").is_file():
        return home / "chart"
    locked = _locked_versions(chart)
    cache_dir().mkdir(parents=True, exist_ok=True, mode=0o700)
    scratch = Path(tempfile.mkdtemp(prefix=".deps-", dir=cache_dir()))
    try:
        shutil.copytree(chart, scratch / "chart", symlinks=False)
        (scratch / "chart" / "charts").mkdir(exist_ok=True)
        what = f"{where}: chart {meta.get('name')}"
        for dep in missing:
            _fetch_dependency(chart, scratch / "chart" / "charts", dep, locked, helm, what)
        try:
            scratch.rename(home)
        except OSError:
            if not (home / "chart" / "Chart.yaml").is_file():
                raise
        return home / "chart"
    finally:
        shutil.rmtree(scratch, ignore_errors=True)


def _present(charts: Path, name: str) -> bool:
    return (charts / name / "Chart.yaml").is_file() or any(charts.glob(f"{name}-*.tgz"))


def _locked_versions(chart: Path) -> dict[str, str]:
    lock = chart / "Chart.lock"
    if not lock.is_file():
        return {}
    doc = yamlio.load(yamlio.read_text(lock), name=str(lock)) or {}
    entries = doc.get("dependencies") if isinstance(doc, dict) else None
    return {
        str(e["name"]): str(e["version"])
        for e in (entries if isinstance(entries, list) else [])
        if isinstance(e, dict) and e.get("name") and e.get("version")
    }


def _fetch_dependency(
    chart: Path, dest: Path, dep: dict[str, Any], locked: dict[str, str], helm: str, what: str
) -> None:
    name, repo = str(dep["name"]), str(dep.get("repository") or "")
    version = locked.get(name) or (str(dep["version"]) if dep.get("version") else None)
    label = f"dependency {name}" + (f" {version}" if version else "") + (f" from {repo}" if repo else "")
    if repo.startswith("file://"):
        argv = [helm, "package", str((chart / repo.removeprefix("file://")).resolve()), "--destination", str(dest)]
    else:
        if repo.startswith("oci://"):
            ref = f"{repo.rstrip('/')}/{name}"
        elif repo.startswith(("@", "alias:")):
            ref = f"{repo.removeprefix('alias:').removeprefix('@')}/{name}"
        elif repo:
            named = _named_repository(repo)
            ref = f"{named}/{name}" if named else name
        else:
            raise ChartError(f"{what}: {label} names no repository, and is not in the chart's charts/ folder")
        argv = [helm, "pull", ref, "--destination", str(dest)]
        if repo and not repo.startswith(("oci://", "@", "alias:")) and not _named_repository(repo):
            argv += ["--repo", repo]
        if version:
            argv += ["--version", version]
    try:
        done = subprocess.run(argv, capture_output=True, text=True, timeout=PULL_TIMEOUT, check=False)
    except (subprocess.TimeoutExpired, OSError) as e:
        raise ChartError(f"{what}: {label} cannot be fetched: {e}") from e
    if done.returncode != 0:
        raise ChartError(f"{what}: {label} cannot be fetched: {_reason(done.stderr)}")


# --- the cache -----------------------------------------------------------------------------------------


def _index_path() -> Path:
    return cache_dir() / "index.json"


def _recall(key: str) -> Fetched | None:
    try:
        doc = json.loads(_index_path().read_text())
        entry = doc["entries"][key] if doc.get("version") == INDEX_VERSION else None
    except (OSError, ValueError, KeyError, TypeError):
        return None
    if not isinstance(entry, dict):
        return None
    path = cache_dir() / str(entry.get("dir", "")) / "chart"
    if not (path / "Chart.yaml").is_file():
        return None
    return Fetched(path, str(entry.get("digest")))


def _remember(key: str, fetched: Fetched) -> None:
    """Add an exact reference to the index; a failure to write only costs a pull next time."""
    with contextlib.suppress(OSError, ValueError):
        path = _index_path()
        try:
            doc: dict[str, Any] = json.loads(path.read_text())
            if doc.get("version") != INDEX_VERSION or not isinstance(doc.get("entries"), dict):
                raise ValueError
        except (OSError, ValueError):
            doc = {"version": INDEX_VERSION, "entries": {}}
        doc["entries"][key] = {"dir": fetched.path.parent.name, "digest": fetched.digest}
        tmp = path.with_name(f".index.{os.getpid()}.tmp")
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w") as f:
            f.write(json.dumps(doc, indent=1))
        os.replace(tmp, path)


def _unpacked(data: bytes, where: str) -> Path:
    """The chart folder of a package, unpacked once into cache/charts/<sha256>/chart."""
    home = cache_dir() / hashlib.sha256(data).hexdigest()
    chart = home / "chart"
    if (chart / "Chart.yaml").is_file():
        return chart
    cache_dir().mkdir(parents=True, exist_ok=True, mode=0o700)
    scratch = Path(tempfile.mkdtemp(prefix=".unpack-", dir=cache_dir()))
    try:
        _extract(data, scratch, where)
        tops = [p for p in scratch.iterdir() if p.is_dir()]
        if len(tops) != 1 or not (tops[0] / "Chart.yaml").is_file():
            raise ChartError(f"{where}: the chart package has no single folder with a Chart.yaml")
        tops[0].rename(scratch / "chart")
        try:
            scratch.rename(home)
        except OSError:
            if not (chart / "Chart.yaml").is_file():  # not another run that unpacked the same bytes first
                raise
        return chart
    finally:
        shutil.rmtree(scratch, ignore_errors=True)


def _extract(data: bytes, dest: Path, where: str) -> None:
    """Unpack regular files and folders only, inside dest, within the size bound."""
    total = 0
    try:
        with tarfile.open(fileobj=io.BytesIO(data), mode="r:gz") as tar:
            members = []
            for m in tar:
                if not (m.isfile() or m.isdir()):
                    continue  # links and devices have no place in a chart
                total += m.size
                if total > MAX_UNPACKED:
                    raise ChartError(f"{where}: the chart unpacks to more than {MAX_UNPACKED >> 20} MiB")
                members.append(m)
            tar.extractall(dest, members=members, filter="data")
    except (tarfile.TarError, OSError, EOFError, zlib.error) as e:
        raise ChartError(f"{where}: the chart package is not a readable .tgz: {e}") from e
