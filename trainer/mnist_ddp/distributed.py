"""Process-group setup for the four launch modes, backend choice and CPU thread count.

Launch modes, told apart by the environment:
- under torchrun: RANK, WORLD_SIZE, LOCAL_RANK, LOCAL_WORLD_SIZE, MASTER_ADDR/PORT set by torchrun;
- a Kubeflow Trainer v2 TrainJob (torch runtime): the torch plugin injects PET_NNODES,
  PET_NPROC_PER_NODE, PET_NODE_RANK, PET_MASTER_ADDR and PET_MASTER_PORT into every node's pod and
  starts nothing itself; the TrainJob's command is `torchrun --module mnist_ddp`, and torchrun reads
  the PET_* variables as its --nnodes, --nproc-per-node, --node-rank, --master-addr and --master-port,
  so the trainer sees the torchrun mode above;
- a plain process in a PyTorchJob Master/Worker pod: MASTER_ADDR, MASTER_PORT, WORLD_SIZE, RANK
  injected by the operator, one process per pod (LOCAL_RANK defaults to 0);
- single process: none of them set, no process group at all.
"""

import ipaddress
import logging
import math
import os
import socket
from dataclasses import dataclass
from pathlib import Path

import torch
import torch.distributed as dist

log = logging.getLogger(__name__)

BACKENDS = ("auto", "gloo", "nccl")


@dataclass(frozen=True)
class DistContext:
    """Where this process sits in the job and what it computes on."""

    rank: int
    local_rank: int
    world_size: int
    local_world_size: int
    backend: str
    device: torch.device

    @property
    def distributed(self) -> bool:
        return dist.is_available() and dist.is_initialized()

    @property
    def is_main(self) -> bool:
        """Global rank 0: the only process that logs progress and writes to the shared volume."""
        return self.rank == 0


def resolve_backend(requested: str, cuda_available: bool | None = None) -> str:
    """Map --backend to a torch.distributed backend: auto is nccl when CUDA is available, else gloo."""
    if requested not in BACKENDS:
        raise ValueError(f"unknown backend {requested!r}; expected one of {', '.join(BACKENDS)}")
    if cuda_available is None:
        cuda_available = torch.cuda.is_available()
    if requested == "auto":
        return "nccl" if cuda_available else "gloo"
    if requested == "nccl" and not cuda_available:
        raise ValueError("--backend nccl needs CUDA, but no GPU is visible; use --backend gloo (or auto) on CPU")
    return requested


def _env_int(name: str, default: int) -> int:
    value = os.environ.get(name, "")
    if value == "":
        return default
    try:
        return int(value)
    except ValueError:
        raise ValueError(f"environment variable {name}={value!r} is not an integer") from None


def cgroup_cpu_limit(cgroup_root: Path = Path("/sys/fs/cgroup")) -> int | None:
    """The container's CPU limit rounded up (cgroup v2 cpu.max or v1 cfs quota), or None if unlimited."""
    try:
        quota, period = (cgroup_root / "cpu.max").read_text().split()
        if quota != "max":
            return max(1, math.ceil(int(quota) / int(period)))
        return None
    except (OSError, ValueError):
        pass
    try:
        quota = int((cgroup_root / "cpu" / "cpu.cfs_quota_us").read_text())
        period = int((cgroup_root / "cpu" / "cpu.cfs_period_us").read_text())
        return max(1, math.ceil(quota / period)) if quota > 0 else None
    except (OSError, ValueError):
        return None


