"""The `gateway` stage of `kernelkeeper local up`: N replicas after the operator, nginx in front.

One replica is served directly. Two or more get nginx (local/nginx.py) in front, configured as an
ingress would be, and the printed URL is nginx's. Each replica runs under the local supervisor so
that a replica which fenced itself (lost its Lease) comes back as a fresh standby, as a
Deployment's would.
"""

from __future__ import annotations

import sys
from functools import partial

from kernelkeeper.gateway.availability import ACTIVE_PASSIVE, normalize_mode
from kernelkeeper.local import nginx
from kernelkeeper.local.environment import LocalEnvironment
from kernelkeeper.local.processes import free_port
from kernelkeeper.local.wait import http_ok, wait_until

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
        wait_until(partial(http_ok, f"{url}/healthz"), what=name, timeout=timeout,
                   alive=record.alive, log=record.log)
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
        wait_until(partial(http_ok, f"{front}/readyz"), what="nginx", timeout=timeout,
                   alive=record.alive, log=record.log)
        _say(f"nginx in front of {len(urls)} gateways at {front}")
    else:
        wait_until(partial(http_ok, f"{front}/readyz"), what="gateway", timeout=timeout,
                   log=env.logs / "gateway.log")
    if mode == ACTIVE_PASSIVE:
        _say("active-passive: one replica holds the Lease, the others stand by")
    env.info["gateway_url"] = front
    env.info["gateway_urls"] = urls
    env.info["availability_mode"] = mode
    env.save()
