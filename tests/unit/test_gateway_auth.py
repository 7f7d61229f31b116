"""Who a request is: header forms, the query parameter, the shared token, the users file."""

from __future__ import annotations

import asyncio
import logging
from pathlib import Path

import pytest
from tornado.httputil import HTTPHeaders, HTTPServerRequest, RequestStartLine

from kernelkeeper.gateway.auth import presented_token
from kernelkeeper.gateway.identity import (
    SERVICE,
    Authenticator,
    Identity,
    UsersFileError,
    parse_users,
)
from tests.fixtures.users import ALICE, BOB, OPS, USERS


def _request(uri: str, auth: str | None = None) -> HTTPServerRequest:
    headers = HTTPHeaders({"Host": "gw.example"})
    if auth is not None:
        headers["Authorization"] = auth
    return HTTPServerRequest(start_line=RequestStartLine("GET", uri, "HTTP/1.1"), headers=headers)


async def _awho(auth: Authenticator, uri: str, header: str | None = None) -> Identity | None:
    return await auth.identify(presented_token(_request(uri, header)))


def _who(auth: Authenticator, uri: str, header: str | None = None) -> Identity | None:
    return asyncio.run(_awho(auth, uri, header))


def test_shared_token_forms():
    open_gw = Authenticator()
    assert _who(open_gw, "/api", "token ") == SERVICE  # jupyter_server's empty default
    assert _who(open_gw, "/api") == SERVICE
    shared = Authenticator("s3cret")
    for uri, header in [("/api", "token s3cret"), ("/api", "Bearer s3cret"),
                        ("/api", "TOKEN s3cret"), ("/api?token=s3cret", None)]:
        assert _who(shared, uri, header) == SERVICE, (uri, header)
    for uri, header in [("/api", "token "), ("/api", "token wrong"), ("/api?token=wrong", None),
                        ("/api", None)]:
        assert _who(shared, uri, header) is None, (uri, header)


def test_users_file_maps_tokens_to_users(tmp_path: Path):
    path = tmp_path / "users.yaml"
    path.write_text(USERS)
    auth = Authenticator("s3cret", str(path))
    asyncio.run(auth.load())
    assert _who(auth, "/api", f"token {ALICE}") == Identity("alice")
    assert _who(auth, f"/api?token={BOB}") == Identity("bob")
    assert _who(auth, "/api", f"Bearer {OPS}") == Identity("ops", admin=True)
    assert _who(auth, "/api", "token s3cret") == SERVICE
    assert _who(auth, "/api", f"token {ALICE}x") is None
    assert _who(auth, "/api") is None
    # Without a shared token, the users file alone decides.
    alone = Authenticator("", str(path))
    asyncio.run(alone.load())
    assert _who(alone, "/api", "token s3cret") is None
    assert _who(alone, "/api", f"token {ALICE}") == Identity("alice")


def test_ownership_rule():
    assert Identity("alice").may_use("alice")
    assert not Identity("alice").may_use("bob")
    assert not Identity("alice").may_use("")
    assert not Identity("").may_use("")  # no name, no admin: owns nothing
    assert Identity("ops", admin=True).may_use("bob")
    assert SERVICE.may_use("") and SERVICE.may_use("alice")


@pytest.mark.parametrize("text, where", [
    ("users: {}", "'users' list"),
    ("- a\n- b", "'users' list"),
    ("users: [alice]", "users[0] must be a mapping"),
    ("users: [{name: '', token: 0123456789abcdefgh}]", "users[0].name"),
    ("users: [{name: ' al', token: 0123456789abcdefgh}]", "users[0].name"),
    ("users: [{name: \"a\\nb\", token: 0123456789abcdefgh}]", "users[0].name"),
    ("users: [{name: al, token: short}]", "users[0].token (user al)"),
    ("users: [{name: al, token: 12345678901234567890}]", "users[0].token (user al)"),
    ("users: [{name: al, token: 0123456789abcdefgh, admin: 'yes'}]", "users[0].admin"),
    ("users: [{name: al, token: 0123456789abcdefgh}, {name: bo, token: 0123456789abcdefgh}]",
     "users[1].token (user bo) is also the token of user al"),
    ("users: [", "not valid YAML"),
])
def test_bad_users_files_name_the_entry(text: str, where: str):
    with pytest.raises(UsersFileError) as err:
        parse_users(text)
    assert where in str(err.value)


def test_an_empty_file_has_no_users():
    assert parse_users("") == {}
    assert parse_users("users: []") == {}


def test_bad_file_at_start_is_fatal(tmp_path: Path):
    path = tmp_path / "users.yaml"
    path.write_text("users: [{name: al, token: short}]")
    with pytest.raises(UsersFileError):
        asyncio.run(Authenticator("", str(path)).load())
    with pytest.raises(OSError):
        asyncio.run(Authenticator("", str(tmp_path / "missing.yaml")).load())


def test_reload_picks_up_changes_and_keeps_the_last_good_table(tmp_path: Path, caplog):
    path = tmp_path / "users.yaml"
    path.write_text(USERS)
    auth = Authenticator("", str(path), reload_interval=0.05)

    async def scenario() -> None:
        await auth.load()
        auth.start()
        # Alice's token is rotated and carol is added; the running authenticator sees it.
        path.write_text(USERS.replace(ALICE, "alice-rotated-0123456789")
                        + "  - name: carol\n    token: carol-token-0123456789\n")
        for _ in range(100):
            if auth.reloads >= 2:  # the first load, then the edit
                break
            await asyncio.sleep(0.02)
        assert await _awho(auth, "/api", f"token {ALICE}") is None
        assert await _awho(auth, "/api", "token alice-rotated-0123456789") == Identity("alice")
        assert await _awho(auth, "/api", "token carol-token-0123456789") == Identity("carol")
        # A broken edit is refused: the last good table stays and the log says why.
        with caplog.at_level(logging.ERROR):
            path.write_text("users: [{name: x, token: short}]")
            for _ in range(100):
                if auth.reload_errors:
                    break
                await asyncio.sleep(0.02)
        assert auth.reload_errors >= 1
        assert "keeping the previous 5 users" in caplog.text
        assert await _awho(auth, "/api", "token carol-token-0123456789") == Identity("carol")
        await auth.close()

    asyncio.run(scenario())
