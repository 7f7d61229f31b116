"""The one kernel every target runs: a kernelspec pointing at a chosen Python's ipykernel.

Using the same interpreter (and so the same ipykernel) behind every server means the figures
differ only by the path between client and kernel, not by the kernel.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

KERNEL_NAME = "bench-python"

# Used only for the "kernel as a pod would be" variants of Enterprise Gateway's failover:
# - drop JPY_PARENT_PID so ipykernel does not exit when the server that launched it dies
#   (a kernel pod outlives a gateway pod);
# - listen on all interfaces, because EG's LocalProcessProxy records the host's public IP in
#   the persisted session while it launches local kernels on 127.0.0.1.
_WRAPPER = '''\
import json, os, sys

args = sys.argv[1:]
if os.environ.get("BENCH_DETACH_KERNEL") == "1":
    os.environ.pop("JPY_PARENT_PID", None)
if os.environ.get("BENCH_KERNEL_ALL_INTERFACES") == "1":
    path = args[args.index("-f") + 1]
    with open(path) as f:
        info = json.load(f)
    info["ip"] = "0.0.0.0"
    with open(path, "w") as f:
        json.dump(info, f)
from ipykernel import kernelapp

sys.argv = ["ipykernel_launcher", *args]
kernelapp.launch_new_instance()
'''


# kernelkeeper's built-in python3 spec with CurveZMQ turned off (metadata.kernelkeeper.curve):
# the Curve-off row of the latency table, to price encryption on the same run.
NO_CURVE_SPEC = "python3-no-curve"


def write_no_curve_spec(root: Path) -> Path:
    """`<root>/python3-no-curve/kernel.json`; put root on KERNELKEEPER_KERNELSPEC_PATH."""
    from kernelkeeper.kernel.specs import BUILTIN_DIR

    spec = json.loads((BUILTIN_DIR / "python3" / "kernel.json").read_text())
    meta = spec.setdefault("metadata", {})
    meta["kernelkeeper"] = {**(meta.get("kernelkeeper") or {}), "curve": False}
    spec["display_name"] = f"{spec.get('display_name', 'Python 3')} (no Curve)"
    spec_dir = root / NO_CURVE_SPEC
    spec_dir.mkdir(parents=True, exist_ok=True)
    (spec_dir / "kernel.json").write_text(json.dumps(spec, indent=1))
    return root


def kernel_python() -> str:
    """kernelkeeper's own interpreter: the ipykernel its kernel pods run."""
    return sys.executable


def write_kernelspec(jupyter_path: Path, python: str | None = None,
                     name: str = KERNEL_NAME, *, detach_from_parent: bool = False,
                     all_interfaces: bool = False) -> Path:
    """Write `<jupyter_path>/kernels/<name>/kernel.json`; put jupyter_path on JUPYTER_PATH."""
    spec_dir = jupyter_path / "kernels" / name
    spec_dir.mkdir(parents=True, exist_ok=True)
    py = python or kernel_python()
    spec: dict[str, object] = {
        "argv": [py, "-m", "ipykernel_launcher", "-f", "{connection_file}"],
        "display_name": f"bench ({name})",
        "language": "python",
        "metadata": {"debugger": False},
    }
    if detach_from_parent or all_interfaces:
        wrapper = spec_dir / "bench_kernel.py"
        wrapper.write_text(_WRAPPER)
        spec["argv"] = [py, str(wrapper), "-f", "{connection_file}"]
        spec["env"] = {"BENCH_DETACH_KERNEL": "1" if detach_from_parent else "0",
                       "BENCH_KERNEL_ALL_INTERFACES": "1" if all_interfaces else "0"}
    (spec_dir / "kernel.json").write_text(json.dumps(spec, indent=1))
    return spec_dir
