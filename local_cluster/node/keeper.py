"""Keeps one program for the supervisor, like a container runtime's shim: nothing it starts outlives it.

    python -I keeper.py <supervisor pid> <grace seconds> <program> [args...]

The keeper runs the program as its only child, in the keeper's own process group and
session (the supervisor starts it with a new session), and then:

- SIGTERM, SIGINT or SIGHUP to the keeper is passed to the program (a container's stop
  signal goes to its main process); SIGUSR2 kills the program at once (the end of the
  grace period the supervisor allows).
- When the program exits, every process it left behind is killed, and the keeper exits
  the same way: with its exit code, or killed by its signal.
- When the supervisor dies, even by SIGKILL, the keeper stops the program itself: SIGTERM,
  then SIGKILL after the grace period, then it kills the rest of its process group.

On Linux the keeper learns of the supervisor's death from a parent-death signal, and it is
a child subreaper: a process that leaves the program's process group (setsid, a double
fork) is still re-parented to the keeper instead of init, so it is found and killed too.
The program gets SIGKILL as its own parent-death signal, so it dies with a keeper that is
killed outright. Elsewhere (macOS) the keeper notices the supervisor's death by polling its
parent pid; processes are found by process group only.

Standard library only, run with -I: the program's environment (PYTHONPATH, PYTHONHOME) must
not change the keeper's own Python.
"""

import contextlib
import ctypes
import os
import resource
import signal
import sys
import time

PR_SET_PDEATHSIG = 1
PR_SET_CHILD_SUBREAPER = 36
LINUX = sys.platform.startswith("linux")
STOP_SIGNALS = (signal.SIGTERM, signal.SIGINT, signal.SIGHUP)
KILL_NOW = signal.SIGUSR2
# Sent by the kernel when the thread that started the keeper exits; the keeper then checks
# whether the supervisor process itself is gone (another of its threads may live on).
PARENT_GONE = signal.SIGUSR1
POLL_SECONDS = 0.05


def prctl(option: int, value: int) -> bool:
    """Linux prctl(2); False where it does not exist or fails."""
    if not LINUX:
        return False
    libc = ctypes.CDLL(None, use_errno=True)
    return libc.prctl(option, value, 0, 0, 0) == 0


def descendants(root: int) -> list[int]:
    """Every living process below `root`, from /proc (Linux); empty where there is no /proc."""
    children: dict[int, list[int]] = {}
    try:
        entries = os.listdir("/proc")
    except OSError:
        return []
    for entry in entries:
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat", "rb") as stat:
                fields = stat.read().rsplit(b")", 1)[1].split()
        except OSError:
            continue
        if fields[0] != b"Z":
            children.setdefault(int(fields[1]), []).append(int(entry))
    found, todo = [], [root]
    while todo:
        for child in children.get(todo.pop(), []):
            found.append(child)
            todo.append(child)
    return found


def reap() -> list[tuple[int, int]]:
    """Collect every child that has exited: (pid, wait status)."""
    ended = []
    while True:
        try:
            pid, status = os.waitpid(-1, os.WNOHANG)
        except ChildProcessError:
            return ended
        if pid == 0:
            return ended
        ended.append((pid, status))


def kill_the_rest(me: int) -> None:
    """SIGKILL every process below the keeper until none is left (orphans keep coming back to a subreaper)."""
    while True:
        reap()
        left = descendants(me)
        if not left:
            return
        for pid in left:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
        time.sleep(0.01)


def start_program(argv: list[str], keeper: int) -> int:
    pid = os.fork()
    if pid:
        return pid
    try:
        prctl(PR_SET_PDEATHSIG, signal.SIGKILL)
        if os.getppid() != keeper:
            os._exit(1)
        # Python ignores SIGPIPE and SIGXFSZ, and exec keeps ignored signals ignored.
        for signum in (signal.SIGPIPE, signal.SIGXFSZ, *STOP_SIGNALS, KILL_NOW, PARENT_GONE):
            signal.signal(signum, signal.SIG_DFL)
        os.execvp(argv[0], argv)
    except OSError as exc:
        os.write(2, f"keeper: cannot run {argv[0]}: {exc.strerror}\n".encode())
    os._exit(127)


def exit_like(status: int) -> None:
    """Exit as the program did: its exit code, or death by the same signal."""
    if os.WIFEXITED(status):
        sys.exit(os.WEXITSTATUS(status))
    signum = os.WTERMSIG(status)
    resource.setrlimit(resource.RLIMIT_CORE, (0, 0))
    with contextlib.suppress(OSError, ValueError):
        signal.signal(signum, signal.SIG_DFL)
    os.kill(os.getpid(), signum)
    sys.exit(128 + signum)


def keep(supervisor: int, grace: float, argv: list[str]) -> None:
    """Run `argv` until it exits; stop it when asked or when the supervisor dies; leave nothing behind."""
    me = os.getpid()
    program: int | None = None
    kill_at: float | None = None
    requests: list[int] = []

    def on_signal(signum, frame) -> None:
        requests.append(signum)

    for signum in (*STOP_SIGNALS, KILL_NOW, PARENT_GONE):
        signal.signal(signum, on_signal)
    prctl(PR_SET_CHILD_SUBREAPER, 1)
    prctl(PR_SET_PDEATHSIG, PARENT_GONE)
    orphaned = os.getppid() != supervisor
    if not orphaned:
        program = start_program(argv, me)
    status = None
    while program is not None and status is None:
        while requests:
            signum = requests.pop(0)
            if signum == KILL_NOW:
                kill_at = time.monotonic()
            elif signum in STOP_SIGNALS:
                with contextlib.suppress(ProcessLookupError):
                    os.kill(program, signum)
        if not orphaned and os.getppid() != supervisor:
            orphaned = True
            with contextlib.suppress(ProcessLookupError):
                os.kill(program, signal.SIGTERM)
            kill_at = time.monotonic() + grace if kill_at is None else kill_at
        if kill_at is not None and time.monotonic() >= kill_at:
            with contextlib.suppress(ProcessLookupError):
                os.kill(program, signal.SIGKILL)
        for pid, ended in reap():
            if pid == program:
                status = ended
        if status is None:
            time.sleep(POLL_SECONDS)
    kill_the_rest(me)
    if orphaned or status is None:
        # Nobody waits for the exit status: take the whole process group down, the keeper last.
        if os.getpgid(0) == me:
            os.killpg(me, signal.SIGKILL)
        sys.exit(1)
    exit_like(status)


def main() -> None:
    if len(sys.argv) < 4:
        sys.exit("usage: keeper.py <supervisor pid> <grace seconds> <program> [args...]")
    keep(int(sys.argv[1]), float(sys.argv[2]), sys.argv[3:])


if __name__ == "__main__":
    main()
