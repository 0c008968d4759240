"""Checks on the kustomize manifests: rendering, strict schemas, cross-references, policy scan."""
