"""A SeldonDeployment's model container as a local process, with what the Seldon Core 1.17 operator adds.

The operator's defaulting gives the graph node's container the ports named `http`
(default 9000), `grpc` (9500) and `metrics` (6000), and appends to its environment:
PREDICTIVE_UNIT_SERVICE_PORT, PREDICTIVE_UNIT_HTTP_SERVICE_PORT and
PREDICTIVE_UNIT_GRPC_SERVICE_PORT (unless the container sets them),
PREDICTIVE_UNIT_PARAMETERS (the graph's `parameters` as JSON, unless set),
PREDICTIVE_UNIT_ID, PREDICTIVE_UNIT_IMAGE, PREDICTOR_ID, PREDICTOR_LABELS,
SELDON_DEPLOYMENT_ID, SELDON_EXECUTOR_ENABLED, PREDICTIVE_UNIT_METRICS_SERVICE_PORT and
PREDICTIVE_UNIT_METRICS_ENDPOINT (/prometheus). Without its own readinessProbe the
container gets a TCP probe on the http port.

There is no executor here: the predictor Service `<name>-<predictor>` (port 8000) maps
straight to the model's REST port, which serves the same /api/v1.0/predictions for a
graph of one MODEL node. Graphs with more nodes, several predictors, prepackaged
servers and other protocols are refused.
"""

import json
from pathlib import Path

from local_runner.components import component_for_image, image_defaults
from local_runner.errors import RefusedError
from local_runner.podspec import (
    ContainerPlan,
    PodContext,
    Probe,
    build_container_plan,
    container_mounts,
    free_port,
    prepare_volumes,
)
from local_runner.render import Rendering
from local_runner.translate import HostMap, PathMap

EXECUTOR_HTTP_PORT = 8000
EXECUTOR_GRPC_PORT = 5001
DEFAULT_PORTS = {"http": 9000, "grpc": 9500, "metrics": 6000}
METRICS_PATH = "/prometheus"


def _predictor(sdep: dict, workload: str) -> dict:
    spec = sdep["spec"]
    if spec.get("protocol", "seldon") != "seldon":
        raise RefusedError(workload, f"protocol {spec['protocol']} is not emulated (seldon is)")
    predictors = spec.get("predictors", [])
    if len(predictors) != 1:
        raise RefusedError(
            workload, f"{len(predictors)} predictors: traffic splitting and shadows are not emulated (one predictor is)"
        )
    predictor = predictors[0]
    graph = predictor.get("graph", {})
    if graph.get("children"):
        raise RefusedError(
            workload, "a graph with children needs the executor, which is not emulated (one MODEL node is)"
        )
    if graph.get("type", "MODEL") != "MODEL" or graph.get("implementation"):
        raise RefusedError(
            workload, "only a custom MODEL node is emulated (no prepackaged server, router, combiner, transformer)"
        )
    if predictor.get("explainer"):
        raise RefusedError(workload, "explainers are not emulated")
    return predictor


def _model_container(predictor: dict, workload: str) -> tuple[dict, dict]:
    node = predictor["graph"]["name"]
    specs = [c for c in predictor.get("componentSpecs", []) if c.get("spec", {}).get("containers")]
    if len(specs) != 1:
        raise RefusedError(workload, f"expected one componentSpec holding the container {node!r}, got {len(specs)}")
    template = specs[0]
    if template["spec"].get("initContainers"):
        raise RefusedError(workload, "initContainers are not emulated")
    containers = template["spec"]["containers"]
    if [c["name"] for c in containers] != [node]:
        raise RefusedError(
            workload,
            f"expected exactly the container {node!r} of the graph node, got {[c['name'] for c in containers]}",
        )
    return template, containers[0]


def container_ports(container: dict) -> dict[str, int]:
    """The ports named http, grpc and metrics, with the operator's defaults for those the container lacks."""
    named = {p.get("name"): int(p["containerPort"]) for p in container.get("ports", [])}
    return {name: named.get(name, default) for name, default in DEFAULT_PORTS.items()}


