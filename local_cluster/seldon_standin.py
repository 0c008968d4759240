"""A stand-in for the Seldon Core 1.17 operator, because the real one cannot be built here.

The Go module proxy refuses `github.com/seldonio/seldon-core/operator` and `/executor`
(403 "This module version is not available", at v1.17.1 and at its commit), so neither
the operator nor its executor can run on the local control plane. This controller does
the part of the operator's work that the demo depends on, for a SeldonDeployment of one
predictor whose graph is one custom MODEL node, and refuses anything else in the
SeldonDeployment's status:

- a Deployment `<sdep>-<predictor>-0-<container>` with the componentSpec's pod, where the
  model container gets the operator's defaults: the ports `http` (9000), `grpc` (9500)
  and `metrics` (6000) unless declared, a TCP readiness probe on `http` unless it has
  one, and the environment the operator appends (PREDICTIVE_UNIT_*, PREDICTOR_*,
  SELDON_DEPLOYMENT_ID, SELDON_EXECUTOR_ENABLED);
- the Services `<sdep>-<predictor>` (http 8000, grpc 5001) and
  `<sdep>-<predictor>-<node>` (the model's own ports), owned by the SeldonDeployment;
- the status: `state` Creating/Available/Failed, replicas, and the predictor's address.

What is not the real thing: there is no executor container. The predictor Service's
port 8000 leads straight to the model's REST port, which answers the same
`/api/v1.0/predictions` for a graph of one MODEL node.
"""

from __future__ import annotations

import json
import threading

from local_cluster.api import Api, ApiError
from local_cluster.node.supervisor import Console

MANAGER = "seldon-standin"
DEFAULT_PORTS = {"http": 9000, "grpc": 9500, "metrics": 6000}
EXECUTOR_HTTP_PORT = 8000
EXECUTOR_GRPC_PORT = 5001
METRICS_PATH = "/prometheus"
SYNC_S = 0.5


class UnsupportedError(Exception):
    """The SeldonDeployment asks for something only the real operator provides."""


def predictor_of(sdep: dict) -> dict:
    """The one predictor with one custom MODEL node; UnsupportedError otherwise."""
    spec = sdep["spec"]
    if spec.get("protocol", "seldon") != "seldon":
        raise UnsupportedError(f"protocol {spec['protocol']} (the stand-in serves the seldon protocol)")
    predictors = spec.get("predictors", [])
    if len(predictors) != 1:
        raise UnsupportedError(
            f"{len(predictors)} predictors (traffic splitting needs the executor; one predictor is run)"
        )
    predictor = predictors[0]
    graph = predictor.get("graph", {})
    if graph.get("children") or graph.get("type", "MODEL") != "MODEL" or graph.get("implementation"):
        raise UnsupportedError("a graph other than one custom MODEL node (it needs the executor)")
    if predictor.get("explainer"):
        raise UnsupportedError("an explainer")
    specs = [c for c in predictor.get("componentSpecs", []) if c.get("spec", {}).get("containers")]
    if len(specs) != 1 or graph["name"] not in [c["name"] for c in specs[0]["spec"]["containers"]]:
        raise UnsupportedError(f"expected one componentSpec holding the container {graph['name']!r}")
    return predictor


def names(sdep: dict, predictor: dict) -> tuple[str, str, str]:
    """The Deployment, the predictor Service and the model container's Service, as the operator names them."""
    seldon_id = f"{sdep['metadata']['name']}-{predictor['name']}"
    containers = "-".join(c["name"] for c in predictor["componentSpecs"][0]["spec"]["containers"])
    return f"{seldon_id}-0-{containers}", seldon_id, f"{seldon_id}-{predictor['graph']['name']}"


def model_ports(container: dict) -> dict[str, int]:
    """The ports named http, grpc and metrics, with the operator's defaults for those the container lacks."""
    named = {p.get("name"): int(p["containerPort"]) for p in container.get("ports", [])}
    return {name: named.get(name, default) for name, default in DEFAULT_PORTS.items()}


def model_container(sdep: dict, predictor: dict, container: dict) -> dict:
    """The graph node's container with the operator's ports, probe and environment added."""
    container = json.loads(json.dumps(container))
    ports = model_ports(container)
    declared = {p.get("name") for p in container.get("ports", [])}
    container.setdefault("ports", [])
    for name, port in ports.items():
        if name not in declared:
            container["ports"].append({"name": name, "containerPort": port, "protocol": "TCP"})
    container.setdefault("readinessProbe", {"tcpSocket": {"port": "http"}, "periodSeconds": 5})
    env = container.setdefault("env", [])
    have = {e["name"] for e in env}
    no_engine = str(predictor.get("annotations", {}).get("seldon.io/no-engine", "false")).lower() == "true"
    added = [
        ("PREDICTIVE_UNIT_SERVICE_PORT", str(ports["http"])),
        ("PREDICTIVE_UNIT_HTTP_SERVICE_PORT", str(ports["http"])),
        ("PREDICTIVE_UNIT_GRPC_SERVICE_PORT", str(ports["grpc"])),
        ("PREDICTIVE_UNIT_PARAMETERS", json.dumps(predictor["graph"].get("parameters") or [])),
        ("PREDICTIVE_UNIT_ID", container["name"]),
        ("PREDICTIVE_UNIT_IMAGE", container.get("image", "")),
        ("PREDICTOR_ID", predictor["name"]),
        ("PREDICTOR_LABELS", json.dumps(predictor.get("labels") or {})),
        ("SELDON_DEPLOYMENT_ID", sdep["metadata"]["name"]),
        ("SELDON_EXECUTOR_ENABLED", "false" if no_engine else "true"),
        ("PREDICTIVE_UNIT_METRICS_SERVICE_PORT", str(ports["metrics"])),
        ("PREDICTIVE_UNIT_METRICS_ENDPOINT", METRICS_PATH),
    ]
    env += [{"name": n, "value": v} for n, v in added if n not in have]
    return container


