"""A Deployment's container as one local process, and the Services that select it.

A Deployment runs one process whatever its `replicas`: every replica would need the
same local port. The Services in the rendering map their ports (through `targetPort`)
to the local ports of the container they select.
"""

from pathlib import Path

from local_runner.components import component_for_image, image_defaults
from local_runner.errors import RefusedError
from local_runner.podspec import (
    ContainerPlan,
    PodContext,
    build_container_plan,
    local_ports,
    named_port,
    prepare_volumes,
)
from local_runner.render import Rendering
from local_runner.translate import HostMap


def the_container(deployment: dict) -> dict:
    """The Deployment's single container; sidecars and init containers are refused."""
    workload = f"Deployment/{deployment['metadata']['name']}"
    spec = deployment["spec"]["template"].get("spec", {})
    if spec.get("initContainers"):
        raise RefusedError(workload, "initContainers are not emulated")
    containers = spec.get("containers", [])
    if len(containers) != 1:
        raise RefusedError(workload, f"{len(containers)} containers: only a Deployment with one container is emulated")
    return containers[0]


def port_preferences(deployment: dict, frontend_port: int) -> dict[int, int]:
    """The frontend's first container port is served on FRONTEND_PORT."""
    container = the_container(deployment)
    workload = f"Deployment/{deployment['metadata']['name']}"
    component = component_for_image(container["image"], workload)
    ports = container.get("ports", [])
    if component.name == "frontend" and ports:
        return {int(ports[0]["containerPort"]): frontend_port}
    return {}


def register_services(rendering: Rendering, hosts: HostMap, deployment_ports: dict[str, dict[int, int]]) -> None:
    """Map every Service whose selector matches a Deployment's pod labels to that container's local ports."""
    for service in rendering.of_kind("Service"):
        name = service["metadata"]["name"]
        selector = service["spec"].get("selector") or {}
        mapped: dict[int, int] = {}
        for deployment in rendering.of_kind("Deployment"):
            labels = deployment["spec"]["template"].get("metadata", {}).get("labels", {})
            if not selector or any(labels.get(k) != v for k, v in selector.items()):
                continue
            container = the_container(deployment)
            local = deployment_ports[deployment["metadata"]["name"]]
            for port in service["spec"].get("ports", []):
                target = named_port(container, port.get("targetPort", port["port"]), f"Service/{name}")
                if target not in local:
                    raise RefusedError(
                        f"Service/{name}",
                        f"targetPort {target} is not a port of Deployment/{deployment['metadata']['name']}",
                    )
                mapped[int(port["port"])] = local[target]
        hosts.add(name, mapped)


def plan_deployment(
    deployment: dict,
    rendering: Rendering,
    scratch: Path,
    claims: dict[str, Path],
    hosts: HostMap,
    ports: dict[int, int],
) -> ContainerPlan:
    """Plan the Deployment's container as one local process."""
    name = deployment["metadata"]["name"]
    workload = f"Deployment/{name}"
    container = the_container(deployment)
    where = f"{workload} container {container['name']}"
    component = component_for_image(container["image"], where)
    pod = PodContext(
        workload, f"{name}-local", rendering.namespace(), deployment["spec"]["template"], container["name"]
    )
    prepare_volumes(pod, scratch, rendering, claims)
    return build_container_plan(
        pod=pod,
        container=container,
        label=f"container {container['name']}",
        prefix=container["name"],
        component=component,
        image=image_defaults(component),
        injected=[],
        ports=ports,
        hosts=hosts,
        rendering=rendering,
    )


def deployment_local_ports(deployment: dict, frontend_port: int) -> dict[int, int]:
    """Container port -> local port for the Deployment's container."""
    return local_ports(the_container(deployment), port_preferences(deployment, frontend_port))
