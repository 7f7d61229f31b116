"""The kernel's five ZMQ channels on the Pod's address, relayed to the kernel on loopback.

The kernel binds its channels on 127.0.0.1 only; the launcher binds the public ports and relays
each channel in a libzmq device on a thread of its own, so relaying costs no Python per message:

- shell, control, stdin: ROUTER (clients) <-> DEALER (kernel), in a monitored queue whose copy
  of each message *from* the kernel goes to the journal, so a reply sent while its client's
  replica is gone can still be replayed. The copies travel over a PUB socket: if the journal
  ever fell that far behind, copies would be dropped, never the relayed messages.
- iopub: XPUB (clients) <-> XSUB (kernel). The journal subscribes to the kernel directly.
- hb: ROUTER <-> DEALER, a plain proxy (the kernel's echo comes back to the asker).

The kernel sees one peer per channel, with the clients' identities as routing frames, which is
how Jupyter messages carry a route through a broker.
"""

from __future__ import annotations

import contextlib
import logging
import threading
from dataclasses import dataclass, field
from typing import Any

import zmq
from zmq.devices import monitored_queue

log = logging.getLogger("kernelkeeper.kernel")

RELAYED_REPLIES = ("shell", "control", "stdin")
# Per peer. Enough for any burst a gateway takes a moment to read, bounded so that a stuck
# peer cannot grow the launcher without limit.
HWM = 10000
COPY_PREFIX = b"out."
RELAY_IDENTITY = b"kernelkeeper-relay"


@dataclass
class Relay:
    """The running relays of one kernel Pod."""

    context: zmq.Context[zmq.Socket[bytes]] = field(default_factory=zmq.Context)
    threads: list[threading.Thread] = field(default_factory=list)

    def start(self, public_ip: str, public: dict[str, int], kernel_ip: str,
              kernel: dict[str, int], copies_to: str,
              curve: tuple[bytes, bytes] | None = None) -> None:
        """Bind every public port (raising if one is taken) and start relaying; with `curve`
        (public, secret), the public side speaks CurveZMQ only."""
        planned: list[tuple[str, zmq.Socket[bytes], zmq.Socket[bytes], zmq.Socket[bytes] | None]]
        planned = []
        try:
            for channel in ("shell", "control", "stdin", "hb", "iopub"):
                front_type, back_type = ((zmq.XPUB, zmq.XSUB) if channel == "iopub"
                                         else (zmq.ROUTER, zmq.DEALER))
                front = self.context.socket(front_type)
                back = self.context.socket(back_type)
                for sock in (front, back):
                    sock.linger = 0
                    sock.sndhwm = sock.rcvhwm = HWM
                if back_type == zmq.DEALER:
                    # One routing id on every channel, as a direct client has: the kernel
                    # sends input_request on stdin to the route of the shell request.
                    back.setsockopt(zmq.IDENTITY, RELAY_IDENTITY)
                if curve is not None:
                    curve_server(front, curve)
                front.bind(f"tcp://{public_ip}:{public[channel]}")
                back.connect(f"tcp://{kernel_ip}:{kernel[channel]}")
                copies: zmq.Socket[bytes] | None = None
                if channel in RELAYED_REPLIES:
                    copies = self.context.socket(zmq.PUB)
                    copies.linger = 0
                    copies.sndhwm = HWM
                    copies.connect(copies_to)
                planned.append((channel, front, back, copies))
        except zmq.ZMQError:
            for _, opened_front, opened_back, opened_copies in planned:
                opened_front.close(linger=0)
                opened_back.close(linger=0)
                if opened_copies is not None:
                    opened_copies.close(linger=0)
            raise
        for channel, front, back, copies in planned:
            thread = threading.Thread(target=_relay, args=(channel, front, back, copies),
                                      name=f"relay-{channel}", daemon=True)
            thread.start()
            self.threads.append(thread)

    def stop(self) -> None:
        """End the relays: terminating the context makes each device return and close."""
        threading.Thread(target=self.context.term, name="relay-term", daemon=True).start()


def curve_server(sock: zmq.Socket[Any], keys: tuple[bytes, bytes]) -> None:
    """Make `sock` a CurveZMQ server (set before bind): a peer must know the public key to
    complete the handshake, and everything after it is encrypted."""
    sock.curve_server = True
    sock.curve_publickey, sock.curve_secretkey = keys


def _relay(channel: str, front: zmq.Socket[bytes], back: zmq.Socket[bytes],
           copies: zmq.Socket[bytes] | None) -> None:
    try:
        if copies is not None:
            monitored_queue(front, back, copies, b"in." + channel.encode(),
                            COPY_PREFIX + channel.encode())
        else:
            zmq.proxy(front, back)
    except zmq.ContextTerminated:
        pass
    except zmq.ZMQError as exc:
        log.error("the %s relay stopped: %s", channel, exc)
    finally:
        for sock in (front, back, copies):
            if sock is not None:
                with contextlib.suppress(zmq.ZMQError):
                    sock.close(linger=0)
