"""Ask the served MNIST model for a prediction over Seldon's REST API and draw the answer in the terminal.

Send a PNG/JPEG file (as binData) or one digit of an MNIST IDX file (as an ndarray):

    kubectl port-forward svc/mnist-classifier-default 8000:8000
    python3 scripts/predict.py digit.png
    python3 scripts/predict.py --mnist-index 7 --data-dir data/mnist

The MNIST files and a PNG come from the cluster (docs/03_serving.md, 3.2): the trainer downloaded
MNIST onto the shared volume, which the frontend pod mounts, so
    pod=$(kubectl get pod -l app.kubernetes.io/name=mnist-frontend -o name | head -n 1 | cut -d/ -f2)
    kubectl cp "$pod:/mnt/pvc/data/mnist/MNIST/raw" data/mnist -c frontend
copies them to data/mnist, and the frontend's /api/random-digit answers a test digit as a PNG.

With KServe (overlays/*-kserve), `--protocol v2` speaks the Open Inference Protocol (a BYTES
tensor for an image file, an FP32 tensor [1, 28, 28] for an MNIST digit):

    kubectl port-forward svc/mnist-predictor 8080:80
    python3 scripts/predict.py --protocol v2 digit.png

Standard library only, so it runs with any Python 3.10 or later.
"""

import argparse
import base64
import gzip
import json
import os
import struct
import sys
import urllib.error
import urllib.request
from pathlib import Path

DEFAULT_URL = "http://localhost:8000/api/v1.0/predictions"
DEFAULT_URLS = {"seldon": DEFAULT_URL, "v2": "http://localhost:8080/v2/models/mnist/infer"}
PORT_FORWARDS = {"seldon": "svc/mnist-classifier-default 8000:8000", "v2": "svc/mnist-predictor 8080:80"}
IMAGE_MAGIC = 2051
LABEL_MAGIC = 2049
BAR_WIDTH = 40


class PredictError(Exception):
    """The request could not be made or the server refused it; the message says why."""


def find_idx_pair(data_dir: Path) -> tuple[Path, Path]:
    """Return (images, labels) IDX files in `data_dir`: the t10k test split if present, else the training split.

    Accepts the files as distributed (optionally gzipped) directly in `data_dir` or in torchvision's
    `<data_dir>/MNIST/raw/`.
    """
    for folder in (data_dir, data_dir / "MNIST" / "raw"):
        for split in ("t10k", "train"):
            for suffix in ("", ".gz"):
                images = folder / f"{split}-images-idx3-ubyte{suffix}"
                labels = folder / f"{split}-labels-idx1-ubyte{suffix}"
                if images.is_file() and labels.is_file():
                    return images, labels
    raise PredictError(
        f"no MNIST IDX files in {data_dir} (expected t10k-images-idx3-ubyte[.gz] and t10k-labels-idx1-ubyte[.gz], "
        "or the train-* pair, there or under MNIST/raw/)"
    )


def _open_idx(path: Path):
    return gzip.open(path, "rb") if path.suffix == ".gz" else open(path, "rb")


def read_mnist_digit(data_dir: Path, index: int) -> tuple[list[list[float]], int]:
    """Return (28x28 pixels in [0, 1], label) of digit `index` of the MNIST files in `data_dir`."""
    images_path, labels_path = find_idx_pair(data_dir)
    with _open_idx(images_path) as f:
        magic, count, rows, cols = struct.unpack(">IIII", f.read(16))
        if magic != IMAGE_MAGIC:
            raise PredictError(f"{images_path} is not an IDX image file (magic {magic}, expected {IMAGE_MAGIC})")
        if not 0 <= index < count:
            raise PredictError(f"--mnist-index {index} is out of range: {images_path.name} holds {count} digits")
        f.read(index * rows * cols)
        pixels = f.read(rows * cols)
    if len(pixels) != rows * cols:
        raise PredictError(f"{images_path} is truncated")
    with _open_idx(labels_path) as f:
        magic, label_count = struct.unpack(">II", f.read(8))
        if magic != LABEL_MAGIC or label_count != count:
            raise PredictError(f"{labels_path} does not match {images_path.name}")
        f.read(index)
        label = f.read(1)[0]
    image = [[round(pixels[r * cols + c] / 255, 4) for c in range(cols)] for r in range(rows)]
    return image, label


def image_payload(path: Path) -> dict:
    """The request body for an image file: its bytes as base64 binData."""
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise PredictError(f"cannot read {path}: {exc.strerror}") from None
    return {"binData": base64.b64encode(data).decode("ascii")}


def ndarray_payload(image: list[list[float]]) -> dict:
    """The request body for one 28x28 image in [0, 1]: an ndarray of shape (1, 28, 28)."""
    return {"data": {"ndarray": [image]}}


def v2_payload(payload: dict) -> dict:
    """The same input as an Open Inference Protocol V2 request: binData as BYTES, an ndarray as FP32."""
    if "binData" in payload:
        tensor = {"name": "image_bytes", "datatype": "BYTES", "shape": [1], "data": [payload["binData"]]}
    else:
        (image,) = payload["data"]["ndarray"]
        pixels = [value for row in image for value in row]
        tensor = {"name": "images", "datatype": "FP32", "shape": [1, 28, 28], "data": pixels}
    return {"inputs": [tensor]}


def _server_message(body: bytes) -> str:
    """Seldon's error text (status.info / status.reason) or KServe's (error), else the raw body."""
    text = body.decode("utf-8", errors="replace").strip()
    try:
        reply = json.loads(text)
        if isinstance(reply.get("error"), str):
            return reply["error"]
        status = reply.get("status", {})
    except (ValueError, AttributeError):
        return text[:500]
    return status.get("info") or status.get("reason") or text[:500]


