"""The objects agree with each other: selectors, references, the Seldon URL, images, resources, security."""

import re
from urllib.parse import urlsplit

import pytest
import yaml

from manifests.rendering import (
    IMAGE_NAMES,
    KUSTOMIZATIONS,
    OVERLAYS,
    by_kind,
    containers,
    label_selector_matches,
    one,
    pod_templates,
    selector_matches,
)

# The Seldon executor's REST port: the predictor Service <deployment>-<predictor> forwards it.
SELDON_EXECUTOR_PORT = 8000
SELDON_PREDICTIONS_PATH = "/api/v1.0/predictions"
PVC_MOUNT = "/mnt/pvc"


def env_value(container: dict, name: str) -> str:
    """The literal value of one environment variable of a container; fails if it is not set."""
    values = [e.get("value") for e in container.get("env", []) if e["name"] == name]
    assert len(values) == 1 and values[0] is not None, f"{container['name']} must set {name} once, literally"
    return values[0]


def flag(args: list[str], name: str) -> str:
    """The value of `--name=value` in a container's args."""
    values = [a.split("=", 1)[1] for a in args if a.startswith(f"--{name}=")]
    assert len(values) == 1, f"expected one --{name}=... in {args}"
    return values[0]


def service_ports(objects: list[dict]) -> dict[str, set[int]]:
    """Service name -> ports: the rendered Services and the predictor Services that the Seldon operator creates."""
    ports = {s["metadata"]["name"]: {p["port"] for p in s["spec"]["ports"]} for s in by_kind(objects, "Service")}
    for sdep in by_kind(objects, "SeldonDeployment"):
        for predictor in sdep["spec"]["predictors"]:
            ports[f"{sdep['metadata']['name']}-{predictor['name']}"] = {SELDON_EXECUTOR_PORT}
    return ports


def frontend_container(objects: list[dict]) -> dict:
    return one(objects, "Deployment", "mnist-frontend")["spec"]["template"]["spec"]["containers"][0]


@pytest.mark.parametrize("name", KUSTOMIZATIONS)
def test_service_selectors_and_target_ports_match_pods(renderings, name):
    objects = renderings[name]
    for service in by_kind(objects, "Service"):
        selected = [t for t in pod_templates(objects) if selector_matches(service["spec"]["selector"], t.labels)]
        assert selected, f"Service {service['metadata']['name']} selects no pod"
        for port in service["spec"]["ports"]:
            target = port.get("targetPort", port["port"])
            for template in selected:
                declared = [
                    (p.get("name"), p["containerPort"]) for c in containers(template) for p in c.get("ports", [])
                ]
                assert any(target in pair for pair in declared), f"{template.where} has no port {target}"


@pytest.mark.parametrize("name", KUSTOMIZATIONS)
def test_network_policy_selectors_match_pods(renderings, name):
    objects = renderings[name]
    templates = list(pod_templates(objects))
    for policy in by_kind(objects, "NetworkPolicy"):
        selectors = [policy["spec"]["podSelector"]] + [
            peer["podSelector"]
            for rule in policy["spec"].get("ingress", []) + policy["spec"].get("egress", [])
            for peer in rule.get("from", []) + rule.get("to", [])
            if "podSelector" in peer
        ]
        for selector in selectors:
            assert any(label_selector_matches(selector, t.labels) for t in templates), (
                f"NetworkPolicy {policy['metadata']['name']}: {selector} selects no pod of the rendering"
            )


@pytest.mark.parametrize("name", KUSTOMIZATIONS)
def test_every_referenced_object_exists(renderings, name):
    objects = renderings[name]
    names = {
        kind: {o["metadata"]["name"] for o in by_kind(objects, kind)}
        for kind in ("PersistentVolumeClaim", "ConfigMap", "Secret")
    }
    services = service_ports(objects)
    for template in pod_templates(objects):
        for volume in template.spec.get("volumes", []):
            if "persistentVolumeClaim" in volume:
                assert volume["persistentVolumeClaim"]["claimName"] in names["PersistentVolumeClaim"], template.where
            if "configMap" in volume:
                assert volume["configMap"]["name"] in names["ConfigMap"], template.where
            if "secret" in volume:
                assert volume["secret"]["secretName"] in names["Secret"], template.where
        for container in containers(template):
            for source in container.get("envFrom", []):
                for kind, key in (("ConfigMap", "configMapRef"), ("Secret", "secretRef")):
                    if key in source:
                        assert source[key]["name"] in names[kind], template.where
            for env in container.get("env", []):
                for kind, key in (("ConfigMap", "configMapKeyRef"), ("Secret", "secretKeyRef")):
                    if key in env.get("valueFrom", {}):
                        assert env["valueFrom"][key]["name"] in names[kind], template.where
                if re.match(r"https?://", env.get("value", "")):
                    url = urlsplit(env["value"])
                    port = url.port or {"http": 80, "https": 443}[url.scheme]
                    assert port in services.get(url.hostname, set()), (
                        f"{template.where}: {env['name']} names {url.hostname}:{port}, which no Service serves"
                    )


