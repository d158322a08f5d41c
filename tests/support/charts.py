"""Tiny charts written on the fly, for tests of what promote reads from a chart and how helm fails on one."""

from __future__ import annotations

from pathlib import Path

CHART_YAML = "apiVersion: v2\nname: c\nversion: 0.1.0\n"
CONFIGMAP = "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: c}\n"


def small_chart(tmp_path: Path, files: dict[str, str]) -> Path:
    """A chart `c` in tmp_path/chart rendering one ConfigMap, plus (or instead of) the given files."""
    root = tmp_path / "chart"
    (root / "templates").mkdir(parents=True)
    (root / "Chart.yaml").write_text(CHART_YAML)
    (root / "templates" / "cm.yaml").write_text(CONFIGMAP)
    for rel, text in files.items():
        (root / rel).parent.mkdir(parents=True, exist_ok=True)
        (root / rel).write_text(text)
    return root
