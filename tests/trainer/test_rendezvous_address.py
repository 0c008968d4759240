"""With MASTER_ADDR on loopback (the local demo), every socket of both ranks listens on loopback, the
rendezvous store included: torch's own store would listen on every interface. Real gloo, two processes."""

import subprocess
import time

import pytest
from support.proc import listening_sockets
from support.processes import free_port, venv_bin
from trainer_runs import trainer_env

# Joins the process group the way a PyTorchJob pod does, proves it works, then holds it until stdin closes.
RANK_CODE = """
import sys, torch, torch.distributed as dist
from mnist_ddp.distributed import ddp_setup
ctx = ddp_setup("gloo")
total = torch.ones(1)
dist.all_reduce(total)
print("joined", int(total.item()), flush=True)
sys.stdin.read()
dist.destroy_process_group()
"""


@pytest.mark.slow
@pytest.mark.parametrize("address", ["127.0.0.1", "::1"])
def test_every_listening_socket_is_on_the_loopback_master_address(address):
    port = str(free_port())
    ranks = [
        subprocess.Popen(
            [venv_bin("trainer"), "-c", RANK_CODE],
            env=trainer_env(MASTER_ADDR=address, MASTER_PORT=port, WORLD_SIZE="2", RANK=str(rank)),
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
        )
        for rank in (0, 1)
    ]
    try:
        for rank in ranks:
            assert rank.stdout.readline().strip() == "joined 2"
        sockets = listening_sockets([r.pid for r in ranks])
        assert (ranks[0].pid, address, int(port)) in sockets, "rank 0 serves the store on MASTER_ADDR:MASTER_PORT"
        loopback = {"127.0.0.1", "::1", "::ffff:127.0.0.1"}
        assert {a for _, a, _ in sockets} <= loopback, sorted(sockets)
    finally:
        for rank in ranks:
            rank.stdin.close()
        deadline = time.monotonic() + 60
        for rank in ranks:
            rank.wait(timeout=max(1, deadline - time.monotonic()))
    assert [r.returncode for r in ranks] == [0, 0]
