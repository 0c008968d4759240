"""Free TCP ports for servers, chosen outside the kernel's ephemeral range.

A port from `bind(("127.0.0.1", 0))` comes from the ephemeral range, where the kernel
also takes the source port of every outgoing connection: between choosing such a port
and the server binding it, a client's connection may take it ("address already in use").
Ports below that range are given out only on request.
"""

from __future__ import annotations

import random
import socket
from pathlib import Path

RANGE_FILE = Path("/proc/sys/net/ipv4/ip_local_port_range")
LOWEST = 20000
# Without /proc (macOS), the IANA ephemeral range starts here.
DEFAULT_EPHEMERAL_START = 49152


def ephemeral_start() -> int:
    """The first port of the kernel's ephemeral range."""
    try:
        return int(RANGE_FILE.read_text().split()[0])
    except (OSError, ValueError, IndexError):
        return DEFAULT_EPHEMERAL_START


def free_ports(count: int, host: str = "127.0.0.1") -> list[int]:
    """`count` different ports that can be bound on `host` right now, none in the ephemeral range."""
    top = ephemeral_start() - 1
    held: list[socket.socket] = []
    try:
        for port in random.sample(range(LOWEST, top), min(top - LOWEST, 50 * count + 100)):
            s = socket.socket()
            try:
                s.bind((host, port))
            except OSError:
                s.close()
                continue
            held.append(s)
            if len(held) == count:
                return [h.getsockname()[1] for h in held]
        raise OSError(f"no {count} free ports between {LOWEST} and {top}")
    finally:
        for s in held:
            s.close()


def free_port(host: str = "127.0.0.1") -> int:
    """One port that can be bound on `host` right now, outside the ephemeral range."""
    return free_ports(1, host)[0]
