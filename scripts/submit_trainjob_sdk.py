"""Submit the mnist-ddp TrainJob with the Kubeflow SDK instead of `kubectl apply -k`.

The job is the one overlays/cpu-trainjob holds (overlays/gpu-trainjob with --gpu): the trainer image
run as `torchrun --module mnist_ddp` on 2 nodes of the `torch-distributed` ClusterTrainingRuntime,
with the shared volume, the restricted security and the Istio opt-out as a runtime patch. It is an
SDK CustomTrainerContainer: the image holds the trainer, so nothing is installed or downloaded in
the pods, and the SDK talks only to the API server of the current kubeconfig ($KUBECONFIG, else
~/.kube/config).

The namespace needs what the overlay creates besides the TrainJob: the PersistentVolumeClaim
mnist-pvc and the ServiceAccount mnist-ddp (docs/02_distributed_training.md).

    .venv/sdk/bin/python scripts/submit_trainjob_sdk.py --namespace kubeflow-user-example-com
    .venv/sdk/bin/python scripts/submit_trainjob_sdk.py --gpu --image ghcr.io/you/mnist-trainer:0.1.0-gpu
"""

import argparse
import json
import sys

from kubeflow.common.types import KubernetesBackendConfig
from kubeflow.trainer import CustomTrainerContainer, TrainerClient
from kubeflow.trainer.options import (
    ActiveDeadlineSeconds,
    ContainerPatch,
    JobSetSpecPatch,
    JobSetTemplatePatch,
    JobSpecPatch,
    JobTemplatePatch,
    Labels,
    Name,
    PodSpecPatch,
    PodTemplatePatch,
    ReplicatedJobPatch,
    RuntimePatch,
    TrainerArgs,
    TrainerCommand,
    TrainingRuntimeSpecPatch,
)
from kubernetes.client import ApiException

IMAGE = "registry.example.com/kubeflow-mnist/mnist-trainer:0.1.0"
LABELS = {
    "app.kubernetes.io/name": "mnist-ddp",
    "app.kubernetes.io/component": "trainer",
    "app.kubernetes.io/part-of": "kubeflow-pytorch-mnist",
}
# The pod identity the overlay creates: it mounts no API token (the trainer never calls the API server).
SERVICE_ACCOUNT = "mnist-ddp"
RESTRICTED_POD = {
    "runAsNonRoot": True,
    "runAsUser": 10001,
    "runAsGroup": 10001,
    "fsGroup": 10001,
    "seccompProfile": {"type": "RuntimeDefault"},
}
RESTRICTED_CONTAINER = {
    "allowPrivilegeEscalation": False,
    "privileged": False,
    "readOnlyRootFilesystem": True,
    "capabilities": {"drop": ["ALL"]},
}
VOLUMES = [
    {"name": "mnist-pvc", "persistentVolumeClaim": {"claimName": "mnist-pvc"}},
    {"name": "tmp", "emptyDir": {"sizeLimit": "1Gi"}},
    # DataLoader workers pass batches through shared memory; the runtime's default is 64 MiB.
    {"name": "dshm", "emptyDir": {"medium": "Memory", "sizeLimit": "1Gi"}},
]
VOLUME_MOUNTS = [
    {"name": "mnist-pvc", "mountPath": "/mnt/pvc"},
    {"name": "tmp", "mountPath": "/tmp"},
    {"name": "dshm", "mountPath": "/dev/shm"},
]
# The overlays' limits. The SDK sets requests and limits alike (the overlays request 2Gi of memory).
CPUS = 1
MEMORY = "4Gi"
GPU_TOLERATION = {"key": "nvidia.com/gpu", "operator": "Exists", "effect": "NoSchedule"}


def parse_args(argv: list[str]) -> argparse.Namespace:
    """The command line: where to submit, and the few things that differ between jobs."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--namespace", help="namespace of the TrainJob (default: the kubeconfig context's)")
    parser.add_argument("--name", default="mnist-ddp", help="TrainJob name, also its checkpoint folder (mnist-ddp)")
    parser.add_argument("--runtime", default="torch-distributed", help="runtime to run on (torch-distributed)")
    parser.add_argument("--num-nodes", type=int, default=2, help="training nodes, one process each (2)")
    parser.add_argument("--gpu", action="store_true", help="one GPU per node and nccl, as overlays/gpu-trainjob")
    parser.add_argument("--image", help=f"trainer image (default: {IMAGE}-cpu, or -gpu with --gpu)")
    return parser.parse_args(argv)


def trainer_args(name: str, backend: str) -> list[str]:
    """The trainer's flags, as the overlays give them: everything on the shared volume."""
    return [
        "--data-dir=/mnt/pvc/data/mnist",
        "--model-root=/mnt/pvc/models/mnist",
        f"--checkpoint-dir=/mnt/pvc/checkpoints/{name}",
        f"--tensorboard-dir=/mnt/pvc/tensorboard/{name}",
        f"--backend={backend}",
    ]


