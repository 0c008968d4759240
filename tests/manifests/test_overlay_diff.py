"""The GPU overlay differs from the CPU overlay only in backend, resources, image and tolerations of the trainer."""

import re

import pytest

from manifests.rendering import differences, keyed, one

# Where a difference may be, as regular expressions over the paths that differences() yields.
TRAINER = r"PyTorchJob/mnist-ddp\.spec\.pytorchReplicaSpecs\.(?P<replica>Master|Worker)\.template\.spec"
ALLOWED = {
    "backend": rf"{TRAINER}\.containers\[pytorch\]\.args\[\d+\]",
    "resources": rf"{TRAINER}\.containers\[pytorch\]\.resources\..+",
    "image": rf"{TRAINER}\.containers\[pytorch\]\.image",
    "tolerations": rf"{TRAINER}\.tolerations",
}


def classify(path: str) -> tuple[str, str] | None:
    """(category, replica) of an allowed difference, or None."""
    for category, pattern in ALLOWED.items():
        match = re.fullmatch(pattern, path)
        if match:
            return category, match["replica"]
    return None


def test_differences_are_found_where_they_are():
    a = {"x": {"containers": [{"name": "c", "image": "i:1", "args": ["a", "b"]}]}}
    b = {"x": {"containers": [{"name": "c", "image": "i:2", "args": ["a", "c"]}], "tolerations": []}}
    assert differences(a, b) == [
        ("x.containers[c].args[1]", "b", "c"),
        ("x.containers[c].image", "i:1", "i:2"),
        ("x.tolerations", None, []),
    ]


def test_gpu_overlay_differs_from_cpu_only_in_backend_resources_image_and_tolerations(renderings):
    found = differences(keyed(renderings["overlays/cpu"]), keyed(renderings["overlays/gpu"]))
    unexpected = [(path, cpu, gpu) for path, cpu, gpu in found if classify(path) is None]
    assert unexpected == []
    for path, cpu, gpu in found:
        if classify(path)[0] == "backend":
            assert (cpu, gpu) == ("--backend=gloo", "--backend=nccl"), path
    # Every kind of difference is there, for the Master and for the Workers.
    assert {classify(path) for path, _, _ in found} == {(c, r) for c in ALLOWED for r in ("Master", "Worker")}


@pytest.mark.parametrize("replica", ["Master", "Worker"])
def test_gpu_trainer_gets_nccl_a_gpu_and_the_taint_toleration(renderings, replica):
    cpu_spec, gpu_spec = (
        one(renderings[f"overlays/{o}"], "PyTorchJob", "mnist-ddp")["spec"]["pytorchReplicaSpecs"][replica]["template"][
            "spec"
        ]
        for o in ("cpu", "gpu")
    )
    cpu, gpu = cpu_spec["containers"][0], gpu_spec["containers"][0]
    assert "--backend=gloo" in cpu["args"] and "--backend=nccl" in gpu["args"]
    assert gpu["resources"]["limits"]["nvidia.com/gpu"] == 1
    assert "nvidia.com/gpu" not in cpu["resources"]["limits"]
    assert {"key": "nvidia.com/gpu", "operator": "Exists", "effect": "NoSchedule"} in gpu_spec["tolerations"]
    assert "tolerations" not in cpu_spec
    assert cpu["image"].endswith("-cpu") and gpu["image"].endswith("-gpu")
