"""Detached processes recorded in a file, so that another command can stop them later.

`make cluster-up` returns while the control plane keeps running, and `make cluster-down` runs in another
process. Each record keeps the pid with the process's start time from /proc, so a pid that the kernel
has since given to another program is never signalled.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
import time
from dataclasses import asdict, dataclass
from pathlib import Path


@dataclass(frozen=True)
class Record:
    """One started process: what it is, and how to recognise it again."""

    name: str
    pid: int
    start_ticks: int
    argv: list[str]


def start_ticks(pid: int) -> int | None:
    """The process's start time in clock ticks since boot (field 22 of /proc/<pid>/stat), or None if gone."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    # The command name (field 2) may hold spaces and parentheses: split after its closing one.
    return int(stat.rsplit(")", 1)[1].split()[19])


def is_running(record: Record) -> bool:
    """True while the very process of the record is alive (not a zombie, not a reused pid)."""
    if start_ticks(record.pid) != record.start_ticks:
        return False
    try:
        state = Path(f"/proc/{record.pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return False
    return state != "Z"


class ProcessTable:
    """The processes of one local cluster, kept in `<state_dir>/processes.json`."""

    def __init__(self, state_dir: Path, keeper: Path | None = None):
        """With `keeper` (local_cluster/node/keeper.py), each process runs under a keeper that stops it when
        the process that started it dies, even by SIGKILL: what `make demo` needs, unlike `make cluster-up`."""
        self.state_dir = state_dir
        self.file = state_dir / "processes.json"
        self.logs = state_dir / "logs"
        self.keeper = keeper

    def records(self) -> list[Record]:
        """Every process started and not yet stopped, oldest first."""
        if not self.file.exists():
            return []
        return [Record(**r) for r in json.loads(self.file.read_text())]

    def _save(self, records: list[Record]) -> None:
        tmp = self.file.with_suffix(".tmp")
        tmp.write_text(json.dumps([asdict(r) for r in records], indent=1))
        os.replace(tmp, self.file)

    def start(self, name: str, argv: list[str], env: dict[str, str] | None = None) -> Record:
        """Start `argv` in a session of its own, with its output in logs/<name>.log, and record it."""
        self.logs.mkdir(parents=True, exist_ok=True)
        if self.keeper is not None:
            argv = [sys.executable, "-I", str(self.keeper), str(os.getpid()), "10", *argv]
        with (self.logs / f"{name}.log").open("ab") as log:
            proc = subprocess.Popen(
                argv,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                env={**os.environ, **(env or {})},
                start_new_session=True,
            )
        record = Record(name, proc.pid, start_ticks(proc.pid) or 0, list(argv))
        self._save([*self.records(), record])
        return record

    def log_tail(self, name: str, lines: int = 15) -> str:
        """The last lines a process wrote, for error messages."""
        path = self.logs / f"{name}.log"
        if not path.exists():
            return "(no output)"
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])

    def stop_all(self, grace_s: float = 10.0) -> list[str]:
        """Stop every recorded process, newest first: SIGTERM to its group, then SIGKILL after `grace_s`.

        Returns the names of the processes that had to be killed.
        """
        killed = []
        for record in reversed(self.records()):
            if is_running(record):
                _signal_group(record.pid, signal.SIGTERM)
                deadline = time.monotonic() + grace_s
                while is_running(record) and time.monotonic() < deadline:
                    _reap(record.pid)
                    time.sleep(0.05)
                if is_running(record):
                    _signal_group(record.pid, signal.SIGKILL)
                    killed.append(record.name)
                    while is_running(record):
                        _reap(record.pid)
                        time.sleep(0.05)
            _reap(record.pid)
            self._save([r for r in self.records() if r != record])
        return killed


def _signal_group(pid: int, sig: signal.Signals) -> None:
    # Each process leads its own session and group, so this reaches anything it started too.
    with contextlib.suppress(ProcessLookupError):
        os.killpg(pid, sig)


def _reap(pid: int) -> None:
    """Collect the exit status of a child of this process, so that it does not stay a zombie."""
    with contextlib.suppress(ChildProcessError):
        os.waitpid(pid, os.WNOHANG)
