"""The baseline: the same measurements straight over ZMQ with jupyter_client, no server between.

Replies are awaited with a zmq.Poller on the shell and iopub sockets (no polling interval), so
the figure is the kernel's own round trip plus the client's message handling.
"""

from __future__ import annotations

import os
import tempfile
import time
from pathlib import Path
from typing import Any

import zmq
from jupyter_client import KernelManager
from jupyter_client.kernelspec import KernelSpecManager

from bench.kernels import KERNEL_NAME, write_kernelspec
from bench.protocol import (
    STREAM_BYTES,
    STREAM_CODE,
    BenchError,
    LatencyResult,
    ThroughputResult,
    execute_content,
)
from bench.wsclient import ExecOutcome


class DirectKernel:
    """A local ipykernel from the bench kernelspec plus a blocking client on its sockets."""

    def __init__(self, workdir: Path | None = None, python: str | None = None) -> None:
        self._tmp = tempfile.TemporaryDirectory(prefix="kk-bench-direct-")
        root = Path(self._tmp.name)
        write_kernelspec(root, python)
        ksm = KernelSpecManager(kernel_dirs=[str(root / "kernels")])
        self.km = KernelManager(kernel_name=KERNEL_NAME, kernel_spec_manager=ksm,
                                connection_file=str(root / "kernel.json"))
        self.workdir = workdir or root
        self.client: Any = None

    def start(self, timeout: float = 60.0) -> None:
        self.km.start_kernel(cwd=str(self.workdir), env={**os.environ})
        self.client = self.km.client()
        self.client.start_channels()
        self.client.wait_for_ready(timeout=timeout)

    def stop(self) -> None:
        if self.client is not None:
            self.client.stop_channels()
        if self.km.has_kernel:
            self.km.shutdown_kernel(now=True)
        self._tmp.cleanup()

    def __enter__(self) -> DirectKernel:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def kernel_info(self) -> dict[str, Any]:
        return self.client.kernel_info(reply=True, timeout=30)["content"]

    def execute(self, code: str, timeout: float = 30.0, *,
                collect_text: bool = False) -> ExecOutcome:
        """Returns once execute_reply and status idle have arrived."""
        session = self.client.session
        shell = self.client.shell_channel.socket
        iopub = self.client.iopub_channel.socket
        poller = zmq.Poller()
        poller.register(shell, zmq.POLLIN)
        poller.register(iopub, zmq.POLLIN)
        msg = session.msg("execute_request", execute_content(code))
        msg_id = msg["header"]["msg_id"]
        t0 = time.perf_counter()
        deadline = time.monotonic() + timeout
        session.send(shell, msg)
        reply: dict[str, Any] | None = None
        idle = False
        stream_bytes = messages = 0
        chunks: list[str] = []
        while reply is None or not idle:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise BenchError(f"timed out ({stream_bytes} stream bytes)",
                                 stream_bytes=stream_bytes, messages=messages)
            for sock, _ in poller.poll(remaining * 1000):
                while True:
                    try:
                        _, m = session.recv(sock, mode=zmq.NOBLOCK)
                    except zmq.Again:
                        break
                    if m is None:
                        break
                    if m["parent_header"].get("msg_id") != msg_id:
                        continue
                    messages += 1
                    mtype = m["header"]["msg_type"]
                    if mtype == "execute_reply":
                        reply = m
                    elif mtype == "status" and m["content"]["execution_state"] == "idle":
                        idle = True
                    elif mtype == "stream":
                        stream_bytes += len(m["content"]["text"].encode())
                        if collect_text:
                            chunks.append(m["content"]["text"])
        return ExecOutcome(time.perf_counter() - t0, reply, stream_bytes, messages, 0,
                           text="".join(chunks))


def _check(reply: dict[str, Any]) -> None:
    if reply["content"].get("status") != "ok":
        raise BenchError(f"execute_reply status {reply['content'].get('status')}: "
                         f"{reply['content'].get('ename')} {reply['content'].get('evalue')}")


def measure_latency(kernel: DirectKernel, runs: int, warmup: int = 10) -> LatencyResult:
    for _ in range(warmup):
        _check(kernel.execute("pass").reply)
    samples = []
    for _ in range(runs):
        out = kernel.execute("pass")
        _check(out.reply)
        samples.append(out.seconds * 1000)
    return LatencyResult(samples)


def measure_throughput(kernel: DirectKernel, timeout: float = 300.0) -> ThroughputResult:
    t0 = time.perf_counter()
    try:
        out = kernel.execute(STREAM_CODE, timeout)
        _check(out.reply)
    except BenchError as exc:
        return ThroughputResult(STREAM_BYTES, exc.stream_bytes, time.perf_counter() - t0,
                                exc.messages, error=str(exc))
    return ThroughputResult(STREAM_BYTES, out.stream_bytes, out.seconds, out.messages)


def measure_start(python: str | None = None, timeout: float = 60.0) -> float:
    """Seconds from start_kernel until the first `pass` has its reply and idle."""
    t0 = time.perf_counter()
    kernel = DirectKernel(python=python)
    try:
        kernel.km.start_kernel(cwd=str(kernel.workdir), env={**os.environ})
        kernel.client = kernel.km.client()
        kernel.client.start_channels()
        # Wait for kernel_info first: an execute sent before iopub's subscription is live
        # could lose its status messages (ZMQ's slow joiner).
        kernel.client.wait_for_ready(timeout=timeout)
        _check(kernel.execute("pass", timeout).reply)
        return time.perf_counter() - t0
    finally:
        kernel.stop()


if __name__ == "__main__":
    import sys

    n = int(sys.argv[1]) if len(sys.argv) > 1 else 50
    with DirectKernel() as k:
        print("kernel", k.kernel_info().get("implementation_version"))
        print("latency", measure_latency(k, n).summary())
        print("throughput", measure_throughput(k).to_json())
    print("start", measure_start())
