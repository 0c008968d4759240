"""Render an overlay with `kubectl kustomize` and index the documents by kind and name."""

import shutil
import subprocess
import sys
from pathlib import Path

import yaml

from local_cluster.node.errors import RefusedError


def kubectl_path() -> str:
    """The kubectl next to this Python (the tools environment), else the one on PATH."""
    beside = Path(sys.executable).parent / "kubectl"
    if beside.exists():
        return str(beside)
    found = shutil.which("kubectl")
    if found is None:
        raise FileNotFoundError("kubectl not found: run `make venvs` (it installs kubectl into .venv/tools/bin)")
    return found


def render_overlay(overlay: Path) -> str:
    """Return the YAML stream that `kubectl kustomize <overlay>` prints; raise RefusedError if kustomize fails."""
    result = subprocess.run(
        [kubectl_path(), "kustomize", str(overlay)], capture_output=True, text=True, check=False, timeout=120
    )
    if result.returncode != 0:
        raise RefusedError(f"kustomization {overlay}", f"kubectl kustomize failed:\n{result.stderr.strip()}")
    return result.stdout


class Rendering:
    """The rendered objects, looked up by kind and name."""

    def __init__(self, documents: list[dict]):
        self.documents = [d for d in documents if d]
        for doc in self.documents:
            if not isinstance(doc, dict) or "kind" not in doc or "metadata" not in doc:
                raise RefusedError("rendering", f"a document is not a Kubernetes object: {str(doc)[:200]}")

    @classmethod
    def from_yaml(cls, text: str) -> "Rendering":
        """Parse a multi-document YAML stream."""
        return cls(list(yaml.safe_load_all(text)))

    def of_kind(self, kind: str) -> list[dict]:
        """Every object of `kind`, in rendering order."""
        return [d for d in self.documents if d["kind"] == kind]

    def get(self, kind: str, name: str) -> dict | None:
        """The object `kind/name`, or None."""
        for doc in self.of_kind(kind):
            if doc["metadata"].get("name") == name:
                return doc
        return None

    def namespace(self) -> str:
        """The namespace the objects go to: the one they name, else `default` (what kubectl apply uses)."""
        names = {d["metadata"].get("namespace") for d in self.documents} - {None}
        return names.pop() if len(names) == 1 else "default"
