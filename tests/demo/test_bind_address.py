"""The local runner's bind-address shim in a real Python process: what a bind becomes, and what is left alone."""

import json
import subprocess
import sys

import pytest

from local_cluster.node.kubelet import BIND_ADDRESS_SHIM

BINDS = """
import json, socket
result = []
for family, host in [(socket.AF_INET, "0.0.0.0"), (socket.AF_INET, ""), (socket.AF_INET, "127.0.0.1"),
                     (socket.AF_INET6, "::"), (socket.AF_INET6, "::1")]:
    with socket.socket(family) as s:
        s.bind((host, 0))
        result.append(s.getsockname()[0])
print(json.dumps(result))
"""


def bound_addresses(tmp_path, address: str | None) -> list[str]:
    env = {"PYTHONPATH": f"{BIND_ADDRESS_SHIM}:{tmp_path}"}
    if address is not None:
        env["DEMO_BIND_ADDRESS"] = address
    result = subprocess.run(
        [sys.executable, "-c", BINDS], env=env, capture_output=True, text=True, timeout=30, check=True
    )
    return result.stdout.splitlines()


@pytest.mark.parametrize(
    ("address", "expected"),
    [
        ("127.0.0.1", ["127.0.0.1", "127.0.0.1", "127.0.0.1", "::1", "::1"]),
        ("0.0.0.0", ["0.0.0.0", "0.0.0.0", "0.0.0.0", "::", "::"]),
        (None, ["0.0.0.0", "0.0.0.0", "127.0.0.1", "::", "::1"]),
    ],
    ids=["loopback", "every interface", "unset"],
)
def test_binds_to_the_wildcard_or_loopback_become_the_chosen_address(tmp_path, address, expected):
    assert json.loads(bound_addresses(tmp_path, address)[-1]) == expected


def test_a_sitecustomize_the_shim_hides_still_runs(tmp_path):
    (tmp_path / "sitecustomize.py").write_text("print('the hidden one ran')\n")
    assert bound_addresses(tmp_path, "127.0.0.1")[0] == "the hidden one ran"
