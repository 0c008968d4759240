"""Local processes with prefixed output, each under a keeper, stopped newest first; nothing outlives the supervisor.

This module knows nothing of manifests or of the demo: it runs what a `ProcessSpec`
describes (argv, env, cwd, an output prefix, a grace period) and guarantees:

- `Process.stop()` stops a process as the kubelet stops a container: SIGTERM to the main
  process, SIGKILL to everything it started once the grace period is over.
- Each process runs under `keeper.py`, its own small parent, in a session and process
  group of its own. The keeper kills whatever the program leaves behind when it exits,
  and stops the program on its own when the supervisor dies, even by SIGKILL (Linux: a
  parent-death signal and a child subreaper; macOS: by polling, see keeper.py).
- With a state file, a supervisor that starts after one that crashed finds what that one
  left (pid, start time and command of each keeper) and kills it, but only processes
  whose start time still matches, so a reused pid is never killed. The state file's lock
  tells a crashed run from one still running.
"""

import collections
import contextlib
import fcntl
import json
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Protocol

LAST_LINES = 20
KEEPER = Path(__file__).resolve().with_name("keeper.py")
# What the keeper is allowed after SIGUSR2 (kill now) before its whole group is killed.
KILL_MARGIN_SECONDS = 5.0
LEFTOVER_WAIT_SECONDS = 5.0


def describe_exit(code: int) -> str:
    """How a process ended, in words: "exited with code 2" or "was killed by signal 9"."""
    return f"was killed by signal {-code}" if code < 0 else f"exited with code {code}"


class ProcessSpec(Protocol):
    """What a process needs to start: the program and its arguments, environment, folder, output prefix, grace."""

    prefix: str
    argv: list[str]
    env: dict[str, str]
    cwd: Path
    grace_seconds: float


class Console:
    """Writes whole lines from several threads without interleaving them."""

    def __init__(self, stream=None, name: str = "run_local"):
        self.stream = stream or sys.stdout
        self.name = name
        self.lock = threading.Lock()

    def line(self, prefix: str, text: str) -> None:
        with self.lock:
            self.stream.write(f"[{prefix}] {text}\n")
            self.stream.flush()

    def say(self, text: str) -> None:
        """A message of the program that owns the console."""
        self.line(self.name, text)


