"""The token a request presents, as Kernel Gateway and jupyter_server clients send it
(identity.py says whose it is)."""

from __future__ import annotations

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

