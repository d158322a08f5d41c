"""Chart references (promote.model) and the chart cache (promote.chartsource): what an app file's chart
means, and that a package is unpacked once, safely, and remembered only when its reference is exact."""

from __future__ import annotations

import io
import tarfile
from pathlib import Path

import pytest

from promote import chartsource
from promote.errors import ChartError
from promote.model import ChartRef, ChartSource


@pytest.fixture(autouse=True)
def cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("PROMOTE_CACHE", str(tmp_path / "cache"))
    return tmp_path / "cache" / "charts"


def _tgz(members: dict[str, bytes], links: dict[str, str] | None = None) -> bytes:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w:gz") as tar:
        for name, data in members.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
        for name, target in (links or {}).items():
            info = tarfile.TarInfo(name)
            info.type = tarfile.SYMTYPE
            info.linkname = target
            tar.addfile(info)
    return buf.getvalue()


CHART = {"demo/Chart.yaml": b"apiVersion: v2\nname: demo\nversion: 1.0.0\n", "demo/values.yaml": b"a: 1\n"}


@pytest.mark.parametrize(
    ("version", "exact"),
    [("1.2.3", True), ("v1.2.3", True), ("1.2.3-rc.1+build.5", True), ("^1.2", False), ("~1.2.3", False),
     (">=1.0 <2.0", False), ("1.x", False), (None, False)],
)  # fmt: skip
def test_exact_versions_are_told_from_ranges(version: str | None, exact: bool) -> None:
    assert chartsource.is_exact(version) is exact


def test_a_package_is_unpacked_once_into_the_cache(cache: Path) -> None:
    data = _tgz(CHART)
    first = chartsource._unpacked(data, "app.yaml")
    assert (first / "Chart.yaml").read_bytes() == CHART["demo/Chart.yaml"]
    (first / "values.yaml").write_text("touched\n")
    assert chartsource._unpacked(data, "app.yaml") == first
    assert (first / "values.yaml").read_text() == "touched\n", "the same bytes are not unpacked again"
    assert [p.name for p in cache.iterdir() if not p.name.startswith(".")] == [first.parent.name]


def test_links_and_paths_outside_the_package_are_not_unpacked(tmp_path: Path) -> None:
    data = _tgz(CHART, links={"demo/templates/evil.yaml": "/etc/passwd"})
    chart = chartsource._unpacked(data, "app.yaml")
    assert not (chart / "templates" / "evil.yaml").exists()
    escaping = _tgz({**CHART, "../../escape.txt": b"x"})
    with pytest.raises(ChartError, match=r"app\.yaml: the chart package is not a readable \.tgz"):
        chartsource._unpacked(escaping, "app.yaml")
    assert not (tmp_path / "escape.txt").exists()


def test_a_package_that_is_not_a_chart_is_refused_by_name() -> None:
    with pytest.raises(ChartError, match=r"^env.yaml: the chart package is not a readable \.tgz"):
        chartsource._unpacked(b"not gzip at all", "env.yaml")
    with pytest.raises(ChartError, match=r"no single folder with a Chart\.yaml"):
        chartsource._unpacked(_tgz({"x/values.yaml": b"a: 1\n"}), "env.yaml")


def test_a_package_too_large_unpacked_is_refused(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(chartsource, "MAX_UNPACKED", 1000)
    with pytest.raises(ChartError, match="unpacks to more than"):
        chartsource._unpacked(_tgz({**CHART, "demo/big": b"0" * 2000}), "env.yaml")


def test_only_exact_references_are_remembered() -> None:
    oci = ChartRef(ref="oci://127.0.0.1:5000/charts/demo", source=ChartSource.OCI)
    assert chartsource._index_key(oci, "1.2.3") is not None
    assert chartsource._index_key(oci, "^1.2") is None
    pinned = ChartRef(ref="oci://127.0.0.1:5000/charts/demo@sha256:" + "a" * 64, source=ChartSource.OCI)
    assert chartsource._index_key(pinned, None) is not None
    assert chartsource._index_key(ChartRef(ref="demo", repo="https://x", source=ChartSource.REPOSITORY), None) is None
    fetched = chartsource.Fetched(chartsource._unpacked(_tgz(CHART), "a.yaml"), "sha256:" + "b" * 64)
    key = chartsource._index_key(oci, "1.2.3")
    assert key is not None
    chartsource._remember(key, fetched)
    assert chartsource._recall(key) == fetched
    assert chartsource._recall(str(chartsource._index_key(oci, "1.2.4"))) is None


@pytest.mark.parametrize(
    ("stderr", "says"),
    [
        ("Error: failed to authorize: 401 Unauthorized", "refused the credentials"),
        ('Error: Get "http://127.0.0.1:1/v2/": dial tcp 127.0.0.1:1: connect: connection refused', "unreachable"),
        ("Error: chart not found", "chart not found"),
    ],
)
def test_helm_failures_are_said_plainly(stderr: str, says: str) -> None:
    assert says in chartsource._reason(stderr)
