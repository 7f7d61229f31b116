"""kube.watch.lines: whole lines of any length, split at any chunk boundary."""

from __future__ import annotations

import asyncio
import json

import aiohttp
import pytest
from aiohttp.base_protocol import BaseProtocol
from aiohttp.http_exceptions import LineTooLong

from kernelkeeper.kube.watch import lines


class _Unpaused(BaseProtocol):
    """No socket behind the reader: all the data is fed before reading, so no flow control."""

    def pause_reading(self) -> None:
        pass

    def resume_reading(self, resume_parser: bool = True) -> None:
        pass


def _stream(chunks: list[bytes]) -> aiohttp.StreamReader:
    loop = asyncio.get_running_loop()
    # A small limit keeps the test light; readline() refuses lines of more than twice it.
    reader = aiohttp.StreamReader(_Unpaused(loop), 2**16, loop=loop)
    for chunk in chunks:
        reader.feed_data(chunk)
    reader.feed_eof()
    return reader


async def _collect(chunks: list[bytes], **kw: int) -> list[bytes]:
    return [line async for line in lines(_stream(chunks), **kw)]


async def test_a_line_far_beyond_readline_limit_comes_through_whole():
    big = json.dumps({"type": "MODIFIED", "object": {"v": "x" * 1_000_000}}).encode()
    with pytest.raises(LineTooLong):  # readline() refuses what lines() takes under one limit
        await _stream([big + b"\n"]).readline()
    data = big + b"\n" + b'{"type":"BOOKMARK"}\n'
    chunks = [data[i:i + 7919] for i in range(0, len(data), 7919)]
    assert await _collect(chunks) == [big, b'{"type":"BOOKMARK"}']


async def test_chunk_boundaries_at_and_around_newlines():
    data = b"a\nbb\n\nccc\n"
    for size in range(1, len(data) + 1):
        chunks = [data[i:i + size] for i in range(0, len(data), size)]
        assert await _collect(chunks) == [b"a", b"bb", b"ccc"], size


async def test_an_unterminated_tail_is_dropped_and_a_runaway_line_is_refused():
    assert await _collect([b"one\ntw", b"o"]) == [b"one"]
    with pytest.raises(ValueError, match="larger than 10 bytes"):
        await _collect([b"x" * 6, b"x" * 6], max_bytes=10)
