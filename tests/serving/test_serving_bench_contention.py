"""`make bench-serve` reports, next to each server's CPU, its run-queue wait and the machine's CPU pressure."""

import subprocess
import sys
import time

import pytest
from support.processes import REPO

sys.path.insert(0, str(REPO / "scripts"))
import bench_serve

# The kernel's format (Documentation/accounting/psi.rst); totals are in microseconds.
PRESSURE = """some avg10=84.77 avg60=75.72 avg300=58.81 total=5553562906
full avg10=0.00 avg60=0.00 avg300=0.00 total=17560635
"""
# A process group of three processes that spin for BUSY_S seconds on one core (the affinity is inherited).
BUSY_S = 0.6
SPIN = f"import time\nend = time.monotonic() + {BUSY_S}\nwhile time.monotonic() < end: pass\n"
GROUP = f"""import os, subprocess, sys
os.sched_setaffinity(0, {{min(os.sched_getaffinity(0))}})
spinners = [subprocess.Popen([sys.executable, "-c", {SPIN!r}]) for _ in range(3)]
print(" ".join(str(s.pid) for s in spinners), flush=True)
sys.exit(max(s.wait() for s in spinners))
"""


def test_cpu_pressure_is_the_some_total_in_seconds():
    assert bench_serve.cpu_pressure_seconds(PRESSURE) == pytest.approx(5553.562906)


def test_cpu_pressure_without_a_some_line_is_zero():
    assert bench_serve.cpu_pressure_seconds("full avg10=0.00 avg60=0.00 avg300=0.00 total=1\n") == 0.0


def test_run_queue_wait_of_a_group_that_shares_one_core():
    leader = subprocess.Popen([sys.executable, "-c", GROUP], stdout=subprocess.PIPE, text=True, start_new_session=True)
    try:
        spinners = {int(pid) for pid in leader.stdout.readline().split()}
        time.sleep(BUSY_S / 2)
        members = {int(p.name) for p in bench_serve.group_processes(leader.pid)}
        wait = bench_serve.group_run_queue_wait_seconds(leader.pid)
        cpu = bench_serve.group_cpu_seconds(leader.pid)
    finally:
        assert leader.wait(30) == 0
    assert members == {leader.pid, *spinners}
    # While one spinner runs the other two wait: together they wait about twice as long as they run.
    assert cpu > 0
    assert wait > 1.5 * cpu