def desired(sdep: dict) -> list[dict]:
    """The Deployment and Services the operator would create for the SeldonDeployment."""
    predictor = predictor_of(sdep)
    deployment, predictor_service, model_service = names(sdep, predictor)
    meta = sdep["metadata"]
    owner = {
        "apiVersion": sdep["apiVersion"],
        "kind": "SeldonDeployment",
        "name": meta["name"],
        "uid": meta["uid"],
        "controller": True,
        "blockOwnerDeletion": True,
    }
    template = json.loads(json.dumps(predictor["componentSpecs"][0]))
    labels = {
        **(template.get("metadata", {}).get("labels") or {}),
        "seldon-app": predictor_service,
        "seldon-deployment-id": meta["name"],
        "app.kubernetes.io/managed-by": "seldon-core",
        f"seldon.io/{predictor_service}": "true",
    }
    node = predictor["graph"]["name"]
    template["spec"]["containers"] = [
        model_container(sdep, predictor, c) if c["name"] == node else c for c in template["spec"]["containers"]
    ]
    model = next(c for c in template["spec"]["containers"] if c["name"] == node)
    ports = model_ports(model)
    common = {"namespace": meta["namespace"], "ownerReferences": [owner]}
    return [
        {
            "apiVersion": "apps/v1",
            "kind": "Deployment",
            "metadata": {"name": deployment, "labels": labels, **common},
            "spec": {
                "replicas": predictor.get("replicas", 1),
                "selector": {"matchLabels": {"seldon-app": predictor_service, "seldon-deployment-id": meta["name"]}},
                "template": {
                    "metadata": {**template.get("metadata", {}), "labels": labels},
                    "spec": template["spec"],
                },
            },
        },
        _service(predictor_service, common, predictor_service, [("http", EXECUTOR_HTTP_PORT, "http")]),
        _service(model_service, common, predictor_service, [("http", ports["http"], "http")]),
    ]


def _service(name: str, common: dict, app: str, ports: list[tuple[str, int, str]]) -> dict:
    return {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": {"name": name, "labels": {"seldon-app": app}, **common},
        "spec": {
            "selector": {"seldon-app": app},
            "ports": [{"name": n, "port": p, "targetPort": t, "protocol": "TCP"} for n, p, t in ports],
        },
    }


class SeldonStandIn:
    """Reconciles every SeldonDeployment every SYNC_S until `stop()`."""

    def __init__(self, api: Api, console: Console):
        self.api = api
        self.console = console
        self.stopping = threading.Event()
        self.refused: dict[str, str] = {}

    def loop(self) -> None:
        """Reconcile until stopped; a failing pass is reported and retried."""
        while not self.stopping.is_set():
            try:
                for sdep in self.api.list("SeldonDeployment"):
                    self.reconcile(sdep)
            except (ApiError, OSError) as err:
                self.console.say(f"seldon stand-in: retrying: {err}")
            self.stopping.wait(SYNC_S)

    def stop(self) -> None:
        """Ask `loop()` to end."""
        self.stopping.set()

    def reconcile(self, sdep: dict) -> None:
        """Apply the Deployment and Services, then report the Deployment's state in the status."""
        meta = sdep["metadata"]
        if meta.get("deletionTimestamp"):
            return
        try:
            objects = desired(sdep)
        except UnsupportedError as why:
            self._status(sdep, {"state": "Failed", "description": f"not run by the local stand-in: {why}"})
            return
        for obj in objects:
            self.api.apply(obj["kind"], meta["namespace"], obj, MANAGER)
        deployment = self.api.get("Deployment", meta["namespace"], objects[0]["metadata"]["name"]) or {}
        status = deployment.get("status", {})
        wanted = deployment.get("spec", {}).get("replicas", 1)
        available = status.get("availableReplicas", 0)
        predictor_service = objects[1]["metadata"]["name"]
        self._status(
            sdep,
            {
                "state": "Available" if available >= wanted else "Creating",
                "replicas": wanted,
                "deploymentStatus": {
                    objects[0]["metadata"]["name"]: {
                        "replicas": status.get("replicas", 0),
                        "availableReplicas": available,
                    }
                },
                "address": {
                    "url": f"http://{predictor_service}.{meta['namespace']}.svc.cluster.local:"
                    f"{EXECUTOR_HTTP_PORT}/api/v1.0/predictions"
                },
                "description": "local stand-in for the Seldon operator: no executor, the Service leads to the model",
            },
        )

    def _status(self, sdep: dict, status: dict) -> None:
        if all(sdep.get("status", {}).get(k) == v for k, v in status.items()):
            return
        meta = sdep["metadata"]
        self.api.merge_patch("SeldonDeployment", meta["namespace"], meta["name"], {"status": status}, "status")