@pytest.mark.parametrize("name", KUSTOMIZATIONS)
def test_volume_mounts_name_volumes_of_their_pod(renderings, name):
    for template in pod_templates(renderings[name]):
        volumes = {v["name"] for v in template.spec.get("volumes", [])}
        for container in containers(template):
            for mount in container.get("volumeMounts", []):
                assert mount["name"] in volumes, f"{template.where}/{container['name']}: no volume {mount['name']}"


@pytest.mark.parametrize("name", KUSTOMIZATIONS)
def test_frontend_seldon_url_names_the_predictor_service(renderings, name):
    objects = renderings[name]
    sdep = one(objects, "SeldonDeployment", "mnist-classifier")
    url = urlsplit(env_value(frontend_container(objects), "FRONTEND_SELDON_URL"))
    assert url.scheme == "http"
    assert url.hostname == f"{sdep['metadata']['name']}-{sdep['spec']['predictors'][0]['name']}"
    assert url.port == SELDON_EXECUTOR_PORT
    assert url.path == SELDON_PREDICTIONS_PATH


@pytest.mark.parametrize("name", KUSTOMIZATIONS)
def test_only_the_frontend_may_reach_the_model(renderings, name):
    objects = renderings[name]
    frontend = next(t for t in pod_templates(objects) if t.where == "Deployment/mnist-frontend")
    trainer = next(t for t in pod_templates(objects) if t.where.startswith("PyTorchJob/"))
    classifier = next(t for t in pod_templates(objects) if t.where.startswith("SeldonDeployment/"))
    policies = [
        p
        for p in by_kind(objects, "NetworkPolicy")
        if label_selector_matches(p["spec"]["podSelector"], classifier.labels)
    ]
    assert len(policies) == 1, "exactly one NetworkPolicy must select the model server's pods"
    rules = policies[0]["spec"]["ingress"]
    for rule in rules:
        assert rule.get("from"), "a rule without `from` admits every source"
        assert all("podSelector" in peer and "namespaceSelector" not in peer for peer in rule["from"])
        assert {p["port"] for p in rule["ports"]} == {SELDON_EXECUTOR_PORT}

    def admits(template):
        return any(
            label_selector_matches(peer["podSelector"], template.labels) for rule in rules for peer in rule["from"]
        )

    assert admits(frontend)
    assert not admits(trainer)


@pytest.mark.parametrize("name", KUSTOMIZATIONS)
def test_the_model_server_reads_what_the_trainer_publishes(renderings, name):
    objects = renderings[name]
    job = one(objects, "PyTorchJob", "mnist-ddp")
    sdep = one(objects, "SeldonDeployment", "mnist-classifier")
    parameters = {p["name"]: p for p in sdep["spec"]["predictors"][0]["graph"]["parameters"]}
    for replica in job["spec"]["pytorchReplicaSpecs"].values():
        args = replica["template"]["spec"]["containers"][0]["args"]
        assert flag(args, "model-root") == parameters["model_root"]["value"]
        assert flag(args, "data-dir") == env_value(frontend_container(objects), "FRONTEND_DATA_DIR")
        for key in ("data-dir", "model-root", "checkpoint-dir", "tensorboard-dir"):
            assert flag(args, key).startswith(f"{PVC_MOUNT}/")
    assert parameters["model_root"]["type"] == "STRING"


