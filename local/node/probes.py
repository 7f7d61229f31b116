"""Readiness, liveness and startup probes (httpGet, tcpSocket, exec) against the pod IP.

One asyncio task per configured probe, with the spec's initialDelay, period, timeout and
thresholds; results are reported to the container through a callback only when the
thresholded result flips, and every failed attempt is reported for the Unhealthy event.
"""

from __future__ import annotations

import asyncio
import contextlib
import ssl
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

USER_AGENT = "kube-probe/1.36"
MAX_OUTPUT = 10 * 1024


@dataclass
class ExecContext:
    """How to run a command "inside" the container: its env, cwd and mount namespace."""

    env: dict[str, str]
    cwd: str
    wrap: Callable[[list[str]], list[str]]


def _port(container: dict[str, Any], port: Any) -> int:
    if isinstance(port, int) or str(port).isdigit():
        return int(port)
    for p in container.get("ports") or []:
        if p.get("name") == port:
            return int(p["containerPort"])
    raise ValueError(f"no container port named {port!r}")


async def http_get(spec: dict[str, Any], container: dict[str, Any], pod_ip: str,
                   timeout: float) -> tuple[bool, str]:
    host = spec.get("host") or pod_ip
    port = _port(container, spec.get("port"))
    path = spec.get("path") or "/"
    if not path.startswith("/"):
        path = "/" + path
    ctx = None
    if (spec.get("scheme") or "HTTP").upper() == "HTTPS":
        # The kubelet does not verify probe certificates either.
        ctx = ssl.create_default_context()
        ctx.check_hostname = False
        ctx.verify_mode = ssl.CERT_NONE
    headers = {"Host": f"{host}:{port}", "User-Agent": USER_AGENT, "Accept": "*/*",
               "Connection": "close"}
    for h in spec.get("httpHeaders") or []:
        headers[h["name"]] = h.get("value", "")
    request = f"GET {path} HTTP/1.1\r\n" + "".join(f"{k}: {v}\r\n" for k, v in headers.items())
    writer = None
    try:
        reader, writer = await asyncio.open_connection(host, port, ssl=ctx)
        writer.write((request + "\r\n").encode("latin-1"))
        await writer.drain()
        status_line = (await reader.readline()).decode("latin-1").strip()
        parts = status_line.split(" ", 2)
        code = int(parts[1])
    except (OSError, ValueError, IndexError, asyncio.IncompleteReadError) as exc:
        return False, f'Get "http://{host}:{port}{path}": {exc or type(exc).__name__}'
    finally:
        if writer is not None:
            writer.close()
            with contextlib.suppress(Exception):
                await writer.wait_closed()
    if 200 <= code < 400:
        return True, ""
    return False, f"HTTP probe failed with statuscode: {code}"


async def tcp_socket(spec: dict[str, Any], container: dict[str, Any], pod_ip: str,
                     timeout: float) -> tuple[bool, str]:
    host = spec.get("host") or pod_ip
    port = _port(container, spec.get("port"))
    try:
        _, writer = await asyncio.open_connection(host, port)
    except OSError as exc:
        return False, f"dial tcp {host}:{port}: {exc.strerror or exc}"
    writer.close()
    with contextlib.suppress(Exception):
        await writer.wait_closed()
    return True, ""


async def exec_command(command: list[str], ctx: ExecContext, timeout: float) -> tuple[bool, str]:
    try:
        proc = await asyncio.create_subprocess_exec(
            *ctx.wrap(command), env=ctx.env, cwd=ctx.cwd, stdin=asyncio.subprocess.DEVNULL,
            stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT,
            start_new_session=True)
    except OSError as exc:
        return False, f"exec {command!r}: {exc}"
    try:
        out, _ = await asyncio.wait_for(proc.communicate(), timeout)
    except TimeoutError:
        with contextlib.suppress(ProcessLookupError):
            proc.kill()
        await proc.wait()
        return False, f"command {command!r} timed out"
    text = out[:MAX_OUTPUT].decode(errors="replace").strip()
    if proc.returncode == 0:
        return True, text
    return False, f"command {command!r} exited with {proc.returncode}: {text}".strip()


async def run_once(probe: dict[str, Any], container: dict[str, Any], pod_ip: str,
                   ctx: ExecContext) -> tuple[bool, str]:
    timeout = float(probe.get("timeoutSeconds") or 1)
    try:
        if "httpGet" in probe:
            return await asyncio.wait_for(http_get(probe["httpGet"], container, pod_ip, timeout),
                                          timeout)
        if "tcpSocket" in probe:
            return await asyncio.wait_for(
                tcp_socket(probe["tcpSocket"], container, pod_ip, timeout), timeout)
        if "exec" in probe:
            return await exec_command(list(probe["exec"].get("command") or []), ctx, timeout)
    except TimeoutError:
        return False, f"probe timed out after {timeout:g}s"
    except ValueError as exc:
        return False, str(exc)
    return False, f"unsupported probe handler {sorted(k for k in probe if k.endswith(('Get', 'Socket', 'exec', 'grpc')))}"


class Prober:
    """Runs one probe until cancelled; calls on_result(kind, ok) when the result flips."""

    def __init__(self, kind: str, probe: dict[str, Any], container: dict[str, Any], pod_ip: str,
                 ctx: ExecContext, *, initial: bool,
                 on_result: Callable[[str, bool], None],
                 on_failure: Callable[[str, str], Awaitable[None] | None]) -> None:
        self.kind = kind
        self.probe = probe
        self.container = container
        self.pod_ip = pod_ip
        self.ctx = ctx
        self.result = initial
        self.on_result = on_result
        self.on_failure = on_failure

    async def run(self) -> None:
        p = self.probe
        period = max(float(p.get("periodSeconds") or 10), 0.1)
        success_needed = int(p.get("successThreshold") or 1)
        failure_needed = int(p.get("failureThreshold") or 3)
        await asyncio.sleep(float(p.get("initialDelaySeconds") or 0))
        successes = failures = 0
        while True:
            ok, message = await run_once(p, self.container, self.pod_ip, self.ctx)
            if ok:
                successes, failures = successes + 1, 0
                if not self.result and successes >= success_needed:
                    self.result = True
                    self.on_result(self.kind, True)
            else:
                successes, failures = 0, failures + 1
                res = self.on_failure(self.kind, message)
                if res is not None:
                    await res
                if self.result and failures >= failure_needed:
                    self.result = False
                    self.on_result(self.kind, False)
                    if self.kind == "liveness":
                        # The container is being restarted; a new prober starts with it.
                        return
            await asyncio.sleep(period)
