"""Which GPUs the trainer tests see: none, unless a test asks for the machine's (the GPU variants, test_gpu.py).

conftest.py calls `hide_gpus()` before any test runs: CUDA_VISIBLE_DEVICES="" makes CUDA report no
device to this process and to every trainer process it starts, so a test that means CPU gets the CPU
on any machine. The GPU variants start their processes with `gpu_env()`, which gives them back the
GPUs the machine had.
"""

import os
import subprocess
from pathlib import Path

from support.processes import venv_bin

# Read once, at the first import (conftest.py, before hide_gpus()).
HOST_CUDA_VISIBLE_DEVICES = os.environ.get("CUDA_VISIBLE_DEVICES")
# Present wherever the NVIDIA driver is loaded (in containers too): without them there is no GPU to ask torch about.
NVIDIA_DRIVER_FILES = (Path("/proc/driver/nvidia/gpus"), Path("/dev/nvidiactl"))


def hide_gpus() -> None:
    """Make CUDA report no device to this process and its children (before CUDA is first used)."""
    os.environ["CUDA_VISIBLE_DEVICES"] = ""


def host_devices() -> list[str]:
    """The machine's GPUs as CUDA_VISIBLE_DEVICES entries, as the shell that started pytest saw them."""
    if not any(path.exists() for path in NVIDIA_DRIVER_FILES):
        return []
    probe = subprocess.run(
        [venv_bin("trainer"), "-c", "import torch; print(torch.cuda.device_count())"],
        env=gpu_env(dict(os.environ)),
        capture_output=True,
        text=True,
        timeout=120,
        check=True,
    )
    count = int(probe.stdout.strip())
    if HOST_CUDA_VISIBLE_DEVICES is not None:
        return [d.strip() for d in HOST_CUDA_VISIBLE_DEVICES.split(",") if d.strip()][:count]
    return [str(i) for i in range(count)]


def gpu_env(env: dict[str, str], devices: list[str] | None = None) -> dict[str, str]:
    """`env` with the machine's GPUs visible again, or only `devices` (as a GPU pod sees its own GPU)."""
    env = dict(env)
    if devices is not None:
        env["CUDA_VISIBLE_DEVICES"] = ",".join(devices)
    elif HOST_CUDA_VISIBLE_DEVICES is None:
        env.pop("CUDA_VISIBLE_DEVICES", None)
    else:
        env["CUDA_VISIBLE_DEVICES"] = HOST_CUDA_VISIBLE_DEVICES
    return env
