"""Read the in-pod launcher's /status (in-place restart count, kernel state)."""

from __future__ import annotations

import asyncio
import logging
from typing import Any

import aiohttp

from kernelkeeper.kernel import contract

log = logging.getLogger(__name__)


class LauncherStatusReader:
    def __init__(self, timeout: float = 2.0) -> None:
        self.timeout = timeout
        self._session: aiohttp.ClientSession | None = None

    async def read(self, pod_ip: str) -> dict[str, Any] | None:
        """The launcher's status, or None if it cannot be reached right now."""
        if self._session is None:
            self._session = aiohttp.ClientSession(
                timeout=aiohttp.ClientTimeout(total=self.timeout))
        host = f"[{pod_ip}]" if ":" in pod_ip else pod_ip
        url = f"http://{host}:{contract.HEALTH_PORT}{contract.STATUS_PATH}"
        try:
            async with asyncio.timeout(self.timeout), self._session.get(url) as resp:
                if resp.status != 200:
                    return None
                data = await resp.json(content_type=None)
                return data if isinstance(data, dict) else None
        except (TimeoutError, aiohttp.ClientError, ValueError, OSError) as exc:
            log.debug("launcher status at %s unavailable: %s", url, exc)
            return None

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()
            self._session = None
