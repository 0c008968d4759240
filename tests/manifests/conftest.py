"""Fixtures: each kustomization rendered once per session."""

import pytest

from manifests.rendering import KUSTOMIZATIONS, render
from manifests.strict_schema import CRD_FILES, HOW_TO_GET_CRDS, crds_dir


@pytest.fixture(scope="session")
def renderings() -> dict[str, list[dict]]:
    """Rendered objects of base/ and of every overlay, keyed by directory relative to the repository."""
    return {name: render(path) for name, path in KUSTOMIZATIONS.items()}


@pytest.fixture(scope="session")
def overlay_renderings(renderings) -> dict[str, list[dict]]:
    """Rendered objects of every overlay (what users apply)."""
    return {name: objects for name, objects in renderings.items() if name.startswith("overlays/")}


@pytest.fixture(scope="session")
def require_crds() -> None:
    """Fail with the way to get them when the upstream CRD files are missing."""
    missing = [name for name in CRD_FILES.values() if not (crds_dir() / name).exists()]
    if missing:
        pytest.fail(HOW_TO_GET_CRDS.format(crds_dir=crds_dir()) + f" Missing: {', '.join(missing)}")
