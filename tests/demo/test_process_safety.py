"""The real demo stopped the ways a user stops it by accident: the terminal closed (SIGHUP), the demo killed
(SIGKILL, the OOM killer). Nothing may be left running (control plane, node, containers), every port must be free
again, the next start must work; and while it runs, no server may listen beyond this machine unless the user asks
for it."""

import ipaddress
import os
import signal
import socket
import time
from pathlib import Path

import pytest
from runner_helpers import Runner, port_open, run_local
from support.proc import listening_sockets, process_tree, running
from support.processes import free_port

from local_cluster.demo import port_owner

pytestmark = pytest.mark.slow

STARTUP_TIMEOUT = 180
# The keepers' grace periods: 10 s for the control plane, the pods' own (30 s) for the containers, and margins.
CLEANUP_TIMEOUT = 60
# The Training Operator's main.go has no flag for its webhook server's address, so it listens on every
# interface (docs/local-demo.md); every other socket of the demo must be on loopback.
EVERY_INTERFACE_WITHOUT_A_FLAG = ("training-operator",)


def own_sockets(pids: list[int]) -> set:
    """The listening sockets of `pids`, but those of the programs that cannot be told where to listen."""
    return {
        s
        for s in listening_sockets(pids)
        if not any(name in command_of(s[0]) for name in EVERY_INTERFACE_WITHOUT_A_FLAG)
    }


def command_of(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
    except OSError:
        return ""


def wait_gone(pids: list[int], timeout: float) -> list[int]:
    deadline = time.monotonic() + timeout
    while running(pids) and time.monotonic() < deadline:
        time.sleep(0.2)
    return running(pids)


def ready_runner(published: list, *extra, as_background_job: bool = False) -> tuple[Runner, int, int]:
    frontend_port, model_port = free_port(), free_port()
    runner = Runner(
        *published, "--frontend-port", frontend_port, "--model-port", model_port, *extra,
        as_background_job=as_background_job,
    )  # fmt: skip
    runner.wait_for("READY: open", STARTUP_TIMEOUT)
    return runner, frontend_port, model_port


def test_sighup_stops_everything_and_every_server_listens_on_loopback_only(published):
    runner, frontend_port, model_port = ready_runner(published)
    try:
        tree = process_tree(runner.proc.pid)
        everything = listening_sockets(tree)
        assert any("training-operator" in command_of(pid) for pid, _, _ in everything), everything
        sockets = own_sockets(tree)
        ports = {port for _, _, port in everything}
        assert {frontend_port, model_port} <= ports, sockets
        beyond = [s for s in sockets if not ipaddress.ip_address(s[1]).is_loopback]
        assert not beyond, f"listening beyond this machine (pid, address, port): {beyond}"

        runner.proc.send_signal(signal.SIGHUP)
        assert runner.proc.wait(timeout=60) == 130, runner.output()
    finally:
        runner.kill()
    assert "stopping every process" in runner.output()
    assert not running(tree[1:]), "a process outlived the runner"
    held = {port: port_owner(port) for port in ports if port_open(port)}
    assert not held, f"ports still held: {held}"


def test_after_a_sigkill_nothing_is_left_once_the_grace_period_is_over_and_the_next_start_works(published):
    runner, frontend_port, model_port = ready_runner(published)
    tree = process_tree(runner.proc.pid)
    ports = {port for _, _, port in listening_sockets(tree)}
    runner.kill()
    assert not wait_gone(tree, CLEANUP_TIMEOUT), "a process outlived the killed demo"
    held = {port: port_owner(port) for port in ports if port_open(port)}
    assert not held, f"ports still held: {held}"
    again = Runner(*published, "--frontend-port", frontend_port, "--model-port", model_port)
    try:
        again.wait_for("READY: open", STARTUP_TIMEOUT)
        again.proc.send_signal(signal.SIGINT)
        assert again.proc.wait(timeout=60) == 130, again.output()
    finally:
        again.kill()


def test_every_interface_only_when_asked_and_sigint_stops_a_demo_started_in_the_background(published):
    # A script's `make demo &` starts it with SIGINT ignored; SIGINT (Ctrl-C, kill -INT) must still stop it.
    runner, frontend_port, model_port = ready_runner(published, "--bind-address", "0.0.0.0", as_background_job=True)
    try:
        sockets = listening_sockets(process_tree(runner.proc.pid))
    finally:
        runner.proc.send_signal(signal.SIGINT)
        try:
            code = runner.proc.wait(timeout=60)
        finally:
            runner.kill()
    assert code == 130, runner.output()
    addresses = {port: address for _, address, port in sockets}
    assert addresses[frontend_port] == addresses[model_port] == "0.0.0.0", sockets


def test_a_bind_address_that_is_neither_loopback_nor_every_interface_is_refused(tmp_path):
    result = run_local("--demo-dir", tmp_path, "--bind-address", "192.0.2.1", timeout=60)
    assert result.returncode == 2, result.stdout
    assert "REFUSED DEMO_BIND_ADDRESS: '192.0.2.1' is not one of 127.0.0.1, 0.0.0.0" in result.stdout


def test_a_port_in_use_is_named_with_the_process_holding_it(tmp_path):
    with socket.socket() as holder:
        holder.bind(("127.0.0.1", 0))
        holder.listen()
        port = holder.getsockname()[1]
        result = run_local(
            "--demo-dir",
            tmp_path,
            "--frontend-port",
            port,
            "--model-port",
            free_port(),
            "--exit-when-ready",
            timeout=60,
        )
    assert result.returncode == 1, result.stdout
    assert f"port {port} is in use by pid {os.getpid()} (" in result.stdout
    assert "choose another port with FRONTEND_PORT=<port>" in result.stdout