@pytest.mark.parametrize("name", KUSTOMIZATIONS)
def test_the_pvc_is_mounted_everywhere_and_written_only_by_the_trainer(renderings, name):
    objects = renderings[name]
    pvc = one(objects, "PersistentVolumeClaim", "mnist-pvc")
    assert pvc["spec"]["accessModes"] == ["ReadWriteMany"]
    assert "storageClassName" not in pvc["spec"], "the base uses the cluster's default class"
    for template in pod_templates(objects):
        volume = next(
            v for v in template.spec["volumes"] if v.get("persistentVolumeClaim", {}).get("claimName") == "mnist-pvc"
        )
        mount = next(m for c in template.spec["containers"] for m in c["volumeMounts"] if m["name"] == volume["name"])
        assert mount["mountPath"] == PVC_MOUNT
        writer = template.where.startswith("PyTorchJob/")
        assert mount.get("readOnly", False) is not writer, template.where
        assert volume["persistentVolumeClaim"].get("readOnly", False) is not writer, template.where


def test_base_images_are_bare_names(renderings):
    assert {c["image"] for t in pod_templates(renderings["base"]) for c in containers(t)} == set(IMAGE_NAMES)


@pytest.mark.parametrize("overlay", OVERLAYS, ids=lambda p: p.name)
def test_every_image_is_set_by_the_overlay(renderings, overlay):
    kustomization = yaml.safe_load((overlay / "kustomization.yaml").read_text())
    if "images" in kustomization:
        assert sorted(image["name"] for image in kustomization["images"]) == sorted(IMAGE_NAMES)
    for template in pod_templates(renderings[f"overlays/{overlay.name}"]):
        for container in containers(template):
            image = container["image"]
            assert "/" in image and re.search(r"(:[\w.-]+|@sha256:[0-9a-f]{64})$", image), (
                f"{template.where}/{container['name']}: {image} needs a registry and a tag or digest"
            )


@pytest.mark.parametrize("name", KUSTOMIZATIONS)
def test_every_container_has_requests_and_limits(renderings, name):
    for template in pod_templates(renderings[name]):
        for container in containers(template):
            resources = container.get("resources", {})
            for kind in ("requests", "limits"):
                assert {"cpu", "memory"} <= set(resources.get(kind, {})), f"{template.where}/{container['name']} {kind}"
    for sdep in by_kind(renderings[name], "SeldonDeployment"):
        for predictor in sdep["spec"]["predictors"]:
            executor = predictor["svcOrchSpec"]["resources"]
            assert {"cpu", "memory"} <= set(executor["requests"]) and {"cpu", "memory"} <= set(executor["limits"])


def effective_security(template, container: dict) -> dict:
    """The container's security settings, falling back to the pod's where Kubernetes does."""
    pod = template.spec.get("securityContext", {}) if template.pod_security_context_kept else {}
    merged = {key: pod[key] for key in ("runAsNonRoot", "runAsUser", "runAsGroup", "seccompProfile") if key in pod}
    merged.update(container.get("securityContext", {}))
    return merged


@pytest.mark.parametrize("name", KUSTOMIZATIONS)
def test_every_container_runs_restricted(renderings, name):
    for template in pod_templates(renderings[name]):
        assert template.spec.get("automountServiceAccountToken") is False, template.where
        for key in ("hostNetwork", "hostPID", "hostIPC"):
            assert not template.spec.get(key, False), template.where
        tmp_volumes = {v["name"] for v in template.spec["volumes"] if "emptyDir" in v}
        for container in containers(template):
            where = f"{template.where}/{container['name']}"
            security = effective_security(template, container)
            assert security.get("runAsNonRoot") is True, where
            assert security.get("runAsUser", 0) >= 10000, where
            assert security.get("allowPrivilegeEscalation") is False, where
            assert security.get("privileged", False) is False, where
            assert security.get("readOnlyRootFilesystem") is True, where
            assert security.get("capabilities", {}).get("drop") == ["ALL"], where
            assert not security.get("capabilities", {}).get("add"), where
            assert security.get("seccompProfile", {}).get("type") == "RuntimeDefault", where
            tmp = [m for m in container["volumeMounts"] if m["mountPath"] == "/tmp"]
            assert len(tmp) == 1 and tmp[0]["name"] in tmp_volumes, f"{where}: /tmp must be a writable emptyDir"


@pytest.mark.parametrize("name", KUSTOMIZATIONS)
def test_no_pod_gets_an_istio_sidecar(renderings, name):
    # A sidecar keeps a training pod running after the trainer exits: the job would never finish.
    for template in pod_templates(renderings[name]):
        assert template.annotations.get("sidecar.istio.io/inject") == "false", template.where


