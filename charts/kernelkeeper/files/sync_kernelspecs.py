"""The kernelspecs sidecar: the chart's kernel specs as Jupyter kernelspec directories.

Usage: sync_kernelspecs.py SOURCE TARGET INTERVAL

SOURCE is the ConfigMap's `kernelspecs.json` (name -> {spec, files, binaryFiles}); TARGET is the
directory the operator and the gateway search (an emptyDir they mount read-only). A ConfigMap
volume cannot hold subdirectories unless the Pod names each file, so this script lays the specs
out, and does again whenever the kubelet has refreshed SOURCE. The operator and the gateway
re-read TARGET on their own (kernel/specs.py SpecCatalog), so a `helm upgrade` that changes the
specs reaches them without a restart.

Each layout is written to a fresh hidden directory; TARGET/<name> is a symlink into it, replaced
atomically, so a reader sees either the old spec or the new one, never half of one. The previous
layout stays until the next change, for a reader still inside it.
"""

from __future__ import annotations

import base64
import json
import os
import shutil
import sys
import time
from pathlib import Path
from typing import Any

READY_MARK = ".synced"
LAYOUT_PREFIX = ".layout-"


def say(message: str) -> None:
    print(f"[kernelspecs] {message}", flush=True)


def write_layout(specs: dict[str, Any], target: Path) -> Path:
    layout = target / f"{LAYOUT_PREFIX}{time.time_ns()}"
    layout.mkdir()
    try:
        for name, entry in specs.items():
            spec_dir = layout / name
            spec_dir.mkdir()
            (spec_dir / "kernel.json").write_text(json.dumps(entry["spec"], indent=1))
            for file_name, text in (entry.get("files") or {}).items():
                (spec_dir / file_name).write_text(text)
            for file_name, data in (entry.get("binaryFiles") or {}).items():
                (spec_dir / file_name).write_bytes(base64.b64decode(data))
    except BaseException:
        shutil.rmtree(layout, ignore_errors=True)
        raise
    return layout


def publish(specs: dict[str, Any], target: Path) -> None:
    layout = write_layout(specs, target)
    for name in specs:
        link = target / name
        staged = target / f".{name}.link"
        staged.unlink(missing_ok=True)
        staged.symlink_to(Path(layout.name) / name)
        os.replace(staged, link)
    for entry in target.iterdir():
        if entry.is_symlink() and not entry.name.startswith(".") and entry.name not in specs:
            entry.unlink()
    layouts = sorted((p for p in target.iterdir() if p.name.startswith(LAYOUT_PREFIX)),
                     key=lambda p: int(p.name.removeprefix(LAYOUT_PREFIX)))
    for old in layouts[:-2]:
        shutil.rmtree(old, ignore_errors=True)
    (target / READY_MARK).touch()
    say(f"published {len(specs)} kernel spec(s): {', '.join(sorted(specs)) or '-'}")


def main() -> None:
    source, target, interval = Path(sys.argv[1]), Path(sys.argv[2]), float(sys.argv[3])
    seen: bytes | None = None
    while True:
        try:
            raw = source.read_bytes()
            if raw != seen:
                publish(json.loads(raw or b"{}"), target)
                seen = raw
        except (OSError, ValueError, KeyError, TypeError) as exc:
            # A half-refreshed volume or a bad value: keep what is published, try again.
            say(f"not published: {exc!r}")
        time.sleep(interval)


if __name__ == "__main__":
    main()
