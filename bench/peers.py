"""Per-peer virtualenvs under bench/.envs/, each installed from PyPI with the peer's own pins.

Every peer gets its own environment so that its dependency pins (Enterprise Gateway still pins
old jupyter_client/jupyter_server lines) never touch kernelkeeper's .venv. An environment is
reused while its stamp (the requirement list) is unchanged.

    python -m bench.peers            # create or update all peers, print progress and timing
    python -m bench.peers eg kg      # only these
"""

from __future__ import annotations

import hashlib
import json
import subprocess
import sys
import time
import venv
from dataclasses import dataclass
from pathlib import Path

BENCH_DIR = Path(__file__).resolve().parent
ENVS_DIR = BENCH_DIR / ".envs"


@dataclass(frozen=True)
class Peer:
    key: str
    title: str
    requirements: tuple[str, ...]
    # Distributions whose versions the report shows.
    report: tuple[str, ...]
    optional: bool = False  # a failed install is reported, not fatal

    @property
    def env_dir(self) -> Path:
        return ENVS_DIR / self.key

    @property
    def python(self) -> Path:
        return self.env_dir / "bin" / "python"

    @property
    def stamp(self) -> Path:
        return self.env_dir / ".bench-stamp"

    def stamp_text(self) -> str:
        digest = hashlib.sha1("\n".join(self.requirements).encode()).hexdigest()[:12]
        return f"{sys.version_info.major}.{sys.version_info.minor}:{digest}"


PEERS: dict[str, Peer] = {
    p.key: p
    for p in (
        Peer(
            "eg",
            "Enterprise Gateway",
            ("jupyter_enterprise_gateway==3.3.0", "ipykernel"),
            ("jupyter_enterprise_gateway", "jupyter_server", "jupyter_client", "tornado",
             "ipykernel", "pyzmq"),
        ),
        Peer(
            "jupyter_server",
            "jupyter_server",
            ("jupyter_server>=2.21,<2.22", "ipykernel"),
            ("jupyter_server", "jupyter_client", "tornado", "ipykernel", "pyzmq"),
        ),
        Peer(
            "kg",
            "Kernel Gateway",
            ("jupyter_kernel_gateway==3.0.1", "ipykernel"),
            ("jupyter_kernel_gateway", "jupyter_server", "jupyter_client", "tornado",
             "ipykernel", "pyzmq"),
            optional=True,
        ),
    )
}


def _log(msg: str) -> None:
    print(f"[bench.peers] {msg}", file=sys.stderr, flush=True)


def is_ready(peer: Peer) -> bool:
    return (
        peer.python.exists()
        and peer.stamp.is_file()
        and peer.stamp.read_text().strip() == peer.stamp_text()
    )


def ensure(peer: Peer) -> None:
    """Create or update the peer's virtualenv; raises CalledProcessError if pip fails."""
    if is_ready(peer):
        _log(f"{peer.key}: up to date ({peer.env_dir.relative_to(BENCH_DIR.parent)})")
        return
    t0 = time.monotonic()
    if not peer.python.exists():
        _log(f"{peer.key}: creating virtualenv")
        venv.EnvBuilder(with_pip=True, clear=True).create(peer.env_dir)
    peer.stamp.unlink(missing_ok=True)
    _log(f"{peer.key}: pip install {' '.join(peer.requirements)}")
    subprocess.run(
        [str(peer.python), "-m", "pip", "install", "-q", "--upgrade", *peer.requirements],
        check=True,
        cwd=ENVS_DIR,  # nothing in the virtualenvs' folder is importable by mistake
    )
    peer.stamp.write_text(peer.stamp_text() + "\n")
    _log(f"{peer.key}: ready in {time.monotonic() - t0:.0f}s")


def versions(python: Path | str, dists: tuple[str, ...] | list[str]) -> dict[str, str]:
    """Installed versions of `dists` in the environment of `python` (missing ones are omitted)."""
    code = (
        "import importlib.metadata as m, json, sys\n"
        "out = {}\n"
        "for d in sys.argv[1:]:\n"
        "    try: out[d] = m.version(d)\n"
        "    except m.PackageNotFoundError: pass\n"
        "print(json.dumps(out))\n"
    )
    res = subprocess.run([str(python), "-c", code, *dists], capture_output=True, text=True,
                         check=True)
    return json.loads(res.stdout)


def ensure_all(keys: list[str] | None = None) -> dict[str, str]:
    """Set up the given peers (all by default). Returns {key: error} for optional ones that failed."""
    failed: dict[str, str] = {}
    for key in keys or list(PEERS):
        peer = PEERS[key]
        try:
            ensure(peer)
        except subprocess.CalledProcessError as exc:
            if not peer.optional:
                raise
            failed[key] = f"pip install failed (exit {exc.returncode})"
            _log(f"{key}: {failed[key]}; it will be reported as not measured")
    return failed


def main(argv: list[str] | None = None) -> int:
    keys = (argv if argv is not None else sys.argv[1:]) or None
    t0 = time.monotonic()
    failed = ensure_all(keys)
    for key in keys or list(PEERS):
        if key in failed:
            continue
        print(key, json.dumps(versions(PEERS[key].python, PEERS[key].report)))
    _log(f"all peers ready in {time.monotonic() - t0:.0f}s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
