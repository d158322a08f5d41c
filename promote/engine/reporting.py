"""Reporting: history of promotions and the sync/health status of every release, read-only."""

from __future__ import annotations

import asyncio

from promote import record
from promote.engine.applying import release_health
from promote.engine.planning import _connect_all, _plan_all
from promote.engine.workspace import Options, Workspace
from promote.plan import Action
from promote.release import history
from promote.results import HistoryEntry, ReleaseStatus
from promote.sync import SyncStatus


def release_history(opts: Options, env: str) -> list[HistoryEntry]:
    """Every helm revision of every app release of `env`, with its promotion record."""
    with Workspace(opts) as ws:
        targets = ws.targets((ws.defs.chain_to(env)[-1],))
        clusters = _connect_all(opts, targets)
        out: list[HistoryEntry] = []
        for t in targets:
            for r in history(clusters[t.context], t.env.namespace, t.env.release).records:
                p = record.Promotion.parse(r.description)
                out.append(
                    HistoryEntry(
                        app=t.app.name,
                        release=t.env.release,
                        revision=r.revision,
                        status=r.status,
                        chart=f"{r.chart_name}-{r.chart_version}",
                        updated=p.at if p else r.deployed_at,
                        git_revision=p.revision if p else None,
                        artifact=p.artifact if p else None,
                        values=p.values if p else None,
                        by=p.by if p else None,
                        action=p.action.value if p else None,
                        description="" if p else r.description,
                    )
                )
        return out


def status(opts: Options, env: str | None) -> tuple[str, list[ReleaseStatus]]:
    """Sync against the Git revision that would be applied now, and health, per release."""
    with Workspace(opts) as ws:
        chain = ws.defs.chain_to(env) if env else ws.defs.chain
        targets = ws.targets(chain)
        clusters = _connect_all(opts, targets)
        plans = asyncio.run(_plan_all(targets, clusters, ws.validate(targets)))
        revision = ws.source.revision()
        out: list[ReleaseStatus] = []
        for t, p in zip(targets, plans, strict=True):
            cluster = clusters[t.context]
            hist = history(cluster, t.env.namespace, t.env.release)
            h = release_health(cluster, t.env.namespace, hist)
            promo = record.Promotion.parse(hist.deployed.description) if hist.deployed else None
            if hist.deployed is None:
                sync_status = SyncStatus.MISSING
            elif p.has_changes or p.errors:
                sync_status = SyncStatus.OUT_OF_SYNC
            else:
                sync_status = SyncStatus.SYNCED
            drift = tuple(c for c in p.changes if c.hook is None and c.action != Action.UNCHANGED)
            out.append(
                ReleaseStatus(
                    env=t.env.name,
                    app=t.app.name,
                    release=t.env.release,
                    namespace=t.env.namespace,
                    sync=sync_status.value,
                    health=h.status.value,
                    health_message=h.message,
                    revision=revision,
                    promoted_revision=promo.revision if promo else None,
                    helm_revision=hist.deployed.revision if hist.deployed else None,
                    drift=drift,
                )
            )
        return revision, out
