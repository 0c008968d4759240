"""Benchmark our two model servers against the original tutorial's setup, side by side in one run.

Single-image REST predictions (one 28x28 image), load generated on the same machine.
Real servers are started on free ports:

  baseline  the pytorch/examples MNIST CNN in a plain Seldon class (scripts/bench_serve/BaselineMnist.py)
            with the Seldon wrapper's defaults: 1 gunicorn worker, 1 thread, 1 gRPC worker
  ours      MnistClassifier on seldon-core-microservice, serving MnistNet from a temporary model
            root, with the worker settings of the SeldonDeployment (`data.ndarray` requests)
  kserve    the KServe model `mnist` (serving/kserve_predictor) on kserve's ModelServer, one
            process as the InferenceService runs it (V2 requests: one FP32 tensor [1, 28, 28])
  kserve-v1 the same server, asked in the V1 protocol (`instances`: one 28x28 image)

Two measurements of each:
  saturation  closed loop: `wrk`, N connections for D seconds; the latency there is mostly
              queueing (Little's law: mean latency = connections / throughput)
  open loop   `hey -q` at fixed offered rates (--rates, default 200, 400, 800 req/s): hey's rate
              is per worker, so each rate is R/50 workers at 50 req/s each. Each worker is a hey
              process of its own, started 1/R s after the previous one, so requests arrive
              evenly spaced, one every 1/R s, as from independent clients. (One hey with R/50
              workers starts them together, each on its own ticker: requests then come in
              bursts of one per worker every 20 ms; --lockstep measures that.) A worker whose
              answer takes longer than 20 ms skips ticks (coordinated omission): the served
              rate then falls below the offered one, and the table shows both

Optional rows: --floor adds, with the same settings as ours, a server that answers
without doing any work (scripts/bench_serve/ConstantModel.py), the cost of seldon-core
itself, the same with our metrics buffer (the floor under ours), and one that only
decodes and checks the input as ours does
(scripts/bench_serve/InputOnlyModel.py); and kserve's ModelServer with a model that does
no work (scripts/bench_serve/serve_kserve_floor.py), asked in V2 and in V1, in one process
as deployed and in two (kserve's --workers 2): the ceiling of the KServe rows.
--metrics-unbuffered adds ours with Seldon's own metrics update on every request
(metrics_flush_s=0, see serving/metrics_buffer.py);
--baseline-one-thread adds the baseline with OMP_NUM_THREADS=1, which separates what
torch's default of one thread per core costs on a busy machine.
The servers are measured in alternation for --rounds rounds; the table shows medians.

Where the time goes besides the server's own CPU: every measurement also reports how long the
server's threads waited, runnable, for a core (run-queue wait per request, from
/proc/<pid>/task/<tid>/schedstat), and the machine's CPU pressure (the share of the measurement
during which some task waited for a core, from /proc/pressure/cpu). On a machine shared with other
work, a run-queue wait near or above the CPU per request means the latency is the other work's.

    .venv/serving/bin/python scripts/bench_serve.py [--duration 10] [--connections 8] [--rounds 3] [--rates 200,400,800]
"""

import argparse
import json
import os
import re
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "trainer"))

import numpy as np  # noqa: E402
import torch  # noqa: E402

from mnist_ddp import model_store  # noqa: E402
from mnist_ddp.model import ARCHITECTURE, build_model  # noqa: E402

SELDON = Path(sys.executable).parent / "seldon-core-microservice"
# The KServe environment next to this one (.venv/kserve beside .venv/serving).
KSERVE_PYTHON = Path(sys.executable).parents[1].parent / "kserve" / "bin" / "python"
SERVE_MNIST = REPO / "serving" / "kserve_predictor" / "serve_mnist.py"
KSERVE_FLOOR = REPO / "scripts" / "bench_serve" / "serve_kserve_floor.py"
# hey's -q is per worker: each worker sends one request every 1 / HEY_WORKER_RATE seconds.
HEY_WORKER_RATE = 50
P99_TARGET_MS = 10.0
THROUGHPUT_TARGET = 5.0
WRK_SCRIPT = """wrk.method = "POST"
wrk.headers["Content-Type"] = "application/json"
wrk.body = [==[{body}]==]
"""
UNITS = {"us": 1e-3, "ms": 1.0, "s": 1e3}
# The classifier container's environment in base/serving-seldondeployment.yaml, besides the worker counts.
OURS_ENV = {"OMP_NUM_THREADS": "1", "INCLUDE_METRICS_IN_CLIENT_RESPONSE": "false"}
# The predictor container's environment in components/kserve/serving-inferenceservice.yaml.
KSERVE_ENV = {"OMP_NUM_THREADS": "1"}


