"""Run a container command in a private mount namespace with its volumes bind-mounted.

Executed as a script (``python -I -S mountexec.py MODE JSON``) between fork and the container's
command, so it uses the standard library only and ends in exec: the container keeps this
process's pid and start time.

Modes:
  check            unshare a mount namespace and exit 0 (can this host do it?)
  run SPEC         unshare, bind-mount SPEC["mounts"], chdir, exec SPEC["argv"]
  enter PID SPEC   join PID's mount namespace, chdir, exec (exec probes)
A failure before exec is written to SPEC["termination"] (if given) and ends with exit code 128.
"""

from __future__ import annotations

import ctypes
import json
import os
import sys

CLONE_NEWNS = 0x00020000
MS_RDONLY = 1
MS_REMOUNT = 32
MS_BIND = 4096
MS_REC = 16384
MS_PRIVATE = 1 << 18

START_ERROR_PREFIX = "kernelkeeper node: cannot start container: "

_libc = ctypes.CDLL(None, use_errno=True)


def _check(rc: int, what: str) -> None:
    if rc != 0:
        err = ctypes.get_errno()
        raise OSError(err, f"{what}: {os.strerror(err)}")


def _mount(src: str | None, dst: str, flags: int) -> None:
    _check(_libc.mount(src.encode() if src else None, dst.encode(), None,
                       ctypes.c_ulong(flags), None), f"mount {src or ''} on {dst}")


def _private_namespace() -> None:
    _check(_libc.unshare(CLONE_NEWNS), "unshare(CLONE_NEWNS)")
    # Without this, mounts would propagate back into the host's namespace.
    _mount("none", "/", MS_REC | MS_PRIVATE)


def _bind(src: str, dst: str, read_only: bool) -> None:
    if os.path.isdir(src):
        os.makedirs(dst, exist_ok=True)
    elif not os.path.exists(dst):
        os.makedirs(os.path.dirname(dst), exist_ok=True)
        with open(dst, "a"):
            pass
    _mount(src, dst, MS_BIND | MS_REC)
    if read_only:
        _mount("none", dst, MS_BIND | MS_REMOUNT | MS_RDONLY)


def _exec(spec: dict) -> None:
    if spec.get("cwd"):
        try:
            os.chdir(spec["cwd"])
        except OSError as exc:
            raise OSError(exc.errno, f"chdir {spec['cwd']!r}: {exc.strerror}") from None
    argv = spec["argv"]
    try:
        os.execvpe(argv[0], argv, os.environ)
    except OSError as exc:
        raise OSError(exc.errno, f"exec {argv[0]!r}: {exc.strerror}") from None


def main(argv: list[str]) -> int:
    mode = argv[1]
    spec = json.loads(argv[-1]) if len(argv) > 2 else {}
    try:
        if mode == "check":
            _private_namespace()
            return 0
        if mode == "run":
            _private_namespace()
            for src, dst, read_only in spec.get("mounts", []):
                _bind(src, dst, read_only)
        elif mode == "enter":
            fd = os.open(f"/proc/{int(argv[2])}/ns/mnt", os.O_RDONLY)
            _check(_libc.setns(fd, CLONE_NEWNS), "setns")
            os.close(fd)
        else:
            raise ValueError(f"unknown mode {mode!r}")
        _exec(spec)
    except (OSError, ValueError, KeyError, IndexError) as exc:
        detail = exc.strerror if isinstance(exc, OSError) and exc.strerror else str(exc)
        msg = f"{START_ERROR_PREFIX}{detail}"
        print(msg, file=sys.stderr, flush=True)
        if spec.get("termination"):
            try:
                with open(spec["termination"], "w") as f:
                    f.write(msg)
            except OSError:
                pass
        return 128
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
