"""scripts/submit_trainjob_sdk.py, the Kubeflow SDK 0.5.0 (.venv/sdk), on the real Trainer v2.3.0 and JobSet
controllers: the TrainJob it submits is the overlay's but for what the SDK cannot say, the Trainer's webhooks
admit it, and the controllers turn it into a JobSet whose node pods run our image under restricted with the
torch plugin's env. Bad submissions end with the reason and create nothing.

The SDK runs in its own environment, so the script runs as a subprocess of that Python, against the session
cluster's kubeconfig, as a user runs it against theirs.
"""

import copy
import json
import os
import subprocess

import pytest
import yaml
from manifests.rendering import REPO, VENV, one, render
from manifests.strict_schema import crds_dir
from test_overlays_on_the_control_plane import get, pod_security_failures, wait_for

SDK_PYTHON = VENV / "sdk/bin/python"
SCRIPT = REPO / "scripts/submit_trainjob_sdk.py"
# The script's variant for each overlay it mirrors.
VARIANTS = {"overlays/cpu-trainjob": [], "overlays/gpu-trainjob": ["--gpu"]}
NO_VERSION_WARNING = "Trainer control-plane version info is not available"


@pytest.fixture(scope="module", autouse=True)
def sdk_environment():
    if not SDK_PYTHON.exists():
        message = (
            f"no Kubeflow SDK environment at {SDK_PYTHON}: make test-cluster builds it (scripts/requirements-sdk.txt)"
        )
        if os.environ.get("CI"):
            pytest.fail(message)
        pytest.skip(message)


