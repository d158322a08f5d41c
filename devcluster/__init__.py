"""The project's local Kubernetes "dev cluster": a real control plane (etcd, kube-apiserver,
kube-controller-manager, kube-scheduler) plus a simulated kubelet, for development and tests.

Use ``scripts/dev-cluster`` from a shell, or this API from Python (e.g. to run a second cluster in
multi-cluster tests)::

    handle = start_cluster(Path("/tmp/prod"), name="prod")
    ...  # handle.kubeconfig, handle.context, handle.kube(), handle.cluster()
    stop_cluster(Path("/tmp/prod"))
"""

from devcluster.cluster import (
    ClusterError,
    ClusterHandle,
    cluster_handle,
    cluster_status,
    default_state_dir,
    restart_kubelet,
    start_cluster,
    stop_cluster,
)

__all__ = [
    "ClusterError",
    "ClusterHandle",
    "cluster_handle",
    "cluster_status",
    "default_state_dir",
    "restart_kubelet",
    "start_cluster",
    "stop_cluster",
]
