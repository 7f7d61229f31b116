"""Keep one local component running, as a Deployment's kubelet would (restartPolicy: Always).

The operator and the gateways exit non-zero on purpose when they lose their Lease (a process
whose epoch is over must not carry on); in a cluster the kubelet starts a fresh one. In the local
environment this small supervisor does: it restarts the command after a non-zero exit with a
growing back-off, and forwards SIGTERM/SIGINT so `local down` still stops the component cleanly.

    python -m kernelkeeper.local.supervise -- <command> [args...]
"""

from __future__ import annotations

import signal
import subprocess
import sys
import time
from collections.abc import Sequence

BACKOFF_INITIAL = 1.0
BACKOFF_MAX = 10.0
# A run this long resets the back-off, as the kubelet does after 10 minutes (shorter here).
STABLE_AFTER = 60.0


def _log(msg: str) -> None:
    stamp = time.strftime("%Y-%m-%d %H:%M:%S")
    print(f"{stamp} [supervise] {msg}", file=sys.stderr, flush=True)


def supervise(cmd: Sequence[str]) -> int:
    stopping = False
    child: subprocess.Popen[bytes] | None = None

    def forward(signum: int, _frame: object) -> None:
        nonlocal stopping
        stopping = True
        if child is not None and child.poll() is None:
            child.send_signal(signum)

    signal.signal(signal.SIGTERM, forward)
    signal.signal(signal.SIGINT, forward)
    backoff = BACKOFF_INITIAL
    while True:
        started = time.monotonic()
        child = subprocess.Popen(list(cmd))
        if stopping:
            # The signal came while this child was being started, before `forward` knew it.
            child.terminate()
        code = child.wait()
        if stopping:
            return code
        if code == 0:
            _log("component exited 0; not restarting")
            return 0
        if time.monotonic() - started > STABLE_AFTER:
            backoff = BACKOFF_INITIAL
        _log(f"component exited with {code}; restarting in {backoff:.0f}s")
        deadline = time.monotonic() + backoff
        while time.monotonic() < deadline and not stopping:
            time.sleep(0.1)
        if stopping:
            return code
        backoff = min(BACKOFF_MAX, backoff * 2)


def main(argv: Sequence[str] | None = None) -> int:
    args = list(sys.argv[1:] if argv is None else argv)
    if args[:1] == ["--"]:
        args = args[1:]
    if not args:
        print("usage: python -m kernelkeeper.local.supervise -- <command> [args...]",
              file=sys.stderr)
        return 2
    return supervise(args)


if __name__ == "__main__":
    sys.exit(main())
