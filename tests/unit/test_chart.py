"""Charts on disk (promote.chart): whether a chart's render depends on the cluster (its version, its objects,
install or upgrade) or on its values. A chart whose templates never read the cluster or the install/upgrade
state renders before promote has connected."""

from __future__ import annotations

from pathlib import Path

import pytest

from promote import chart
from tests.support.charts import small_chart


def test_plain_chart_renders_the_same_on_any_cluster(tmp_path: Path) -> None:
    info = chart.chart_info(small_chart(tmp_path, {"README.md": "uses .Capabilities in prose only\n"}))
    assert info.cluster_independent
    assert not info.uses_lookup


@pytest.mark.parametrize(
    ("rel", "text"),
    [
        ("templates/pdb.yaml", '{{ if .Capabilities.APIVersions.Has "policy/v1" }}x{{ end }}\n'),
        ("templates/ver.yaml", "{{ .Capabilities.KubeVersion.Minor }}\n"),
        ("templates/once.yaml", "{{ if .Release.IsInstall }}x{{ end }}\n"),
        ("templates/up.yaml", "{{ if .Release.IsUpgrade }}x{{ end }}\n"),
        ("charts/sub/templates/_h.tpl", '{{ define "x" }}{{ .Capabilities.KubeVersion }}{{ end }}\n'),
        ("charts/sub/Chart.yaml", "apiVersion: v2\nname: sub\nversion: 1.0.0\nkubeVersion: '>=1.19'\n"),
    ],
)
def test_chart_that_reads_the_cluster_waits_for_it(tmp_path: Path, rel: str, text: str) -> None:
    assert not chart.chart_info(small_chart(tmp_path, {rel: text})).cluster_independent


def test_lookup_in_a_subchart_is_seen(tmp_path: Path) -> None:
    info = chart.chart_info(
        small_chart(tmp_path, {"charts/sub/templates/s.yaml": '{{ lookup "v1" "Secret" "" "" }}\n'})
    )
    assert info.uses_lookup
    assert not info.cluster_independent


def _tgz(path: Path, files: dict[str, str]) -> None:
    import io
    import tarfile

    with tarfile.open(path, "w:gz") as tar:
        for name, text in files.items():
            data = text.encode()
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))


def test_packaged_dependency_is_looked_into(tmp_path: Path) -> None:
    root = small_chart(tmp_path, {})
    (root / "charts").mkdir()
    _tgz(
        root / "charts" / "common-2.0.0.tgz",
        {
            "common/Chart.yaml": "apiVersion: v2\nname: common\nversion: 2.0.0\ntype: library\n",
            "common/templates/_capabilities.tpl": '{{ define "common.kv" }}{{ .Capabilities.KubeVersion }}{{ end }}',
        },
    )
    assert not chart.chart_info(root).cluster_independent
    plain = small_chart(tmp_path / "plain", {})
    (plain / "charts").mkdir()
    _tgz(plain / "charts" / "dep-1.0.0.tgz", {"dep/templates/cm.yaml": "kind: ConfigMap\n"})
    assert chart.chart_info(plain).cluster_independent


def test_tpl_makes_a_chart_depend_on_its_values(tmp_path: Path) -> None:
    info = chart.chart_info(small_chart(tmp_path, {"templates/extra.yaml": "{{ tpl .Values.extra . }}\n"}))
    assert info.uses_tpl and not info.cluster_independent and not info.uses_lookup
    assert not info.reads_cluster({"extra": "kind: ConfigMap"})
    assert info.reads_cluster({"extra": '{{ (lookup "v1" "Secret" "ns" "s").data }}'})


def test_lookup_reached_through_tpl_is_never_cached(tmp_path: Path) -> None:
    info = chart.chart_info(
        small_chart(
            tmp_path,
            {
                "templates/extra.yaml": '{{ tpl (.Files.Get "conf/extra.tpl") . }}\n',
                "conf/extra.tpl": '{{ (lookup "v1" "Secret" "ns" "s").data }}\n',
            },
        )
    )
    assert info.uses_lookup and info.reads_cluster({})


def test_a_corrupt_packaged_dependency_counts_as_reading_the_cluster(tmp_path: Path) -> None:
    root = small_chart(tmp_path, {})
    (root / "charts").mkdir()
    (root / "charts" / "broken-1.0.0.tgz").write_bytes(b"\x1f\x8b\x08\x00" + b"not gzip at all" * 10)
    assert not chart.chart_info(root).cluster_independent
