"""`kubectl kustomize` renders base/ and every overlay, with the objects the example is made of."""

import pytest

from manifests.rendering import KUSTOMIZATIONS, render

EXPECTED = {
    ("PersistentVolumeClaim", "mnist-pvc"),
    ("PyTorchJob", "mnist-ddp"),
    ("NetworkPolicy", "mnist-ddp"),
    ("SeldonDeployment", "mnist-classifier"),
    ("NetworkPolicy", "mnist-classifier"),
    ("Deployment", "mnist-frontend"),
    ("Service", "mnist-frontend"),
    ("NetworkPolicy", "mnist-frontend"),
}


def test_there_is_a_cpu_and_a_gpu_overlay():
    assert {"overlays/cpu", "overlays/gpu"} <= set(KUSTOMIZATIONS)


@pytest.mark.parametrize("name", KUSTOMIZATIONS)
def test_kustomize_renders_every_object(renderings, name):
    assert {(obj["kind"], obj["metadata"]["name"]) for obj in renderings[name]} == EXPECTED


def test_a_broken_kustomization_fails_loudly(tmp_path):
    (tmp_path / "kustomization.yaml").write_text("resources:\n  - missing.yaml\n")
    with pytest.raises(RuntimeError, match=r"missing\.yaml"):
        render(tmp_path)


@pytest.mark.parametrize("name", KUSTOMIZATIONS)
def test_no_namespace_is_baked_in(renderings, name):
    # The namespace is chosen at apply time: Kubeflow profile namespaces differ per user.
    assert [obj["metadata"]["name"] for obj in renderings[name] if "namespace" in obj["metadata"]] == []


@pytest.mark.parametrize("name", KUSTOMIZATIONS)
def test_every_object_carries_the_part_of_label(renderings, name):
    unlabelled = [
        f"{obj['kind']}/{obj['metadata']['name']}"
        for obj in renderings[name]
        if obj["metadata"].get("labels", {}).get("app.kubernetes.io/part-of") != "kubeflow-pytorch-mnist"
    ]
    assert unlabelled == []
