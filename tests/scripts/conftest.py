"""Run the tutorial's shell scripts with the cluster tools replaced by recording stand-ins.

There is no cluster, registry or container engine here, so `kind`, `helm`, `gcloud`,
`docker`, `podman` and every `kubectl` subcommand except `kubectl kustomize` (which
renders the real overlays locally) are small scripts that append their arguments to a
log and answer as each test tells them (exit status, output). A --dry-run must leave
that log empty; a real run must execute exactly the commands it printed.
"""

import os
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path

import pytest
from support.processes import REPO, VENV

SCRIPTS = REPO / "scripts"
TOOLS = ("kind", "helm", "gcloud", "docker", "podman", "kubectl")
STAND_IN = """#!/usr/bin/env bash
tool=$(basename "$0")
if [[ $tool == kubectl && ${1:-} == kustomize ]]; then
  exec "$REAL_KUBECTL" "$@"
fi
printf '%s\\n' "$tool $*" >>"$SPY_LOG"
if [[ $tool == kubectl && ${1:-} == apply && ${2:-} == -k ]]; then
  "$REAL_KUBECTL" kustomize "$3" >"$SPY_APPLIED"
fi
if [[ $tool == kubectl && ${1:-} == wait && -n ${SPY_WAIT_FAILS:-} && $* == *"$SPY_WAIT_FAILS"* ]]; then
  exit 1
fi
if [[ $tool == kubectl && ${1:-} == api-resources ]]; then
  printf '%s\\n' "${SPY_API_RESOURCES-mutatingadmissionpolicies.admissionregistration.k8s.io}"
fi
if [[ $tool == kubectl && ${1:-} == get && -n ${SPY_JOB_STATE:-} && $* == *pytorchjob* ]]; then
  printf '%s' "$SPY_JOB_STATE"
fi
exit 0
"""


def real_kubectl() -> str:
    """kubectl from the tools environment, else from PATH."""
    candidate = VENV / "tools" / "bin" / "kubectl"
    found = str(candidate) if candidate.exists() else shutil.which("kubectl")
    if not found:
        message = "kubectl is needed to render the overlays (make venvs installs it in .venv/tools)"
        # CI builds the tools environment, so there a missing kubectl fails; elsewhere the rest of `make test` runs.
        if os.environ.get("CI"):
            pytest.fail(message)
        pytest.skip(message)
    return found


@dataclass
class ScriptRun:
    """What a script printed and which tools it called."""

    returncode: int
    stdout: str
    stderr: str
    calls: list[str]
    applied: str

    @property
    def commands(self) -> list[str]:
        """The commands it printed (lines starting with "+ "), without the prefix."""
        return [line[2:] for line in self.stdout.splitlines() if line.startswith("+ ")]


class Scripts:
    """Runs scripts/<name> with the stand-ins first on PATH."""

    def __init__(self, tmp_path: Path):
        self.bin = tmp_path / "bin"
        self.bin.mkdir()
        for tool in TOOLS:
            path = self.bin / tool
            path.write_text(STAND_IN)
            path.chmod(0o755)
        self.log = tmp_path / "calls.log"
        self.applied = tmp_path / "applied.yaml"
        self.env = {
            "PATH": f"{self.bin}{os.pathsep}/usr/bin{os.pathsep}/bin",
            "HOME": str(tmp_path),
            "TMPDIR": str(tmp_path),
            "REAL_KUBECTL": real_kubectl(),
            "SPY_LOG": str(self.log),
            "SPY_APPLIED": str(self.applied),
        }

    def run(self, name: str, *args: str, timeout: float = 60, **env: str) -> ScriptRun:
        self.log.write_text("")
        self.applied.write_text("")
        proc = subprocess.run(
            ["bash", str(SCRIPTS / name), *args],
            env={**self.env, **env},
            capture_output=True,
            text=True,
            timeout=timeout,
            cwd=self.bin.parent,
        )
        calls = [line for line in self.log.read_text().splitlines() if line]
        return ScriptRun(proc.returncode, proc.stdout, proc.stderr, calls, self.applied.read_text())


@pytest.fixture
def scripts(tmp_path) -> Scripts:
    return Scripts(tmp_path)
