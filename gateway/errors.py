"""Errors that handlers turn into JSON `{"reason", "message"}` responses."""

from __future__ import annotations

from tornado.web import HTTPError


class GatewayError(HTTPError):
    """An HTTP error whose reason and message reach the client as JSON."""

    def __init__(self, status: int, reason: str, message: str = "") -> None:
        super().__init__(status, log_message=message or None, reason=reason)
        self.message = message


def not_found(kernel_id: str, why: str = "") -> GatewayError:
    return GatewayError(404, "Not Found", why or f"Kernel does not exist: {kernel_id}")


def bad_request(message: str) -> GatewayError:
    return GatewayError(400, "Bad Request", message)


class KernelUnavailable(Exception):
    """The kernel did not answer in time (dead, restarting too long, unreachable)."""
