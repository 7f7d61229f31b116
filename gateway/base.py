"""What every handler shares: who is asking, CORS headers, JSON errors."""

from __future__ import annotations

import json
from types import TracebackType
from typing import Any

from tornado.web import HTTPError, RequestHandler

from kernelkeeper.gateway.auth import presented_token
from kernelkeeper.gateway.errors import GatewayError
from kernelkeeper.gateway.identity import Identity

_CORS = {
    "allow_origin": "Access-Control-Allow-Origin",
    "allow_credentials": "Access-Control-Allow-Credentials",
    "allow_headers": "Access-Control-Allow-Headers",
    "allow_methods": "Access-Control-Allow-Methods",
    "expose_headers": "Access-Control-Expose-Headers",
    "max_age": "Access-Control-Max-Age",
}


class GatewayMixin(RequestHandler):
    """Mixed into REST and websocket handlers alike."""

    auth_exempt = False
    # Who the request is from, set by prepare(); until then (and on auth-exempt probes) a
    # caller with no name and no rights.
    identity: Identity = Identity("")
    # Probes and metrics answer on standbys too; everything else is gated by availability.
    availability_exempt = False

    def set_default_headers(self) -> None:
        cfg = self.settings["kk_config"]
        for trait, header in _CORS.items():
            value = getattr(cfg, trait)
            if value:
                self.set_header(header, value)

    async def prepare(self) -> None:
        if self.request.method == "OPTIONS" or self.auth_exempt:
            return
        identity = await self.settings["kk_auth"].identify(presented_token(self.request))
        if identity is None:
            raise GatewayError(401, "Unauthorized", "a valid token is required")
        self.identity = identity
        if not self.availability_exempt:
            self.refuse_unless_serving()

    def refuse_unless_serving(self) -> None:
        """503 + Retry-After on a standby or a fenced holder (checked before any side effect)."""
        availability = self.settings.get("kk_availability")
        if availability is None or availability.serving():
            return
        self.set_header("Retry-After", str(max(1, round(availability.retry_after()))))
        raise GatewayError(503, "Service Unavailable", availability.why_not_serving())

    def options(self, *args: Any, **kwargs: Any) -> None:
        """CORS preflight: no auth, no body."""
        self.set_status(204)
        self.finish()

    def log_exception(self, typ: type[BaseException] | None, value: BaseException | None,
                      tb: TracebackType | None) -> None:
        # Expected errors are logged once, by the access log; only surprises get a traceback.
        if isinstance(value, HTTPError):
            return
        super().log_exception(typ, value, tb)

    def write_error(self, status_code: int, **kwargs: Any) -> None:
        exc = kwargs.get("exc_info", (None, None, None))[1]
        reason = self._reason
        message = ""
        if isinstance(exc, GatewayError):
            message = exc.message
        elif isinstance(exc, HTTPError):
            message = exc.log_message or ""
            if message and exc.args:
                message = message % exc.args
        elif exc is not None:
            message = f"{type(exc).__name__}: {exc}"
        self.settings["kk_metrics"].inc("errors_total", code=str(status_code))
        self.set_header("Content-Type", "application/json")
        self.finish(json.dumps({"reason": reason, "message": message}))
