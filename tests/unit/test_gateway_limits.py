"""A gateway replica must hold far more kernel sockets than ZMQ's default of 1023."""

from __future__ import annotations

import resource

import zmq

from kernelkeeper.gateway import limits


def test_soft_open_files_limit_is_raised_to_the_hard_limit():
    got = limits.raise_open_files_limit()
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    assert got == soft
    assert soft == hard or hard == resource.RLIM_INFINITY


def test_kernel_context_opens_more_sockets_than_the_zmq_default():
    # 3 sockets per hydrated kernel, 3 more per websocket client: 200 kernels need > 1023.
    ctx = limits.kernel_context(limits.raise_open_files_limit())
    sockets = []
    try:
        for _ in range(1200):
            sockets.append(ctx.socket(zmq.DEALER))
    finally:
        for s in sockets:
            s.close(linger=0)
        ctx.term()
    assert len(sockets) == 1200
