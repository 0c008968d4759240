"""Real processes for tests: free ports, component environments, servers that are waited for and stopped."""

import os
import signal
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from collections.abc import Sequence
from pathlib import Path

from local_cluster import ports

REPO = Path(__file__).resolve().parents[2]
VENV = Path(os.environ.get("VENV", REPO / ".venv"))
# Source folders each component's processes import from (what the images copy to /app).
PYTHONPATHS = {
    "trainer": [REPO / "trainer"],
    "serving": [REPO / "serving", REPO / "trainer"],
    "kserve": [REPO / "serving" / "kserve_predictor", REPO / "serving", REPO / "trainer"],
    "frontend": [REPO / "frontend"],
    "tools": [REPO / "scripts"],
}


def free_port() -> int:
    """Return a TCP port on 127.0.0.1 that is free right now, outside the ephemeral range, where a client's
    connection could take it before the server binds it."""
    return ports.free_port()


def venv_bin(component: str, program: str = "python") -> str:
    """Path of `program` in the local environment of `component` (.venv/<component>/bin)."""
    path = VENV / component / "bin" / program
    if not path.exists():
        raise FileNotFoundError(f"{path} is missing: run `make venvs` first")
    return str(path)


def component_env(component: str, **overrides: str) -> dict[str, str]:
    """The environment for a process of `component`: PYTHONPATH set as in its image, unbuffered output."""
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(str(p) for p in PYTHONPATHS[component])
    env["PYTHONUNBUFFERED"] = "1"
    env.update(overrides)
    return env


def wait_for_http(url: str, timeout: float = 60.0, proc: subprocess.Popen | None = None, ok=(200,)) -> None:
    """Poll `url` until it answers with a status in `ok`; fail early if `proc` exits."""
    deadline = time.monotonic() + timeout
    last = "no answer"
    while time.monotonic() < deadline:
        if proc is not None and proc.poll() is not None:
            raise RuntimeError(f"process exited with {proc.returncode} before {url} answered")
        try:
            with urllib.request.urlopen(url, timeout=2) as resp:
                if resp.status in ok:
                    return
                last = f"HTTP {resp.status}"
        except urllib.error.HTTPError as exc:
            if exc.code in ok:
                return
            last = f"HTTP {exc.code}"
        except OSError as exc:
            last = str(exc)
        time.sleep(0.2)
    raise TimeoutError(f"{url} not ready after {timeout}s: {last}")


class Server:
    """A background process whose output goes to a file, stopped (SIGTERM, then SIGKILL) on exit.

    Use as a context manager; `output()` returns what it printed so far, for failure messages.
    """

    def __init__(self, argv: Sequence[str], env: dict[str, str] | None = None, cwd: str | os.PathLike | None = None):
        self.argv = list(argv)
        self.env = env
        self.cwd = cwd
        self.log = tempfile.NamedTemporaryFile(prefix="server-", suffix=".log", delete=False)  # noqa: SIM115
        self.proc: subprocess.Popen | None = None

    def start(self) -> "Server":
        self.proc = subprocess.Popen(
            self.argv,
            env=self.env,
            cwd=self.cwd,
            stdout=self.log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        return self

    def output(self) -> str:
        self.log.flush()
        return Path(self.log.name).read_text(errors="replace")

    def stop(self, timeout: float = 10.0) -> None:
        """Stop the whole process group: gunicorn and torchrun start children of their own."""
        if self.proc is None or self.proc.poll() is not None:
            return
        try:
            os.killpg(self.proc.pid, signal.SIGTERM)
            self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait()
        except ProcessLookupError:
            pass

    def __enter__(self) -> "Server":
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()
        if exc[0] is not None:
            sys.stderr.write(f"--- output of {' '.join(self.argv)} ---\n{self.output()[-4000:]}\n")


def synthetic_mnist(folder: Path) -> Path:
    """300 training and 100 test digits in `folder`, written by tests/support/synthetic_mnist.py in the trainer's
    environment."""
    script = REPO / "tests" / "support" / "synthetic_mnist.py"
    subprocess.run(
        [venv_bin("trainer"), str(script), str(folder), "--train", "300", "--test", "100"], check=True, timeout=120
    )
    return folder