@pytest.mark.parametrize("name", KUSTOMIZATIONS)
def test_pytorchjob_is_what_the_training_operator_expects(renderings, name):
    job = one(renderings[name], "PyTorchJob", "mnist-ddp")
    assert job["spec"]["nprocPerNode"] == "1"
    assert job["spec"]["runPolicy"]["cleanPodPolicy"] == "None"
    replicas = job["spec"]["pytorchReplicaSpecs"]
    assert set(replicas) == {"Master", "Worker"} and replicas["Master"]["replicas"] == 1
    for replica_type, replica in replicas.items():
        assert replica["restartPolicy"] == "OnFailure", replica_type
        spec = replica["template"]["spec"]
        (container,) = spec["containers"]
        assert container["name"] == "pytorch", "the operator looks up the container named pytorch"
        assert {"name": "pytorchjob-port", "containerPort": 23456, "protocol": "TCP"} in container["ports"]
        assert container["command"] == ["python", "-m", "mnist_ddp"]
        threads = next(e for e in container["env"] if e["name"] == "OMP_NUM_THREADS")["valueFrom"]["resourceFieldRef"]
        assert threads == {"containerName": "pytorch", "resource": "limits.cpu", "divisor": "1"}
        shm = next(m for m in container["volumeMounts"] if m["mountPath"] == "/dev/shm")
        shm_volume = next(v for v in spec["volumes"] if v["name"] == shm["name"])
        assert shm_volume["emptyDir"]["medium"] == "Memory"


@pytest.mark.parametrize("name", KUSTOMIZATIONS)
def test_seldon_deployment_is_what_the_seldon_operator_expects(renderings, name):
    sdep = one(renderings[name], "SeldonDeployment", "mnist-classifier")
    (predictor,) = sdep["spec"]["predictors"]
    assert predictor["name"] == "default"
    graph = predictor["graph"]
    (component,) = predictor["componentSpecs"]
    (container,) = component["spec"]["containers"]
    assert graph["name"] == container["name"] == "classifier", "the graph node names its container"
    assert graph["type"] == "MODEL"
    ports = {p["name"]: p["containerPort"] for p in container["ports"]}
    assert ports == {"http": 9000, "grpc": 9500, "metrics": 6000}
    assert container["readinessProbe"]["httpGet"] == {"path": "/health/status", "port": "http"}
    assert container["livenessProbe"]["httpGet"]["port"] == "http"
    for variable in ("GUNICORN_WORKERS", "GUNICORN_THREADS", "GRPC_WORKERS"):
        assert env_value(container, variable).isdigit(), variable
    assert "nvidia.com/gpu" not in container["resources"]["limits"], "serving stays on CPU"


@pytest.mark.parametrize("name", KUSTOMIZATIONS)
def test_probes_use_declared_ports(renderings, name):
    for template in pod_templates(renderings[name]):
        for container in template.spec["containers"]:
            names = {p.get("name") for p in container.get("ports", [])} | {
                p["containerPort"] for p in container.get("ports", [])
            }
            for probe in ("livenessProbe", "readinessProbe", "startupProbe"):
                if probe in container:
                    port = container[probe].get("httpGet", container[probe].get("tcpSocket", {})).get("port")
                    assert port in names, f"{template.where}/{container['name']} {probe} port {port}"
            if not template.where.startswith("PyTorchJob/"):
                assert {"livenessProbe", "readinessProbe"} <= set(container), f"{template.where}/{container['name']}"


@pytest.mark.parametrize("name", KUSTOMIZATIONS)
def test_servers_have_a_startup_probe_on_their_liveness_endpoint(renderings, name):
    """A slow start (torch's import on a busy node) is waited for, second by second, and nothing longer.

    The startup probe asks whether the server is up, not whether a model is ready: before the first
    training run publishes one, a startup probe on readiness would have the kubelet kill the server.
    """
    for template in pod_templates(renderings[name]):
        if template.where.startswith("PyTorchJob/"):
            continue
        for container in template.spec["containers"]:
            where = f"{template.where}/{container['name']}"
            startup = container.get("startupProbe")
            assert startup, f"{where} has no startupProbe"
            assert startup["httpGet"] == container["livenessProbe"]["httpGet"], where
            assert startup["periodSeconds"] == 1 and startup["periodSeconds"] * startup["failureThreshold"] >= 60, where
            for probe in ("readinessProbe", "livenessProbe"):
                assert "initialDelaySeconds" not in container[probe], f"{where} {probe}: the startupProbe delays it"
