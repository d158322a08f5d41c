"""Rendering a chart for a release, through the helm adapter (promote.helm.client).

Import this module only where helm runs: pyhelm3 costs ~0.1 s to load.
"""

from __future__ import annotations

from typing import Any

from promote.chart import ChartInfo
from promote.errors import HelmError
from promote.helm.client import Helm


async def render(
    helm: Helm,
    info: ChartInfo,
    *,
    release: str,
    namespace: str,
    values: dict[str, Any],
    is_upgrade: bool,
) -> list[dict[str, Any]]:
    """Every object the chart renders, hooks included, in helm's order."""
    try:
        return await helm.template(info, release=release, namespace=namespace, values=values, is_upgrade=is_upgrade)
    except HelmError as e:
        raise type(e)(f"cannot render chart {info.name} for release {release} in {namespace}: {e}") from e
