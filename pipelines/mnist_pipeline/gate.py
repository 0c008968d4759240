"""The `evaluate` step's gate: is a candidate model version good enough to serve?"""

from dataclasses import dataclass
from pathlib import Path

from mnist_ddp import model_store

DEFAULT_MIN_ACCURACY = 0.985
DEFAULT_MAX_REGRESSION = 0.002
# Accuracies are ratios of image counts: differences below this are float rounding, not regressions.
TOLERANCE = 1e-9


@dataclass(frozen=True)
class Evaluation:
    """What `evaluate` reports about a candidate."""

    candidate: str
    accuracy: float
    loss: float
    class_names: list[str]
    confusion_matrix: list[list[int]]
    served: str | None
    served_accuracy: float | None
    passed: bool
    reason: str


def decide(
    accuracy: float,
    served_accuracy: float | None,
    min_accuracy: float = DEFAULT_MIN_ACCURACY,
    max_regression: float = DEFAULT_MAX_REGRESSION,
) -> tuple[bool, str]:
    """(passed, why): at least `min_accuracy`, and at most `max_regression` below the served version."""
    if accuracy < min_accuracy - TOLERANCE:
        return False, f"accuracy {accuracy:.4f} is below min_accuracy {min_accuracy:.4f}"
    if served_accuracy is not None and served_accuracy - accuracy > max_regression + TOLERANCE:
        return False, (
            f"accuracy {accuracy:.4f} is {served_accuracy - accuracy:.4f} below the served version's "
            f"{served_accuracy:.4f}, more than max_regression {max_regression:.4f}"
        )
    against = "no version is served yet" if served_accuracy is None else f"served: {served_accuracy:.4f}"
    return True, f"accuracy {accuracy:.4f} >= min_accuracy {min_accuracy:.4f} ({against})"


def evaluate(
    model_root: str | Path,
    candidate: str,
    min_accuracy: float = DEFAULT_MIN_ACCURACY,
    max_regression: float = DEFAULT_MAX_REGRESSION,
) -> Evaluation:
    """Read the candidate's and the served version's metadata.json and apply the gate."""
    metadata = model_store.read_metadata(model_root, candidate)
    metrics = metadata.get("metrics", {})
    missing = [key for key in ("test_accuracy", "test_loss", "confusion_matrix") if metrics.get(key) is None]
    if missing:
        raise model_store.ModelCorruptError(
            f"{Path(model_root) / candidate}/metadata.json has no metrics {missing}: was it trained by this trainer?"
        )
    try:
        served = model_store.read_latest(model_root)
    except model_store.ModelNotPublishedError:
        served = None
    served_accuracy = None
    if served is not None:
        served_accuracy = model_store.read_metadata(model_root, served).get("metrics", {}).get("test_accuracy")
    passed, reason = decide(metrics["test_accuracy"], served_accuracy, min_accuracy, max_regression)
    return Evaluation(
        candidate=candidate,
        accuracy=metrics["test_accuracy"],
        loss=metrics["test_loss"],
        class_names=metadata.get("class_names", [str(i) for i in range(len(metrics["confusion_matrix"]))]),
        confusion_matrix=metrics["confusion_matrix"],
        served=served,
        served_accuracy=served_accuracy,
        passed=passed,
        reason=f"{'promote' if passed else 'gate refused'} {candidate}: {reason}",
    )
