"""components/pipelines (the pipeline's ServiceAccount and Role) and components/tensorboard, on top of each
overlay: they render, validate strictly, pass the checks every rendering passes, and hold what the
pipeline and TensorBoard need."""

import json
import os
import subprocess

import pytest
import yaml

from manifests import test_cross_references as every_rendering
from manifests.rendering import OVERLAYS, REPO, VENV, by_kind, containers, one, pod_templates, render
from manifests.strict_schema import builtin_errors, custom_resource_errors
from manifests.test_policy_scan import load_skips

COMPONENTS = ("pipelines", "tensorboard")
CUSTOM_KINDS = ("PyTorchJob", "SeldonDeployment")
# Checks of test_cross_references that hold for any rendering of the example, run here on these ones too.
GENERIC_CHECKS = (
    every_rendering.test_service_selectors_and_target_ports_match_pods,
    every_rendering.test_network_policy_selectors_match_pods,
    every_rendering.test_every_referenced_object_exists,
    every_rendering.test_volume_mounts_name_volumes_of_their_pod,
    every_rendering.test_the_pvc_is_mounted_everywhere_and_written_only_by_the_trainer,
    every_rendering.test_every_container_has_requests_and_limits,
    every_rendering.test_every_container_runs_restricted,
    every_rendering.test_no_pod_gets_an_istio_sidecar,
    every_rendering.test_probes_use_declared_ports,
)


def render_with(tmp_path, overlay, components, namespace=None) -> list[dict]:
    """Render a kustomization that puts `components` on top of `overlay` (and sets `namespace`, if given)."""
    folder = tmp_path / "with-components"
    folder.mkdir()
    kustomization = {
        "apiVersion": "kustomize.config.k8s.io/v1beta1",
        "kind": "Kustomization",
        "resources": [os.path.relpath(overlay, folder)],
        "components": [os.path.relpath(REPO / "components" / c, folder) for c in components],
    }
    if namespace:
        kustomization["namespace"] = namespace
    (folder / "kustomization.yaml").write_text(yaml.safe_dump(kustomization))
    return render(folder)


@pytest.fixture(params=OVERLAYS, ids=lambda p: p.name)
def rendered(request, tmp_path) -> list[dict]:
    return render_with(tmp_path, request.param, COMPONENTS)


def test_each_component_is_a_kustomize_component():
    for name in COMPONENTS:
        kustomization = yaml.safe_load((REPO / "components" / name / "kustomization.yaml").read_text())
        assert (kustomization["apiVersion"], kustomization["kind"]) == ("kustomize.config.k8s.io/v1alpha1", "Component")


def test_they_validate_strictly(rendered, require_crds):
    errors = {
        f"{o['kind']}/{o['metadata']['name']}": custom_resource_errors(o)
        if o["kind"] in CUSTOM_KINDS
        else builtin_errors(o)
        for o in rendered
    }
    assert errors == {key: [] for key in errors}


@pytest.mark.parametrize("check", GENERIC_CHECKS, ids=lambda f: f.__name__.removeprefix("test_"))
def test_they_pass_the_checks_of_every_rendering(rendered, check):
    check({"with-components": rendered}, "with-components")


def test_the_role_allows_exactly_what_train_needs(rendered):
    role = one(rendered, "Role", "mnist-pipeline")
    assert role["rules"] == [
        {
            "apiGroups": ["kubeflow.org"],
            "resources": ["pytorchjobs"],
            "verbs": ["create", "get", "list", "watch", "delete"],
        },
        {"apiGroups": [""], "resources": ["pods", "pods/log"], "verbs": ["get", "list"]},
    ]
    binding = one(rendered, "RoleBinding", "mnist-pipeline")
    assert binding["roleRef"] == {"apiGroup": "rbac.authorization.k8s.io", "kind": "Role", "name": "mnist-pipeline"}
    assert [(s["kind"], s["name"]) for s in binding["subjects"]] == [("ServiceAccount", "mnist-pipeline")]
    one(rendered, "ServiceAccount", "mnist-pipeline")
    assert not by_kind(rendered, "ClusterRole") and not by_kind(rendered, "ClusterRoleBinding")


def test_the_binding_names_the_namespace_the_kustomization_sets(tmp_path):
    objects = render_with(tmp_path, REPO / "overlays" / "cpu", ["pipelines"], namespace="kubeflow")
    binding = one(objects, "RoleBinding", "mnist-pipeline")
    assert binding["metadata"]["namespace"] == "kubeflow"
    assert binding["subjects"][0]["namespace"] == "kubeflow"


