"""Which processes belong to a dev cluster: those naming its state directory, not a sibling's whose name
starts the same (the fault suite's cluster was stopped along with the test session's)."""

from __future__ import annotations

from pathlib import Path

import pytest

from devcluster.cluster import mentions

STATE = Path("/root/.cache/promote/test-cluster")


@pytest.mark.parametrize(
    "argv",
    [
        ["etcd", f"--data-dir={STATE}/etcd"],
        ["python", "-m", "devcluster.kubelet", "--kubeconfig", f"{STATE}/kubeconfig"],
        ["kube-apiserver", f"--cert-dir={STATE}"],
        ["tool", str(STATE)],
    ],
)
def test_a_command_line_naming_the_state_dir_belongs_to_it(argv: list[str]) -> None:
    assert mentions(argv, STATE)


@pytest.mark.parametrize(
    "argv",
    [
        ["etcd", f"--data-dir={STATE}-faults/etcd"],
        ["python", "-m", "devcluster.kubelet", "--kubeconfig", f"{STATE}-rbac/kubeconfig"],
        ["kube-apiserver", f"--cert-dir={STATE}2"],
    ],
)
def test_a_sibling_state_dir_with_the_same_prefix_does_not(argv: list[str]) -> None:
    assert not mentions(argv, STATE)
