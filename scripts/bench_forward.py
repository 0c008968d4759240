"""Single-image forward pass on one CPU thread: the baseline's CNN, MnistNet, and the fused form serving runs.

Side by side in one process, alternating, median of --repeats timings of --number calls each.

    .venv/serving/bin/python scripts/bench_forward.py [--repeats 7] [--number 2000]
"""

import argparse
import statistics
import sys
import timeit
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(REPO / "trainer"), str(REPO / "scripts" / "bench_serve")]

import torch  # noqa: E402
from BaselineMnist import Net  # noqa: E402

from mnist_ddp.model import ARCHITECTURE, build_model, fuse_for_inference  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=7, help="timings per model (default: 7)")
    parser.add_argument("--number", type=int, default=2000, help="forward passes per timing (default: 2000)")
    args = parser.parse_args()
    torch.set_num_threads(1)
    torch.manual_seed(0)
    image = torch.rand(1, 1, 28, 28)
    baseline, ours = Net().eval(), build_model().eval()
    fused = fuse_for_inference(ours)

    def in_inference_mode(model):
        def forward():
            with torch.inference_mode():
                return model(image)

        return forward

    candidates = {
        "pytorch/examples CNN, inference_mode": in_inference_mode(baseline),
        f"MnistNet ({ARCHITECTURE}), inference_mode": in_inference_mode(ours),
        f"fuse_for_inference(MnistNet) ({ARCHITECTURE})": lambda: fused(image),
    }
    timings = {name: [] for name in candidates}
    for forward in candidates.values():
        timeit.timeit(forward, number=args.number // 10)
    for _ in range(args.repeats):
        for name, forward in candidates.items():
            timings[name].append(timeit.timeit(forward, number=args.number) / args.number * 1e6)
    reference = statistics.median(timings["pytorch/examples CNN, inference_mode"])
    print("| model | us per image (median) | vs pytorch/examples CNN |")
    print("| --- | --- | --- |")
    for name, values in timings.items():
        median = statistics.median(values)
        print(f"| {name} | {median:.0f} | {median / reference:.2f}x |")


if __name__ == "__main__":
    main()
