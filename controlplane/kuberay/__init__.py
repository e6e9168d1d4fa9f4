"""The KubeRay side: the pinned operator and CRDs, and checking manifests offline."""
