"""`kernelkeeper node`: run the process node (a kubelet whose containers are host processes)."""

from __future__ import annotations

import argparse
import asyncio
import logging
import os
from pathlib import Path

from kernelkeeper.local.node.config import DEFAULT_NODE_NAME, NodeConfig, default_state_dir
from kernelkeeper.local.node.ipam import DEFAULT_POD_CIDR


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("node", help="run a process node: a kubelet whose containers are host "
                                    "processes with loopback pod IPs")
    p.add_argument("--kubeconfig", default=os.environ.get("KUBECONFIG"),
                   help="kubeconfig of the cluster (default $KUBECONFIG or ~/.kube/config)")
    p.add_argument("--name", default=DEFAULT_NODE_NAME, help=f"Node name (default {DEFAULT_NODE_NAME})")
    p.add_argument("--state-dir", type=Path, default=None,
                   help="pod records, volumes and logs (default $KERNELKEEPER_NODE_STATE_DIR or "
                        "~/.local/state/kernelkeeper/node/<name>)")
    p.add_argument("--pod-cidr", default=DEFAULT_POD_CIDR,
                   help=f"loopback range for pod IPs (default {DEFAULT_POD_CIDR})")
    p.add_argument("--ipam-dir", type=Path, default=None,
                   help="host-wide directory of pod IP claims (default $KERNELKEEPER_IPAM_DIR "
                        "or <tmp>/kernelkeeper-ipam)")
    p.add_argument("--stop-pods-on-exit", action="store_true",
                   help="stop pod processes when the node exits (default: leave them running "
                        "for the next node process to adopt)")
    p.add_argument("--max-pods", type=int, default=1000, help="advertised pod capacity")
    p.add_argument("--cpu", default="1000", help="advertised cpu capacity (not enforced)")
    p.add_argument("--memory", default="1Ti", help="advertised memory capacity (not enforced)")
    p.add_argument("--backoff-initial", type=float, default=1.0,
                   help="first crash-loop back-off in seconds (doubles up to --backoff-max)")
    p.add_argument("--backoff-max", type=float, default=10.0, help="back-off cap in seconds")
    p.add_argument("--lease-duration", type=int, default=40, help="node Lease duration (s)")
    p.add_argument("--kubelet-port", type=int, default=0,
                   help="port of the `kubectl logs` endpoint on the host IP (default: a free one)")
    p.add_argument("--log-level", default="INFO")
    p.set_defaults(func=run)


def config_from_args(args: argparse.Namespace) -> NodeConfig:
    kubeconfig = args.kubeconfig or str(Path.home() / ".kube" / "config")
    return NodeConfig(
        kubeconfig=kubeconfig, name=args.name,
        state_dir=args.state_dir or default_state_dir(args.name),
        pod_cidr=args.pod_cidr, ipam_dir=args.ipam_dir,
        stop_pods_on_exit=args.stop_pods_on_exit, max_pods=args.max_pods, cpu=args.cpu,
        memory=args.memory, backoff_initial=args.backoff_initial, backoff_max=args.backoff_max,
        lease_duration=args.lease_duration, kubelet_port=args.kubelet_port,
    )


def run(args: argparse.Namespace) -> int:
    logging.basicConfig(level=args.log_level.upper(),
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    from kernelkeeper.local.node.kubelet import serve

    return asyncio.run(serve(config_from_args(args)))