@dataclass
class Config:
    """One server setup: the model class, where it is imported from, and the gunicorn/gRPC settings."""

    name: str
    interface: str
    pythonpath: list[Path]
    workers: int
    threads: int
    grpc_workers: int
    parameters: list[dict]
    env: dict[str, str] = field(default_factory=dict)
    server: str = "seldon"  # or "kserve": then `interface` is the script that starts kserve's ModelServer
    protocol: str = "v2"  # of a KServe server: "v2" (Open Inference Protocol) or "v1"


@dataclass
class Result:
    """What wrk measured in one run, and the server's CPU time per request."""

    requests_per_s: float
    p50_ms: float
    p99_ms: float
    errors: int
    requests: int
    cpu_ms_per_request: float = 0.0
    wait_ms_per_request: float = 0.0
    cpu_pressure: float = 0.0  # share of the measurement during which some task waited for a core


def ours_name(workers: int, threads: int, grpc_workers: int) -> str:
    """The row name of ours with these gunicorn and gRPC settings."""
    return f"ours-w{workers}-t{threads}-g{grpc_workers}"


def flush_parameter(seconds: float) -> dict:
    """The model parameter metrics_flush_s (see serving/metrics_buffer.py) as Seldon passes it."""
    return {"name": "metrics_flush_s", "value": str(seconds), "type": "FLOAT"}


def free_port() -> int:
    """A TCP port on 127.0.0.1 that is free right now."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Server:
    """seldon-core-microservice (or the KServe ModelServer) for one Config, on free ports, output in a log file."""

    def __init__(self, config: Config, log_dir: Path):
        self.config = config
        self.http_port = free_port()
        self.log = log_dir / f"{config.name}.log"
        if config.server == "kserve":
            self._start_kserve(config)
            return
        env = dict(os.environ)
        env.update(
            PYTHONPATH=os.pathsep.join(str(p) for p in config.pythonpath),
            PREDICTIVE_UNIT_PARAMETERS=json.dumps(config.parameters),
            PREDICTIVE_UNIT_HTTP_SERVICE_PORT=str(self.http_port),
            PREDICTIVE_UNIT_GRPC_SERVICE_PORT=str(free_port()),
            PREDICTIVE_UNIT_METRICS_SERVICE_PORT=str(free_port()),
            GUNICORN_WORKERS=str(config.workers),
            GUNICORN_THREADS=str(config.threads),
            GRPC_WORKERS=str(config.grpc_workers),
        )
        env.update(config.env)
        with open(self.log, "wb") as out:
            self.proc = subprocess.Popen(
                [str(SELDON), config.interface, "--service-type", "MODEL"],
                env=env,
                stdout=out,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        self.url = f"http://127.0.0.1:{self.http_port}/api/v1.0/predictions"
        self.ready_url = f"http://127.0.0.1:{self.http_port}/health/status"

    def _start_kserve(self, config: Config) -> None:
        env = dict(os.environ)
        env.update(PYTHONPATH=os.pathsep.join(str(p) for p in config.pythonpath), **config.env)
        model_root = next(p["value"] for p in config.parameters if p["name"] == "model_root")
        argv = [str(KSERVE_PYTHON), config.interface, f"--model_root={model_root}", f"--http_port={self.http_port}"]
        if config.workers > 1:
            argv.append(f"--workers={config.workers}")
        with open(self.log, "wb") as out:
            self.proc = subprocess.Popen(argv, env=env, stdout=out, stderr=subprocess.STDOUT, start_new_session=True)
        base = f"http://127.0.0.1:{self.http_port}"
        self.url = f"{base}/v1/models/mnist:predict" if config.protocol == "v1" else f"{base}/v2/models/mnist/infer"
        self.ready_url = f"{base}/v2/models/mnist/ready"

    def body(self) -> str:
        """One single-image request in this server's protocol."""
        image = sample_image()
        if self.config.server == "kserve" and self.config.protocol == "v1":
            return json.dumps({"instances": image})
        if self.config.server == "kserve":
            flat = np.asarray(image).ravel().tolist()
            tensor = {"name": "images", "datatype": "FP32", "shape": [1, 28, 28], "data": flat}
            return json.dumps({"inputs": [tensor]})
        return json.dumps({"data": {"ndarray": image}})

    def wait_ready(self, timeout: float = 120.0) -> None:
        """Wait until the readiness check answers 200 (the model is loaded in every worker that answers)."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                sys.exit(f"{self.config.name} exited; see {self.log}:\n{self.log.read_text()[-3000:]}")
            try:
                with urllib.request.urlopen(self.ready_url, timeout=2) as r:
                    if r.status == 200:
                        return
            except (urllib.error.URLError, OSError):
                pass
            time.sleep(0.3)
        sys.exit(f"{self.config.name} not ready after {timeout}s; see {self.log}")

    def cpu_seconds(self) -> float:
        """CPU time (user + system) used so far by every live process of the server's process group."""
        return group_cpu_seconds(self.proc.pid)

    def wait_seconds(self) -> float:
        """Time the threads of the server's live processes have spent runnable but waiting for a core."""
        return group_run_queue_wait_seconds(self.proc.pid)

    def stop(self) -> None:
        """Stop the whole process group (gunicorn master, workers, gRPC and metrics processes)."""
        if self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGTERM)
            try:
                self.proc.wait(15)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait()


