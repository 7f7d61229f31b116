"""JupyterHub tokens as identities: `GET {hub_api}/user` with the token says whose it is.

A single-user server started by JupyterHub has its own API token in JUPYTERHUB_API_TOKEN;
`c.GatewayClient.auth_token = os.environ["JUPYTERHUB_API_TOKEN"]` makes every request it sends
to the gateway carry it, and the hub answers with the server's user. Answers are cached per
token (by digest) for `cache_seconds`, refusals for a shorter time, and concurrent lookups of
one token share one request, so the hub sees at most one request per token per period.
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
from collections import OrderedDict

from tornado.httpclient import AsyncHTTPClient, HTTPRequest

from kernelkeeper.gateway.errors import GatewayError
from kernelkeeper.gateway.identity import MAX_NAME_LENGTH, Identity, token_digest

log = logging.getLogger(__name__)

MAX_CACHED = 10000


class HubUsers:
    def __init__(self, api_url: str, cache_seconds: float = 60.0,
                 refusal_seconds: float = 5.0, timeout: float = 10.0) -> None:
        self.api_url = api_url.rstrip("/")
        self.cache_seconds = cache_seconds
        self.refusal_seconds = refusal_seconds
        self.timeout = timeout
        self._cache: OrderedDict[bytes, tuple[Identity | None, float]] = OrderedDict()
        self._pending: dict[bytes, asyncio.Future[Identity | None]] = {}

    async def identify(self, token: str) -> Identity | None:
        key = token_digest(token)
        hit = self._cache.get(key)
        if hit is not None and hit[1] > time.monotonic():
            return hit[0]
        pending = self._pending.get(key)
        if pending is None:
            pending = asyncio.ensure_future(self._ask(key, token))
            self._pending[key] = pending
            pending.add_done_callback(lambda _f: self._pending.pop(key, None))
        return await asyncio.shield(pending)

    async def _ask(self, key: bytes, token: str) -> Identity | None:
        request = HTTPRequest(f"{self.api_url}/user", headers={"Authorization": f"token {token}"},
                              request_timeout=self.timeout, connect_timeout=self.timeout)
        response = await AsyncHTTPClient().fetch(request, raise_error=False)
        if response.code in (401, 403):
            return self._remember(key, None, self.refusal_seconds)
        if response.code != 200:
            why = response.error or f"HTTP {response.code}"
            log.warning("JupyterHub API %s did not identify a token: %s", self.api_url, why)
            raise GatewayError(503, "Service Unavailable",
                               f"JupyterHub did not answer who the token belongs to ({why})")
        try:
            model = json.loads(response.body)
            name, kind = model.get("name"), model.get("kind", "user")
        except (ValueError, AttributeError):
            raise GatewayError(503, "Service Unavailable",
                               "JupyterHub's answer about the token is not a user model") from None
        # A hub service's token is not a user; it gets no kernels of anyone's.
        if kind != "user" or not isinstance(name, str) or not name \
                or len(name) > MAX_NAME_LENGTH:
            return self._remember(key, None, self.refusal_seconds)
        return self._remember(key, Identity(name), self.cache_seconds)

    def _remember(self, key: bytes, who: Identity | None, seconds: float) -> Identity | None:
        self._cache[key] = (who, time.monotonic() + seconds)
        self._cache.move_to_end(key)
        while len(self._cache) > MAX_CACHED:
            self._cache.popitem(last=False)
        return who
