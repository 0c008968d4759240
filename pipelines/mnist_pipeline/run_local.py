"""`make pipeline-local`: mnist-ddp-pipeline, run by kfp.local on this machine against the local cluster of `make demo`.

1. Starts the demo (`python -m local_cluster demo`, what `make demo` runs) in the background with the
   same settings (DEMO_DIR, MNIST_DIR, FRONTEND_PORT, MODEL_PORT, TENSORBOARD_PORT, OVERLAY, RETRAIN),
   and waits for its READY line: the control plane with the Training Operator, the local node, the
   served model.
2. Runs the pipeline with kfp.local's SubprocessRunner: every step is a process of this environment.
   `train` creates the PyTorchJob through $DEMO_DIR/kubeconfig, which the real Training Operator
   and the node run; `evaluate` and `promote` work on the claim's local folder (see `local_env`).
3. Stops the demo (every process it started ends) and prints the outcome as its last line:
   `promoted <version>` (exit 0), the gate's refusal or the step that failed (exit 1).

The demo's own messages are shown with its `[demo]` prefix; all of its output, the containers'
included, goes to $DEMO_DIR/pipeline-local-demo.log. A demo already running for the same DEMO_DIR
is not shared: the demo refuses to start twice on one DEMO_DIR, and this run stops with its message
(exit 2, as when the demo fails before READY).
"""

import argparse
import contextlib
import json
import os
import re
import signal
import subprocess
import sys
import threading
import time
import warnings
from dataclasses import dataclass
from pathlib import Path

from kfp import local

from mnist_pipeline import gate, local_env, pipeline

REPO = Path(__file__).resolve().parents[2]
# The local node's keeper: it stops the demo if this process dies, even by SIGKILL.
KEEPER = REPO / "local_cluster" / "node" / "keeper.py"
READY = "READY: open "
DEMO_PREFIX = "[demo] "
STOP_SIGNALS = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)
# The demo stops the node's containers (15 s grace each at most) and then the control plane.
STOP_TIMEOUT_SECONDS = 120.0
ANSI = re.compile(r"\x1b\[[0-9;]*m")
PROMOTED, NOT_PROMOTED, DEMO_FAILED, INTERRUPTED = 0, 1, 2, 130


class Demo:
    """The demo in the background, under the keeper; its output to a log file, its own messages to stdout."""

    def __init__(self, argv: list[str], python: str, log_file: Path):
        log_file.parent.mkdir(parents=True, exist_ok=True)
        self.log = log_file.open("w")
        self.ready = threading.Event()
        self.proc = subprocess.Popen(
            [python, "-I", str(KEEPER), str(os.getpid()), str(STOP_TIMEOUT_SECONDS), python, *argv],
            cwd=REPO,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            start_new_session=True,
        )
        self.reader = threading.Thread(target=self._read, daemon=True)
        self.reader.start()

    def _read(self) -> None:
        for line in self.proc.stdout:
            self.log.write(line)
            self.log.flush()
            if line.startswith(DEMO_PREFIX):
                print(line, end="", flush=True)
            if READY in line:
                self.ready.set()

    def wait_ready(self, timeout: float) -> str | None:
        """None once READY, else why not."""
        deadline = time.monotonic() + timeout
        while not self.ready.wait(0.5):
            if self.proc.poll() is not None:
                self.reader.join(timeout=10)
                return f"the demo exited with code {self.proc.returncode} before READY"
            if time.monotonic() > deadline:
                return f"the demo was not READY after {timeout:.0f} s"
        return None

    def stop(self) -> int:
        """SIGTERM, as Ctrl-C on `make demo`: the demo stops every process it started; its exit code."""
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=STOP_TIMEOUT_SECONDS)
            except subprocess.TimeoutExpired:
                # The keeper's "kill now": the program and everything left in its process group.
                self.proc.send_signal(signal.SIGUSR2)
                self.proc.wait()
        self.reader.join(timeout=10)
        self.log.close()
        return self.proc.returncode


@dataclass(frozen=True)
class Outcome:
    """How the run ended, from the records kfp.local keeps of each step under the pipeline root."""

    code: int
    line: str


