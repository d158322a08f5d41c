"""Command line of the dev cluster (``scripts/dev-cluster``): up, down, status, env.

Progress goes to stderr; stdout only carries what a shell should ``eval`` (the export lines) or
the status table, so ``eval "$(scripts/dev-cluster up)"`` works. ``--state-dir`` may come before or
after the command. The export lines also put this checkout's ``promote`` (its ``.venv/bin``) on PATH.
"""

from __future__ import annotations

import argparse
import os
import shlex
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

REPO = Path(__file__).resolve().parent.parent


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="dev-cluster",
        description="Run a local Kubernetes control plane with simulated nodes.",
    )
    state_dir_help = "state directory (default: $DEV_CLUSTER_DIR, else ~/.cache/promote/dev-cluster)"
    parser.add_argument("--state-dir", type=Path, default=None, help=state_dir_help)
    # The same option after the command, as the README writes it (`dev-cluster up --state-dir DIR`);
    # SUPPRESS keeps a subcommand from overwriting a value given before it with its own default.
    after = argparse.ArgumentParser(add_help=False)
    after.add_argument("--state-dir", type=Path, default=argparse.SUPPRESS, help=state_dir_help)
    sub = parser.add_subparsers(dest="command", required=True)
    up = sub.add_parser(
        "up", parents=[after], help="start (or resume) the cluster and print the KUBECONFIG and PATH exports"
    )
    up.add_argument("--fresh", action="store_true", help="discard etcd data before starting")
    up.add_argument(
        "--name", default=None, help="cluster/context/user name in the kubeconfig (default: state dir basename)"
    )
    up.add_argument("--timeout", type=float, default=180.0, help="seconds to wait for readiness")
    sub.add_parser("down", parents=[after], help="stop every process of the cluster")
    sub.add_parser("status", parents=[after], help="show per-component state; exit 1 unless all are running")
    sub.add_parser("env", parents=[after], help="print the KUBECONFIG and PATH exports for this cluster")
    return parser


def promote_bin() -> Path | None:
    """The folder of this checkout's `promote`: its .venv's bin, else that of the venv running us."""
    candidates = [REPO / ".venv" / "bin"]
    if sys.prefix != sys.base_prefix:  # run by a virtualenv's python (PROMOTE_PYTHON, or an activated one)
        candidates.append(Path(sys.executable).parent)
    return next((c for c in candidates if (c / "promote").exists()), None)


def exports(kubeconfig: Path) -> str:
    """What `eval` should run: KUBECONFIG for the cluster, and promote (with kubectl) first on PATH."""
    lines = [export_line(kubeconfig)]
    folder = promote_bin()
    if folder is None:
        print("dev-cluster: no .venv/bin/promote (run scripts/setup): promote is not put on PATH", file=sys.stderr)
    elif str(folder) not in os.environ.get("PATH", "").split(os.pathsep):  # eval twice: PATH does not grow
        lines.append(f'export PATH={shlex.quote(str(folder))}:"$PATH"')
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    state_dir: Path = (args.state_dir or default_state_dir()).expanduser().resolve()
    try:
        if args.command == "up":
            handle = start_cluster(state_dir, args.name, fresh=args.fresh, timeout=args.timeout)
            print(exports(handle.kubeconfig))
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
            print(exports(kubeconfig))
            return 0
    except (ClusterError, PKIError) as exc:
        print(f"dev-cluster: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 130
    return 2


if __name__ == "__main__":
    sys.exit(main())
