"""The baseline: straight to a kernel over ZMQ with jupyter_client, no server between.

`ZmqClient` is the measuring loop's client for any kernel whose connection info is known: a
local ipykernel started by `DirectKernel`, or a kernelkeeper kernel pod (bench/kk.py). Replies are
awaited with a zmq.Poller on the shell and iopub sockets (no polling interval), so the figure is
the kernel's own round trip plus the client's message handling.
"""

from __future__ import annotations

import os
import tempfile
import time
from pathlib import Path
from typing import Any

import zmq
from jupyter_client import BlockingKernelClient, KernelManager
from jupyter_client.connect import KernelConnectionInfo
from jupyter_client.kernelspec import KernelSpecManager

from bench import measure
from bench.kernels import KERNEL_NAME, write_kernelspec
from bench.protocol import BenchError, ExecOutcome, execute_content


class ZmqClient:
    """A blocking jupyter_client on a kernel's shell and iopub sockets (a `KernelClient`)."""

    def __init__(self, connection_info: KernelConnectionInfo) -> None:
        self.connection_info = connection_info
        self.client: BlockingKernelClient | None = None

    def connect(self, timeout: float = measure.EXECUTE_TIMEOUT) -> None:
        client = BlockingKernelClient()
        client.load_connection_info(self.connection_info)
        client.start_channels()
        try:
            # kernel_info first: an execute sent before iopub's subscription is live could
            # lose its status messages (ZMQ's slow joiner).
            client.wait_for_ready(timeout=timeout)
        except RuntimeError as exc:
            client.stop_channels()
            raise BenchError(f"kernel at {self.connection_info.get('ip')} not ready: "
                             f"{exc}") from exc
        self.client = client

    def close(self) -> None:
        if self.client is not None:
            self.client.stop_channels()
            self.client = None

    def execute(self, code: str, timeout: float = measure.EXECUTE_TIMEOUT, *,
                collect_text: bool = False) -> ExecOutcome:
        if self.client is None:
            raise BenchError("ZMQ client not connected")
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
            for sock, _ in poller.poll(int(remaining * 1000) + 1):
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
        return ExecOutcome(time.perf_counter() - t0, reply, stream_bytes, messages,
                           text="".join(chunks))


class DirectKernel:
    """A local ipykernel from the bench kernelspec, with no server in front of it."""

    def __init__(self, python: str | None = None) -> None:
        self._tmp = tempfile.TemporaryDirectory(prefix="kk-bench-direct-")
        root = Path(self._tmp.name)
        write_kernelspec(root, python)
        ksm = KernelSpecManager(kernel_dirs=[str(root / "kernels")])
        self.km = KernelManager(kernel_name=KERNEL_NAME, kernel_spec_manager=ksm,
                                connection_file=str(root / "kernel.json"))
        self.workdir = root

    def start(self) -> None:
        self.km.start_kernel(cwd=str(self.workdir), env={**os.environ})

    def client(self) -> ZmqClient:
        """A new, not yet connected client for this kernel."""
        return ZmqClient(self.km.get_connection_info())

    def stop(self) -> None:
        if self.km.has_kernel:
            self.km.shutdown_kernel(now=True)
        self._tmp.cleanup()


def measure_start(python: str | None = None, timeout: float = 60.0) -> float:
    """Seconds from start_kernel until the first `pass` has its reply and idle."""
    t0 = time.perf_counter()
    kernel = DirectKernel(python=python)
    try:
        kernel.start()
        measure.first_answer(kernel.client(), timeout)
        return time.perf_counter() - t0
    finally:
        kernel.stop()