def step_outputs(run_dir: Path | None, step: str) -> dict:
    """The parameter outputs that a step of the run wrote (kfp.local's <root>/<run>/<step>/executor_output.json)."""
    if run_dir is None:
        return {}
    path = run_dir / step / "executor_output.json"
    return json.loads(path.read_text()).get("parameterValues", {}) if path.is_file() else {}


def outcome(run_dir: Path | None, failure: str | None) -> Outcome:
    """`promoted <version>`, the gate's reason, or the failed step, and the exit code that goes with it."""
    promoted = step_outputs(run_dir, "promote").get("Output")
    if promoted and failure is None:
        return Outcome(PROMOTED, f"promoted {promoted}")
    evaluated = step_outputs(run_dir, "evaluate")
    if evaluated.get("passed") is False:
        return Outcome(NOT_PROMOTED, evaluated["reason"])
    if failure is not None:
        return Outcome(NOT_PROMOTED, f"{ANSI.sub('', failure)} (the step's log above says why)")
    return Outcome(NOT_PROMOTED, "the pipeline ended without promoting (kfp.local recorded no promote step)")


def children(pid: int) -> list[int]:
    """The direct children of `pid` (Linux /proc; none elsewhere)."""
    found = []
    for task in Path(f"/proc/{pid}/task").glob("*"):
        with contextlib.suppress(OSError):
            found += [int(child) for child in (task / "children").read_text().split()]
    return found


def start_time(pid: int) -> str | None:
    """When `pid` started (clock ticks since boot), so that a reused pid is never signalled; None if gone."""
    try:
        return Path(f"/proc/{pid}/stat").read_bytes().rsplit(b")", 1)[1].split()[19].decode()
    except (OSError, IndexError):
        return None


class Steps:
    """The steps that kfp.local runs: each a `sh -c` child of this process, with the step's Python below it."""

    def __init__(self, demo_pid: int):
        self.demo_pid = demo_pid
        self.signalled: dict[int, str | None] = {}

    def signal(self, signum: int) -> None:
        """Send `signum` to every step and what it started, and again to those signalled before that still run."""
        todo = [child for child in children(os.getpid()) if child != self.demo_pid]
        while todo:
            pid = todo.pop()
            self.signalled.setdefault(pid, start_time(pid))
            todo += children(pid)
        for pid, started in self.signalled.items():
            if started is not None and start_time(pid) == started:
                with contextlib.suppress(ProcessLookupError):
                    os.kill(pid, signum)


def interrupt_handler(steps: Steps):
    """Stop the running step first (kfp.local waits for it), then unwind to stop the demo."""

    def handler(signum, frame):
        steps.signal(signal.SIGTERM)
        raise KeyboardInterrupt

    return handler


def run_pipeline(args: argparse.Namespace, runs_dir: Path) -> tuple[Path | None, str | None]:
    """Run mnist-ddp-pipeline with kfp.local; (this run's folder under `runs_dir`, kfp's failure message)."""
    job_manifest = pipeline.render_overlay(args.overlay, args.kubectl)
    arguments = {
        "epochs": args.epochs,
        "batch_size": args.batch_size,
        "min_accuracy": args.min_accuracy,
        "max_regression": args.max_regression,
        "namespace": job_manifest["metadata"].get("namespace") or "default",
    }
    if args.workers is not None:
        arguments["workers"] = args.workers
    before = set(runs_dir.glob("*"))
    local.init(runner=local.SubprocessRunner(use_venv=False), pipeline_root=str(runs_dir))
    failure = None
    with warnings.catch_warnings():
        # The steps name the pipeline image: here this environment stands in for it (use_venv=False).
        warnings.filterwarnings("ignore", message="You may be attemping to run a task that uses custom")
        # Requests, limits and the security context are for the cluster's pods, not the local processes.
        warnings.filterwarnings("ignore", message="Task .* have no effect in the current local runner")
        try:
            pipeline.build_pipeline(job_manifest)(**arguments)
        except RuntimeError as exc:
            failure = str(exc)
    new = sorted(set(runs_dir.glob(f"{pipeline.PIPELINE_NAME}-*")) - before)
    return (new[-1] if new else None), failure


