"""Backend choice, thread count and launch-mode detection."""

import pytest
import torch

from mnist_ddp.distributed import cgroup_cpu_limit, cpu_threads, ddp_setup, resolve_backend


def test_auto_backend_is_gloo_without_a_visible_gpu():
    # conftest.py hides the machine's GPUs (CUDA_VISIBLE_DEVICES=""); test_gpu.py has the nccl side.
    assert not torch.cuda.is_available()
    assert resolve_backend("auto") == "gloo"


@pytest.mark.parametrize(
    ("requested", "cuda", "expected"),
    [("auto", True, "nccl"), ("auto", False, "gloo"), ("gloo", True, "gloo"), ("nccl", True, "nccl")],
)
def test_backend_resolution(requested, cuda, expected):
    assert resolve_backend(requested, cuda_available=cuda) == expected


def test_nccl_without_a_gpu_is_a_clear_error():
    with pytest.raises(ValueError, match="--backend nccl needs CUDA"):
        resolve_backend("nccl", cuda_available=False)


def test_unknown_backend_is_rejected():
    with pytest.raises(ValueError, match="expected one of auto, gloo, nccl"):
        resolve_backend("mpi")


def test_threads_follow_omp_num_threads(monkeypatch):
    monkeypatch.setenv("OMP_NUM_THREADS", "3")
    assert cpu_threads(local_world_size=2) == (3, "OMP_NUM_THREADS")


def test_threads_share_the_cpus_among_local_processes(monkeypatch):
    monkeypatch.delenv("OMP_NUM_THREADS", raising=False)
    threads, _ = cpu_threads(local_world_size=1)
    halved, _ = cpu_threads(local_world_size=2)
    assert threads >= 1
    assert halved == max(1, threads // 2)


def test_invalid_omp_num_threads_is_a_clear_error(monkeypatch):
    monkeypatch.setenv("OMP_NUM_THREADS", "many")
    with pytest.raises(ValueError, match="OMP_NUM_THREADS='many' is not an integer"):
        cpu_threads()


@pytest.mark.parametrize(
    ("cpu_max", "expected"), [("max 100000\n", None), ("150000 100000\n", 2), ("50000 100000\n", 1)]
)
def test_cgroup_v2_cpu_limit_rounds_up(tmp_path, cpu_max, expected):
    (tmp_path / "cpu.max").write_text(cpu_max)
    assert cgroup_cpu_limit(tmp_path) == expected


def test_cgroup_v1_cpu_limit(tmp_path):
    (tmp_path / "cpu").mkdir()
    (tmp_path / "cpu" / "cpu.cfs_quota_us").write_text("300000\n")
    (tmp_path / "cpu" / "cpu.cfs_period_us").write_text("100000\n")
    assert cgroup_cpu_limit(tmp_path) == 3


def test_no_launch_variables_means_a_single_process_without_a_process_group(monkeypatch):
    for name in ("RANK", "WORLD_SIZE", "LOCAL_RANK", "MASTER_ADDR", "MASTER_PORT"):
        monkeypatch.delenv(name, raising=False)
    threads = torch.get_num_threads()
    try:
        ctx = ddp_setup("auto")
    finally:
        torch.set_num_threads(threads)
    assert (ctx.rank, ctx.world_size, ctx.distributed, ctx.is_main) == (0, 1, False, True)
    assert ctx.backend == "gloo"
    assert ctx.device == torch.device("cpu")


def test_rank_without_master_address_is_a_clear_error(monkeypatch):
    monkeypatch.setenv("RANK", "1")
    monkeypatch.setenv("WORLD_SIZE", "2")
    monkeypatch.delenv("MASTER_ADDR", raising=False)
    threads = torch.get_num_threads()
    try:
        with pytest.raises(ValueError, match="MASTER_ADDR is not"):
            ddp_setup("gloo")
    finally:
        torch.set_num_threads(threads)
