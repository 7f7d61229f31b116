"""`kernelkeeper local ...`: bring the local environment up, report it, take it down."""

from __future__ import annotations

import argparse
import json
import signal
import sys
import time
from pathlib import Path

from kernelkeeper.local import build
from kernelkeeper.local.environment import EnvironmentError_, LocalEnvironment, default_state_dir
from kernelkeeper.local.realnode.images import ImageError
from kernelkeeper.local.realnode.network import NetworkError
from kernelkeeper.local.stages import stages_for


def add_parser(sub: argparse._SubParsersAction) -> None:
    local = sub.add_parser("local", help="run a local environment on a real control plane")
    local.add_argument("--state-dir", type=Path, default=None,
                       help="where state, logs and the kubeconfig go "
                            "(default $KERNELKEEPER_STATE_DIR or ~/.local/state/kernelkeeper/local)")
    lsub = local.add_subparsers(dest="local_cmd", required=True)
    up = lsub.add_parser("up", help="start the control plane and kernelkeeper's components")
    up.add_argument("--detach", action="store_true", help="leave it running in the background")
    up.add_argument("--control-plane-only", action="store_true",
                    help="start only etcd and the control plane (no node, on loopback)")
    up.add_argument("--deploy", choices=["chart", "processes"], default="chart",
                    help="chart: the Helm chart, operator and gateways as Pods of the local "
                         "image (default); processes: operator and gateways as host processes")
    up.add_argument("--replicas", type=int, default=None,
                    help="gateway replicas (default 2 with the chart, 1 as processes; two or "
                         "more processes get nginx in front)")
    up.add_argument("--availability-mode", default="active-active",
                    choices=["active-active", "active-passive", "replication", "standalone"],
                    help="gateway availability mode (Enterprise Gateway's names accepted)")
    status = lsub.add_parser("status", help="what is running, where, and its logs")
    status.add_argument("--json", action="store_true", help="machine-readable output")
    lsub.add_parser("down", help="stop exactly the processes `up` started")
    b = lsub.add_parser("build", help="build (or reuse) the control-plane binaries")
    b.add_argument("--helm", action="store_true", help="also build helm")
    b.add_argument("--node", action="store_true",
                   help="also build the real node (containerd, CNI plugins, CoreDNS, pause) "
                        "and its images")
    local.set_defaults(func=run)


def _print_usage(env: LocalEnvironment) -> None:
    st = env.status()
    print(f"export KUBECONFIG={st['kubeconfig']}")
    if st.get("gateway_url"):
        print(f"Gateway URL: {st['gateway_url']}")
        token = st.get("gateway_token")
        if token:
            print(f"Gateway token: {token}")
            print(f"  jupyter lab --gateway-url={st['gateway_url']} "
                  f"--GatewayClient.auth_token={token}")
        else:
            print(f"  jupyter lab --gateway-url={st['gateway_url']}")
    print(f"Logs: {env.logs}/")
    print("Stop: kernelkeeper local down" + (f" --state-dir {env.state_dir}"
                                              if env.state_dir != default_state_dir() else ""))


def run(args: argparse.Namespace) -> int:
    env = LocalEnvironment(args.state_dir or default_state_dir())
    try:
        if args.local_cmd == "build":
            code = build.main((["--helm"] if args.helm else []) + (["--node"] if args.node else []))
            if code == 0 and args.node:
                from kernelkeeper.local.realnode import images

                for name, archive in (images.ensure_kernelkeeper_image(), images.pause_image(),
                                      images.coredns_image()):
                    print(f"{name}\t{archive}")
            return code
        if args.local_cmd == "status":
            if not env.load():
                if args.json:
                    print(json.dumps({"state_dir": str(env.state_dir), "components": {}}))
                    return 1
                print(f"no local environment in {env.state_dir}", file=sys.stderr)
                return 1
            st = env.status()
            if args.json:
                print(json.dumps(st, indent=2))
            else:
                print(f"kubeconfig: {st['kubeconfig']}")
                print(f"api server: {st['server']}")
                if st.get("gateway_url"):
                    print(f"gateway:    {st['gateway_url']}")
                for name, c in st["components"].items():
                    state = "running" if c["running"] else "STOPPED"
                    print(f"  {name:<24} pid {c['pid']:<8} {state:<8} {c['ports']}  log {c['log']}")
            return 0 if all(c["running"] for c in st["components"].values()) else 3
        if args.local_cmd == "down":
            env.down()
            return 0
        # up
        # --control-plane-only is etcd and the control plane on loopback, no node at all.
        env.real_node = not args.control_plane_only
        env.up(stages=stages_for(args))
        _print_usage(env)
        if args.detach:
            return 0
        return _foreground(env)
    except (EnvironmentError_, build.BuildError, NetworkError, ImageError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1


def _foreground(env: LocalEnvironment) -> int:
    """Stay in the foreground until Ctrl-C or SIGTERM, then stop everything."""
    stopping = False

    def _stop(*_: object) -> None:
        nonlocal stopping
        stopping = True

    signal.signal(signal.SIGINT, _stop)
    signal.signal(signal.SIGTERM, _stop)
    print("Running in the foreground; Ctrl-C stops everything.", flush=True)
    reported: set[str] = set()
    while not stopping:
        for r in env.records:
            if r.name not in reported and not r.alive():
                reported.add(r.name)
                print(f"warning: {r.name} exited; see {r.log}", file=sys.stderr, flush=True)
        time.sleep(0.5)
    env.down()
    return 0
