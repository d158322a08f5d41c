"""Reading helm's own record of a release straight from its storage Secrets.

helm keeps each revision as a Secret `sh.helm.release.v1.NAME.vN` labelled owner=helm. Listing those in
one request is much cheaper than running `helm status`/`helm get manifest` per release, and gives us the
old manifest that helm's three-way merge will use.
"""

from __future__ import annotations

import base64
import gzip
import json
import re
from dataclasses import dataclass, field
from typing import Any

from promote import yamlio
from promote.cluster import Cluster
from promote.record import SYNCED_AT_ANNOTATION, Promotion


@dataclass(frozen=True)
class ReleaseRecord:
    """One stored helm revision."""

    name: str
    namespace: str
    revision: int
    status: str
    description: str
    chart_name: str
    chart_version: str
    manifest: tuple[dict[str, Any], ...]
    hooks: tuple[dict[str, Any], ...]
    deployed_at: str
    labels: dict[str, str] = field(default_factory=dict)
    annotations: dict[str, str] = field(default_factory=dict)
    secret_name: str = ""
    apply_method: str = ""  # Helm 4's record of how it applied the revision: "ssa", "csa" ("": Helm 3, csa)

    @property
    def server_side(self) -> bool:
        """True when helm applied this revision with server-side apply (Helm 4 keeps doing so for it)."""
        return self.apply_method == "ssa"


@dataclass(frozen=True)
class ReleaseHistory:
    """Every stored revision of a release, oldest first."""

    records: tuple[ReleaseRecord, ...]

    @property
    def latest(self) -> ReleaseRecord | None:
        """The newest revision, whatever its status."""
        return self.records[-1] if self.records else None

    @property
    def deployed(self) -> ReleaseRecord | None:
        """The revision helm considers current: the newest with status deployed."""
        return next((r for r in reversed(self.records) if r.status == "deployed"), None)


def applies_server_side(hist: ReleaseHistory, helm_major: int) -> bool:
    """How the next upgrade applies: Helm 4 installs with server-side apply and upgrades the way the
    current revision was applied (`--server-side=auto`); Helm 3 applies client-side, always."""
    if helm_major < 4:
        return False
    current = hist.deployed or hist.latest
    return current is None or current.server_side


def decode(secret: dict[str, Any]) -> ReleaseRecord:
    """Decode helm's storage format: base64 (Secret data) of base64 of gzip of JSON."""
    raw = base64.b64decode(base64.b64decode(secret["data"]["release"]))
    if raw[:2] == b"\x1f\x8b":
        raw = gzip.decompress(raw)
    doc = json.loads(raw)
    md = doc.get("chart", {}).get("metadata", {})
    info = doc.get("info", {})
    name = doc.get("name", "")
    manifest = tuple(yamlio.load_all(doc.get("manifest", ""), name=f"release {name} manifest"))
    hooks = tuple(
        obj for h in doc.get("hooks", []) or [] for obj in yamlio.load_all(h.get("manifest", ""), name="hook")
    )
    return ReleaseRecord(
        name=name,
        namespace=doc.get("namespace", ""),
        revision=int(doc.get("version", 0)),
        status=str(info.get("status", "unknown")),
        description=str(info.get("description", "")),
        chart_name=str(md.get("name", "")),
        chart_version=str(md.get("version", "")),
        manifest=manifest,
        hooks=hooks,
        deployed_at=str(info.get("last_deployed", "")),
        labels=dict(secret.get("metadata", {}).get("labels", {}) or {}),
        annotations=dict(secret.get("metadata", {}).get("annotations", {}) or {}),
        secret_name=str(secret.get("metadata", {}).get("name", "")),
        apply_method=str(doc.get("apply_method") or ""),
    )


def history(cluster: Cluster, namespace: str, release: str, *, current_only: bool = False) -> ReleaseHistory:
    """The stored revisions of a release (empty when it was never installed).

    `current_only` skips superseded revisions, which is all a health check needs: each revision is a
    compressed copy of the whole manifest, and a long history makes decoding them all the slow part.
    """
    selector = f"owner=helm,name={release}" + (",status!=superseded" if current_only else "")
    secrets = cluster.list("v1", "Secret", namespace, label_selector=selector)
    records = sorted((decode(s) for s in secrets), key=lambda r: r.revision)
    return ReleaseHistory(tuple(records))


def stamp(cluster: Cluster, namespace: str, rec: ReleaseRecord, annotations: dict[str, str]) -> None:
    """Annotate a revision's storage Secret (helm ignores annotations there)."""
    cluster.patch("v1", "Secret", namespace, rec.secret_name, {"metadata": {"annotations": annotations}})


_ROLLBACK = re.compile(r"^Rollback to (\d+)$")


def promotion_of(hist: ReleaseHistory, rec: ReleaseRecord | None) -> Promotion | None:
    """The promotion a revision carries; for helm's own "Rollback to N" (e.g. after --atomic), revision N's."""
    seen: set[int] = set()
    while rec is not None and rec.revision not in seen:
        seen.add(rec.revision)
        promo = Promotion.parse(rec.description)
        if promo is not None:
            return promo
        m = _ROLLBACK.match(rec.description.strip())
        if not m:
            return None
        rec = next((r for r in hist.records if r.revision == int(m.group(1))), None)
    return None


def unverified(hist: ReleaseHistory) -> ReleaseRecord | None:
    """The current revision, when promote made it but never saw it healthy (its apply died waiting)."""
    rec = hist.deployed
    return rec if rec is not None and _never_seen_healthy(rec) else None


def last_good(hist: ReleaseHistory, below: int | None = None) -> ReleaseRecord | None:
    """The revision a failed sync goes back to: as helm's --atomic picks it, the newest deployed or
    superseded one (below `below`), except that a current revision promote never saw healthy is skipped.

    Only the current revision can be judged: helm rewrites a revision's storage Secret when it supersedes
    it, dropping our stamp, so a superseded revision counts as good, as it does for helm.
    """
    for rec in reversed(hist.records):
        if below is not None and rec.revision >= below:
            continue
        if rec.status == "superseded" or (rec.status == "deployed" and not _never_seen_healthy(rec)):
            return rec
    return None


def restore_point(hist: ReleaseHistory) -> ReleaseRecord | None:
    """Where a failed sync of this release returns: its last good revision, else its current one.

    None only for a release without any revision to return to: then, as --atomic, uninstall.
    """
    return last_good(hist) or hist.deployed


def _never_seen_healthy(rec: ReleaseRecord) -> bool:
    return Promotion.parse(rec.description) is not None and SYNCED_AT_ANNOTATION not in rec.annotations
