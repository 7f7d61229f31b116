"""The gateway's token check: header forms, the query parameter, the empty default token."""

from __future__ import annotations

from tornado.httputil import HTTPHeaders, HTTPServerRequest, RequestStartLine

from kernelkeeper.gateway.auth import authorized


def _request(uri: str, auth: str | None = None) -> HTTPServerRequest:
    headers = HTTPHeaders({"Host": "gw.example"})
    if auth is not None:
        headers["Authorization"] = auth
    return HTTPServerRequest(start_line=RequestStartLine("GET", uri, "HTTP/1.1"), headers=headers)


def test_token_forms():
    assert authorized(_request("/api", "token "), "")  # jupyter_server's empty default
    assert authorized(_request("/api"), "")
    assert authorized(_request("/api", "token s3cret"), "s3cret")
    assert authorized(_request("/api", "Bearer s3cret"), "s3cret")
    assert authorized(_request("/api", "TOKEN s3cret"), "s3cret")
    assert authorized(_request("/api?token=s3cret"), "s3cret")
    assert not authorized(_request("/api", "token "), "s3cret")
    assert not authorized(_request("/api", "token wrong"), "s3cret")
    assert not authorized(_request("/api?token=wrong"), "s3cret")
