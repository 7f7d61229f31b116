"""Bounded holding places: what the browser sent while the gateway hop was down, and the ids
of the messages already passed to the browser (so a replica's replay of them is dropped)."""

from __future__ import annotations

from collections import OrderedDict, deque

from kernelkeeper.lab.framing import Frame


class Backlog:
    """Frames waiting for the gateway hop, oldest first, bounded by count and bytes."""

    def __init__(self, max_messages: int, max_bytes: int) -> None:
        self.max_messages, self.max_bytes = max_messages, max_bytes
        self._frames: deque[Frame] = deque()
        self.bytes = 0

    def __len__(self) -> int:
        return len(self._frames)

    def push(self, frame: Frame) -> bool:
        """Keep `frame`; False (and not kept) when that would pass a bound."""
        size = frame.size()
        if len(self._frames) >= self.max_messages or self.bytes + size > self.max_bytes:
            return False
        self._frames.append(frame)
        self.bytes += size
        return True

    def take(self, *, shell: bool) -> list[Frame]:
        """Remove and return the shell frames (or all the others), keeping their order."""
        taken = [f for f in self._frames if (f.channel == "shell") == shell]
        if taken:
            self._frames = deque(f for f in self._frames if (f.channel == "shell") != shell)
            self.bytes = sum(f.size() for f in self._frames)
        return taken

    def has_shell(self) -> bool:
        return any(f.channel == "shell" for f in self._frames)


class RecentIds:
    """The last `size` ids added, for membership tests."""

    def __init__(self, size: int) -> None:
        self.size = size
        self._ids: OrderedDict[str, None] = OrderedDict()

    def add(self, msg_id: str) -> None:
        self._ids[msg_id] = None
        if len(self._ids) > self.size:
            self._ids.popitem(last=False)

    def __contains__(self, msg_id: object) -> bool:
        return msg_id in self._ids
