"""Routes: the page, the prediction API, a random MNIST digit, and the probes."""

from flask import Blueprint, current_app, jsonify, render_template, request

from . import images, seldon
from .digits import DigitDataError

bp = Blueprint("frontend", __name__)
# Kubernetes probes give up after timeoutSeconds (default 1 s); the readiness check must answer sooner.
READY_CHECK_TIMEOUT = 0.8
RANDOM_BUTTON_LABELS = {"t10k": "Random test digit", "train": "Random training digit"}


def error(status: int, message: str):
    """A JSON error answer: {"error": message} with `status`."""
    return jsonify(error=message), status


@bp.get("/")
def index():
    """The drawing page; the random digit button only when MNIST files are there to draw from."""
    split = current_app.extensions["mnist_digits"].split()
    return render_template("index.html", random_label=RANDOM_BUTTON_LABELS.get(split))


@bp.post("/api/predict")
def predict():
    """Forward the image in the JSON body to Seldon; answer the ten probabilities and the model version."""
    payload = request.get_json(silent=True)
    try:
        image = images.image_from_payload(payload)
    except images.BadImageError as exc:
        return error(400, str(exc))
    config = current_app.config
    try:
        prediction = seldon.predict(config["SELDON_URL"], image, config["SELDON_TIMEOUT"], config["MODEL_PROTOCOL"])
    except seldon.SeldonError as exc:
        current_app.logger.warning("prediction failed (%d): %s", exc.status, exc.message)
        return error(exc.status, exc.message)
    return jsonify(
        probabilities=prediction.probabilities,
        prediction=prediction.digit,
        model_version=prediction.model_version,
    )


@bp.get("/api/random-digit")
def random_digit():
    """A random digit from the MNIST files: its label and its pixels as a 28x28 PNG data URL."""
    try:
        digit = current_app.extensions["mnist_digits"].random_digit()
    except DigitDataError as exc:
        current_app.logger.error("cannot read the MNIST files: %s", exc)
        return error(500, f"the MNIST files in the data directory are unreadable: {exc}")
    if digit is None:
        return error(404, "no MNIST files to draw from: set FRONTEND_DATA_DIR to a directory of IDX files")
    png = images.grayscale_png(digit.pixels, digit.cols, digit.rows)
    return jsonify(label=digit.label, split=digit.split, index=digit.index, image=images.data_url(png))


@bp.get("/healthz")
def healthz():
    """Liveness: the process serves requests."""
    return jsonify(status="ok")


@bp.get("/readyz")
def readyz():
    """Readiness: the model server answers HTTP at SELDON_URL."""
    config = current_app.config
    try:
        seldon.check_reachable(config["SELDON_URL"], min(config["SELDON_TIMEOUT"], READY_CHECK_TIMEOUT))
    except seldon.SeldonError as exc:
        return error(503, exc.message)
    return jsonify(status="ready")
