"""The supervisor on tiny real processes: how it stops them, and what is left when it dies (nothing).

Each program below traps SIGTERM and writes it down, then starts a grandchild that stays in
its process group and one that leaves it (setsid), and writes down their pids.
"""

import io
import json
import os
import signal
import subprocess
import sys
import textwrap
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

import pytest
from support.processes import REPO

from local_cluster.node.supervisor import Console, RunInProgressError, Supervisor, start_time

pytestmark = pytest.mark.slow

GRACE = 1.0


@dataclass
class Spec:
    """A ProcessSpec that is not a container plan: the supervisor needs nothing more."""

    prefix: str
    argv: list[str]
    cwd: Path
    env: dict[str, str] = field(default_factory=dict)
    grace_seconds: float = GRACE


def program(log: Path, name: str, exit_on_term: bool = False) -> list[str]:
    """A child that records SIGTERM (and exits on it only if asked), with two grandchildren that sleep."""
    code = textwrap.dedent(f"""
        import os, signal, subprocess, sys, time
        log = {str(log)!r}
        def on_term(signum, frame):
            with open(log, "a") as f:
                f.write(f"TERM {name} {{time.monotonic()}}\\n")
            if {exit_on_term!r}:
                sys.exit(0)
        signal.signal(signal.SIGTERM, on_term)
        sleeper = "import time; time.sleep(600)"
        in_group = subprocess.Popen([sys.executable, "-c", sleeper])
        escaped = subprocess.Popen([sys.executable, "-c", sleeper], start_new_session=True)
        with open(log, "a") as f:
            f.write(f"PIDS {name} {{os.getpid()}} {{in_group.pid}} {{escaped.pid}}\\n")
        while True:
            time.sleep(0.1)
    """)
    return [sys.executable, "-c", code]


def records(log: Path, kind: str) -> list[list[str]]:
    if not log.exists():
        return []
    return [line.split()[1:] for line in log.read_text().splitlines() if line.startswith(kind + " ")]


def wait_for_pids(log: Path, count: int, timeout: float = 30) -> dict[str, list[int]]:
    deadline = time.monotonic() + timeout
    while len(records(log, "PIDS")) < count:
        assert time.monotonic() < deadline, f"the programs did not start:\n{log.read_text() if log.exists() else ''}"
        time.sleep(0.05)
    return {name: [int(p) for p in pids] for name, *pids in records(log, "PIDS")}


def alive(pid: int) -> bool:
    """Whether `pid` runs (a zombie has ended)."""
    return start_time(pid) is not None


def wait_gone(pids: list[int], timeout: float) -> list[int]:
    deadline = time.monotonic() + timeout
    while any(alive(p) for p in pids) and time.monotonic() < deadline:
        time.sleep(0.05)
    return [p for p in pids if alive(p)]


def test_stop_sends_sigterm_then_sigkill_newest_first_and_leaves_no_grandchild(tmp_path):
    log = tmp_path / "log"
    supervisor = Supervisor(Console(io.StringIO()))
    processes = [supervisor.start(Spec(name, program(log, name), tmp_path)) for name in ("a", "b", "c")]
    pids = wait_for_pids(log, 3)
    try:
        started = time.monotonic()
        supervisor.stop_all()
        elapsed = time.monotonic() - started
    finally:
        for pid in [p for group in pids.values() for p in group]:
            if alive(pid):
                os.kill(pid, signal.SIGKILL)
    assert [name for name, _ in records(log, "TERM")] == ["c", "b", "a"], "not stopped newest first"
    # Each program survived its SIGTERM and was killed after the grace period.
    assert [p.poll() for p in processes] == [-signal.SIGKILL] * 3
    assert elapsed >= 3 * GRACE
    left = [pid for group in pids.values() for pid in group if alive(pid)]
    assert not left, f"left running after stop: {left} (program, grandchild in its group, grandchild in a new session)"


def test_a_program_that_exits_leaves_no_grandchild_behind(tmp_path):
    log = tmp_path / "log"
    supervisor = Supervisor(Console(io.StringIO()))
    process = supervisor.start(Spec("a", program(log, "a", exit_on_term=True), tmp_path))
    pids = wait_for_pids(log, 1)["a"]
    os.kill(pids[0], signal.SIGTERM)
    deadline = time.monotonic() + 10
    while process.poll() is None and time.monotonic() < deadline:
        time.sleep(0.05)
    supervisor.stop_all()
    assert process.poll() == 0
    assert not wait_gone(pids, 2)


DRIVER = textwrap.dedent("""
    import sys, time
    from pathlib import Path
    from local_cluster.node.supervisor import Console, Supervisor
    from test_supervisor import Spec, program
    state, log, grace = Path(sys.argv[1]), Path(sys.argv[2]), float(sys.argv[3])
    supervisor = Supervisor(Console(), state)
    print("cleared", supervisor.open(), flush=True)
    for name in ("a", "b"):
        supervisor.start(Spec(name, program(log, name), log.parent, grace_seconds=grace))
    time.sleep(600)
""")


