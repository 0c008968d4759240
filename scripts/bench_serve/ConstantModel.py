"""A Seldon model class that does no work: what seldon-core 1.17.1 alone costs per request.

`bench_serve.py --floor` serves it with the same settings as ours, so the table
shows how much of a request is Seldon (HTTP, JSON, its shared metrics process)
and how much is the classifier. With `metrics_flush_s` > 0 it installs our
metrics buffer (serving/metrics_buffer.py) as MnistClassifier does: the floor
under our server.
"""

CLASS_NAMES = [str(i) for i in range(10)]


class ConstantModel:
    """Answers every prediction request with the same ten probabilities, without reading it."""

    def __init__(self, metrics_flush_s: float = 0.0):
        if float(metrics_flush_s) > 0:
            import metrics_buffer

            metrics_buffer.install(float(metrics_flush_s))

    def predict_raw(self, request) -> dict:
        """A fixed answer in the shape MnistClassifier gives."""
        return {"data": {"names": CLASS_NAMES, "ndarray": [[0.1] * 10]}}
