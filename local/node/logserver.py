"""The kubelet's log endpoint, so `kubectl logs` works: GET /containerLogs/<ns>/<pod>/<container>.

The API server proxies `kubectl logs` to the node's InternalIP and daemonEndpoints port over
HTTPS; without --kubelet-certificate-authority it does not verify the kubelet's certificate,
so a self-signed one is enough. The server listens on the node's loopback host IP only.
Supported: follow, previous, tailLines, limitBytes (timestamps and sinceSeconds are ignored).
"""

from __future__ import annotations

import asyncio
import datetime as dt
import logging
import ssl
from pathlib import Path
from typing import TYPE_CHECKING

from aiohttp import web

if TYPE_CHECKING:
    from kernelkeeper.local.node.kubelet import Kubelet

log = logging.getLogger(__name__)

FOLLOW_POLL = 0.2


def self_signed(directory: Path, host: str, name: str) -> ssl.SSLContext:
    import ipaddress

    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    cert_path, key_path = directory / "kubelet.crt", directory / "kubelet.key"
    if not (cert_path.exists() and key_path.exists()):
        key = ec.generate_private_key(ec.SECP256R1())
        subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, f"{name}@kernelkeeper")])
        now = dt.datetime.now(dt.UTC)
        cert = (x509.CertificateBuilder().subject_name(subject).issuer_name(subject)
                .public_key(key.public_key()).serial_number(x509.random_serial_number())
                .not_valid_before(now - dt.timedelta(minutes=5))
                .not_valid_after(now + dt.timedelta(days=365))
                .add_extension(x509.SubjectAlternativeName(
                    [x509.IPAddress(ipaddress.ip_address(host)), x509.DNSName(name)]), False)
                .sign(key, hashes.SHA256()))
        key_path.write_bytes(key.private_bytes(serialization.Encoding.PEM,
                                               serialization.PrivateFormat.PKCS8,
                                               serialization.NoEncryption()))
        key_path.chmod(0o600)
        cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ctx.load_cert_chain(str(cert_path), str(key_path))
    return ctx


def _runs(log_dir: Path) -> list[Path]:
    files = [p for p in log_dir.glob("*.log") if p.stem.isdigit()]
    return sorted(files, key=lambda p: int(p.stem))


def _tail(data: bytes, lines: int) -> bytes:
    if lines <= 0:
        return b""
    parts = data.splitlines(keepends=True)
    return b"".join(parts[-lines:])


class LogServer:
    def __init__(self, kubelet: Kubelet) -> None:
        self.kubelet = kubelet
        self.port = 0
        self._runner: web.AppRunner | None = None

    async def start(self) -> int:
        app = web.Application()
        app.router.add_get("/containerLogs/{ns}/{pod}/{container}", self.logs)
        app.router.add_get("/healthz", self.healthz)
        self._runner = web.AppRunner(app, access_log=None)
        await self._runner.setup()
        cfg = self.kubelet.cfg
        ctx = self_signed(cfg.state_dir, cfg.host_ip, cfg.name)
        site = web.TCPSite(self._runner, cfg.host_ip, cfg.kubelet_port, ssl_context=ctx)
        await site.start()
        server = site._server  # noqa: SLF001 - the bound port when 0 was asked for
        self.port = int(server.sockets[0].getsockname()[1])  # type: ignore[union-attr]
        return self.port

    async def stop(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()

    async def healthz(self, request: web.Request) -> web.Response:
        return web.Response(text="ok")

    def _worker(self, ns: str, pod: str):  # noqa: ANN202 - PodWorker | None
        return next((w for w in list(self.kubelet.workers.values())
                     if w.namespace == ns and w.name == pod), None)

    async def logs(self, request: web.Request) -> web.StreamResponse:
        ns, pod, name = (request.match_info[k] for k in ("ns", "pod", "container"))
        w = self._worker(ns, pod)
        if w is None:
            raise web.HTTPNotFound(text=f"pod {ns}/{pod} is not running on this node")
        runner = w.runners.get(name) or w.init_runners.get(name)
        if runner is None:
            raise web.HTTPNotFound(text=f"container {name!r} not found in pod {ns}/{pod}")
        runs = _runs(w.log_dir / name)
        q = request.query
        previous = q.get("previous") in ("true", "1")
        if previous:
            # The last run that ended: the one before the current run if it is running.
            ended = runs[:-1] if "running" in runner.state else runs
            if not ended:
                raise web.HTTPBadRequest(
                    text=f'previous terminated container "{name}" in pod "{pod}" not found')
            path = ended[-1]
        elif runs:
            path = runs[-1]
        else:
            raise web.HTTPBadRequest(text=f'container "{name}" in pod "{pod}" is waiting to start')
        data = path.read_bytes()
        if q.get("tailLines"):
            data = _tail(data, int(q["tailLines"]))
        limit = int(q["limitBytes"]) if q.get("limitBytes") else None
        if limit is not None:
            data = data[:limit]
        follow = q.get("follow") in ("true", "1") and not previous
        if not follow:
            return web.Response(body=data, content_type="text/plain")
        resp = web.StreamResponse()
        resp.content_type = "text/plain"
        await resp.prepare(request)
        await resp.write(data)
        sent = len(data)
        offset = path.stat().st_size
        while limit is None or sent < limit:
            size = path.stat().st_size
            if size > offset:
                with path.open("rb") as f:
                    f.seek(offset)
                    chunk = f.read(size - offset)
                offset = size
                if limit is not None:
                    chunk = chunk[: limit - sent]
                await resp.write(chunk)
                sent += len(chunk)
                continue
            if w.done or "running" not in runner.state or runner.log_path != path:
                break
            await asyncio.sleep(FOLLOW_POLL)
        return resp