def cpu_threads(local_world_size: int = 1) -> tuple[int, str]:
    """Intra-op threads for this process and where the number comes from.

    OMP_NUM_THREADS wins (the manifests set it from the container's CPU limit through the
    downward API; torchrun sets it to 1 for several processes per node). Otherwise the CPUs
    this process may use (affinity, capped by the cgroup limit) are shared among the local ranks.
    """
    if os.environ.get("OMP_NUM_THREADS", "") != "":
        threads = _env_int("OMP_NUM_THREADS", 1)
        if threads < 1:
            raise ValueError(f"OMP_NUM_THREADS must be >= 1, got {threads}")
        return threads, "OMP_NUM_THREADS"
    cpus = len(os.sched_getaffinity(0))
    limit = cgroup_cpu_limit()
    if limit is not None:
        cpus = min(cpus, limit)
    return max(1, cpus // max(1, local_world_size)), f"{cpus} CPUs / {local_world_size} local process(es)"


def check_not_bypassing_torchrun(launched: bool) -> None:
    """Refuse to train alone on one node of a multi-node TrainJob whose command is not torchrun.

    Without torchrun nothing turns the PET_* variables into RANK and WORLD_SIZE: each node would
    train as a single process and publish its own model to the shared volume.
    """
    nodes = os.environ.get("PET_NNODES", "")
    if launched or nodes in ("", "1"):
        return
    raise ValueError(
        f"PET_NNODES={nodes} is set (a Kubeflow Trainer TrainJob) but RANK and WORLD_SIZE are not: "
        "the TrainJob's command must start the trainer through torchrun, "
        "e.g. command: [torchrun, --module, mnist_ddp]"
    )


# Rank 0's listening socket for a loopback rendezvous store: kept open for the life of the process.
_store_socket: socket.socket | None = None


def loopback_store(rank: int, world_size: int) -> dist.Store | None:
    """Rank 0's rendezvous store, listening on MASTER_ADDR alone when that is a loopback address.

    torch's TCPStore listens on every interface, whatever MASTER_ADDR says, and has no setting for its
    address; the local demo (MASTER_ADDR=127.0.0.1) must not expose the port beyond this machine. So rank 0
    binds the socket itself and hands it over. In a cluster MASTER_ADDR is a Service name: None, as before.
    Other ranks, and torchrun (whose agent owns the store), are left to torch.
    """
    global _store_socket
    try:
        address = ipaddress.ip_address(os.environ["MASTER_ADDR"])
    except ValueError:
        return None
    if rank != 0 or not address.is_loopback or "TORCHELASTIC_RUN_ID" in os.environ:
        return None
    family = socket.AF_INET6 if address.version == 6 else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind((str(address), int(os.environ["MASTER_PORT"])))
    sock.listen(max(world_size, 16))
    _store_socket = sock
    store = dist.TCPStore(
        str(address),
        int(os.environ["MASTER_PORT"]),
        world_size,
        is_master=True,
        timeout=dist.default_pg_timeout,
        master_listen_fd=sock.fileno(),
    )
    # The other ranks join through env://, whose store init_process_group prefixes with "default_pg".
    return dist.PrefixStore("default_pg", store)


def ddp_setup(backend: str = "auto") -> DistContext:
    """Join the process group if the launcher asked for one; pick the device from LOCAL_RANK."""
    launched = "RANK" in os.environ and "WORLD_SIZE" in os.environ
    check_not_bypassing_torchrun(launched)
    rank = _env_int("RANK", 0)
    world_size = _env_int("WORLD_SIZE", 1)
    local_rank = _env_int("LOCAL_RANK", 0)
    local_world_size = _env_int("LOCAL_WORLD_SIZE", 1)
    if not 0 <= rank < world_size:
        raise ValueError(f"RANK={rank} is outside WORLD_SIZE={world_size}")
    resolved = resolve_backend(backend)
    if resolved == "nccl" or torch.cuda.is_available():
        device = torch.device("cuda", local_rank)
        torch.cuda.set_device(device)
    else:
        device = torch.device("cpu")
    threads, source = cpu_threads(local_world_size)
    torch.set_num_threads(threads)
    if launched:
        for name in ("MASTER_ADDR", "MASTER_PORT"):
            if not os.environ.get(name):
                raise ValueError(f"RANK and WORLD_SIZE are set but {name} is not: set it or launch with torchrun")
        store = loopback_store(rank, world_size)
        dist.init_process_group(backend=resolved, rank=rank, world_size=world_size, store=store)
    ctx = DistContext(rank, local_rank, world_size, local_world_size, resolved, device)
    log.info(
        "rank %d/%d (local rank %d), backend %s, device %s, %d CPU threads (%s)",
        rank,
        world_size,
        local_rank,
        resolved if ctx.distributed else "none (single process)",
        device,
        threads,
        source,
    )
    return ctx


def barrier(ctx: DistContext) -> None:
    """Wait for every rank (no-op in a single process)."""
    if not ctx.distributed:
        return
    if ctx.backend == "nccl":
        dist.barrier(device_ids=[ctx.local_rank])
    else:
        dist.barrier()


def all_reduce_sum(values: list[float], ctx: DistContext) -> list[float]:
    """Sum a few numbers over all ranks (float64, on the device the backend wants)."""
    tensor = torch.tensor(values, dtype=torch.float64, device=ctx.device)
    if ctx.distributed:
        dist.all_reduce(tensor, op=dist.ReduceOp.SUM)
    return tensor.tolist()


def all_gather_objects(obj, ctx: DistContext) -> list:
    """Collect one picklable object from every rank, in rank order."""
    if not ctx.distributed:
        return [obj]
    gathered = [None] * ctx.world_size
    dist.all_gather_object(gathered, obj)
    return gathered


def ddp_teardown() -> None:
    """Leave the process group if one was joined."""
    if dist.is_available() and dist.is_initialized():
        dist.destroy_process_group()