def group_processes(pgid: int) -> list[Path]:
    """/proc/<pid> of every live process in process group `pgid`."""
    members = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            # Fields after the command name, which ends with ")": state ppid pgrp ...
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(fields[2]) == pgid:
            members.append(stat.parent)
    return members


def group_cpu_seconds(pgid: int) -> float:
    """CPU time (user + system) used so far by every live process of process group `pgid`."""
    ticks = 0
    for process in group_processes(pgid):
        try:
            fields = (process / "stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        ticks += int(fields[11]) + int(fields[12])  # utime, stime
    return ticks / os.sysconf("SC_CLK_TCK")


def group_run_queue_wait_seconds(pgid: int) -> float:
    """Time the threads of process group `pgid` have spent runnable but not running (schedstat's second field)."""
    nanoseconds = 0
    for process in group_processes(pgid):
        for schedstat in process.glob("task/*/schedstat"):
            try:
                nanoseconds += int(schedstat.read_text().split()[1])
            except (OSError, IndexError):
                continue
    return nanoseconds / 1e9


def cpu_pressure_seconds(text: str | None = None) -> float:
    """The kernel's total time during which at least one task waited for a core (PSI "some"); 0 without PSI."""
    if text is None:
        try:
            text = Path("/proc/pressure/cpu").read_text()
        except OSError:
            return 0.0
    match = re.search(r"^some .*\btotal=(\d+)", text, re.M)
    return int(match.group(1)) / 1e6 if match else 0.0


class Contention:
    """What a measurement of `server` cost it in CPU, and in waiting for a core while others ran."""

    def __init__(self, server: Server):
        self.server = server
        self.cpu = server.cpu_seconds()
        self.wait = server.wait_seconds()
        self.pressure = cpu_pressure_seconds()
        self.start = time.monotonic()

    def record(self, result: Result, answered: int) -> None:
        """Fill in `result`'s CPU and run-queue wait per answered request and the machine's CPU pressure."""
        elapsed = time.monotonic() - self.start
        result.cpu_ms_per_request = (self.server.cpu_seconds() - self.cpu) * 1e3 / max(1, answered)
        result.wait_ms_per_request = (self.server.wait_seconds() - self.wait) * 1e3 / max(1, answered)
        # At most 1 by definition; the two readings of the total and the clock are a moment apart.
        result.cpu_pressure = min(1.0, (cpu_pressure_seconds() - self.pressure) / elapsed)


def contention_text(result: Result) -> str:
    """The server's CPU and run-queue wait per request and the machine's CPU pressure, for a log line."""
    return (
        f"server CPU {result.cpu_ms_per_request:5.2f} ms/request  run-queue wait {result.wait_ms_per_request:5.2f} "
        f"ms/request  CPU pressure {result.cpu_pressure:4.0%}"
    )


def sample_image() -> list:
    """One MNIST-like digit (28, 28) in [0, 1]: a ring, values rounded as a client would send them."""
    y, x = np.mgrid[0:28, 0:28]
    radius = np.hypot(y - 14, x - 14)
    ring = np.clip(1.5 - np.abs(radius - 7) / 1.5, 0, 1)
    return np.round(ring, 3).reshape(1, 28, 28).tolist()


def run_wrk(url: str, script: Path, duration: float, connections: int, threads: int) -> Result:
    """Run wrk against `url` and parse requests/s, p50, p99 and errors from its --latency report."""
    command = [
        "wrk",
        "-t",
        str(threads),
        "-c",
        str(connections),
        "-d",
        f"{duration:g}s",
        "--latency",
        "-s",
        str(script),
    ]
    output = subprocess.run([*command, url], capture_output=True, text=True, check=True).stdout

    def latency(percent: str) -> float:
        value, unit = re.search(rf"^\s+{percent}%\s+([\d.]+)(us|ms|s)\s*$", output, re.M).groups()
        return float(value) * UNITS[unit]

    requests = int(re.search(r"(\d+) requests in", output).group(1))
    errors = re.search(r"Non-2xx or 3xx responses: (\d+)", output)
    socket_errors = re.search(r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)", output)
    return Result(
        requests_per_s=float(re.search(r"Requests/sec:\s+([\d.]+)", output).group(1)),
        p50_ms=latency("50"),
        p99_ms=latency("99"),
        errors=(int(errors.group(1)) if errors else 0)
        + (int(socket_errors.group(1)) + int(socket_errors.group(4)) if socket_errors else 0),
        requests=requests,
    )


def run_hey(url: str, body_file: Path, rate: int, duration: float, lockstep: bool = False) -> Result:
    """Offer `rate` req/s open-loop with hey (rate / HEY_WORKER_RATE workers); percentiles from its per-request CSV.

    One hey starts all its workers at once, each on its own ticker, so requests come in bursts of one
    per worker (`lockstep`). By default each worker is a hey of its own, started 1 / rate seconds after
    the previous one, so that requests arrive evenly spaced, as from independent clients.
    """
    workers = max(1, round(rate / HEY_WORKER_RATE))
    runs = []
    for concurrency in [workers] if lockstep else [1] * workers:
        command = ["hey", "-z", f"{duration:g}s", "-c", str(concurrency), "-q", str(HEY_WORKER_RATE), "-o", "csv"]
        command += ["-m", "POST", "-T", "application/json", "-D", str(body_file), url]
        runs.append(subprocess.Popen(command, stdout=subprocess.PIPE, text=True))
        if not lockstep:
            time.sleep(1 / (HEY_WORKER_RATE * workers))
    output = ""
    for run in runs:
        out, _ = run.communicate()
        if run.returncode != 0:
            sys.exit(f"hey failed ({run.returncode}) against {url}")
        output += out
    # response-time,DNS+dialup,DNS,Request-write,Response-delay,Response-read,status-code,offset
    rows = [line.split(",") for line in output.splitlines() if line.count(",") >= 7 and line[0].isdigit()]
    latencies = np.array([float(row[0]) * 1e3 for row in rows if row[6] == "200"])
    errors = sum(1 for row in rows if row[6] != "200")
    if latencies.size == 0:
        sys.exit(f"hey got no answer from {url} at {rate} req/s:\n{output[-2000:]}")
    return Result(
        requests_per_s=latencies.size / duration,
        p50_ms=float(np.percentile(latencies, 50)),
        p99_ms=float(np.percentile(latencies, 99)),
        errors=errors,
        requests=len(rows),
    )


def print_open_loop(open_loop, open_results, results, rates, baseline_rps) -> None:
    """The open-loop table (medians over rounds) and the issue's targets, per server."""
    print()
    print(
        "| setup | offered req/s | served req/s | p50 ms | p99 ms | CPU ms/req | wait ms/req | CPU pressure "
        "| errors | within half of saturation |"
    )
    print("|---|---|---|---|---|---|---|---|---|---|")
    for server in open_loop:
        name = server.config.name
        saturation = statistics.median(r.requests_per_s for r in results[name])
        for rate in rates:
            runs = open_results[(name, rate)]
            served = statistics.median(r.requests_per_s for r in runs)
            p50 = statistics.median(r.p50_ms for r in runs)
            p99 = statistics.median(r.p99_ms for r in runs)
            cpu = statistics.median(r.cpu_ms_per_request for r in runs)
            wait = statistics.median(r.wait_ms_per_request for r in runs)
            pressure = statistics.median(r.cpu_pressure for r in runs)
            errors = sum(r.errors for r in runs)
            within = "yes" if rate <= saturation / 2 else "no"
            print(
                f"| {name} | {rate} | {served:.0f} | {p50:.2f} | {p99:.2f} | {cpu:.2f} | {wait:.2f} | {pressure:.0%} "
                f"| {errors} | {within} |"
            )
    print()
    for server in open_loop:
        name = server.config.name
        if name == "baseline":
            continue
        saturation = statistics.median(r.requests_per_s for r in results[name])
        ratio = saturation / baseline_rps
        covered = [rate for rate in rates if rate <= saturation / 2]
        throughput = f"{ratio:.2f}x the baseline (target >= {THROUGHPUT_TARGET:g}x: "
        throughput += "met)" if ratio >= THROUGHPUT_TARGET else "not met)"
        if not covered:
            print(f"{name}: {throughput}; no offered rate is within half its saturation ({saturation / 2:.0f} req/s)")
            continue
        worst = max(statistics.median(r.p99_ms for r in open_results[(name, rate)]) for rate in covered)
        verdict = "met" if worst <= P99_TARGET_MS else "not met"
        print(
            f"{name}: {throughput}; worst p99 at the rates up to half of its saturation ({saturation / 2:.0f} req/s: "
            f"{', '.join(map(str, covered))}): {worst:.2f} ms (target <= {P99_TARGET_MS:g} ms: {verdict})"
        )


def publish_model(root: Path) -> str:
    """Publish MnistNet with random weights: the server's cost does not depend on what it learned."""
    torch.manual_seed(0)
    return model_store.publish_model(root, build_model().state_dict(), {"architecture": ARCHITECTURE})


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--duration", type=float, default=10.0, help="seconds of load per measurement (default: 10)")
    parser.add_argument("--connections", type=int, default=8, help="concurrent connections (default: 8)")
    parser.add_argument("--wrk-threads", type=int, default=2, help="wrk threads (default: 2)")
    parser.add_argument("--rounds", type=int, default=3, help="alternating measurements per setup (default: 3)")
    parser.add_argument(
        "--lockstep",
        action="store_true",
        help="open loop from one hey whose workers send together, in bursts (default: one hey per worker, staggered)",
    )
    parser.add_argument("--warmup", type=float, default=2.0, help="seconds of load before measuring (default: 2)")
    parser.add_argument("--workers", type=int, default=2, help="GUNICORN_WORKERS of ours (default: 2)")
    parser.add_argument("--threads", type=int, default=1, help="GUNICORN_THREADS of ours (default: 1)")
    parser.add_argument("--grpc-workers", type=int, default=0, help="GRPC_WORKERS of ours (default: 0)")
    parser.add_argument(
        "--floor",
        action="store_true",
        help="also measure a model that does no work and one that only checks the input (default: off)",
    )
    parser.add_argument(
        "--metrics-unbuffered",
        action="store_true",
        help="also measure ours with Seldon's metrics update on every request (default: off)",
    )
    parser.add_argument(
        "--baseline-one-thread",
        action="store_true",
        help="also measure the baseline with one torch thread, OMP_NUM_THREADS=1 (default: off)",
    )
    parser.add_argument(
        "--rates",
        type=lambda text: [int(r) for r in text.split(",")],
        default=[200, 400, 800],
        help="offered rates of the open-loop measurement, req/s, comma-separated (default: 200,400,800)",
    )
    parser.add_argument(
        "--open-duration", type=float, default=8.0, help="seconds of each open-loop measurement (default: 8)"
    )
    parser.add_argument("--no-kserve", action="store_true", help="leave out the KServe server (default: measured)")
    parser.add_argument(
        "--also",
        type=str,
        action="append",
        default=[],
        metavar="W,T,G",
        help="another setup of ours to measure, as workers,threads,grpc_workers; repeatable (default: none)",
    )
    return parser.parse_args()


def main() -> None:
    args = parse_args()
    # Stopped from outside (timeout, kill): still stop the servers, which run in sessions of their own.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit("bench_serve.py: stopped by SIGTERM"))
    if shutil.which("wrk") is None:
        sys.exit("wrk is not installed: apt-get install -y wrk")
    work = Path(tempfile.mkdtemp(prefix="bench-serve-"))
    model_root = work / "models"
    version = publish_model(model_root)

    ours = [(args.workers, args.threads, args.grpc_workers)]
    ours += [tuple(int(v) for v in spec.split(",")) for spec in args.also]
    ours = list(dict.fromkeys(ours))
    parameters = [{"name": "model_root", "value": str(model_root), "type": "STRING"}]
    ours_path = [REPO / "serving", REPO / "trainer"]
    configs = [
        Config("baseline", "BaselineMnist", [REPO / "scripts" / "bench_serve"], 1, 1, 1, []),
        *(Config(ours_name(w, t, g), "MnistClassifier", ours_path, w, t, g, parameters, OURS_ENV) for w, t, g in ours),
    ]
    kserve_path = [REPO / "serving" / "kserve_predictor", *ours_path]
    if not args.no_kserve:
        # One process, one torch thread: the InferenceService's container (components/kserve).
        configs[2:2] = [
            Config(name, str(SERVE_MNIST), kserve_path, 1, 1, 0, parameters, KSERVE_ENV, "kserve", protocol)
            for name, protocol in (("kserve", "v2"), ("kserve-v1", "v1"))
        ]
    if args.metrics_unbuffered:
        unbuffered = [*parameters, flush_parameter(0)]
        configs.append(
            Config(
                "ours-unbuffered",
                "MnistClassifier",
                ours_path,
                args.workers,
                args.threads,
                args.grpc_workers,
                unbuffered,
                OURS_ENV,
            )
        )
    if args.baseline_one_thread:
        configs.insert(
            1,
            Config(
                "baseline-1thread",
                "BaselineMnist",
                [REPO / "scripts" / "bench_serve"],
                1,
                1,
                1,
                [],
                {"OMP_NUM_THREADS": "1"},
            ),
        )
    if args.floor:
        configs += [
            Config(
                name,
                interface,
                [REPO / "scripts" / "bench_serve", REPO / "serving"],
                args.workers,
                args.threads,
                args.grpc_workers,
                floor_parameters,
            )
            for name, interface, floor_parameters in (
                ("seldon-floor", "ConstantModel", []),
                ("floor-buffered", "ConstantModel", [flush_parameter(1.0)]),
                ("input-floor", "InputOnlyModel", []),
            )
        ]
    if args.floor and not args.no_kserve:
        configs += [
            Config(name, str(KSERVE_FLOOR), kserve_path, workers, 1, 0, parameters, KSERVE_ENV, "kserve", protocol)
            for name, workers, protocol in (
                ("kserve-floor", 1, "v2"),
                ("kserve-floor-v1", 1, "v1"),
                ("kserve-floor-2w", 2, "v2"),
                ("kserve-floor-v1-2w", 2, "v1"),
            )
        ]
    load_before = os.getloadavg()[0]
    print(f"model {ARCHITECTURE} {version}; wrk -t{args.wrk_threads} -c{args.connections} -d{args.duration:g}s")
    if shutil.which("hey") is None:
        sys.exit("hey is not installed: apt-get install -y hey")
    name_width = max(len(config.name) for config in configs)
    servers = [Server(config, work) for config in configs]
    scripts, bodies = {}, {}
    for server in servers:
        bodies[server.config.name] = work / f"{server.config.name}.json"
        bodies[server.config.name].write_text(server.body())
        scripts[server.config.name] = work / f"{server.config.name}.lua"
        scripts[server.config.name].write_text(WRK_SCRIPT.format(body=server.body()))
    results: dict[str, list[Result]] = {config.name: [] for config in configs}
    # The open-loop rows: the baseline, ours as deployed and the KServe server in both protocols.
    deployed = ours_name(args.workers, args.threads, args.grpc_workers)
    open_loop = [s for s in servers if s.config.name in ("baseline", deployed, "kserve", "kserve-v1")]
    open_results: dict[tuple[str, int], list[Result]] = {(s.config.name, r): [] for s in open_loop for r in args.rates}
    try:
        for server in servers:
            server.wait_ready()
        for server in servers:
            run_wrk(server.url, scripts[server.config.name], args.warmup, args.connections, args.wrk_threads)
        for round_number in range(args.rounds):
            for server in servers:
                contention = Contention(server)
                script = scripts[server.config.name]
                result = run_wrk(server.url, script, args.duration, args.connections, args.wrk_threads)
                contention.record(result, result.requests)
                results[server.config.name].append(result)
                print(
                    f"round {round_number + 1} {server.config.name:<{name_width}} {result.requests_per_s:8.0f} req/s  "
                    f"p50 {result.p50_ms:6.2f} ms  p99 {result.p99_ms:6.2f} ms  {contention_text(result)}  "
                    f"errors {result.errors}",
                    flush=True,
                )
            for rate in args.rates:
                for server in open_loop:
                    contention = Contention(server)
                    result = run_hey(server.url, bodies[server.config.name], rate, args.open_duration, args.lockstep)
                    contention.record(result, result.requests)
                    open_results[(server.config.name, rate)].append(result)
                    print(
                        f"round {round_number + 1} {server.config.name:<{name_width}} offered {rate:4d} req/s: "
                        f"{result.requests_per_s:6.0f} req/s  p50 {result.p50_ms:6.2f} ms  "
                        f"p99 {result.p99_ms:6.2f} ms  {contention_text(result)}  errors {result.errors}",
                        flush=True,
                    )
    finally:
        for server in servers:
            server.stop()

    baseline_rps = statistics.median(r.requests_per_s for r in results["baseline"])
    print()
    # Other work on the machine takes cores from both servers, and hurts the baseline most (two torch threads).
    print(f"machine: {os.cpu_count()} CPUs, load average {load_before:.1f} at start, {os.getloadavg()[0]:.1f} at end")
    print(
        f"| {'setup':<{name_width}} | workers | threads | gRPC | req/s | p50 ms | p99 ms | CPU ms/req | wait ms/req "
        "| CPU pressure | errors | vs baseline |"
    )
    widths = (name_width + 2, 9, 9, 6, 7, 8, 8, 12, 13, 14, 8, 13)
    print("|" + "|".join("-" * width for width in widths) + "|")
    for config in configs:
        runs = results[config.name]
        rps = statistics.median(r.requests_per_s for r in runs)
        p50 = statistics.median(r.p50_ms for r in runs)
        p99 = statistics.median(r.p99_ms for r in runs)
        cpu = statistics.median(r.cpu_ms_per_request for r in runs)
        wait = statistics.median(r.wait_ms_per_request for r in runs)
        pressure = statistics.median(r.cpu_pressure for r in runs)
        errors = sum(r.errors for r in runs)
        print(
            f"| {config.name:<{name_width}} | {config.workers:>7} | {config.threads:>7} | {config.grpc_workers:>4} | "
            f"{rps:5.0f} | {p50:6.2f} | {p99:6.2f} | {cpu:10.2f} | {wait:11.2f} | {pressure:12.0%} | {errors:>6} | "
            f"{rps / baseline_rps:10.2f}x |"
        )
    print_open_loop(open_loop, open_results, results, args.rates, baseline_rps)
    shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
