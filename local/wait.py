"""Poll a readiness condition until it holds: the one wait every `local up` step uses.

A condition returns its result once ready, or `Pending(what it saw)` while not, so that a timeout
names both what was awaited and the last state observed (a plain False is pending too, with
nothing to tell). An OSError from the condition (refused
connection, TLS handshake against a starting server, ...) is the normal not-yet state of a
starting process and counts as pending too, its message being the observed state.
"""

from __future__ import annotations

import time
import urllib.error
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TypeVar

T = TypeVar("T")


@dataclass(frozen=True)
class Pending:
    """Not ready yet; `state` is what the condition observed, for the error message."""

    state: str


def wait_until(condition: Callable[[], T | Pending], *, what: str, timeout: float,
               interval: float = 0.2, alive: Callable[[], bool] | None = None,
               log: Path | str | None = None) -> T:
    """Call `condition` every `interval` seconds until it returns something other than Pending.

    `alive` (the awaited process is still running) turns a crash into an immediate error instead
    of a wait for the timeout; `log` is named in either error so the reader knows where to look.
    Raises RuntimeError if `alive()` turns false, TimeoutError after `timeout` seconds.
    """
    see = f"; see {log}" if log else ""
    deadline = time.monotonic() + timeout
    last = "nothing observed yet"
    while True:
        try:
            result = condition()
        except OSError as exc:
            result = Pending(str(exc) or type(exc).__name__)
        if result is False:
            result = Pending("condition false")
        if not isinstance(result, Pending):
            return result
        last = result.state
        if alive is not None and not alive():
            raise RuntimeError(f"{what} exited while starting (last seen: {last}){see}")
        if time.monotonic() >= deadline:
            raise TimeoutError(f"{what} not ready within {timeout:g}s (last seen: {last}){see}")
        time.sleep(interval)


def http_ok(url: str, *, headers: dict[str, str] | None = None,
            timeout: float = 2.0) -> bool | Pending:
    """A condition: `url` answers 200 (for wait_until)."""
    request = urllib.request.Request(url, headers=headers or {})
    try:
        with urllib.request.urlopen(request, timeout=timeout) as resp:
            if resp.status == 200:
                return True
            return Pending(f"HTTP {resp.status} from {url}")
    except urllib.error.HTTPError as exc:
        exc.close()
        return Pending(f"HTTP {exc.code} from {url}")