def post_prediction(url: str, payload: dict, timeout: float, port_forward: str = PORT_FORWARDS["seldon"]) -> dict:
    """POST `payload` as JSON to `url`; return the decoded response or raise PredictError with the server's reason."""
    request = urllib.request.Request(
        url, data=json.dumps(payload).encode(), headers={"Content-Type": "application/json"}, method="POST"
    )
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:
            body = response.read()
    except urllib.error.HTTPError as exc:
        raise PredictError(f"{url} answered HTTP {exc.code}: {_server_message(exc.read())}") from None
    except urllib.error.URLError as exc:
        hint = ""
        if isinstance(exc.reason, ConnectionRefusedError):
            hint = f" (is `kubectl port-forward {port_forward}` running?)"
        raise PredictError(f"cannot reach {url}: {exc.reason}{hint}") from None
    except TimeoutError:
        raise PredictError(f"{url} did not answer within {timeout:g}s") from None
    try:
        return json.loads(body)
    except ValueError:
        raise PredictError(f"{url} answered something that is not JSON: {body[:200]!r}") from None


def probabilities_of(response: dict) -> list[float]:
    """The ten class probabilities of the first row of a Seldon (ndarray or tensor) or V2 (outputs) response."""
    data = response.get("data", {})
    if "outputs" in response:
        row = response["outputs"][0]["data"][:10]
    elif "ndarray" in data:
        rows = data["ndarray"]
        row = rows[0] if rows and isinstance(rows[0], list) else rows
    elif "tensor" in data:
        row = data["tensor"]["values"][:10]
    else:
        raise PredictError(f"the response has no data.ndarray or data.tensor: {json.dumps(response)[:300]}")
    if len(row) != 10:
        raise PredictError(f"expected 10 probabilities, got {len(row)}: {row}")
    return [float(p) for p in row]


def bar_chart(probabilities: list[float], names: list[str] | None = None, width: int = BAR_WIDTH) -> str:
    """Ten rows `digit | bar  probability`, the most probable one marked."""
    names = names or [str(i) for i in range(len(probabilities))]
    top = max(range(len(probabilities)), key=probabilities.__getitem__)
    lines = []
    for i, (name, p) in enumerate(zip(names, probabilities, strict=True)):
        bar = "#" * round(max(0.0, min(1.0, p)) * width)
        mark = "  <- prediction" if i == top else ""
        lines.append(f"  {name:>2} | {bar:<{width}} {p:6.4f}{mark}")
    return "\n".join(lines)


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "image", nargs="?", type=Path, default=None, help="a PNG or JPEG of a digit (default: none; see --mnist-index)"
    )
    parser.add_argument(
        "--mnist-index",
        type=int,
        default=None,
        help="send digit N of the MNIST files in --data-dir instead of an image file (default: none)",
    )
    parser.add_argument(
        "--data-dir",
        type=Path,
        default=Path(os.environ["MNIST_DIR"]) if os.environ.get("MNIST_DIR") else None,
        help="folder with the MNIST IDX files, t10k-* preferred (default: $MNIST_DIR if set)",
    )
    parser.add_argument(
        "--protocol",
        choices=sorted(DEFAULT_URLS),
        default="seldon",
        help="seldon (Seldon Core v1) or v2 (KServe's Open Inference Protocol) (default: seldon)",
    )
    parser.add_argument(
        "--url",
        type=str,
        default=None,
        help=f"prediction endpoint (default: {DEFAULT_URL}; with v2 {DEFAULT_URLS['v2']})",
    )
    parser.add_argument("--timeout", type=float, default=10.0, help="seconds to wait for the answer (default: 10)")
    parser.add_argument("--raw", action="store_true", help="also print the raw JSON response (default: off)")
    args = parser.parse_args(argv)
    args.url = args.url or DEFAULT_URLS[args.protocol]
    if (args.image is None) == (args.mnist_index is None):
        parser.error("give either an image file or --mnist-index N")
    if args.mnist_index is not None and args.data_dir is None:
        parser.error("--mnist-index needs --data-dir (or MNIST_DIR set)")
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    label = None
    try:
        if args.image is not None:
            payload = image_payload(args.image)
            source = str(args.image)
        else:
            image, label = read_mnist_digit(args.data_dir, args.mnist_index)
            payload = ndarray_payload(image)
            source = f"MNIST digit #{args.mnist_index} of {args.data_dir}"
        if args.protocol == "v2":
            payload = v2_payload(payload)
        response = post_prediction(args.url, payload, args.timeout, PORT_FORWARDS[args.protocol])
        probabilities = probabilities_of(response)
    except PredictError as exc:
        print(f"predict.py: {exc}", file=sys.stderr)
        return 1
    if args.protocol == "v2":
        names_text = (response["outputs"][0].get("parameters") or {}).get("names")
        names = names_text.split(",") if names_text else None
        version = response.get("model_version") or "unknown"
    else:
        names = response.get("data", {}).get("names") or None
        version = response.get("meta", {}).get("tags", {}).get("model_version", "unknown")
    prediction = max(range(10), key=probabilities.__getitem__)
    if args.raw:
        print(json.dumps(response, indent=2))
    print(f"input:         {source}")
    print(f"model version: {version}")
    print(bar_chart(probabilities, names))
    print(f"prediction:    {prediction}" + (f"   (true label: {label})" if label is not None else ""))
    return 0


if __name__ == "__main__":
    sys.exit(main())
