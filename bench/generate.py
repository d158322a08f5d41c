"""Generate the benchmark's promote repository: N apps sharing one chart, each in `default` and `prod`.

`python bench/generate.py OUT_DIR [--apps N] [--chart svc|create]` writes OUT_DIR as a Git repository with one commit:

    charts/svc/                     the shared chart (copied from bench/charts/svc): Deployment, Service,
                                    ConfigMap, Secret, ServiceAccount
    charts/create/                  or, with --chart create, the chart `helm create` makes (helpers,
                                    probes, HPA/Ingress off, a test hook) plus a ConfigMap and a Secret
    environments/app-NN.yaml        one definition per app, chart ../charts/svc, per-app image tag and
                                    config key; `default` in namespace bench-default (release app-NN,
                                    1 replica), `prod` in bench-prod (release app-NN-prod, 2 or 3 replicas)

`bench/run.py` imports this module to build the same repository and to rewrite one app's file.
"""

from __future__ import annotations

import argparse
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import yaml

CHARTS = Path(__file__).resolve().parent / "charts"
CHART_SHAPES = ("svc", "create")  # bench/charts/<shape>: our own, and `helm create`'s with a ConfigMap and a Secret


def chart_dir(chart: str = "svc") -> str:
    """Where the generated repository holds the shared chart."""
    return f"charts/{chart}"


NAMESPACES = {"default": "bench-default", "prod": "bench-prod"}
# A second pair that nothing is ever deployed to: bench/sizes.py plans a copy of the repository there to
# time plans with nothing deployed at every size, while the first pair fills up from size to size.
COLD_NAMESPACES = {"default": "bench-cold-default", "prod": "bench-cold-prod"}
GIT_TIMEOUT = 60.0
# Commits in the generated repository must not depend on the user's Git configuration.
GIT_IDENTITY = ["-c", "user.name=promote bench", "-c", "user.email=bench@promote.invalid", "-c", "commit.gpgsign=false"]


def app_name(index: int, apps: int) -> str:
    """The app's name: app-00 … app-49 (zero-padded to at least two digits)."""
    width = max(2, len(str(apps - 1)))
    return f"app-{index:0{width}d}"


def app_values(index: int, revision: int = 0) -> dict[str, Any]:
    """App-wide values (shared by both environments, so part of the release artifact)."""
    config: dict[str, Any] = {"logLevel": "info", "greeting": f"hello from app {index}", "revision": revision}
    return {"image": {"tag": f"1.{index}.{revision}"}, "config": config}


def env_values(env: str, index: int) -> dict[str, Any]:
    """Per-environment values: prod runs 2 or 3 replicas."""
    if env == "prod":
        return {"replicaCount": 2 + index % 2, "config": {"logLevel": "warn"}}
    return {"replicaCount": 1}


def release_name(name: str, env: str) -> str:
    """Release name: app-NN in default, app-NN-prod in prod."""
    return name if env == "default" else f"{name}-{env}"


def definition(
    index: int, apps: int, revision: int = 0, chart: str = "svc", namespaces: dict[str, str] = NAMESPACES
) -> dict[str, Any]:
    """One app's environment definition, as promote reads it (`apps` sets the width of the names)."""
    name = app_name(index, apps)
    envs: list[dict[str, Any]] = []
    for env, namespace in namespaces.items():
        entry: dict[str, Any] = {"name": env, "namespace": namespace}
        if env != "default":
            entry["release"] = release_name(name, env)
        entry["values"] = env_values(env, index)
        envs.append(entry)
    return {"app": name, "chart": f"../{chart_dir(chart)}", "values": app_values(index, revision), "environments": envs}


def app_file(repo: Path, index: int, apps: int) -> Path:
    """Path of one app's definition file."""
    return repo / "environments" / f"{app_name(index, apps)}.yaml"


def write_app(
    repo: Path, index: int, apps: int, revision: int = 0, chart: str = "svc", namespaces: dict[str, str] = NAMESPACES
) -> Path:
    """Write (or rewrite) one app's definition; `revision` changes its app-wide values."""
    path = app_file(repo, index, apps)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(yaml.safe_dump(definition(index, apps, revision, chart, namespaces), sort_keys=False))
    return path


def git(repo: Path, *args: str) -> str:
    """Run git in the generated repository; raise with git's stderr on failure."""
    argv = ["git", *GIT_IDENTITY, "-C", str(repo), *args]
    proc = subprocess.run(argv, capture_output=True, text=True, timeout=GIT_TIMEOUT, check=False)
    if proc.returncode != 0:
        raise RuntimeError(f"git {' '.join(args)} failed in {repo}: {proc.stderr.strip()}")
    return proc.stdout.strip()


def commit_all(repo: Path, message: str) -> str:
    """Stage everything in the generated repository, commit, and return the new sha."""
    git(repo, "add", "-A")
    git(repo, "commit", "-q", "-m", message)
    return git(repo, "rev-parse", "HEAD")


def generate(
    out: Path, apps: int, chart: str = "svc", namespaces: dict[str, str] = NAMESPACES, name_apps: int | None = None
) -> str:
    """Write the repository with `apps` apps into `out` (which must not exist or be empty); return the sha.

    `name_apps` (default `apps`) sets the width of the app names, so that a repository later grown to that
    many apps (`grow`) keeps its first apps' names."""
    if apps < 1:
        raise ValueError("--apps must be at least 1")
    if out.exists() and any(out.iterdir()):
        raise FileExistsError(f"{out} exists and is not empty")
    out.mkdir(parents=True, exist_ok=True)
    if chart not in CHART_SHAPES:
        raise ValueError(f"--chart must be one of {', '.join(CHART_SHAPES)}")
    shutil.copytree(CHARTS / chart, out / chart_dir(chart))
    for i in range(apps):
        write_app(out, i, name_apps or apps, chart=chart, namespaces=namespaces)
    (out / "README.md").write_text(f"Generated by promote's bench/generate.py: {apps} apps x (default, prod).\n")
    git(out, "init", "-q", "-b", "main")
    return commit_all(out, f"bench: {apps} apps")


def grow(repo: Path, start: int, stop: int, name_apps: int, chart: str, namespaces: dict[str, str]) -> str:
    """Add apps start … stop-1 to a generated repository and commit; the new sha."""
    for i in range(start, stop):
        write_app(repo, i, name_apps, chart=chart, namespaces=namespaces)
    return commit_all(repo, f"bench: {stop} apps")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Generate the benchmark repository of N apps for promote.")
    parser.add_argument("out", type=Path, help="directory to create (must be absent or empty)")
    parser.add_argument("--apps", type=int, default=50, help="number of apps (default: 50, so 100 releases)")
    parser.add_argument("--chart", choices=CHART_SHAPES, default="svc", help="the shared chart's shape")
    args = parser.parse_args(argv)
    try:
        sha = generate(args.out, args.apps, args.chart)
    except (OSError, ValueError, RuntimeError, subprocess.TimeoutExpired) as e:
        print(f"generate: cannot write the benchmark repository: {e}", file=sys.stderr)
        return 1
    print(f"{args.out}: {args.apps} apps, {2 * args.apps} releases, commit {sha[:12]}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
