"""Pods get the CPU weight of their CPU request, as the kubelet's cgroups would give them."""

from __future__ import annotations

import json
import os

import pytest

from kernelkeeper.local.node import cpuweight
from tests.node.helpers import container, create_pod, pod_manifest, wait_for, wait_ready

REPORT = """
import json, os, pathlib, time
cpu = [line.split(":", 2)[2] for line in open("/proc/self/cgroup")
       if "cpu" in line.split(":", 2)[1].split(",")]
pathlib.Path(os.environ["OUT"]).write_text(json.dumps(
    {"nice": os.getpriority(os.PRIO_PROCESS, 0), "cgroup": cpu[0].strip() if cpu else ""}))
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
    assert cpuweight.nice_for_shares(cpuweight.pod_cpu_shares(pod)) == nice


def test_containers_add_up():
    pod = {"spec": {"containers": [{"name": "a", "resources": {"requests": {"cpu": "500m"}}},
                                   {"name": "b", "resources": {"requests": {"cpu": "500m"}}}]}}
    assert cpuweight.pod_cpu_shares(pod) == 1024


def test_cgroup_placement_writes_the_pod_shares(tmp_path):
    groups = cpuweight.CpuGroups("node-a", "2", root=tmp_path)
    assert groups.enabled
    assert (tmp_path / "kernelkeeper/node-a/cpu.shares").read_text() == "2048"
    join, nice = groups.placement({"metadata": {"uid": "u1"}, "spec": {"containers": [
        {"name": "c", "resources": {"requests": {"cpu": "100m"}}}]}})
    assert join is not None and nice == 0
    assert (tmp_path / "kernelkeeper/node-a/podu1/cpu.shares").read_text() == "102"
    groups.remove("u1")  # a plain directory with files refuses rmdir: never an error


def test_without_cgroups_pods_get_nice_values(tmp_path):
    (tmp_path / "kernelkeeper").write_text("not a directory")
    groups = cpuweight.CpuGroups("node-a", "2", root=tmp_path)
    assert not groups.enabled
    assert groups.placement({"metadata": {"uid": "u1"}, "spec": {"containers": [{}]}}) == \
        (None, 19)


def test_container_process_runs_at_its_pods_weight(core, ns, tmp_path):
    """Read from inside real pods: their cpu cgroup and its shares (or, on a host without
    cgroups, their niceness)."""
    cases = {"besteffort": (None, 2, 19), "request-100m": ({"requests": {"cpu": "100m"}}, 102, 10)}
    for name, (resources, _, _) in cases.items():
        extra = {"resources": resources} if resources else {}
        env = [{"name": "OUT", "value": str(tmp_path / name)}]
        create_pod(core, ns, pod_manifest(name, [container("c", REPORT, env=env, **extra)]))
    for name, (_, shares, nice) in cases.items():
        pod = wait_ready(core, ns, name)
        got = json.loads(wait_for(lambda n=name: (tmp_path / n).exists()
                                  and (tmp_path / n).read_text(), 30, what=f"{name} report"))
        if "/kernelkeeper/" in got["cgroup"]:
            assert got["cgroup"].endswith(f"/pod{pod['metadata']['uid']}"), got
            group = cpuweight.CGROUP_CPU / got["cgroup"].lstrip("/")
            assert (group / "cpu.shares").read_text().strip() == str(shares), name
            assert got["nice"] == os.getpriority(os.PRIO_PROCESS, 0)
        else:
            assert got["nice"] == nice + os.getpriority(os.PRIO_PROCESS, 0), name
