"""The chart's kernelspecs sidecar (files/sync_kernelspecs.py) lays out what kernel/specs.py reads.

No cluster: the script runs as the sidecar runs it, on a source file standing for the mounted
ConfigMap, and the layout it publishes is read with the operator's and gateway's own loader.
"""

from __future__ import annotations

import base64
import json
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from kernelkeeper.kernel.specs import load_kernel_specs
from kernelkeeper.local.chart import CHART
from tests.helpers import wait_until

SCRIPT = CHART / "files" / "sync_kernelspecs.py"
ARGV = ["python", "-m", "ipykernel_launcher", "-f", "{connection_file}"]


@pytest.fixture
def sidecar(tmp_path: Path) -> Iterator[tuple[Path, Path, Path]]:
    """(source, target, log) of a running sidecar."""
    source, target, log = tmp_path / "kernelspecs.json", tmp_path / "specs", tmp_path / "log"
    source.write_text("{}")
    target.mkdir()
    with log.open("w") as out:
        proc = subprocess.Popen([sys.executable, str(SCRIPT), str(source), str(target), "0.1"],
                                stdout=out, stderr=subprocess.STDOUT)
    try:
        yield source, target, log
    finally:
        proc.terminate()
        proc.wait(10)


def published(target: Path) -> dict[str, dict]:
    return {name: spec.spec for name, spec in load_kernel_specs([target]).items()}


def test_layout_follows_the_source(sidecar: tuple[Path, Path, Path]) -> None:
    source, target, _ = sidecar
    wait_until(lambda: (target / ".synced").exists(), 10, "the first (empty) layout")
    assert published(target) == {}

    logo = bytes(range(256))
    source.write_text(json.dumps({
        "small": {"spec": {"argv": ARGV, "display_name": "Small"},
                  "files": {"kernel.js": "// js"},
                  "binaryFiles": {"logo-64x64.png": base64.b64encode(logo).decode()}},
        "other": {"spec": {"argv": ARGV, "display_name": "Other"}}}))
    wait_until(lambda: set(published(target)) == {"small", "other"}, 10, "two specs published")
    specs = load_kernel_specs([target])
    assert specs["small"].display_name == "Small"
    assert specs["small"].resources == ("kernel.js", "logo-64x64.png")
    assert specs["small"].read_resource("logo-64x64.png") == logo

    # A changed spec, a removed one: the next layout replaces the links, old layouts go.
    source.write_text(json.dumps({"small": {"spec": {"argv": ARGV, "display_name": "Small 2"}}}))
    wait_until(lambda: published(target) == {"small": {"argv": ARGV, "display_name": "Small 2"}},
               10, "the changed spec published, the removed one gone")
    source.write_text(json.dumps({"small": {"spec": {"argv": ARGV, "display_name": "Small 3"}}}))
    wait_until(lambda: published(target)["small"]["display_name"] == "Small 3", 10, "third")
    layouts = [p for p in target.iterdir() if p.name.startswith(".layout-")]
    assert len(layouts) == 2, layouts  # the current one and the one a reader may still be in


def test_a_bad_source_keeps_what_is_published(sidecar: tuple[Path, Path, Path]) -> None:
    source, target, log = sidecar
    source.write_text(json.dumps({"good": {"spec": {"argv": ARGV}}}))
    wait_until(lambda: "good" in published(target), 10, "the good spec published")
    layouts = {p.name for p in target.iterdir() if p.name.startswith(".layout-")}
    source.write_text(json.dumps({"bad": {"spec": {"argv": ARGV},
                                          "binaryFiles": {"x.png": "not base64!"}}}))
    wait_until(lambda: "not published" in log.read_text(), 10, "the sidecar refusing the source")
    assert set(published(target)) == {"good"}
    # The half-written layout is gone; the published one is untouched.
    assert {p.name for p in target.iterdir() if p.name.startswith(".layout-")} == layouts
    source.write_text(json.dumps({"fixed": {"spec": {"argv": ARGV}}}))
    wait_until(lambda: set(published(target)) == {"fixed"}, 10, "the sidecar still at work")
