"""`kernelkeeper operator`: run the KernelSession operator (Lease-gated, HA-safe)."""

from __future__ import annotations

import argparse
import asyncio
import logging
import os
import shlex
import sys

from kernelkeeper.operator.settings import DEFAULT_LAUNCHER, LEASE_NAME, OperatorConfig


def _list(value: str | None) -> tuple[str, ...]:
    return tuple(v for v in (value or "").replace(",", " ").split() if v)


def add_parser(sub: argparse._SubParsersAction) -> None:
    env = os.environ.get
    p = sub.add_parser("operator", help="run the KernelSession operator")
    p.add_argument("--kubeconfig", default=env("KUBECONFIG"),
                   help="kubeconfig file (default $KUBECONFIG, else in-cluster)")
    p.add_argument("-n", "--namespace", action="append", dest="namespaces", default=None,
                   help="watch this namespace (repeatable; default all namespaces, or "
                        "$KERNELKEEPER_NAMESPACES)")
    p.add_argument("--kernelspec-path", action="append", default=None,
                   help="kernelspec directory (repeatable; also $KERNELKEEPER_KERNELSPEC_PATH)")
    p.add_argument("--launcher-command", default=env("KERNELKEEPER_LAUNCHER_COMMAND"),
                   help="kernel Pod command, shell-quoted "
                        f"(default: {' '.join(DEFAULT_LAUNCHER)})")
    p.add_argument("--default-image", default=None, help="image when a kernel spec names none")
    p.add_argument("--image-pull-policy", default="IfNotPresent")
    p.add_argument("--env-allow", default=env("KERNELKEEPER_ENV_ALLOW", ""),
                   help="spec.env names allowed besides KERNEL_* (comma separated)")
    p.add_argument("--idle-timeout", type=int, default=3600,
                   help="cull sessions idle this long, in seconds (0 = never; default 3600)")
    p.add_argument("--cull-interval", type=float, default=60.0)
    p.add_argument("--activity-staleness", type=float, default=60.0,
                   help="ignore gateway replicas whose heartbeat is older (seconds)")
    p.add_argument("--cull-busy", action="store_true", help="also cull busy kernels")
    p.add_argument("--no-curve", dest="curve", action="store_false",
                   default=os.environ.get("KERNELKEEPER_OPERATOR_CURVE", "1").lower()
                   not in ("0", "false", "no", "off"),
                   help="start kernel Pods without CurveZMQ encryption (also "
                        "KERNELKEEPER_OPERATOR_CURVE=0)")
    p.add_argument("--cull-connected", action="store_true",
                   help="also cull kernels with open connections")
    p.add_argument("--max-pod-restarts", type=int, default=5,
                   help="pod replacements before a session is Failed")
    p.add_argument("--launcher-max-crash-restarts", type=int, default=5)
    p.add_argument("--resync-interval", type=float, default=30.0)
    p.add_argument("--request-timeout", type=float, default=30.0)
    p.add_argument("--lease-name", default=LEASE_NAME)
    p.add_argument("--lease-namespace", default=env("POD_NAMESPACE", "default"))
    p.add_argument("--identity", default=None, help="leader-election identity (default POD_NAME "
                                                    "or host-pid-random)")
    p.add_argument("--lease-duration", type=float, default=15.0)
    p.add_argument("--renew-deadline", type=float, default=10.0)
    p.add_argument("--retry-period", type=float, default=2.0)
    p.add_argument("--health-port", type=int, default=8081,
                   help="port of /healthz, /readyz and /metrics (0 = none; default 8081)")
    p.add_argument("--health-ip", default="0.0.0.0",
                   help="address the health endpoint listens on (default 0.0.0.0)")
    p.add_argument("--loop-stall-timeout", type=float, default=30.0,
                   help="/healthz fails when the event loop is blocked this long (seconds)")
    p.add_argument("--round-deadline", type=float, default=None,
                   help="/healthz fails when a leader's resync or culling round has not "
                        "completed for this long (seconds; default: the round's interval "
                        "plus max(120, 10 x request timeout))")
    p.add_argument("--log-level", default="INFO")
    p.set_defaults(func=run)


def config_from_args(args: argparse.Namespace) -> OperatorConfig:
    kw: dict[str, object] = {
        "namespaces": tuple(args.namespaces or _list(os.environ.get("KERNELKEEPER_NAMESPACES"))),
        "kubeconfig": args.kubeconfig,
        "kernelspec_dirs": tuple(args.kernelspec_path or ()),
        "image_pull_policy": args.image_pull_policy,
        "env_allow": _list(args.env_allow),
        "idle_timeout": args.idle_timeout,
        "cull_interval": args.cull_interval,
        "activity_staleness": args.activity_staleness,
        "cull_busy": args.cull_busy,
        "curve": args.curve,
        "cull_connected": args.cull_connected,
        "max_pod_restarts": args.max_pod_restarts,
        "launcher_max_crash_restarts": args.launcher_max_crash_restarts,
        "resync_interval": args.resync_interval,
        "request_timeout": args.request_timeout,
        "lease_name": args.lease_name,
        "lease_namespace": args.lease_namespace,
        "lease_duration": args.lease_duration,
        "renew_deadline": args.renew_deadline,
        "retry_period": args.retry_period,
        "health_port": args.health_port,
        "health_ip": args.health_ip,
        "loop_stall_timeout": args.loop_stall_timeout,
        "round_deadline_override": args.round_deadline,
    }
    if args.launcher_command:
        kw["launcher_command"] = tuple(shlex.split(args.launcher_command))
    if args.default_image:
        kw["default_image"] = args.default_image
    if args.identity:
        kw["identity"] = args.identity
    return OperatorConfig(**kw)  # type: ignore[arg-type]


def run(args: argparse.Namespace) -> int:
    logging.basicConfig(level=args.log_level.upper(), stream=sys.stderr,
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    # kopf's per-event chatter is noise at INFO; warnings still come through.
    logging.getLogger("kopf").setLevel(max(logging.WARNING, logging.getLogger().level))
    try:
        cfg = config_from_args(args)
    except ValueError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    from kernelkeeper.operator import runner

    return asyncio.run(runner.run(cfg))
