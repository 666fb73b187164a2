"""Storage that behaves like a cluster's: a default StorageClass and a pool of PVs.

Why pre-created volumes and not a provisioner: nothing runs containers here (kwok
only plays the kubelet), so a volume is never mounted; what matters is that the real
PersistentVolume binder in kube-controller-manager matches claims to volumes by class
and size, that pods with a model-cache claim schedule as on a real cluster, and that
a claim larger than every volume stays Pending with the binder's own event.

``volumeBindingMode: Immediate`` lets the binder bind a claim as soon as it exists,
so a claim can be checked without a pod. The volumes use ``Retain`` so the
controller never tries to delete a hostPath; a kwok stage (see :mod:`.kwokconfig`)
hands released volumes back to the pool, as a recycler would.
"""

from __future__ import annotations

from typing import Any

STORAGE_CLASS = "standard"
POOL_LABEL = "specops.dev/volume-pool"

# (size, how many): enough for a test session's model caches; the largest is 1Ti.
DEFAULT_VOLUMES: tuple[tuple[str, int], ...] = (
    ("100Gi", 8),
    ("200Gi", 6),
    ("500Gi", 4),
    ("1Ti", 2),
)


def storage_class() -> dict[str, Any]:
    """The cluster's default StorageClass (annotated so claims without a class use it)."""
    return {
        "apiVersion": "storage.k8s.io/v1",
        "kind": "StorageClass",
        "metadata": {
            "name": STORAGE_CLASS,
            "annotations": {"storageclass.kubernetes.io/is-default-class": "true"},
        },
        "provisioner": "kubernetes.io/no-provisioner",
        "reclaimPolicy": "Retain",
        "volumeBindingMode": "Immediate",
        "allowVolumeExpansion": False,
    }


def volume_manifests(
    volumes: tuple[tuple[str, int], ...] = DEFAULT_VOLUMES,
) -> list[dict[str, Any]]:
    """hostPath PersistentVolumes named ``pv-<size>-<index>``; never mounted by anything."""
    manifests: list[dict[str, Any]] = []
    for size, count in volumes:
        for index in range(count):
            name = f"pv-{size.lower()}-{index}"
            manifests.append(
                {
                    "apiVersion": "v1",
                    "kind": "PersistentVolume",
                    "metadata": {"name": name, "labels": {POOL_LABEL: "default", "size": size}},
                    "spec": {
                        "capacity": {"storage": size},
                        "accessModes": ["ReadWriteOnce", "ReadOnlyMany", "ReadWriteMany"],
                        "persistentVolumeReclaimPolicy": "Retain",
                        "storageClassName": STORAGE_CLASS,
                        "volumeMode": "Filesystem",
                        "hostPath": {"path": f"/var/lib/specops-volumes/{name}"},
                    },
                }
            )
    return manifests
