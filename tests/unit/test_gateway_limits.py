"""A gateway replica must hold far more kernel sockets than ZMQ's default of 1023.

Open-file limits belong to the whole process, so every case that changes one runs in a child
Python process of its own; pytest's own limits are checked to be unchanged after each test.
"""

from __future__ import annotations

import json
import resource
import subprocess
import sys
import textwrap
from collections.abc import Iterator

import pytest
import zmq

from kernelkeeper.gateway import limits

# Sockets one replica must be able to open: 3 per hydrated kernel and 3 per websocket client,
# so 200 kernels with one client each need 1200, past ZMQ's default of 1023 per context.
SOCKETS = 1200
LOW_SOFT = 256  # a soft limit well below anything raise_open_files_limit may leave in place


@pytest.fixture(autouse=True)
def _pytest_limits_unchanged() -> Iterator[None]:
    before = resource.getrlimit(resource.RLIMIT_NOFILE)
    yield
    assert resource.getrlimit(resource.RLIMIT_NOFILE) == before


def _in_child(code: str) -> dict:
    """Run `code` in a fresh interpreter; it prints one JSON object as its last line."""
    out = subprocess.run([sys.executable, "-c", textwrap.dedent(code)], capture_output=True,
                         text=True, timeout=120, check=False)
    assert out.returncode == 0, out.stderr
    result: dict = json.loads(out.stdout.splitlines()[-1])
    return result


def test_soft_open_files_limit_is_raised_to_a_finite_hard_limit():
    hard = resource.getrlimit(resource.RLIMIT_NOFILE)[1]
    if hard == resource.RLIM_INFINITY or hard <= LOW_SOFT:
        pytest.skip(f"needs a finite hard RLIMIT_NOFILE above {LOW_SOFT} (it is {hard})")
    got = _in_child(f"""
        import json, resource
        from kernelkeeper.gateway import limits
        resource.setrlimit(resource.RLIMIT_NOFILE, ({LOW_SOFT}, {hard}))
        returned = limits.raise_open_files_limit()
        soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
        print(json.dumps({{"returned": returned, "soft": soft, "hard": hard}}))
    """)
    assert got == {"returned": hard, "soft": hard, "hard": hard}


def test_infinite_hard_limit_raises_the_soft_limit_to_a_large_finite_one():
    got = _in_child(f"""
        import json, resource
        try:
            resource.setrlimit(resource.RLIMIT_NOFILE, ({LOW_SOFT}, resource.RLIM_INFINITY))
        except (ValueError, OSError) as exc:
            print(json.dumps({{"cannot": str(exc)}}))
            raise SystemExit(0)
        from kernelkeeper.gateway import limits
        returned = limits.raise_open_files_limit()
        soft, _ = resource.getrlimit(resource.RLIMIT_NOFILE)
        print(json.dumps({{"returned": returned, "soft": soft}}))
    """)
    if "cannot" in got:
        pytest.skip("this platform cannot set an infinite hard RLIMIT_NOFILE (Linux caps it at "
                    f"fs.nr_open): {got['cannot']}")
    # The target is 2**20; where the platform refuses that, the old soft limit stays (logged).
    assert got["returned"] == got["soft"]
    assert got["soft"] in (1 << 20, LOW_SOFT)


def test_socket_limit_follows_open_files_above_zmq_default():
    # Setting a context's socket limit changes no process limit: no child needed.
    for open_files, expected in ((100, 1023), (1023, 1023), (2000, 2000), (SOCKETS, SOCKETS)):
        ctx = limits.kernel_context(open_files)
        try:
            assert ctx.get(zmq.MAX_SOCKETS) == expected, open_files
        finally:
            ctx.term()
    ctx = limits.kernel_context(1 << 30)
    try:
        assert ctx.get(zmq.MAX_SOCKETS) == ctx.get(zmq.SOCKET_LIMIT), "capped by libzmq's own"
    finally:
        ctx.term()


def test_kernel_context_opens_more_sockets_than_the_zmq_default():
    got = _in_child(f"""
        import errno, json
        import zmq
        from kernelkeeper.gateway import limits

        def opened(ctx):
            sockets = []
            try:
                while len(sockets) < {SOCKETS}:
                    sockets.append(ctx.socket(zmq.DEALER))
            except zmq.ZMQError as exc:
                if exc.errno != errno.EMFILE:
                    raise
            finally:
                for s in sockets:
                    s.close(linger=0)
                ctx.term()
            return len(sockets)

        open_files = limits.raise_open_files_limit()
        print(json.dumps({{"open_files": open_files, "plain": opened(zmq.Context()),
                           "kernel": opened(limits.kernel_context(open_files))}}))
    """)
    if got["open_files"] < SOCKETS + 100:
        pytest.skip(f"the hard open files limit ({got['open_files']}) is below the "
                    f"{SOCKETS} sockets (plus headroom) this case needs")
    # The control: a plain context stops at ZMQ's default, so the case can fail.
    assert got["plain"] == 1023
    assert got["kernel"] == SOCKETS
