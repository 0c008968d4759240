"""Local processes with prefixed output: started in their own process group, watched, stopped as a group."""

import collections
import contextlib
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

from local_runner.podspec import ContainerPlan

LAST_LINES = 20


def describe_exit(code: int) -> str:
    """How a process ended, in words: "exited with code 2" or "was killed by signal 9"."""
    return f"was killed by signal {-code}" if code < 0 else f"exited with code {code}"


class Console:
    """Writes whole lines from several threads without interleaving them."""

    def __init__(self, stream=None):
        self.stream = stream or sys.stdout
        self.lock = threading.Lock()

    def line(self, prefix: str, text: str) -> None:
        with self.lock:
            self.stream.write(f"[{prefix}] {text}\n")
            self.stream.flush()

    def say(self, text: str) -> None:
        """A message of the runner itself."""
        self.line("run_local", text)


class Process:
    """One container running as a local process; its output goes to the console with its prefix."""

    def __init__(self, plan: ContainerPlan, console: Console):
        self.plan = plan
        self.console = console
        self.lines: collections.deque[str] = collections.deque(maxlen=LAST_LINES)
        self.proc: subprocess.Popen | None = None
        self.reader: threading.Thread | None = None

    def start(self) -> "Process":
        Path(self.plan.cwd).mkdir(parents=True, exist_ok=True)
        self.lines.clear()
        self.proc = subprocess.Popen(
            self.plan.argv,
            env=self.plan.env,
            cwd=self.plan.cwd,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        self.reader = threading.Thread(target=self._read, daemon=True)
        self.reader.start()
        return self

    def _read(self) -> None:
        assert self.proc is not None and self.proc.stdout is not None
        for raw in iter(self.proc.stdout.readline, b""):
            text = raw.decode(errors="replace").rstrip("\n")
            self.lines.append(text)
            self.console.line(self.plan.prefix, text)

    def poll(self) -> int | None:
        """The exit code once the process has exited, else None."""
        return None if self.proc is None else self.proc.poll()

    def last_lines(self) -> list[str]:
        """The last lines it printed (all of them once it has exited)."""
        if self.reader is not None and self.poll() is not None:
            self.reader.join(timeout=2)
        return list(self.lines)

    def stop(self, grace: float | None = None) -> None:
        """Stop it as the kubelet stops a container: SIGTERM to the main process, then SIGKILL to all that is left.

        The grace period is the pod's terminationGracePeriodSeconds, at most 10 s here.
        """
        if self.proc is None:
            return
        grace = min(self.plan.grace_seconds, 10.0) if grace is None else grace
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            with contextlib.suppress(subprocess.TimeoutExpired):
                self.proc.wait(grace)
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.proc.pid, signal.SIGKILL)
        self.proc.wait()
        if self.reader is not None:
            self.reader.join(timeout=2)


class Supervisor:
    """Every process the runner started, so that one call stops them all."""

    def __init__(self, console: Console):
        self.console = console
        self.processes: list[Process] = []

    def start(self, plan: ContainerPlan) -> Process:
        """Start a process for `plan` and remember it."""
        process = Process(plan, self.console).start()
        self.processes.append(process)
        return process

    def stop_all(self) -> None:
        """Stop every process still running, newest first (the frontend before the model it calls)."""
        for process in reversed(self.processes):
            process.stop()

    @staticmethod
    def wait(seconds: float) -> None:
        time.sleep(seconds)