def run_sdk(cluster, *argv: str) -> subprocess.CompletedProcess:
    """The SDK environment's Python with the cluster's kubeconfig, and no other Kubernetes settings."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("KUBE")} | {"KUBECONFIG": str(cluster.kubeconfig)}
    return subprocess.run(
        [str(SDK_PYTHON), *argv], capture_output=True, text=True, timeout=120, env=env, cwd=REPO, check=False
    )


def submit(cluster, namespace: str, *flags: str) -> subprocess.CompletedProcess:
    return run_sdk(cluster, str(SCRIPT), "--namespace", namespace, *flags)


def trainjob_names(cluster, namespace: str) -> list[str]:
    return [t["metadata"]["name"] for t in get(cluster, namespace, "trainjobs")["items"]]


def quantities(resources: dict) -> dict:
    """Resource quantities as the API server stores them: strings."""
    return {part: {k: str(v) for k, v in values.items()} for part, values in resources.items()}


@pytest.fixture(scope="module", params=sorted(VARIANTS))
def submitted(request, cluster):
    """A restricted namespace with the overlay's objects but its TrainJob, then the script's TrainJob."""
    overlay = request.param
    namespace = "ns-sdk-" + overlay.removeprefix("overlays/")
    cluster.kubectl("create", "namespace", namespace)
    cluster.kubectl("label", "namespace", namespace, "pod-security.kubernetes.io/enforce=restricted")
    objects = render(REPO / overlay)
    rest = [o for o in objects if o["kind"] != "TrainJob"]
    cluster.kubectl(
        "apply", "--server-side", "--validate=strict", "-n", namespace, "-f", "-", input=yaml.safe_dump_all(rest)
    )
    done = submit(cluster, namespace, *VARIANTS[overlay])
    assert done.returncode == 0, done.stderr
    jobset = wait_for(f"the JobSet mnist-ddp in {namespace}", lambda: get(cluster, namespace, "jobset", "mnist-ddp"))
    selector = "jobset.sigs.k8s.io/jobset-name=mnist-ddp"
    pods = wait_for(
        f"two node pods in {namespace}",
        lambda: (p := get(cluster, namespace, "pods", "-l", selector)["items"]) and len(p) == 2 and p,
    )
    yield {
        "overlay": overlay,
        "namespace": namespace,
        "run": done,
        "written": one(objects, "TrainJob", "mnist-ddp"),
        "trainjob": get(cluster, namespace, "trainjob", "mnist-ddp"),
        "jobset": jobset,
        "pods": pods,
    }
    cluster.kubectl("delete", "namespace", namespace, "--wait=false", check=False)


def test_the_script_sees_the_runtime_and_says_what_it_submitted(submitted):
    run, namespace = submitted["run"], submitted["namespace"]
    assert run.stdout.splitlines()[0] == "runtimes: torch-distributed (torch)"
    assert f"trainjob {namespace}/mnist-ddp submitted: runtime torch-distributed, 2 nodes" in run.stdout
    # The control plane publishes its version as a Trainer install does, so the SDK has nothing to warn about.
    assert NO_VERSION_WARNING not in run.stderr, run.stderr


def test_the_trainjob_is_the_overlays_but_for_what_the_sdk_cannot_say(submitted):
    written, stored = submitted["written"], submitted["trainjob"]
    assert stored["metadata"]["labels"] == written["metadata"]["labels"]
    assert stored["spec"]["runtimeRef"] == written["spec"]["runtimeRef"]
    assert stored["spec"]["activeDeadlineSeconds"] == written["spec"]["activeDeadlineSeconds"]
    (patch,) = stored["spec"]["runtimePatches"]
    (ours,) = written["spec"]["runtimePatches"]
    assert patch["manager"] == "trainer.kubeflow.org/kubeflow-sdk"
    assert patch["trainingRuntimeSpec"] == ours["trainingRuntimeSpec"]
    expected = copy.deepcopy(written["spec"]["trainer"])
    # No numProcPerNode in CustomTrainerContainer: the torch plugin derives it (one per CPU, or auto with a GPU).
    del expected["numProcPerNode"]
    # Requests equal to limits: the SDK sets both from one dict.
    limits = quantities(expected["resourcesPerNode"])["limits"]
    expected["resourcesPerNode"] = {"limits": limits, "requests": limits}
    # A string for the downward-API variable: the SDK's env takes strings only.
    expected["env"] = [{"name": "OMP_NUM_THREADS", "value": limits["cpu"]}]
    assert stored["spec"]["trainer"] == expected


def test_the_trainer_controller_makes_the_jobset_with_our_image_only(submitted):
    jobset, written = submitted["jobset"], submitted["written"]["spec"]["trainer"]
    (owner,) = jobset["metadata"]["ownerReferences"]
    assert (owner["kind"], owner["name"], owner["controller"]) == ("TrainJob", "mnist-ddp", True)
    (node,) = jobset["spec"]["replicatedJobs"]
    assert node["name"] == "node"
    assert (node["template"]["spec"]["parallelism"], node["template"]["spec"]["completions"]) == (2, 2)
    pod = node["template"]["spec"]["template"]["spec"]
    # Nothing to install or download: one container, our image and command, no init containers.
    assert "initContainers" not in pod
    (container,) = pod["containers"]
    assert (container["image"], container["command"], container["args"]) == (
        written["image"],
        written["command"],
        written["args"],
    )
    assert pod["serviceAccountName"] == "mnist-ddp"
    assert {v["name"] for v in pod["volumes"]} == {"mnist-pvc", "tmp", "dshm"}
    tolerations = pod.get("tolerations", [])
    assert (submitted["overlay"] == "overlays/gpu-trainjob") == any(t["key"] == "nvidia.com/gpu" for t in tolerations)


def test_every_node_pod_is_admitted_under_restricted(cluster, submitted):
    assert len(submitted["pods"]) == 2
    assert pod_security_failures(cluster, submitted["namespace"]) == []


def test_the_node_pods_get_the_torch_plugins_env(submitted):
    gpu = submitted["overlay"] == "overlays/gpu-trainjob"
    ranks = set()
    for pod in submitted["pods"]:
        (container,) = pod["spec"]["containers"]
        env = {e["name"]: e for e in container["env"]}
        assert env["PET_NNODES"]["value"] == "2"
        # With a GPU and no numProcPerNode, the plugin leaves it to torchrun: one process per visible GPU.
        assert env["PET_NPROC_PER_NODE"]["value"] == ("auto" if gpu else "1")
        assert env["PET_MASTER_ADDR"]["value"] == "mnist-ddp-node-0-0.mnist-ddp"
        assert env["PET_MASTER_PORT"]["value"] == "29500"
        assert env["OMP_NUM_THREADS"]["value"] == "1"
        field = env["PET_NODE_RANK"]["valueFrom"]["fieldRef"]["fieldPath"]
        assert field == "metadata.annotations['batch.kubernetes.io/job-completion-index']"
        ranks.add(pod["metadata"]["annotations"]["batch.kubernetes.io/job-completion-index"])
        assert pod["metadata"]["labels"]["app.kubernetes.io/name"] == "mnist-ddp"
        assert pod["metadata"]["annotations"]["sidecar.istio.io/inject"] == "false"
    assert ranks == {"0", "1"}


LIST_RUNTIMES = """
import json
from kubeflow.trainer import TrainerClient
runtimes = TrainerClient().list_runtimes()
print(json.dumps([[r.name, r.kind.value, r.trainer.framework, r.trainer.image] for r in runtimes]))
"""


def test_list_runtimes_sees_the_installed_torch_runtime(cluster):
    done = run_sdk(cluster, "-c", LIST_RUNTIMES)
    assert done.returncode == 0, done.stderr
    runtime = yaml.safe_load((crds_dir() / "runtime-torch_distributed.yaml").read_text())
    (container,) = runtime["spec"]["template"]["spec"]["replicatedJobs"][0]["template"]["spec"]["template"]["spec"][
        "containers"
    ]
    assert json.loads(done.stdout) == [["torch-distributed", "ClusterTrainingRuntime", "torch", container["image"]]]


@pytest.mark.parametrize(
    ("flags", "returncode", "reason"),
    [
        (["--runtime", "no-such-runtime"], 1, "error: no runtime 'no-such-runtime' on this cluster"),
        (["--num-nodes", "0"], 2, "error: --num-nodes must be 1 or more, not 0"),
        # Refused by the API server; the script passes its message on.
        (["--name", "Bad_Name"], 1, 'TrainJob.trainer.kubeflow.org "Bad_Name" is invalid: [metadata.name'),
    ],
    ids=["unknown-runtime", "no-nodes", "bad-name"],
)
def test_a_bad_submission_ends_with_the_reason_and_creates_nothing(
    cluster, restricted_namespace, flags, returncode, reason
):
    done = submit(cluster, restricted_namespace, *flags)
    assert done.returncode == returncode, done.stdout + done.stderr
    assert reason in done.stderr
    assert "Traceback" not in done.stderr
    assert trainjob_names(cluster, restricted_namespace) == []


def test_a_second_submission_of_the_same_name_is_refused(cluster, submitted):
    done = submit(cluster, submitted["namespace"], *VARIANTS[submitted["overlay"]])
    assert done.returncode == 1
    assert 'trainjobs.trainer.kubeflow.org "mnist-ddp" already exists' in done.stderr
    assert trainjob_names(cluster, submitted["namespace"]) == ["mnist-ddp"]


ENV_IN_THE_NODE_PATCH = """
import sys
sys.path.insert(0, "scripts")
from submit_trainjob_sdk import node_patch, refusal
from kubeflow.common.types import KubernetesBackendConfig
from kubeflow.trainer import CustomTrainerContainer, TrainerClient

patch = node_patch(gpu=False)
(node,) = patch.training_runtime_spec.template.spec.replicated_jobs[0].template.spec.template.spec.containers
node.env = [{"name": "OMP_NUM_THREADS", "valueFrom": {"resourceFieldRef": {"resource": "limits.cpu"}}}]
client = TrainerClient(KubernetesBackendConfig(namespace=sys.argv[1]))
try:
    client.train(trainer=CustomTrainerContainer(image="mnist-trainer"), options=[patch])
except RuntimeError as error:
    sys.exit(refusal(error))
"""


def test_the_trainer_refuses_env_in_the_node_patch_so_threads_are_a_string(cluster, restricted_namespace):
    done = run_sdk(cluster, "-c", ENV_IN_THE_NODE_PATCH, restricted_namespace)
    assert done.returncode == 1, done.stdout + done.stderr
    assert 'admission webhook "validator.trainjob.trainer.kubeflow.org" denied the request' in done.stderr
    assert "must not have envs for the dataset-initializer, model-initializer, node containers" in done.stderr
    assert trainjob_names(cluster, restricted_namespace) == []
