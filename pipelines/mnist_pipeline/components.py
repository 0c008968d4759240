"""The pipeline's steps as KFP lightweight components running in the pipeline image.

Each body only imports and calls the step's module, which the image installs (pipelines/Dockerfile);
KFP copies the body into the compiled pipeline, so it must be self-contained.
"""

import os
from typing import NamedTuple

from kfp import dsl
from kfp.dsl import ClassificationMetrics, Metrics, Output

# The image every step runs in; `make pipeline PIPELINES_IMAGE=...` compiles with another.
IMAGE = os.environ.get("PIPELINES_IMAGE", "registry.example.com/kubeflow-mnist/mnist-pipelines:0.1.0")


@dsl.component(base_image=IMAGE, install_kfp_package=False)
def train(
    job_manifest: str,
    workers: int,
    epochs: int,
    batch_size: int,
    image: str,
    run_id: str,
    namespace: str,
) -> NamedTuple("TrainOutputs", [("candidate", str), ("model_root", str)]):
    """Run the PyTorchJob (replacing a finished one of its name) and return the candidate version it published.

    `job_manifest` is the rendered PyTorchJob as JSON.
    """
    import json

    from mnist_pipeline import job, kube, local_env

    kube.load_config()
    namespace = namespace or kube.current_namespace()
    body = job.build_job(
        json.loads(job_manifest),
        workers=workers,
        epochs=epochs,
        batch_size=batch_size,
        image=image,
        run_id=run_id,
        namespace=namespace,
    )
    kube.run_job(kube.JobClient(namespace, pod_logs_dir=local_env.pod_logs_dir()), body)
    version_file = local_env.on_this_machine(job.version_file(body))
    if not version_file.is_file():
        raise RuntimeError(f"PyTorchJob {body['metadata']['name']} succeeded but its trainer wrote no {version_file}")
    candidate = version_file.read_text().strip()
    print(f"candidate {candidate}")
    return (candidate, job.model_root(body))


@dsl.component(base_image=IMAGE, install_kfp_package=False)
def evaluate(
    candidate: str,
    model_root: str,
    min_accuracy: float,
    max_regression: float,
    metrics: Output[Metrics],
    confusion: Output[ClassificationMetrics],
) -> NamedTuple("EvaluateOutputs", [("passed", bool), ("reason", str)]):
    """Record the candidate's accuracy, loss and confusion matrix, and decide whether it may be served."""
    from mnist_pipeline import gate, local_env

    result = gate.evaluate(local_env.on_this_machine(model_root), candidate, min_accuracy, max_regression)
    metrics.log_metric("accuracy", result.accuracy)
    metrics.log_metric("loss", result.loss)
    if result.served_accuracy is not None:
        metrics.log_metric("served_accuracy", result.served_accuracy)
    confusion.log_confusion_matrix(result.class_names, result.confusion_matrix)
    print(result.reason)
    return (result.passed, result.reason)


@dsl.component(base_image=IMAGE, install_kfp_package=False)
def promote(candidate: str, model_root: str) -> str:
    """Point LATEST at the candidate (atomically, through model_store); serving hot-swaps to it."""
    from mnist_ddp import model_store
    from mnist_pipeline import local_env

    model_store.set_latest(local_env.on_this_machine(model_root), candidate)
    print(f"promoted {candidate}")
    return candidate


@dsl.component(base_image=IMAGE, install_kfp_package=False)
def refuse(reason: str):
    """Fail the run with the gate's reason: the candidate stays published, LATEST stays where it was."""
    raise RuntimeError(reason)
