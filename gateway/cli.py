"""`kernelkeeper gateway`: run one gateway replica.

Flags cover the everyday options; every option (flags included) can also be set through
the environment (`--help-env` lists the variables) or with --set <option>=<value>.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import sys

from traitlets.config import Config

from kernelkeeper.gateway.config import GatewayConfig, parse

_FLAGS = {"ip": "ip", "port": "port", "base_url": "base_url", "namespace": "namespace",
          "kubeconfig": "kubeconfig", "replica_id": "replica_id"}


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("gateway", help="run a gateway replica (Jupyter kernel gateway API)")
    p.add_argument("--ip", help="address to listen on (KERNELKEEPER_GATEWAY_IP)")
    p.add_argument("--port", type=int, help="port (KERNELKEEPER_GATEWAY_PORT)")
    p.add_argument("--base-url", dest="base_url", help="path prefix (KERNELKEEPER_GATEWAY_BASE_URL)")
    p.add_argument("--namespace", help="KernelSession namespace (KERNELKEEPER_GATEWAY_NAMESPACE)")
    p.add_argument("--kubeconfig", help="kubeconfig file (KERNELKEEPER_GATEWAY_KUBECONFIG)")
    p.add_argument("--replica-id", dest="replica_id",
                   help="name in status.activity.replicas (KERNELKEEPER_GATEWAY_REPLICA_ID)")
    p.add_argument("--log-level", default="INFO")
    p.add_argument("--help-env", action="store_true", help="list every option and its env vars")
    p.add_argument("--set", dest="overrides", action="append", metavar="OPTION=VALUE",
                   help="any other option, e.g. --set buffer_timeout=60 (repeatable)")
    p.set_defaults(func=run)


def build_config(args: argparse.Namespace) -> GatewayConfig:
    cfg = Config()
    for attr, trait in _FLAGS.items():
        value = getattr(args, attr, None)
        if value is not None:
            cfg.GatewayConfig[trait] = value
    for item in args.overrides or []:
        name, _, value = item.partition("=")
        option = GatewayConfig.class_traits(config=True).get(name)
        if option is None:
            raise SystemExit(f"unknown option {name!r}")
        cfg.GatewayConfig[name] = parse(option, value)
    return GatewayConfig(config=cfg)


def run(args: argparse.Namespace) -> int:
    if args.help_env:
        for name, env, dflt, help_text in GatewayConfig.env_table():
            print(f"{name:<24} {env}\n{'':<24} default {dflt}; {help_text}")
        return 0
    logging.basicConfig(level=getattr(logging, args.log_level.upper(), logging.INFO),
                        stream=sys.stderr,
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    logging.getLogger("tornado.access").setLevel(logging.WARNING)
    cfg = build_config(args)
    from kernelkeeper.gateway.app import serve

    asyncio.run(serve(cfg))
    return 0
