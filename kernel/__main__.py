"""``python -m kernelkeeper.kernel``: the kernel Pod's entry point (launcher and supervisor)."""

from __future__ import annotations

import asyncio
import logging
import os
import signal
import sys
import tempfile
from pathlib import Path

from kernelkeeper.kernel import contract, health
from kernelkeeper.kernel.config import ConfigError, LauncherConfig
from kernelkeeper.kernel.supervisor import Supervisor

log = logging.getLogger("kernelkeeper.kernel")


async def _main() -> int:
    try:
        cfg = LauncherConfig.from_env()
    except ConfigError as exc:
        log.error("cannot start the kernel: %s", exc)
        return contract.EXIT_BAD_CONFIG
    runtime = Path(os.environ.get("JUPYTER_RUNTIME_DIR") or tempfile.mkdtemp(prefix="kk-kernel-"))
    sup = Supervisor(cfg, runtime, environ=os.environ, ready_timeout=cfg.ready_timeout)
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, sup.request_stop)
    server = await health.serve(cfg.ip, cfg.health_port, sup.status)
    log.info("kernel %s: health endpoint on http://%s:%d%s", cfg.kernel_id, cfg.ip,
             cfg.health_port, contract.HEALTH_PATH)
    try:
        return await sup.run()
    finally:
        server.close()
        await server.wait_closed()


def main() -> int:
    logging.basicConfig(level=logging.INFO, stream=sys.stderr,
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    return asyncio.run(_main())


if __name__ == "__main__":
    sys.exit(main())
