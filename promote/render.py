"""Rendering a chart for a release, through the helm adapter (promote.helm.client).

Import this module only where helm runs: pyhelm3 costs ~0.1 s to load.
"""

from __future__ import annotations

from typing import Any

from promote.chart import ChartInfo, object_problem
from promote.errors import ChartError, HelmError
from promote.helm.client import Helm


async def render(
    helm: Helm,
    info: ChartInfo,
    *,
    release: str,
    namespace: str,
    values: dict[str, Any],
    is_upgrade: bool,
    against_cluster: bool = False,
    api_versions: tuple[str, ...] = (),
) -> list[dict[str, Any]]:
    """Every object the chart renders, hooks included, in helm's order; each one checked (see `checked`).

    `against_cluster`: `helm` talks to the release's cluster, and `lookup` reads it, as in the upgrade.
    """
    extra: dict[str, Any] = {"against_cluster": True} if against_cluster else {}
    if api_versions:
        extra["api_versions"] = api_versions
    try:
        docs = await helm.template(
            info, release=release, namespace=namespace, values=values, is_upgrade=is_upgrade, **extra
        )
    except HelmError as e:
        raise type(e)(f"cannot render chart {info.name} for release {release} in {namespace}: {e}") from e
    return checked(docs, f"chart {info.name} for release {release} in {namespace}")


def checked(docs: list[Any], what: str) -> list[dict[str, Any]]:
    """Rendered documents that are objects with apiVersion, kind and metadata.name, each once.

    helm refuses the others when it installs; found here, before anything is planned or applied, they
    are one clear error instead of a KeyError, or an apply that changes the cluster before helm says no.
    """
    out: list[dict[str, Any]] = []
    seen: set[tuple[str, str, str, str]] = set()
    for n, doc in enumerate(docs, 1):
        problem = object_problem(doc)
        if problem:
            raise ChartError(f"{what}: rendered document {n} {problem}")
        if not doc:
            continue
        md, name = doc["metadata"], doc["metadata"]["name"]
        ident = (doc["apiVersion"], doc["kind"], str(md.get("namespace") or ""), name)
        if ident in seen:
            raise ChartError(f"{what}: {doc['kind']} {name} is rendered twice; helm would refuse the chart")
        seen.add(ident)
        out.append(doc)
    return out
