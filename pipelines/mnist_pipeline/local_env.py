"""What differs when a step runs as a local process (`make pipeline-local`, kfp.local) instead of in a pod.

Two environment variables, both unset on a cluster, where the steps behave exactly as compiled:

- `PIPELINE_LOCAL_PVC_DIR`: the local folder of the claim `mnist-pvc`, which the pods mount at
  /mnt/pvc. kfp.local mounts no volumes, so the steps read and write the claim there instead.
  The paths the steps exchange stay the pods' (/mnt/pvc/...): only where a step opens them changes.
- `PIPELINE_LOCAL_POD_LOGS`: the local node's pod log folder (`<namespace>_<pod>_<uid>/<container>.log`),
  read by `train` when the API server cannot serve `pods/log`: the local node is no kubelet, and has
  no log endpoint for the API server to proxy to.
"""

import os
from pathlib import Path

from mnist_pipeline.job import PVC_MOUNT

PVC_DIR = "PIPELINE_LOCAL_PVC_DIR"
POD_LOGS = "PIPELINE_LOCAL_POD_LOGS"


def on_this_machine(path: str) -> Path:
    """Where this process opens `path`, a path of the pods under /mnt/pvc: unchanged unless $PIPELINE_LOCAL_PVC_DIR."""
    local = os.environ.get(PVC_DIR)
    if not local:
        return Path(path)
    if path != PVC_MOUNT and not path.startswith(PVC_MOUNT + "/"):
        raise ValueError(f"{path} is not under {PVC_MOUNT}, where the pods mount the claim: {PVC_DIR} cannot map it")
    return Path(local) / path[len(PVC_MOUNT) :].lstrip("/")


def pod_logs_dir() -> Path | None:
    """The local node's pod log folder ($PIPELINE_LOCAL_POD_LOGS), or None on a cluster."""
    local = os.environ.get(POD_LOGS)
    return Path(local) if local else None