def step_environment(demo_dir: Path) -> dict[str, str]:
    """What the steps need to run here: the package, the demo's cluster, the claim's folder, the node's logs."""
    return {
        "PYTHONPATH": os.pathsep.join([str(REPO / "pipelines"), str(REPO / "trainer")]),
        "PYTHONUNBUFFERED": "1",
        "KUBECONFIG": str(demo_dir / "kubeconfig"),
        local_env.PVC_DIR: str(demo_dir / "pvc" / pipeline.PVC_NAME),
        local_env.POD_LOGS: str(demo_dir / "node" / "logs" / "pods"),
    }


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    """The flags, with the demo's settings from the environment as `make demo` takes them."""
    env = os.environ
    p = argparse.ArgumentParser(prog="python -m mnist_pipeline.run_local", description=__doc__.splitlines()[0])
    p.add_argument(
        "--demo-dir",
        type=Path,
        default=Path(env.get("DEMO_DIR") or REPO / ".demo"),
        help="the demo's working folder (default: $DEMO_DIR, else .demo)",
    )
    p.add_argument(
        "--overlay",
        type=Path,
        default=Path(env.get("OVERLAY") or REPO / "overlays" / "cpu"),
        help="what the demo applies, and the PyTorchJob that train creates (default: $OVERLAY, else overlays/cpu)",
    )
    p.add_argument(
        "--demo-python",
        default=str(REPO / ".venv" / "tools" / "bin" / "python"),
        help="the Python that runs the demo (default: .venv/tools/bin/python)",
    )
    p.add_argument("--kubectl", help="kubectl that renders the overlay (default: the one beside --demo-python)")
    p.add_argument("--workers", type=int, help="the pipeline's workers (default: the overlay's Worker replicas)")
    p.add_argument("--epochs", type=int, default=pipeline.EPOCHS, help="training epochs (default: %(default)s)")
    p.add_argument(
        "--batch-size", type=int, default=pipeline.BATCH_SIZE, help="global batch size (default: %(default)s)"
    )
    p.add_argument(
        "--min-accuracy",
        type=float,
        default=gate.DEFAULT_MIN_ACCURACY,
        help="the gate's lowest accuracy (default: %(default)s)",
    )
    p.add_argument(
        "--max-regression",
        type=float,
        default=gate.DEFAULT_MAX_REGRESSION,
        help="how far below the served version's accuracy the gate lets a candidate be (default: %(default)s)",
    )
    p.add_argument(
        "--ready-timeout",
        type=float,
        default=1800.0,
        help="seconds the demo may take to be READY, its first training included (default: %(default)s)",
    )
    args = p.parse_args(argv)
    args.demo_dir = args.demo_dir.resolve()
    args.overlay = args.overlay.resolve()
    args.kubectl = args.kubectl or str(Path(args.demo_python).parent / "kubectl")
    return args


def main(argv: list[str] | None = None) -> int:
    """The whole run; its exit code."""
    args = parse_args(argv)
    demo_argv = ["-m", "local_cluster", "demo", "--overlay", str(args.overlay), "--demo-dir", str(args.demo_dir)]
    print(f"starting the demo in the background: {' '.join(demo_argv)}", flush=True)
    demo = Demo(demo_argv, args.demo_python, args.demo_dir / "pipeline-local-demo.log")
    steps = Steps(demo.proc.pid)
    previous = {signum: signal.signal(signum, interrupt_handler(steps)) for signum in STOP_SIGNALS}
    try:
        not_ready = demo.wait_ready(args.ready_timeout)
        if not_ready is not None:
            result = Outcome(DEMO_FAILED, f"{not_ready} (its [demo] lines above say why; all of it: {demo.log.name})")
        else:
            os.environ.update(step_environment(args.demo_dir))
            run_dir, failure = run_pipeline(args, args.demo_dir / "pipeline-runs")
            if failure is not None:
                print(f"kfp.local: {ANSI.sub('', failure)}", flush=True)
            if run_dir is not None:
                print(f"the run's outputs (Metrics, ClassificationMetrics, parameters): {run_dir}", flush=True)
            result = outcome(run_dir, failure)
    except KeyboardInterrupt:
        result = Outcome(INTERRUPTED, "interrupted: the demo and every step stopped")
    finally:
        for signum, handler in previous.items():
            signal.signal(signum, handler)
        print("stopping the demo", flush=True)
        demo.stop()
        # On an interruption kfp.local waits for its step only a moment: what has not ended yet goes now.
        steps.signal(signal.SIGKILL)
    print(result.line, flush=True)
    return result.code


if __name__ == "__main__":
    sys.exit(main())
