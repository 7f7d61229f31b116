"""The `gateway` stage of `kernelkeeper local up`: gateway replicas after the operator."""

from __future__ import annotations

import sys
import time
import urllib.request
from pathlib import Path

from kernelkeeper.local.environment import LocalEnvironment
from kernelkeeper.local.processes import free_port


def gateway_stage(env: LocalEnvironment, *, replicas: int = 1, timeout: float = 60.0) -> None:
    urls = []
    for i in range(max(1, replicas)):
        name = "gateway" if i == 0 else f"gateway-{i}"
        port = free_port()
        record = env.start(
            name,
            [sys.executable, "-m", "kernelkeeper", "gateway", "--kubeconfig", str(env.kubeconfig),
             "--ip", "127.0.0.1", "--port", str(port), "--replica-id", f"local-{name}"],
            ports={"http": port},
        )
        url = f"http://127.0.0.1:{port}"
        _wait_ready(url, record.alive, Path(record.log), timeout)
        urls.append(url)
        print(f"[kernelkeeper local] {name} ready at {url}", file=sys.stderr, flush=True)
    env.info["gateway_url"] = urls[0]
    env.info["gateway_urls"] = urls
    env.save()


def _wait_ready(url: str, alive: object, log: Path, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            with urllib.request.urlopen(f"{url}/readyz", timeout=2) as resp:
                if resp.status == 200:
                    return
        except OSError:
            pass
        if callable(alive) and not alive():
            raise RuntimeError(f"the gateway exited while starting; see {log}")
        time.sleep(0.2)
    raise TimeoutError(f"the gateway was not ready within {timeout:.0f}s; see {log}")
