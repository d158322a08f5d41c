"""Command line of the dev cluster (``scripts/dev-cluster``): up, down, status, env.

Progress goes to stderr; stdout only carries what a shell should ``eval`` (the export line) or
the status table, so ``eval "$(scripts/dev-cluster up)"`` works.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from devcluster.cluster import (
    COMPONENTS,
    ClusterError,
    cluster_handle,
    cluster_status,
    default_state_dir,
    export_line,
    read_state,
    start_cluster,
    stop_cluster,
)
from devcluster.pki import PKIError


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="dev-cluster",
        description="Run a local Kubernetes control plane with simulated nodes.",
    )
    parser.add_argument(
        "--state-dir",
        type=Path,
        default=None,
        help="state directory (default: $DEV_CLUSTER_DIR, else ~/.cache/promote/dev-cluster)",
    )
    sub = parser.add_subparsers(dest="command", required=True)
    up = sub.add_parser("up", help="start (or resume) the cluster and print the KUBECONFIG export")
    up.add_argument("--fresh", action="store_true", help="discard etcd data before starting")
    up.add_argument(
        "--name", default=None, help="cluster/context/user name in the kubeconfig (default: state dir basename)"
    )
    up.add_argument("--timeout", type=float, default=180.0, help="seconds to wait for readiness")
    sub.add_parser("down", help="stop every process of the cluster")
    sub.add_parser("status", help="show per-component state; exit 1 unless all are running")
    sub.add_parser("env", help="print the KUBECONFIG export line for this cluster")
    return parser


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    state_dir: Path = (args.state_dir or default_state_dir()).expanduser().resolve()
    try:
        if args.command == "up":
            handle = start_cluster(state_dir, args.name, fresh=args.fresh, timeout=args.timeout)
            print(handle.export_line())
            return 0
        if args.command == "down":
            pids = stop_cluster(state_dir)
            print(f"dev-cluster: stopped {len(pids)} process(es) in {state_dir}", file=sys.stderr)
            return 0
        if args.command == "status":
            status = cluster_status(state_dir)
            recorded = read_state(state_dir).get("pids") or {}
            for component in COMPONENTS:
                state = f"running (pid {recorded[component]})" if status[component] else "stopped"
                print(f"{component:24} {state}")
            try:
                print(f"{'api':24} {cluster_handle(state_dir).api_url}")
            except ClusterError:
                print(f"{'api':24} -")
            return 0 if all(status.values()) else 1
        if args.command == "env":
            kubeconfig = state_dir / "kubeconfig"
            if not kubeconfig.exists():
                print(f"dev-cluster: no kubeconfig in {state_dir}; run 'dev-cluster up' first", file=sys.stderr)
                return 1
            print(export_line(kubeconfig))
            return 0
    except (ClusterError, PKIError) as exc:
        print(f"dev-cluster: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 130
    return 2


if __name__ == "__main__":
    sys.exit(main())
