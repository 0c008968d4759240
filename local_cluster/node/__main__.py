"""`python -m local_cluster.node`: run the local node (and the Seldon stand-in) against a kubeconfig's cluster.

SIGTERM, SIGINT or SIGHUP stop every container (SIGTERM, then SIGKILL after its grace
period) and then the node; the containers also stop on their own if the node is killed.
"""

from __future__ import annotations

import argparse
import signal
import sys
import threading
from pathlib import Path

from local_cluster.api import Api
from local_cluster.node.kubelet import BACKOFF_S, Node
from local_cluster.node.supervisor import Console
from local_cluster.seldon_standin import SeldonStandIn


class Tee:
    """Writes to the console and to the node's own log file (`<state-dir>/node.log`)."""

    def __init__(self, *streams):
        self.streams = streams

    def write(self, text: str) -> None:
        for stream in self.streams:
            stream.write(text)

    def flush(self) -> None:
        for stream in self.streams:
            stream.flush()


def publish_flag(text: str) -> tuple[str, int]:
    """`component=port`, e.g. `frontend=8080`."""
    component, _, port = text.partition("=")
    if not component or not port.isdigit():
        raise argparse.ArgumentTypeError(f"expected COMPONENT=PORT (e.g. frontend=8080), got {text!r}")
    return component, int(port)


def main(argv: list[str] | None = None) -> int:
    """Parse the flags and run the node until a stop signal."""
    parser = argparse.ArgumentParser(prog="python -m local_cluster.node", description=__doc__.split("\n\n")[0])
    parser.add_argument("--kubeconfig", type=Path, required=True, help="the cluster to join")
    parser.add_argument("--state-dir", type=Path, required=True, help="the node's emptyDirs, logs and records")
    parser.add_argument("--volumes-dir", type=Path, required=True, help="where claims get their folders")
    parser.add_argument(
        "--publish",
        type=publish_flag,
        action="append",
        default=[],
        help="COMPONENT=PORT: the local port of that component's first container port (repeatable)",
    )
    parser.add_argument("--bind-address", default="127.0.0.1", help="the address servers listen on")
    parser.add_argument(
        "--backoff-seconds",
        type=float,
        default=BACKOFF_S,
        help=f"the first crash-loop back-off (default: {BACKOFF_S:.0f}, the kubelet's)",
    )
    parser.add_argument(
        "--bind-namespace",
        action="append",
        default=[],
        help="bind only the unscheduled pods of this namespace (repeatable; default: every namespace)",
    )
    parser.add_argument("--no-seldon-standin", action="store_true", help="do not reconcile SeldonDeployments")
    args = parser.parse_args(argv)

    args.state_dir.mkdir(parents=True, exist_ok=True)
    console = Console(Tee(sys.stdout, (args.state_dir / "node.log").open("a")), name="node")
    api = Api(args.kubeconfig)
    node = Node(
        api,
        args.state_dir.resolve(),
        args.volumes_dir.resolve(),
        console,
        publish=dict(args.publish),
        bind_address=args.bind_address,
        backoff_s=args.backoff_seconds,
        bind_namespaces=tuple(args.bind_namespace),
    )
    standin = None if args.no_seldon_standin else SeldonStandIn(api, console)

    def on_signal(signum, frame) -> None:
        node.stop()
        if standin:
            standin.stop()

    for signum in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
        signal.signal(signum, on_signal)
    if standin:
        threading.Thread(target=standin.loop, daemon=True, name="seldon stand-in").start()
    console.say(f"node {node.name}: running pods as processes (state in {node.state_dir})")
    node.loop()
    console.say(f"node {node.name}: stopped")
    return 0


if __name__ == "__main__":
    sys.exit(main())
