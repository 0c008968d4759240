"""Local run only: a socket bound to every interface, or to loopback, binds DEMO_BIND_ADDRESS instead.

The local runner puts this folder first on the PYTHONPATH of every process it starts and
sets DEMO_BIND_ADDRESS (127.0.0.1 unless the user chose 0.0.0.0). Some servers write their
address in code, where no argument reaches it: Seldon's microservice binds 0.0.0.0 for its
REST and metrics servers. On a cluster that is right (the pod's network is the boundary);
on a laptop it would serve the model to the whole network. So here a bind to the IPv4
wildcard or loopback address becomes DEMO_BIND_ADDRESS, and one to the IPv6 wildcard or
loopback becomes ::1 (or :: when the user chose every interface). Other addresses, Unix
sockets and binds made in C (torch's TCPStore) are left alone. A sitecustomize this one
hides (Debian and Ubuntu ship one) still runs.
"""

import importlib.machinery
import importlib.util
import os
import socket
import sys

_ADDRESS = os.environ.get("DEMO_BIND_ADDRESS")
_IPV4_REPLACED = ("", "0.0.0.0", "127.0.0.1")
_IPV6_REPLACED = ("", "::", "::1")


def _local_address(family: int, address):
    if not isinstance(address, tuple) or not address or not isinstance(address[0], str):
        return address
    if family == socket.AF_INET and address[0] in _IPV4_REPLACED:
        return (_ADDRESS, *address[1:])
    if family == socket.AF_INET6 and address[0] in _IPV6_REPLACED:
        return ("::" if _ADDRESS == "0.0.0.0" else "::1", *address[1:])
    return address


if _ADDRESS:
    _bind = socket.socket.bind

    def _bind_locally(self, address):
        return _bind(self, _local_address(self.family, address))

    socket.socket.bind = _bind_locally


def _run_the_hidden_sitecustomize() -> None:
    here = os.path.dirname(os.path.abspath(__file__))
    path = [p for p in sys.path if os.path.abspath(p or os.curdir) != here]
    spec = importlib.machinery.PathFinder.find_spec("sitecustomize", path)
    if spec is not None and spec.loader is not None:
        spec.loader.exec_module(importlib.util.module_from_spec(spec))


_run_the_hidden_sitecustomize()
