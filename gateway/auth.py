"""Token authentication, as Kernel Gateway and jupyter_server clients send it."""

from __future__ import annotations

import hmac
import re

from tornado.httputil import HTTPServerRequest

_AUTH_HEADER = re.compile(r"^\s*(token|bearer)\s*(.*)$", re.IGNORECASE)


def presented_token(request: HTTPServerRequest) -> str:
    """The token a request carries: `Authorization: token|bearer <t>` or `?token=<t>`."""
    header = request.headers.get("Authorization", "")
    match = _AUTH_HEADER.match(header)
    if match and match.group(2).strip():
        return match.group(2).strip()
    values = request.query_arguments.get("token")
    if values:
        return values[-1].decode("utf-8", "replace")
    return ""


def authorized(request: HTTPServerRequest, token: str) -> bool:
    """True when no token is configured (any Authorization header, even an empty
    `token `, is then ignored) or the request presents the configured one."""
    if not token:
        return True
    got = presented_token(request)
    return bool(got) and hmac.compare_digest(got.encode(), token.encode())