def service_names(sdep: dict) -> tuple[str, str]:
    """The predictor Service (executor) and the model container's own Service, as the operator names them."""
    predictor = sdep["spec"]["predictors"][0]
    seldon_id = f"{sdep['metadata']['name']}-{predictor['name']}"
    return seldon_id, f"{seldon_id}-{predictor['graph']['name']}"


def register_services(sdep: dict, hosts: HostMap, model_port: int) -> dict[int, int]:
    """Map the predictor's Services to the local model ports; return container port -> local port."""
    workload = f"SeldonDeployment/{sdep['metadata']['name']}"
    _, container = _model_container(_predictor(sdep, workload), workload)
    ports = container_ports(container)
    local = {ports["http"]: model_port, ports["grpc"]: free_port(), ports["metrics"]: free_port()}
    executor, model = service_names(sdep)
    hosts.add(executor, {EXECUTOR_HTTP_PORT: model_port, EXECUTOR_GRPC_PORT: local[ports["grpc"]]})
    hosts.add(model, {ports["http"]: model_port, ports["grpc"]: local[ports["grpc"]]})
    return local


def _parameters(parameters: list[dict], paths: PathMap, workload: str) -> str:
    translated = []
    for p in parameters:
        value = p.get("value", "")
        if p.get("type", "STRING") == "STRING" and str(value).startswith("/"):
            value = paths.translate(value, f"graph parameter {p['name']}", workload)
        translated.append({"name": p["name"], "value": value, "type": p.get("type", "STRING")})
    return json.dumps(translated)


def plan_model(
    sdep: dict, rendering: Rendering, scratch: Path, claims: dict[str, Path], hosts: HostMap, local: dict[int, int]
) -> ContainerPlan:
    """Plan the model container of the (single) predictor."""
    name = sdep["metadata"]["name"]
    workload = f"SeldonDeployment/{name}"
    predictor = _predictor(sdep, workload)
    template, container = _model_container(predictor, workload)
    node = predictor["graph"]["name"]
    where = f"{workload} container {node}"
    component = component_for_image(container["image"], where)
    pod = PodContext(workload, f"{name}-{predictor['name']}-0-{node}-local", rendering.namespace(), template, node)
    prepare_volumes(pod, scratch, rendering, claims)
    ports = container_ports(container)
    user_env = {e["name"] for e in container.get("env", [])}
    injected = [
        ("PREDICTIVE_UNIT_SERVICE_PORT", str(local[ports["http"]])),
        ("PREDICTIVE_UNIT_HTTP_SERVICE_PORT", str(local[ports["http"]])),
        ("PREDICTIVE_UNIT_GRPC_SERVICE_PORT", str(local[ports["grpc"]])),
    ]
    parameters = predictor["graph"].get("parameters")
    if parameters and "PREDICTIVE_UNIT_PARAMETERS" not in user_env:
        paths = PathMap(container_mounts(pod, container, f"container {node}"), "/", component.folder)
        injected.append(("PREDICTIVE_UNIT_PARAMETERS", _parameters(parameters, paths, where)))
    no_engine = str(predictor.get("annotations", {}).get("seldon.io/no-engine", "false")).lower() == "true"
    injected += [
        ("PREDICTIVE_UNIT_ID", container["name"]),
        ("PREDICTIVE_UNIT_IMAGE", container["image"]),
        ("PREDICTOR_ID", predictor["name"]),
        ("PREDICTOR_LABELS", json.dumps(predictor.get("labels") or {})),
        ("SELDON_DEPLOYMENT_ID", name),
        ("SELDON_EXECUTOR_ENABLED", "false" if no_engine else "true"),
        ("PREDICTIVE_UNIT_METRICS_SERVICE_PORT", str(local[ports["metrics"]])),
        ("PREDICTIVE_UNIT_METRICS_ENDPOINT", METRICS_PATH),
    ]
    plan = build_container_plan(
        pod=pod,
        container=container,
        label=f"container {node}",
        prefix=node,
        component=component,
        image=image_defaults(component),
        injected=injected,
        ports=local,
        hosts=hosts,
        rendering=rendering,
    )
    if plan.readiness is None:
        plan.readiness = Probe("tcp", local[ports["http"]])
    return plan
