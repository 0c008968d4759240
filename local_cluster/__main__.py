"""`python -m local_cluster build|up|down|demo`: the commands behind `make cluster-build|cluster-up|cluster-down|demo`.

`demo` takes its own flags (`python -m local_cluster demo --help`).
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

from local_cluster import build
from local_cluster.control_plane import ClusterError, ControlPlane

REPO = Path(__file__).resolve().parent.parent


def main(argv: list[str] | None = None) -> int:
    """Parse the command line and run one command."""
    argv = sys.argv[1:] if argv is None else argv
    if argv[:1] == ["demo"]:
        from local_cluster.demo_cli import main as demo_main

        return demo_main(argv[1:])
    parser = argparse.ArgumentParser(prog="python -m local_cluster", description=__doc__)
    parser.add_argument("command", choices=["build", "up", "down"], help="what to do")
    parser.add_argument(
        "--state-dir",
        type=Path,
        default=REPO / ".cluster",
        help="where the cluster keeps its kubeconfig, logs and etcd data (default: <repo>/.cluster)",
    )
    parser.add_argument(
        "--crds-dir",
        type=Path,
        default=Path(os.environ.get("CRDS_DIR", REPO.parent / "shared" / "crds")),
        help="the pinned upstream CRDs to install (default: $CRDS_DIR, else ../shared/crds)",
    )
    args = parser.parse_args(argv)
    if args.command == "build":
        return build.main()
    cluster = ControlPlane(args.state_dir, args.crds_dir)
    try:
        if args.command == "up":
            cluster.up()
            print(f"export KUBECONFIG={cluster.kubeconfig}")
        else:
            cluster.down()
    except (ClusterError, build.BuildError) as err:
        print(f"local-cluster: {err}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
