"""The `gateway` stage of `kernelkeeper local up`: N replicas after the operator, nginx in front.

One replica is served directly. Two or more get nginx (local/nginx.py) in front, configured as an
ingress would be, and the printed URL is nginx's. Each replica runs under the local supervisor so
that a replica which fenced itself (lost its Lease) comes back as a fresh standby, as a
Deployment's would.
"""

from __future__ import annotations

import sys
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from pathlib import Path

from kernelkeeper.gateway.availability import ACTIVE_PASSIVE, normalize_mode
from kernelkeeper.local import nginx
from kernelkeeper.local.environment import LocalEnvironment
from kernelkeeper.local.processes import free_port

SUPERVISE = [sys.executable, "-m", "kernelkeeper.local.supervise", "--"]


def _say(msg: str) -> None:
    print(f"[kernelkeeper local] {msg}", file=sys.stderr, flush=True)


def gateway_stage(env: LocalEnvironment, *, replicas: int = 1,
                  availability_mode: str = "active-active", timeout: float = 60.0) -> None:
    mode = normalize_mode(availability_mode)
    urls: list[str] = []
    for i in range(max(1, replicas)):
        name = "gateway" if i == 0 else f"gateway-{i}"
        port = free_port()
        record = env.start(
            name,
            [*SUPERVISE, sys.executable, "-m", "kernelkeeper", "gateway",
             "--kubeconfig", str(env.kubeconfig), "--ip", "127.0.0.1", "--port", str(port),
             "--replica-id", f"local-{name}", "--set", f"availability_mode={mode}"],
            ports={"http": port},
        )
        url = f"http://127.0.0.1:{port}"
        # A standby is healthy but not ready; only the whole fleet must have one ready replica.
        _wait(f"{url}/healthz", record.alive, Path(record.log), timeout, name)
        urls.append(url)
        _say(f"{name} up at {url} ({mode})")
    front = urls[0]
    if len(urls) > 1:
        port = free_port()
        conf = nginx.write_config(env.state_dir / "nginx", port, [int(u.rsplit(":", 1)[1])
                                                                  for u in urls])
        record = env.start("nginx", nginx.command(nginx.find_nginx(), conf, env.state_dir / "nginx"),
                           ports={"http": port})
        front = f"http://127.0.0.1:{port}"
        _wait(f"{front}/readyz", record.alive, Path(record.log), timeout, "nginx")
        _say(f"nginx in front of {len(urls)} gateways at {front}")
    else:
        _wait(f"{front}/readyz", lambda: True, Path(env.logs / "gateway.log"), timeout, "gateway")
    if mode == ACTIVE_PASSIVE:
        _say("active-passive: one replica holds the Lease, the others stand by")
    env.info["gateway_url"] = front
    env.info["gateway_urls"] = urls
    env.info["availability_mode"] = mode
    env.save()


def _wait(url: str, alive: Callable[[], bool], log: Path, timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            with urllib.request.urlopen(url, timeout=2) as resp:
                if resp.status == 200:
                    return
        except (urllib.error.URLError, OSError):
            pass
        if not alive():
            raise RuntimeError(f"{what} exited while starting; see {log}")
        time.sleep(0.2)
    raise TimeoutError(f"{what} was not ready within {timeout:.0f}s; see {log}")