def driver(tmp_path: Path, grace: float) -> subprocess.Popen:
    """A process that supervises two programs, for the test to kill."""
    return subprocess.Popen(
        [
            sys.executable,
            "-c",
            DRIVER,
            str(tmp_path / "state.json"),
            str(tmp_path / "log"),
            str(grace),
        ],
        env={**os.environ, "PYTHONPATH": os.pathsep.join(str(REPO / d) for d in ("scripts", "tests", "tests/demo"))},
        stdout=subprocess.DEVNULL,
        start_new_session=True,
    )


def test_sigkill_of_the_supervisor_leaves_nothing_running(tmp_path):
    supervising = driver(tmp_path, GRACE)
    pids = [p for group in wait_for_pids(tmp_path / "log", 2).values() for p in group]
    try:
        supervising.kill()
        supervising.wait()
        # Each keeper stops its program itself: SIGTERM, then SIGKILL after the grace period.
        left = wait_gone(pids, GRACE + 5)
    finally:
        for pid in pids:
            if alive(pid):
                os.kill(pid, signal.SIGKILL)
    assert not left, f"outlived the supervisor: {left}"
    assert sorted(name for name, _ in records(tmp_path / "log", "TERM")) == ["a", "b"]


def test_the_next_supervisor_clears_what_a_killed_one_left(tmp_path):
    # A grace period far longer than the test: only the next supervisor can end these in time.
    supervising = driver(tmp_path, 300)
    pids = [p for group in wait_for_pids(tmp_path / "log", 2).values() for p in group]
    state = json.loads((tmp_path / "state.json").read_text())
    keepers = [entry["pid"] for entry in state["processes"]]
    try:
        supervising.kill()
        supervising.wait()
        assert all(alive(p) for p in pids), "the programs should still be in their grace period"
        supervisor = Supervisor(Console(io.StringIO()), tmp_path / "state.json")
        cleared = supervisor.open()
        left = wait_gone(pids, 5)
        supervisor.close()
    finally:
        for pid in pids:
            if alive(pid):
                os.kill(pid, signal.SIGKILL)
    assert not left
    assert len(cleared) == 2
    for keeper, line in zip(keepers, cleared, strict=True):
        assert line.startswith(f"pid {keeper} [") and "time.sleep(600)" in line
    assert not (tmp_path / "state.json").exists()


def test_a_pid_that_now_belongs_to_another_process_is_not_killed(tmp_path):
    bystander = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(600)"], start_new_session=True)
    try:
        record = {"pid": bystander.pid, "start": "1", "prefix": "old", "command": ["python", "old-run"]}
        (tmp_path / "state.json").write_text(json.dumps({"supervisor": {}, "processes": [record]}))
        supervisor = Supervisor(Console(io.StringIO()), tmp_path / "state.json")
        assert supervisor.open() == []
        supervisor.close()
        time.sleep(0.2)
        assert bystander.poll() is None, "a process with a recorded pid but another start time was killed"
    finally:
        bystander.kill()
        bystander.wait()


def test_a_supervisor_that_still_runs_is_named_not_cleared(tmp_path):
    supervising = driver(tmp_path, GRACE)
    pids = [p for group in wait_for_pids(tmp_path / "log", 2).values() for p in group]
    try:
        with pytest.raises(RunInProgressError, match=rf"in use by another run: pid {supervising.pid} \("):
            Supervisor(Console(io.StringIO()), tmp_path / "state.json").open()
        assert all(alive(p) for p in pids)
    finally:
        supervising.kill()
        supervising.wait()
        wait_gone(pids, GRACE + 5)


@pytest.mark.parametrize(
    ("code", "expected"),
    [("raise SystemExit(3)", 3), ("import os, signal; os.kill(os.getpid(), signal.SIGABRT)", -signal.SIGABRT)],
    ids=["exit code", "signal"],
)
def test_the_exit_status_is_the_programs_not_the_keepers(tmp_path, code, expected):
    process = Supervisor(Console(io.StringIO())).start(Spec("a", [sys.executable, "-c", code], tmp_path))
    deadline = time.monotonic() + 10
    while process.poll() is None and time.monotonic() < deadline:
        time.sleep(0.05)
    assert process.poll() == expected


def test_a_program_that_cannot_be_run_is_reported(tmp_path):
    process = Supervisor(Console(io.StringIO())).start(Spec("a", [str(tmp_path / "missing")], tmp_path))
    deadline = time.monotonic() + 10
    while process.poll() is None and time.monotonic() < deadline:
        time.sleep(0.05)
    assert process.poll() == 127
    assert process.last_lines() == [f"keeper: cannot run {tmp_path / 'missing'}: No such file or directory"]


def test_a_process_started_from_a_thread_that_ends_keeps_running(tmp_path):
    # The parent-death signal fires when the thread that forked exits, not only the process.
    supervisor = Supervisor(Console(io.StringIO()))
    log = tmp_path / "log"
    started = []

    def start_and_wait() -> None:
        started.append(supervisor.start(Spec("a", program(log, "a"), tmp_path)))
        wait_for_pids(log, 1)  # the keeper has set its parent-death signal by now

    thread = threading.Thread(target=start_and_wait)
    thread.start()
    thread.join()
    pids = wait_for_pids(log, 1)["a"]
    time.sleep(0.5)
    try:
        assert started[0].poll() is None and all(alive(p) for p in pids)
        assert records(log, "TERM") == []
    finally:
        supervisor.stop_all()
    assert not wait_gone(pids, 2)