def node_patch(gpu: bool) -> RuntimePatch:
    """What the runtime's node pods need from us: the pod fields a TrainJob may patch."""
    pod = PodTemplatePatch(
        metadata={"labels": LABELS, "annotations": {"sidecar.istio.io/inject": "false"}},
        spec=PodSpecPatch(
            service_account_name=SERVICE_ACCOUNT,
            security_context=RESTRICTED_POD,
            containers=[
                ContainerPatch(name="node", volume_mounts=VOLUME_MOUNTS, security_context=RESTRICTED_CONTAINER)
            ],
            volumes=VOLUMES,
            tolerations=[GPU_TOLERATION] if gpu else None,
        ),
    )
    job = ReplicatedJobPatch(name="node", template=JobTemplatePatch(spec=JobSpecPatch(template=pod)))
    return RuntimePatch(
        training_runtime_spec=TrainingRuntimeSpecPatch(
            template=JobSetTemplatePatch(spec=JobSetSpecPatch(replicated_jobs=[job]))
        )
    )


def submit(client: TrainerClient, args: argparse.Namespace) -> str:
    """Create the TrainJob and return its name."""
    image = args.image or f"{IMAGE}-{'gpu' if args.gpu else 'cpu'}"
    resources = {"cpu": CPUS, "memory": MEMORY} | ({"gpu": 1} if args.gpu else {})
    # Intra-op threads match the CPU limit. The overlays take it from the limit (downward API), which the
    # SDK cannot: its env takes strings only, and Trainer refuses env in a runtime patch of `node`.
    env = {"OMP_NUM_THREADS": str(CPUS)}
    trainer = CustomTrainerContainer(image=image, num_nodes=args.num_nodes, resources_per_node=resources, env=env)
    return client.train(
        runtime=args.runtime,
        trainer=trainer,
        options=[
            Name(args.name),
            Labels(LABELS),
            TrainerCommand(["torchrun", "--module", "mnist_ddp"]),
            TrainerArgs(trainer_args(args.name, "nccl" if args.gpu else "gloo")),
            node_patch(args.gpu),
            # A rendezvous that never completes must not hold nodes (and GPUs) forever.
            ActiveDeadlineSeconds(7200),
        ],
    )


def refusal(error: Exception) -> str:
    """The API server's own words for a refused request, which the SDK keeps as the error's cause."""
    cause = error.__cause__
    if isinstance(cause, ApiException):
        try:
            return json.loads(cause.body)["message"]
        except (TypeError, ValueError, KeyError):
            return f"{cause.status} {cause.reason}"
    return str(cause or error)


def main(argv: list[str] | None = None) -> int:
    """Submit the TrainJob; 0 when the API server accepted it, 1 with the reason when not."""
    args = parse_args(sys.argv[1:] if argv is None else argv)
    if args.num_nodes < 1:
        print(f"error: --num-nodes must be 1 or more, not {args.num_nodes}", file=sys.stderr)
        return 2
    client = TrainerClient(KubernetesBackendConfig(namespace=args.namespace))
    namespace = client.backend.namespace
    runtimes = {r.name: r for r in client.list_runtimes()}
    print("runtimes: " + (", ".join(f"{n} ({r.trainer.framework})" for n, r in sorted(runtimes.items())) or "none"))
    if args.runtime not in runtimes:
        print(f"error: no runtime {args.runtime!r} on this cluster for namespace {namespace}", file=sys.stderr)
        return 1
    try:
        name = submit(client, args)
    except (RuntimeError, TimeoutError) as error:
        print(f"error: {error}: {refusal(error)}", file=sys.stderr)
        return 1
    print(f"trainjob {namespace}/{name} submitted: runtime {args.runtime}, {args.num_nodes} nodes")
    print(f"follow it: kubectl get trainjob {name} -n {namespace}; kubectl get pods -n {namespace} -l ", end="")
    print(f"jobset.sigs.k8s.io/jobset-name={name}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
