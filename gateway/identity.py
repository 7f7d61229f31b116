"""Who is asking: tokens mapped to users, read from a file (a mounted Secret) and reloaded.

The users file is YAML (or JSON):

    users:
      - name: alice
        token: <a long random string>
      - name: ops
        token: <another>
        admin: true

With `jupyterhub_api_url` set, a token that is neither is asked of JupyterHub (hub_identity.py):
a single-user server that forwards its own JupyterHub API token is its user.

A user's token makes the request theirs: the kernels they start are owned by them (the
session's `spec.username`), and they see only those. An admin sees and acts on every kernel.
The shared `auth_token`, when set, is a service token with admin rights and no user name (a
client presenting it may name the kernel's user through KERNEL_USERNAME, as before). With
neither configured the gateway is open and every caller is that anonymous admin.

Tokens are kept only as SHA-256 digests, so a lookup costs the same whatever the token.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import hmac
import logging
import re
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import yaml

if TYPE_CHECKING:
    from kernelkeeper.gateway.hub_identity import HubUsers

log = logging.getLogger(__name__)

MAX_NAME_LENGTH = 253
_CONTROL = re.compile(r"[\x00-\x1f\x7f]")


@dataclass(frozen=True)
class Identity:
    user: str
    admin: bool = False

    def may_use(self, owner: str) -> bool:
        """True when this caller may see and act on a kernel whose owner is `owner`."""
        return self.admin or (bool(self.user) and owner == self.user)


SERVICE = Identity("", admin=True)


class UsersFileError(ValueError):
    """The users file cannot be used; the message names the entry and the field."""


def token_digest(token: str) -> bytes:
    return hashlib.sha256(token.encode("utf-8", "surrogatepass")).digest()


def parse_users(text: str) -> dict[bytes, Identity]:
    """Token digests to identities; raises UsersFileError with the first problem found."""
    try:
        data: Any = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        raise UsersFileError(f"not valid YAML: {exc}") from None
    if data is None:
        return {}
    users = data.get("users") if isinstance(data, dict) else None
    if not isinstance(users, list):
        raise UsersFileError("expected a mapping with a 'users' list")
    table: dict[bytes, Identity] = {}
    for i, entry in enumerate(users):
        where = f"users[{i}]"
        if not isinstance(entry, dict):
            raise UsersFileError(f"{where} must be a mapping with name and token")
        name, token, admin = entry.get("name"), entry.get("token"), entry.get("admin", False)
        if not isinstance(name, str) or not name.strip() or len(name) > MAX_NAME_LENGTH \
                or _CONTROL.search(name) or name != name.strip():
            raise UsersFileError(f"{where}.name must be a non-empty string of at most "
                                 f"{MAX_NAME_LENGTH} printable characters")
        if not isinstance(token, str) or len(token) < 16:
            raise UsersFileError(f"{where}.token (user {name}) must be a string of at least "
                                 "16 characters")
        if not isinstance(admin, bool):
            raise UsersFileError(f"{where}.admin (user {name}) must be true or false")
        digest = token_digest(token)
        if digest in table:
            raise UsersFileError(f"{where}.token (user {name}) is also the token of user "
                                 f"{table[digest].user}")
        table[digest] = Identity(name, admin=admin)
    return table


class Authenticator:
    """Maps a presented token to an Identity; `None` means 401.

    The users file is re-read on a worker thread every `reload_interval` seconds; a file that
    became invalid keeps the last good table (and says why in the log) rather than locking
    every user out. Kubernetes updates a mounted Secret by swapping a symlink, which a
    content comparison sees whatever the timestamps say.
    """

    def __init__(self, shared_token: str = "", users_file: str = "",
                 reload_interval: float = 10.0, hub: HubUsers | None = None) -> None:
        self.shared = shared_token
        self.hub = hub
        self.path = Path(users_file) if users_file else None
        self.reload_interval = reload_interval
        self.users: dict[bytes, Identity] = {}
        self._text: str | None = None
        self._task: asyncio.Task[None] | None = None
        self.reloads = 0
        self.reload_errors = 0

    @property
    def open(self) -> bool:
        return not self.shared and self.path is None and self.hub is None

    async def identify(self, token: str) -> Identity | None:
        """The caller a token stands for, in this order: the service token, the users file,
        JupyterHub (which may raise a 503 when it does not answer)."""
        if self.open:
            return SERVICE
        if not token:
            return None
        if self.shared and hmac.compare_digest(token.encode("utf-8", "surrogatepass"),
                                               self.shared.encode()):
            return SERVICE
        found = self.users.get(token_digest(token))
        if found is None and self.hub is not None:
            found = await self.hub.identify(token)
        return found

    def _apply(self, text: str) -> None:
        if text == self._text:
            return
        table = parse_users(text)
        self.users, self._text = table, text
        self.reloads += 1
        log.info("users file %s: %d users (%d admins)", self.path, len(table),
                 sum(1 for i in table.values() if i.admin))

    async def load(self) -> None:
        """The first read: a missing or invalid users file is fatal (OSError, UsersFileError)."""
        if self.path is not None:
            self._apply(await asyncio.to_thread(self.path.read_text))

    async def reload(self) -> None:
        """Re-read the users file now (off the event loop)."""
        if self.path is None:
            return
        try:
            text = await asyncio.to_thread(self.path.read_text)
            self._apply(text)
        except (OSError, UnicodeDecodeError, UsersFileError) as exc:
            self.reload_errors += 1
            log.error("users file %s not reloaded, keeping the previous %d users: %s",
                      self.path, len(self.users), exc)

    def start(self) -> None:
        if self.path is not None and self.reload_interval > 0:
            self._task = asyncio.ensure_future(self._run())

    async def _run(self) -> None:
        while True:
            await asyncio.sleep(self.reload_interval)
            await self.reload()

    async def close(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
