"""Start kserve's ModelServer with the model `mnist` (the KServe predictor container's command).

    python serve_mnist.py --model_root /mnt/pvc/models/mnist [--http_port 8080] [--max_batch 64] [kserve's flags]

Every flag of kserve's own ModelServer parser is accepted (http_port, workers, ...);
the defaults differ where this server needs it: model name `mnist`, no gRPC port
(the REST port answers V1 and V2), no per-request latency or access log lines.
"""

import argparse

import kserve
from digit_classifier import DEFAULT_MODEL_ROOT, DEFAULT_POLL_INTERVAL_S
from kserve import model_server
from mnist_model import MODEL_NAME, MnistModel
from request_guard import install
from request_logs import quiet_request_logs
from request_validation import DEFAULT_MAX_BATCH


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    """kserve's ModelServer flags plus the model's own."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0], parents=[model_server.parser])
    parser.add_argument(
        "--model_root", default=DEFAULT_MODEL_ROOT, help=f"where versions are published (default: {DEFAULT_MODEL_ROOT})"
    )
    parser.add_argument(
        "--poll_interval_s",
        type=float,
        default=DEFAULT_POLL_INTERVAL_S,
        help=f"seconds between reads of LATEST (default: {DEFAULT_POLL_INTERVAL_S})",
    )
    parser.add_argument(
        "--max_batch",
        type=int,
        default=DEFAULT_MAX_BATCH,
        help=f"most images per request (default: {DEFAULT_MAX_BATCH})",
    )
    parser.add_argument("--access_log", action="store_true", help="log every request and its timings (default: off)")
    parser.set_defaults(model_name=MODEL_NAME, enable_grpc=False, enable_latency_logging=False)
    return parser.parse_args(argv)


def main() -> None:
    args = parse_args()
    if args.workers != 1:
        # Each of kserve's worker processes would keep its own Prometheus registry: /metrics would
        # answer with whichever worker took the scrape. One process per pod; scale with replicas.
        raise SystemExit(f"--workers is {args.workers}: this server runs one worker per pod (scale with replicas)")
    model = MnistModel(args.model_name, args.model_root, args.poll_interval_s, args.max_batch)
    model.load()
    install(model_server.app, model.core.max_batch, model.core.max_body_bytes)
    server = kserve.ModelServer(
        http_port=args.http_port,
        workers=args.workers,
        enable_grpc=args.enable_grpc,
        enable_docs_url=False,
        enable_latency_logging=args.enable_latency_logging,
    )
    if not args.access_log:
        quiet_request_logs()
    server.start([model])


if __name__ == "__main__":
    main()
