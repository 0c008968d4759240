"""Prepare what predict.py is tested against: a published model, MNIST-format files, a PNG, reference answers.

Run with the trainer's environment (torch, numpy, pillow), PYTHONPATH=trainer:tests:

    python tests/scripts/publish_test_model.py OUT_DIR [--seed S]

Writes OUT_DIR/models/<version> (+ LATEST), OUT_DIR/data/{t10k,train}-*-idx*-ubyte.gz and
OUT_DIR/digit.png, and prints as JSON the version and, for the first test digits, the
probabilities that the published model itself gives them: what predict.py must show.
"""

import argparse
import json
from pathlib import Path

import torch
from PIL import Image
from support.synthetic_mnist import render_digits, write_synthetic_mnist

from mnist_ddp import model_store
from mnist_ddp.model import ARCHITECTURE, build_model

REFERENCE_DIGITS = 3


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("out_dir", type=Path, help="directory to write into")
    parser.add_argument("--seed", type=int, default=0, help="seed of the random weights (default: 0)")
    parser.add_argument("--model-only", action="store_true", help="only publish another version (default: all)")
    args = parser.parse_args()

    # Random weights: predict.py is checked against the model's own answers, not against the labels.
    torch.manual_seed(args.seed)
    model = build_model().eval()
    version = model_store.publish_model(args.out_dir / "models", model.state_dict(), {"architecture": ARCHITECTURE})
    if args.model_only:
        print(json.dumps({"version": version}))
        return

    write_synthetic_mnist(args.out_dir / "data", train=20, test=10, seed=7)
    images, labels = render_digits(10, seed=8)  # the t10k split written above
    with torch.no_grad():
        x = torch.from_numpy(images[:REFERENCE_DIGITS]).float().div(255).unsqueeze(1)
        probabilities = model(x).softmax(dim=1).tolist()
    # A drawing as a person would make it: larger than 28x28, black ink on white.
    Image.fromarray(255 - images[0]).resize((140, 140), Image.BILINEAR).save(args.out_dir / "digit.png")
    answer = {"version": version, "labels": labels[:REFERENCE_DIGITS].tolist(), "probabilities": probabilities}
    print(json.dumps(answer))


if __name__ == "__main__":
    main()
