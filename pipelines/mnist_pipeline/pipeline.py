"""`mnist-ddp-pipeline`: train a candidate with a PyTorchJob, evaluate it against a gate, promote it.

`python -m mnist_pipeline.pipeline --overlay overlays/cpu --output pipelines/mnist_pipeline.yaml`
(`make pipeline`) renders the overlay and compiles the pipeline with its PyTorchJob as the
`job_manifest` parameter's default: the job that `train` creates is the one the overlay applies.
"""

import argparse
import json
import subprocess
import sys
from pathlib import Path

import yaml
from kfp import compiler, dsl, kubernetes

from mnist_pipeline import gate
from mnist_pipeline.components import evaluate, promote, refuse, train
from mnist_pipeline.job import PVC_MOUNT, trainer_container

PIPELINE_NAME = "mnist-ddp-pipeline"
PVC_NAME = "mnist-pvc"
# The user and group of every image of the example (and the owner of what the trainer writes).
RUN_AS = 10001
# The trainer's own defaults (python -m mnist_ddp --help).
EPOCHS, BATCH_SIZE = 15, 256


def rendered_pytorchjob(rendered_yaml: str) -> dict:
    """The single PyTorchJob of a kustomize rendering."""
    found = [doc for doc in yaml.safe_load_all(rendered_yaml) if doc and doc.get("kind") == "PyTorchJob"]
    if len(found) != 1:
        raise ValueError(f"expected one PyTorchJob in the rendering, found {len(found)}")
    return found[0]


def render_overlay(overlay: Path, kubectl: str = "kubectl") -> dict:
    """`kubectl kustomize <overlay>`'s PyTorchJob."""
    result = subprocess.run([kubectl, "kustomize", str(overlay)], capture_output=True, text=True, timeout=120)
    if result.returncode != 0:
        raise RuntimeError(f"kubectl kustomize {overlay} failed:\n{result.stderr}")
    return rendered_pytorchjob(result.stdout)


def _on_the_volume(task: dsl.PipelineTask) -> dsl.PipelineTask:
    """Mount the shared volume where the trainer and serving see it, as the example's user, sized, never cached."""
    kubernetes.mount_pvc(task, pvc_name=PVC_NAME, mount_path=PVC_MOUNT)
    kubernetes.set_security_context(task, run_as_user=RUN_AS, run_as_group=RUN_AS, run_as_non_root=True)
    # Requests and limits like every pod of the example: the steps are small Python processes (train waits).
    task.set_cpu_request("100m").set_cpu_limit("1").set_memory_request("256Mi").set_memory_limit("1Gi")
    # Every run trains anew, and the gate must see the LATEST of now, not of a cached run.
    task.set_caching_options(False)
    return task


def add_gate(candidate, model_root, min_accuracy, max_regression) -> dsl.PipelineTask:
    """Inside a pipeline: evaluate the candidate, then promote it if the gate passed, else fail with why."""
    evaluated = _on_the_volume(
        evaluate(
            candidate=candidate,
            model_root=model_root,
            min_accuracy=min_accuracy,
            max_regression=max_regression,
        )
    )
    with dsl.If(evaluated.outputs["passed"] == True, name="gate-passed"):  # noqa: E712 (a KFP condition)
        _on_the_volume(promote(candidate=candidate, model_root=model_root))
    with dsl.Else(name="gate-refused"):
        _on_the_volume(refuse(reason=evaluated.outputs["reason"]))
    return evaluated


def build_pipeline(job_manifest: dict):
    """The pipeline function, with the rendered job and what it sets (Workers, image) as defaults.

    The job travels as JSON text with sorted keys: a `dict` parameter would be a protobuf Struct,
    whose numbers are all doubles (`replicas: 1.0`) and whose key order changes between compilations.
    """
    manifest_json = json.dumps(job_manifest, sort_keys=True, separators=(",", ":"))
    replicas = job_manifest["spec"]["pytorchReplicaSpecs"]
    default_workers = replicas.get("Worker", {}).get("replicas", 0)
    default_image = trainer_container(replicas["Master"]["template"]["spec"], "Master")["image"]

    @dsl.pipeline(
        name=PIPELINE_NAME,
        description="Train MNIST with a DDP PyTorchJob, gate the candidate on accuracy, promote it to serving.",
    )
    def mnist_ddp_pipeline(
        workers: int = default_workers,
        epochs: int = EPOCHS,
        batch_size: int = BATCH_SIZE,
        image: str = default_image,
        min_accuracy: float = gate.DEFAULT_MIN_ACCURACY,
        max_regression: float = gate.DEFAULT_MAX_REGRESSION,
        namespace: str = "",
        job_manifest: str = manifest_json,
    ):
        trained = _on_the_volume(
            train(
                job_manifest=job_manifest,
                workers=workers,
                epochs=epochs,
                batch_size=batch_size,
                image=image,
                run_id=dsl.PIPELINE_JOB_ID_PLACEHOLDER,
                namespace=namespace,
            )
        )
        add_gate(trained.outputs["candidate"], trained.outputs["model_root"], min_accuracy, max_regression)

    return mnist_ddp_pipeline


def compile_pipeline(job_manifest: dict, output: Path) -> None:
    """Compile the pipeline to IR YAML."""
    compiler.Compiler().compile(build_pipeline(job_manifest), package_path=str(output))


def main(argv: list[str] | None = None) -> None:
    """Command line of `make pipeline`."""
    p = argparse.ArgumentParser(prog="python -m mnist_pipeline.pipeline", description=__doc__.splitlines()[0])
    p.add_argument("--overlay", type=Path, default=Path("overlays/cpu"), help="overlay (default: overlays/cpu)")
    p.add_argument("--kubectl", default="kubectl", help="kubectl to render with (default: kubectl on PATH)")
    p.add_argument("--output", type=Path, default=Path("pipelines/mnist_pipeline.yaml"), help="(default: %(default)s)")
    args = p.parse_args(argv)
    try:
        job = render_overlay(args.overlay, args.kubectl)
    except (RuntimeError, ValueError, FileNotFoundError) as exc:
        sys.exit(str(exc))
    compile_pipeline(job, args.output)
    print(f"compiled {PIPELINE_NAME} with {args.overlay}'s PyTorchJob to {args.output}")


if __name__ == "__main__":
    main()
