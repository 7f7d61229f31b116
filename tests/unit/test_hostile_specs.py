"""Hostile kernel specs: whatever a kernel.json holds, loading the catalog either yields the
spec or skips it with a logged reason; it never raises, so one broken spec cannot take the
gateway's kernelspecs route or the operator's Pod rendering down with it."""

from __future__ import annotations

import json
import tempfile
from pathlib import Path
from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from kernelkeeper.kernel.specs import KernelSpec, load_kernel_specs
from tests.fixtures import fuzz

scalars = st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | \
    st.text(max_size=8)
anything = st.recursive(scalars, lambda inner: st.lists(inner, max_size=3)
                        | st.dictionaries(st.text(max_size=6), inner, max_size=3), max_leaves=8)
kernelkeeper_meta = st.dictionaries(
    st.sampled_from(["image", "resources", "nodeSelector", "tolerations", "serviceAccountName",
                     "runAsUser", "runAsGroup", "readOnlyRootFilesystem", "x"]),
    anything, max_size=4)
kernel_json = st.one_of(
    anything,
    st.fixed_dictionaries({
        "argv": st.one_of(st.just(["python", "-m", "ipykernel_launcher", "-f",
                                   "{connection_file}"]), anything),
        "display_name": anything,
        "language": anything,
        "metadata": st.one_of(anything, st.fixed_dictionaries({"kernelkeeper": st.one_of(
            kernelkeeper_meta, anything), "process_proxy": anything})),
        "env": anything,
    }),
)
raw_files = st.one_of(st.builds(json.dumps, kernel_json).map(str.encode),
                      st.binary(max_size=40), st.just(b"\xff\xfe{}"), st.just(b"[" * 5000))


@settings(max_examples=600, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(raw_files)
def test_a_kernel_json_is_loaded_or_skipped(raw: bytes) -> None:
    fuzz.count("kernel.json loading (unit)")
    with tempfile.TemporaryDirectory() as tmp:
        spec_dir = Path(tmp) / "hostile"
        spec_dir.mkdir()
        (spec_dir / "kernel.json").write_bytes(raw)
        specs = load_kernel_specs([Path(tmp)])
    if "hostile" not in specs:
        return
    spec: KernelSpec = specs["hostile"]
    assert isinstance(spec.spec, dict) and spec.argv and isinstance(spec.pod, dict)
    assert isinstance(spec.display_name, str)
    meta: Any = spec.spec.get("metadata", {})
    assert isinstance(meta, dict)