def test_tensorboard_reads_what_the_trainer_writes(rendered):
    (template,) = [t for t in pod_templates(rendered) if t.where == "Deployment/mnist-tensorboard"]
    (container,) = containers(template)
    logdir = next(a.split("=", 1)[1] for a in container["args"] if a.startswith("--logdir="))
    job = one(rendered, "PyTorchJob", "mnist-ddp")
    for replica in job["spec"]["pytorchReplicaSpecs"].values():
        args = replica["template"]["spec"]["containers"][0]["args"]
        written = next(a.split("=", 1)[1] for a in args if a.startswith("--tensorboard-dir="))
        assert written.startswith(logdir + "/"), f"the trainer writes {written}, outside TensorBoard's {logdir}"
    mount = next(m for m in container["volumeMounts"] if m["name"] == "mnist-pvc")
    assert logdir.startswith(mount["mountPath"] + "/") and mount["readOnly"] is True
    assert container["image"] == "registry.example.com/kubeflow-mnist/mnist-tensorboard:0.1.0"


def test_tensorboard_is_reachable_only_from_its_namespace_on_its_port(rendered):
    policy = one(rendered, "NetworkPolicy", "mnist-tensorboard")
    assert policy["spec"]["policyTypes"] == ["Ingress"]
    assert policy["spec"]["ingress"] == [{"from": [{"podSelector": {}}], "ports": [{"protocol": "TCP", "port": 6006}]}]
    service = one(rendered, "Service", "mnist-tensorboard")
    assert [(p["port"], p["targetPort"]) for p in service["spec"]["ports"]] == [(6006, "http")]


def test_the_image_pins_the_trainers_tensorboard():
    """The image reads the event files with the TensorBoard that wrote them."""

    def pin(path):
        return next(line for line in (REPO / path).read_text().splitlines() if line.startswith("tensorboard=="))

    assert pin("tensorboard/requirements.txt") == pin("trainer/requirements.txt")
    dockerfile = (REPO / "tensorboard" / "Dockerfile").read_text()
    assert "-r /tmp/requirements.txt" in dockerfile and "COPY tensorboard/requirements.txt" in dockerfile


def test_the_standalone_kfp_setup_renders_and_validates(require_crds):
    """pipelines/manifests: the example in `kubeflow`, without its PyTorchJob, with both components."""
    objects = render(REPO / "pipelines" / "manifests")
    assert not by_kind(objects, "PyTorchJob"), "the pipeline's train step creates the job"
    assert {o["metadata"].get("namespace") for o in objects} == {"kubeflow"}
    errors = {
        f"{o['kind']}/{o['metadata']['name']}": custom_resource_errors(o)
        if o["kind"] in CUSTOM_KINDS
        else builtin_errors(o)
        for o in objects
    }
    assert errors == {key: [] for key in errors}
    bindings = {b["metadata"]["name"]: b for b in by_kind(objects, "RoleBinding")}
    assert {name: b["roleRef"]["name"] for name, b in bindings.items()} == {
        "mnist-pipeline": "mnist-pipeline",
        "mnist-pipeline-kfp-runner": "pipeline-runner",
    }
    for binding in bindings.values():
        assert binding["subjects"] == [{"kind": "ServiceAccount", "name": "mnist-pipeline", "namespace": "kubeflow"}]
    one(objects, "Deployment", "mnist-tensorboard")
    one(objects, "NetworkPolicy", "mnist-ddp")


@pytest.mark.slow
def test_checkov_finds_nothing_beyond_the_listed_skips(tmp_path):
    """The policy scan of test_policy_scan, on both components over overlays/cpu and on pipelines/manifests."""
    checkov = VENV / "checkov" / "bin" / "checkov"
    if not checkov.exists():
        pytest.fail(f"{checkov} is missing: run `make {VENV.name}/checkov/.installed`")
    renderings = {
        "with-components.yaml": render_with(tmp_path, REPO / "overlays" / "cpu", COMPONENTS),
        "standalone-kfp.yaml": render(REPO / "pipelines" / "manifests"),
    }
    files = []
    for name, objects in renderings.items():
        (tmp_path / name).write_text(yaml.safe_dump_all(objects))
        files += ["--file", name]
    result = subprocess.run(
        [str(checkov), "--framework", "kubernetes", *files, "--output", "json", "--skip-download"],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode in (0, 1), f"checkov failed to run:\n{result.stderr[-3000:]}"
    report = json.loads(result.stdout)
    assert report["summary"]["parsing_errors"] == 0 and report["summary"]["passed"] > 100
    skips = load_skips()
    failed = {
        f"{c['check_id']} {c['file_path'].lstrip('/')}: {c['resource']} ({c['check_name']})"
        for c in report["results"]["failed_checks"]
        if c["check_id"] not in skips
    }
    assert failed == set()
