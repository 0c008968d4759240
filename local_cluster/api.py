"""A small client for the Kubernetes REST API, reading its server and credentials from a kubeconfig.

The node and the Seldon stand-in work with plain JSON objects, as `kubectl get -o json`
shows them, so this client returns dicts and knows the few paths they use.
"""

from __future__ import annotations

import base64
import json
import tempfile
from pathlib import Path

import requests
import yaml

# kind -> (API group/version path, plural); enough for what the node and the stand-in touch.
RESOURCES = {
    "Pod": ("api/v1", "pods"),
    "Service": ("api/v1", "services"),
    "ConfigMap": ("api/v1", "configmaps"),
    "Secret": ("api/v1", "secrets"),
    "PersistentVolumeClaim": ("api/v1", "persistentvolumeclaims"),
    "PersistentVolume": ("api/v1", "persistentvolumes"),
    "Node": ("api/v1", "nodes"),
    "ServiceAccount": ("api/v1", "serviceaccounts"),
    "Lease": ("apis/coordination.k8s.io/v1", "leases"),
    "Deployment": ("apis/apps/v1", "deployments"),
    "SeldonDeployment": ("apis/machinelearning.seldon.io/v1", "seldondeployments"),
    "PyTorchJob": ("apis/kubeflow.org/v1", "pytorchjobs"),
}
CLUSTER_SCOPED = {"Node", "PersistentVolume"}


class ApiError(Exception):
    """The API server answered with an error status."""

    def __init__(self, status: int, message: str):
        super().__init__(f"HTTP {status}: {message}")
        self.status = status


class Api:
    """Requests to one API server with the credentials of a kubeconfig's current context."""

    def __init__(self, kubeconfig: Path, timeout_s: float = 10.0):
        config = yaml.safe_load(Path(kubeconfig).read_text())
        context = next(c["context"] for c in config["contexts"] if c["name"] == config["current-context"])
        cluster = next(c["cluster"] for c in config["clusters"] if c["name"] == context["cluster"])
        user = next(u["user"] for u in config["users"] if u["name"] == context["user"])
        self.server = cluster["server"].rstrip("/")
        self._files = tempfile.TemporaryDirectory(prefix="local-node-creds-")
        folder = Path(self._files.name)
        for name, key in (("ca.crt", "certificate-authority-data"), ("tls.crt", "client-certificate-data")):
            (folder / name).write_bytes(base64.b64decode(cluster[key] if name == "ca.crt" else user[key]))
        (folder / "tls.key").write_bytes(base64.b64decode(user["client-key-data"]))
        self.ca_data = (folder / "ca.crt").read_text()
        self.session = requests.Session()
        # Otherwise REQUESTS_CA_BUNDLE and proxy variables of the environment override the cluster's CA.
        self.session.trust_env = False
        self.session.verify = str(folder / "ca.crt")
        self.session.cert = (str(folder / "tls.crt"), str(folder / "tls.key"))
        self.timeout_s = timeout_s

    def path(self, kind: str, namespace: str | None = None, name: str | None = None, sub: str | None = None) -> str:
        """The URL path of a collection, an object, or an object's subresource."""
        group, plural = RESOURCES[kind]
        parts = [group]
        if namespace and kind not in CLUSTER_SCOPED:
            parts += ["namespaces", namespace]
        parts.append(plural)
        if name:
            parts.append(name)
        if sub:
            parts.append(sub)
        return "/" + "/".join(parts)

    def request(self, method: str, path: str, body=None, content_type: str = "application/json", **params):
        """One request; the decoded JSON answer, or ApiError."""
        response = self.session.request(
            method,
            self.server + path,
            data=None if body is None else json.dumps(body),
            headers={"Content-Type": content_type},
            params=params or None,
            timeout=self.timeout_s,
        )
        if response.status_code >= 400:
            try:
                message = response.json().get("message", response.text)
            except ValueError:
                message = response.text
            raise ApiError(response.status_code, message)
        return response.json() if response.content else {}

    def get(self, kind: str, namespace: str | None, name: str) -> dict | None:
        """The object, or None if it does not exist."""
        try:
            return self.request("GET", self.path(kind, namespace, name))
        except ApiError as err:
            if err.status == 404:
                return None
            raise

    def list(self, kind: str, namespace: str | None = None, **params) -> list[dict]:
        """Every object of `kind` (in every namespace when `namespace` is None)."""
        return self.request("GET", self.path(kind, namespace), **params).get("items", [])

    def create(self, kind: str, namespace: str | None, body: dict) -> dict:
        """Create the object; ApiError 409 if it exists."""
        return self.request("POST", self.path(kind, namespace), body)

    def merge_patch(self, kind: str, namespace: str | None, name: str, patch: dict, sub: str | None = None) -> dict:
        """A JSON merge patch of the object or of its subresource (`status`)."""
        return self.request("PATCH", self.path(kind, namespace, name, sub), patch, "application/merge-patch+json")

    def apply(self, kind: str, namespace: str | None, body: dict, manager: str, sub: str | None = None) -> dict:
        """Server-side apply of `body`, owned by field manager `manager`."""
        return self.request(
            "PATCH",
            self.path(kind, namespace, body["metadata"]["name"], sub),
            body,
            "application/apply-patch+yaml",
            fieldManager=manager,
            force="true",
        )

    def delete(self, kind: str, namespace: str | None, name: str, **options) -> None:
        """Delete the object (DeleteOptions as a body); a missing object is no error."""
        try:
            self.request("DELETE", self.path(kind, namespace, name), {"kind": "DeleteOptions", **options})
        except ApiError as err:
            if err.status != 404:
                raise
