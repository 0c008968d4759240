"""What setup-cluster.sh gives the operators so that their pods pass Pod Security "restricted", tried on
the real API server: the Training Operator's init-container template and the Seldon executor policy."""

import json
import os
import subprocess
import time

import yaml
from manifests.rendering import REPO, find_kubectl, one, render

from local_cluster import build
from local_cluster.versions import load_versions

UPSTREAM_STANDALONE = "github.com/kubeflow/training-operator.git/manifests/overlays/standalone?ref="


def test_the_operator_kustomization_follows_the_pinned_version():
    pinned = load_versions()["TRAINING_OPERATOR_VERSION"]
    kustomization = yaml.safe_load((REPO / "operators/training-operator/kustomization.yaml").read_text())
    assert kustomization["resources"] == [UPSTREAM_STANDALONE + pinned]
    assert f"readonly TRAINING_OPERATOR_VERSION={pinned}\n" in (REPO / "scripts/setup-cluster.sh").read_text()


def test_the_operator_kustomization_mounts_the_template(tmp_path):
    # Rendered over the upstream manifests as the Go module proxy serves them at the pinned version.
    pinned = load_versions()["TRAINING_OPERATOR_VERSION"]
    info = json.loads(
        subprocess.check_output(
            [build.go_command(), "mod", "download", "-json", f"github.com/kubeflow/training-operator@{pinned}"],
            cwd=tmp_path,
        )
    )
    source = REPO / "operators/training-operator"
    for f in source.iterdir():
        upstream = os.path.relpath(f"{info['Dir']}/manifests/overlays/standalone", tmp_path)
        text = f.read_text().replace(UPSTREAM_STANDALONE + pinned, upstream)
        (tmp_path / f.name).write_text(text)
    rendered = subprocess.run(
        [find_kubectl(), "kustomize", "--load-restrictor=LoadRestrictionsNone", str(tmp_path)],
        capture_output=True, text=True, check=True,
    ).stdout  # fmt: skip
    objects = [o for o in yaml.safe_load_all(rendered) if o]
    deployment = one(objects, "Deployment", "training-operator")
    spec = deployment["spec"]["template"]["spec"]
    (container,) = spec["containers"]
    mount = next(m for m in container["volumeMounts"] if m["name"] == "init-container-template")
    # The operator's default --pytorch-init-container-template-file is /etc/config/initContainer.yaml.
    assert mount["mountPath"] == "/etc/config"
    volume = next(v for v in spec["volumes"] if v["name"] == "init-container-template")
    config_map = one(objects, "ConfigMap", volume["configMap"]["name"])
    assert config_map["data"]["initContainer.yaml"] == (source / "init-container.yaml").read_text()


def seldon_model_pod() -> dict:
    """The model pod as the Seldon operator v1.17.1 builds it from our SeldonDeployment.

    The operator cannot be built here, so its part is written from its source
    (operator/controllers/seldondeployment_engine.go): it appends the executor container with only
    runAsUser and allowPrivilegeEscalation, and keeps a pod-level securityContext that is given.
    """
    sdep = one(render(REPO / "overlays/cpu"), "SeldonDeployment", "mnist-classifier")
    spec = json.loads(json.dumps(sdep["spec"]["predictors"][0]["componentSpecs"][0]["spec"]))
    spec["containers"][0]["image"] = "registry.example.com/mnist-serving:0.1.0"
    spec["containers"].append(
        {
            "name": "seldon-container-engine",
            "image": "docker.io/seldonio/seldon-core-executor:1.17.1",
            "ports": [{"containerPort": 8000, "protocol": "TCP"}],
            "securityContext": {"runAsUser": 8888, "allowPrivilegeEscalation": False},
        }
    )
    return {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "mnist-classifier-model"}, "spec": spec}


def dry_run(cluster, namespace: str, pod: dict):
    return cluster.kubectl(
        "create", "--dry-run=server", "-o", "json", "-n", namespace, "-f", "-", input=json.dumps(pod), check=False
    )


def test_the_seldon_executor_is_restricted_only_with_the_policy(cluster, restricted_namespace):
    pod = seldon_model_pod()
    refused = dry_run(cluster, restricted_namespace, pod)
    assert refused.returncode != 0
    assert 'container "seldon-container-engine" must set securityContext.capabilities.drop=["ALL"]' in (refused.stderr)
    assert '"classifier"' not in refused.stderr, "our own container must already be restricted"

    cluster.kubectl("apply", "-f", str(REPO / "operators/seldon-core/executor-restricted.yaml"))
    try:
        deadline = time.monotonic() + 30
        while (admitted := dry_run(cluster, restricted_namespace, pod)).returncode != 0:
            assert time.monotonic() < deadline, f"the policy never took effect: {admitted.stderr}"
            time.sleep(0.5)
        executor = next(
            c for c in json.loads(admitted.stdout)["spec"]["containers"] if c["name"] == "seldon-container-engine"
        )
        assert executor["securityContext"] == {
            "runAsUser": 8888,
            "allowPrivilegeEscalation": False,
            "capabilities": {"drop": ["ALL"]},
        }
    finally:
        cluster.kubectl("delete", "-f", str(REPO / "operators/seldon-core/executor-restricted.yaml"), check=False)