def start_time(pid: int) -> str | None:
    """When the process `pid` started, as the system records it (Linux: clock ticks since boot); None if it ended."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as stat:
            fields = stat.read().rsplit(b")", 1)[1].split()
        # A zombie has ended: only its parent's wait is missing.
        return None if fields[0] == b"Z" else fields[19].decode()
    except FileNotFoundError:
        return None
    except OSError:
        pass
    result = subprocess.run(["ps", "-o", "lstart=", "-p", str(pid)], capture_output=True, text=True, check=False)
    return result.stdout.strip() or None


def command_line(pid: int) -> str:
    """The command line of the process `pid`, or "" if it is gone."""
    try:
        with open(f"/proc/{pid}/cmdline", "rb") as cmdline:
            return " ".join(w.decode(errors="replace") for w in cmdline.read().split(b"\0") if w)
    except FileNotFoundError:
        return ""
    except OSError:
        pass
    result = subprocess.run(["ps", "-o", "command=", "-p", str(pid)], capture_output=True, text=True, check=False)
    return result.stdout.strip()


def group_members(pgid: int) -> list[int]:
    """The processes of process group `pgid` (Linux; empty elsewhere)."""
    members = []
    with contextlib.suppress(OSError):
        for entry in os.listdir("/proc"):
            if entry.isdigit():
                try:
                    with open(f"/proc/{entry}/stat", "rb") as stat:
                        fields = stat.read().rsplit(b")", 1)[1].split()
                except OSError:
                    continue
                if int(fields[2]) == pgid and fields[0] != b"Z":
                    members.append(int(entry))
    return members


class Process:
    """One program under its keeper; its output goes to the console with its prefix.

    `pid` is the keeper's pid: the keeper is the process group leader, and it exits the
    way the program exits (same code, or same signal).
    """

    def __init__(
        self,
        plan: ProcessSpec,
        console: Console,
        max_grace: float | None = None,
        on_start: Callable[["Process"], None] | None = None,
    ):
        self.plan = plan
        self.console = console
        self.max_grace = max_grace
        self.on_start = on_start
        self.lines: collections.deque[str] = collections.deque(maxlen=LAST_LINES)
        self.proc: subprocess.Popen | None = None
        self.started: str | None = None
        self.reader: threading.Thread | None = None

    @property
    def pid(self) -> int | None:
        return None if self.proc is None else self.proc.pid

    @property
    def grace(self) -> float:
        """The grace period between SIGTERM and SIGKILL."""
        return self.plan.grace_seconds if self.max_grace is None else min(self.plan.grace_seconds, self.max_grace)

    def start(self) -> "Process":
        """Start the program (again, after it exited: a restart)."""
        Path(self.plan.cwd).mkdir(parents=True, exist_ok=True)
        self.lines.clear()
        self.proc = subprocess.Popen(
            [sys.executable, "-I", str(KEEPER), str(os.getpid()), str(self.grace), *self.plan.argv],
            env=self.plan.env,
            cwd=self.plan.cwd,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        self.started = start_time(self.proc.pid)
        self.reader = threading.Thread(target=self._read, daemon=True)
        self.reader.start()
        if self.on_start is not None:
            self.on_start(self)
        return self

    def _read(self) -> None:
        assert self.proc is not None and self.proc.stdout is not None
        for raw in iter(self.proc.stdout.readline, b""):
            text = raw.decode(errors="replace").rstrip("\n")
            self.lines.append(text)
            self.console.line(self.plan.prefix, text)

    def poll(self) -> int | None:
        """The exit code once the process has exited, else None (negative: killed by that signal)."""
        if self.proc is None:
            return None
        if self.proc.returncode is None:
            if not self._has_exited():
                return None
            self._kill_group()
            self.proc.wait()
        return self.proc.returncode

    def _has_exited(self) -> bool:
        # Look without reaping: until the keeper is reaped, its pid, and so its process
        # group id, cannot be given to another process.
        if hasattr(os, "waitid"):
            try:
                info = os.waitid(os.P_PID, self.proc.pid, os.WEXITED | os.WNOHANG | os.WNOWAIT)
            except ChildProcessError:
                return True
            return info is not None
        return self.proc.poll() is not None

    def _kill_group(self) -> None:
        # The keeper has already killed what it could; this catches what it could not
        # (the keeper itself killed by SIGKILL, or no /proc to find processes with).
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(self.proc.pid, signal.SIGKILL)

    def _wait(self, seconds: float) -> bool:
        deadline = time.monotonic() + seconds
        while self.poll() is None:
            if time.monotonic() >= deadline:
                return False
            time.sleep(0.05)
        return True

    def last_lines(self) -> list[str]:
        """The last lines it printed (all of them once it has exited)."""
        if self.reader is not None and self.poll() is not None:
            self.reader.join(timeout=2)
        return list(self.lines)

    def stop(self, grace: float | None = None) -> None:
        """SIGTERM to the main process; after `grace` (default: the spec's, capped) SIGKILL to all it started."""
        if self.proc is None:
            return
        grace = self.grace if grace is None else grace
        if self.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.kill(self.proc.pid, signal.SIGTERM)
            if not self._wait(grace):
                with contextlib.suppress(ProcessLookupError):
                    os.kill(self.proc.pid, signal.SIGUSR2)
                if not self._wait(KILL_MARGIN_SECONDS):
                    self._kill_group()
                    self._wait(KILL_MARGIN_SECONDS)
        if self.reader is not None:
            self.reader.join(timeout=2)


class RunInProgressError(Exception):
    """Another supervisor holds the state file."""


class StateFile:
    """The processes a supervisor runs, written down so that the next supervisor can clear them after a crash.

    The file holds, for the supervisor and each keeper, its pid, start time and command.
    The lock on `<path>.lock` is held while the supervisor lives; the kernel drops it when
    the supervisor dies, however it dies.
    """

    def __init__(self, path: Path):
        self.path = path
        self.lock_file = None

    def acquire(self) -> list[str]:
        """Take the lock and clear what a crashed supervisor left; return a line per process it killed.

        Raise RunInProgressError, naming the other supervisor, when it still runs.
        """
        self.path.parent.mkdir(parents=True, exist_ok=True)
        lock_file = open(self.path.with_name(self.path.name + ".lock"), "w")  # noqa: SIM115
        try:
            fcntl.flock(lock_file, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            lock_file.close()
            owner = self._read().get("supervisor", {})
            raise RunInProgressError(
                f"{self.path} is in use by another run: pid {owner.get('pid')} ({owner.get('command', '?')})"
            ) from None
        self.lock_file = lock_file
        cleared = clear_leftovers(self._read().get("processes", []))
        self.record([])
        return cleared

    def _read(self) -> dict:
        try:
            return json.loads(self.path.read_text())
        except (OSError, ValueError):
            return {}

    def record(self, processes: list[Process]) -> None:
        """Write down the supervisor and every started process (atomically: a crash leaves the old or the new)."""
        me = os.getpid()
        state = {
            "supervisor": {"pid": me, "start": start_time(me), "command": command_line(me)},
            "processes": [
                {"pid": p.pid, "start": p.started, "prefix": p.plan.prefix, "command": p.plan.argv}
                for p in processes
                if p.proc is not None and p.proc.returncode is None
            ],
        }
        staging = self.path.with_name(self.path.name + ".new")
        staging.write_text(json.dumps(state, indent=1) + "\n")
        staging.replace(self.path)

    def release(self) -> None:
        """Remove the state and drop the lock (a clean end)."""
        if self.lock_file is None:
            return
        self.path.unlink(missing_ok=True)
        self.lock_file.close()
        self.lock_file = None


def clear_leftovers(entries: list[dict]) -> list[str]:
    """Kill the process groups of keepers a dead supervisor recorded, if they are still the same processes."""
    cleared, waiting = [], []
    for entry in entries:
        pid, recorded = entry.get("pid"), entry.get("start")
        if not isinstance(pid, int) or recorded is None:
            continue
        current = start_time(pid)
        if current == recorded:
            # The keeper kills its program and everything below it, also what left the group.
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGUSR2)
        elif current is not None or not group_members(pid):
            # Another process has the pid now, or nothing of the keeper's group is left (while
            # any of it lives, the pid cannot be given to another process).
            continue
        cleared.append(f"pid {pid} [{entry.get('prefix')}] {' '.join(entry.get('command', []))}")
        waiting.append(pid)
    deadline = time.monotonic() + LEFTOVER_WAIT_SECONDS
    while waiting:
        waiting = [pid for pid in waiting if group_members(pid) or start_time(pid) is not None]
        if time.monotonic() >= deadline:
            for pid in waiting:
                with contextlib.suppress(ProcessLookupError, PermissionError):
                    os.killpg(pid, signal.SIGKILL)
            break
        time.sleep(0.05)
    return cleared


class Supervisor:
    """Every process started through it, so that one call stops them all, newest first.

    `state_file`, if given, records them for the next supervisor (see StateFile); call
    `open()` before the first start and `close()` at the end. `max_grace` caps each
    process's grace period.
    """

    def __init__(self, console: Console, state_file: Path | None = None, max_grace: float | None = None):
        self.console = console
        self.processes: list[Process] = []
        # The node starts containers from several threads: one writer of the list and the state file at a time.
        self.lock = threading.RLock()
        self.state = StateFile(state_file) if state_file is not None else None
        self.max_grace = max_grace

    def open(self) -> list[str]:
        """Take the state file and clear what a crashed supervisor left; return what was cleared."""
        return self.state.acquire() if self.state is not None else []

    def start(self, plan: ProcessSpec, console: Console | None = None) -> Process:
        """Start a process for `plan` and remember it; its output goes to `console` (default: the supervisor's)."""
        process = Process(plan, console or self.console, self.max_grace, on_start=self._record)
        with self.lock:
            self.processes.append(process)
        return process.start()

    def _record(self, _process: Process | None = None) -> None:
        if self.state is not None:
            with self.lock:
                self.state.record(list(self.processes))

    def stop_all(self) -> None:
        """Stop every process still running, newest first (the frontend before the model it calls)."""
        for process in reversed(list(self.processes)):
            process.stop()
            self._record()

    def close(self) -> None:
        """Stop everything and release the state file."""
        self.stop_all()
        if self.state is not None:
            self.state.release()

    @staticmethod
    def wait(seconds: float) -> None:
        time.sleep(seconds)
