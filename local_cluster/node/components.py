"""Images to local environments: which component an image holds, and what its Dockerfile runs by default.

An image cannot be run here, but each one is built from a folder of this repository
with the same pinned requirements as `.venv/<component>`. So an image maps to that
environment, its source folders on PYTHONPATH (what the Dockerfile copies to its
WORKDIR), and the ENTRYPOINT/CMD read from the component's own Dockerfile.
"""

import json
import os
import re
import shlex
from dataclasses import dataclass
from pathlib import Path

from local_cluster.node.errors import RefusedError

REPO = Path(__file__).resolve().parents[2]


def venv_root() -> Path:
    """The folder holding the environments: $VENV (relative to the repository), default .venv."""
    path = Path(os.environ.get("VENV", ".venv"))
    return path if path.is_absolute() else REPO / path


@dataclass(frozen=True)
class Component:
    """A folder of this repository that an image is built from, and the local environment that stands in for it."""

    name: str
    source_dirs: tuple[str, ...]
    # The module that publishes the component's settings (ENV_PREFIX and DEFAULTS), if it has one.
    settings_module: str | None = None

    @property
    def folder(self) -> Path:
        return REPO / self.source_dirs[0]

    @property
    def pythonpath(self) -> str:
        return os.pathsep.join(str(REPO / d) for d in self.source_dirs)

    @property
    def bin_dir(self) -> Path:
        return SHELL_TOOLS if self.name == "shell" else venv_root() / self.name / "bin"


COMPONENTS = (
    Component("trainer", ("trainer",)),
    Component("serving", ("serving", "trainer")),
    Component("kserve", ("serving/kserve_predictor", "serving", "trainer")),
    Component("frontend", ("frontend",), settings_module="frontend/mnist_frontend/settings.py"),
    Component("tensorboard", ("tensorboard",)),
)
# Images that operators add to our pods and that are not built from this repository: each runs
# its command with this machine's shell and coreutils, and the tools in SHELL_TOOLS standing in
# for what the image has and this machine may not (the Training Operator's init-pytorch runs
# `nslookup <master>` from alpine).
SHELL_IMAGES = ("alpine", "busybox")
SHELL_TOOLS = Path(__file__).resolve().parent / "shell_tools"
SHELL = Component("shell", ("local_cluster/node/shell_tools",))


def component_for_image(image: str, workload: str) -> Component:
    """The component whose name appears in the image's repository name (`registry/x/mnist-trainer:tag` -> trainer)."""
    repository = image.split("@")[0]
    last = repository.rsplit("/", 1)[-1]
    if ":" in last:
        last = last.split(":", 1)[0]
    if last in SHELL_IMAGES:
        return SHELL
    matches = [c for c in COMPONENTS if c.name in last]
    if len(matches) != 1:
        known = ", ".join(c.name for c in COMPONENTS)
        raise RefusedError(
            workload, f"image {image!r} maps to no local environment (its name must contain one of: {known})"
        )
    return matches[0]


@dataclass(frozen=True)
class ImageDefaults:
    """What a Dockerfile's final stage sets: the working directory, the default command, the environment."""

    workdir: str
    entrypoint: tuple[str, ...]
    cmd: tuple[str, ...]
    env: tuple[tuple[str, str], ...] = ()


def _instructions(text: str) -> list[tuple[str, str]]:
    joined = re.sub(r"\\\n", " ", text)
    result = []
    for line in joined.splitlines():
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        keyword, _, rest = line.partition(" ")
        result.append((keyword.upper(), rest.strip()))
    return result


def _command_form(value: str) -> tuple[str, ...]:
    if value.startswith("["):
        return tuple(json.loads(value))
    return ("/bin/sh", "-c", value)


def _env_pairs(rest: str) -> list[tuple[str, str]]:
    words = shlex.split(rest)
    if words and "=" not in words[0]:
        return [(words[0], " ".join(words[1:]))]
    return [tuple(w.split("=", 1)) for w in words]


def parse_dockerfile(text: str) -> ImageDefaults:
    """Read WORKDIR, ENTRYPOINT, CMD (exec or shell form) and ENV of the final stage."""
    workdir, entrypoint, cmd, env = "/", (), (), {}
    for keyword, rest in _instructions(text):
        if keyword == "FROM":
            workdir, entrypoint, cmd, env = "/", (), (), {}
        elif keyword == "WORKDIR":
            workdir = rest if rest.startswith("/") else f"{workdir.rstrip('/')}/{rest}"
        elif keyword == "ENTRYPOINT":
            entrypoint = _command_form(rest)
            cmd = ()
        elif keyword == "CMD":
            cmd = _command_form(rest)
        elif keyword == "ENV":
            env.update(_env_pairs(rest))
    return ImageDefaults(workdir, entrypoint, cmd, tuple(env.items()))


def image_defaults(component: Component) -> ImageDefaults | None:
    """The defaults of the image built from `<component>/Dockerfile`, or None if there is no Dockerfile."""
    dockerfile = component.folder / "Dockerfile"
    if not dockerfile.exists():
        return None
    return parse_dockerfile(dockerfile.read_text())


def container_argv(container: dict, defaults: ImageDefaults | None, component: Component, workload: str) -> list[str]:
    """Kubernetes' rule: `command` replaces ENTRYPOINT (and drops CMD), `args` replaces CMD."""
    if container.get("command"):
        return [*container["command"], *container.get("args", [])]
    if defaults is None:
        raise RefusedError(
            workload,
            f"the container sets no command and {component.name}/Dockerfile is missing: cannot tell what it runs",
        )
    if "args" in container:
        return [*defaults.entrypoint, *container["args"]]
    return [*defaults.entrypoint, *defaults.cmd]


def resolve_program(component: Component, program: str, workload: str) -> str:
    """The local executable for a container's first word: `.venv/<component>/bin/<name>`, else a system shell."""
    local = component.bin_dir / Path(program).name
    if local.exists():
        return str(local)
    shells = {"sh": "/bin/sh", "/bin/sh": "/bin/sh", "bash": "/bin/bash", "/bin/bash": "/bin/bash"}
    if program in shells and Path(shells[program]).exists():
        return shells[program]
    raise RefusedError(
        workload, f"command {program!r} is not in {component.bin_dir} (the local stand-in for the image)"
    )


def shell_words(argv: list[str]) -> str:
    """The command line as a shell would show it, for messages."""
    return " ".join(shlex.quote(a) for a in argv)
