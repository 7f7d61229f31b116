"""Process limits sized for many kernels per replica.

Every hydrated kernel holds 3 ZMQ sockets (iopub, control, shell), and every websocket client
session 3 more for as long as its session may come back. ZMQ's default of 1023 sockets per
context ran out at about 170 idle kernels on one replica (the websocket was then reset), and
the common soft limit of 1024 open files is lower still.
"""

from __future__ import annotations

import logging
import resource

import zmq
import zmq.asyncio

log = logging.getLogger(__name__)


def raise_open_files_limit() -> int:
    """Raise the soft RLIMIT_NOFILE to the hard limit, as Go programs do at start; return it."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    target = hard if hard != resource.RLIM_INFINITY else max(soft, 1 << 20)
    if target > soft:
        try:
            resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))
            soft = target
        except (ValueError, OSError) as exc:
            log.warning("could not raise the open files limit from %d: %s", soft, exc)
    return soft


def kernel_context(open_files: int) -> zmq.asyncio.Context:
    """One ZMQ context for every kernel connection, allowed as many sockets as files allow."""
    ctx = zmq.asyncio.Context()
    limit = max(1023, min(int(ctx.get(zmq.SOCKET_LIMIT)), open_files))
    ctx.set(zmq.MAX_SOCKETS, limit)
    log.info("ZMQ sockets allowed: %d (open files: %d)", limit, open_files)
    return ctx
