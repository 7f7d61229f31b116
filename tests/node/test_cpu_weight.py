"""Pods get the CPU weight of their CPU request, as the kubelet's cgroups would give them."""

from __future__ import annotations

import os

import pytest

from kernelkeeper.local.node import cpuweight
from tests.node.helpers import container, create_pod, pod_manifest, wait_for, wait_ready

REPORT_NICE = """
import os, pathlib, time
pathlib.Path(os.environ["OUT"]).write_text(str(os.getpriority(os.PRIO_PROCESS, 0)))
while True:
    time.sleep(1)
"""


@pytest.mark.parametrize(("resources", "shares", "nice"), [
    (None, 2, 19),                                     # BestEffort
    ({"requests": {"cpu": "100m"}}, 102, 10),          # the python3 kernel spec's request
    ({"requests": {"cpu": "500m"}}, 512, 3),
    ({"requests": {"cpu": "1"}}, 1024, 0),
    ({"requests": {"cpu": "4"}}, 4096, 0),             # never more than an ordinary process
    ({"limits": {"cpu": "250m"}}, 256, 6),             # a limit alone is also the request
])
def test_shares_and_nice_follow_the_cpu_request(resources, shares, nice):
    c = {"name": "c"} if resources is None else {"name": "c", "resources": resources}
    pod = {"spec": {"containers": [c]}}
    assert cpuweight.pod_cpu_shares(pod) == shares
    assert cpuweight.pod_nice(pod) == nice


def test_containers_add_up():
    pod = {"spec": {"containers": [{"name": "a", "resources": {"requests": {"cpu": "500m"}}},
                                   {"name": "b", "resources": {"requests": {"cpu": "500m"}}}]}}
    assert cpuweight.pod_cpu_shares(pod) == 1024


def test_container_process_runs_at_its_pods_weight(core, ns, tmp_path):
    """Measured on the real process: its own niceness, read from inside it."""
    cases = {"besteffort": (None, 19), "request-100m": ({"requests": {"cpu": "100m"}}, 10)}
    for name, (resources, _) in cases.items():
        extra = {"resources": resources} if resources else {}
        env = [{"name": "OUT", "value": str(tmp_path / name)}]
        create_pod(core, ns, pod_manifest(name, [container("c", REPORT_NICE, env=env, **extra)]))
    for name, (_, nice) in cases.items():
        wait_ready(core, ns, name)
        got = wait_for(lambda n=name: (tmp_path / n).exists() and (tmp_path / n).read_text(),
                       30, what=f"{name} to report its niceness")
        assert int(got) == nice + os.getpriority(os.PRIO_PROCESS, 0), name
