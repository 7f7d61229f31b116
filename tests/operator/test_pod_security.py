"""Kernel Pods pass the `restricted` Pod Security Standard, enforced by the real API server.

The namespace is labelled for enforcement, so the API server's PodSecurity admission rejects
any kernel Pod that is not restricted; the kernel then runs with a read-only root
filesystem and writes only where the operator mounted emptyDirs (HOME and /tmp).
"""

from __future__ import annotations

import ast
import json
import time
from pathlib import Path

import pytest

from tests.helpers import apply_session, core, execute, kernel_client, wait_ready

ENFORCE = "pod-security.kubernetes.io/enforce"

# Run in the kernel: where it can write, who it is, and whether / is mounted read-only.
PROBE = """
import errno, json, os, tempfile
def attempt(path):
    try:
        with open(path, "w") as f:
            f.write("x")
        return "ok"
    except OSError as exc:
        return errno.errorcode[exc.errno]
json.dumps({
    "home": os.environ["HOME"],
    "write_home": attempt(os.path.join(os.path.expanduser("~"), "probe")),
    "write_tmp": attempt("/tmp/probe"),
    "tempfile": bool(tempfile.mkstemp()),
    "write_root": attempt("/probe"),
    "write_image_home": attempt("/opt/kernelkeeper/probe"),
    "root_read_only": bool(os.statvfs("/").f_flag & os.ST_RDONLY),
    "uid": os.getuid(), "gid": os.getgid(),
    "ipython_dir": os.path.isdir(os.path.expanduser("~/.ipython")),
})
"""


@pytest.fixture
def restricted_ns(cluster, ns) -> str:
    cluster.kubectl("label", "namespace", ns, f"{ENFORCE}=restricted",
                    f"{ENFORCE}-version=latest")
    return ns


def _probe(cluster, ns: str, ks: dict) -> dict:
    kc = kernel_client(cluster, ns, ks)
    try:
        result = execute(kc, PROBE)
    finally:
        kc.stop_channels()
    assert result["status"] == "ok", result
    return json.loads(ast.literal_eval(result["result"]))


def test_the_namespace_rejects_an_unrestricted_pod(cluster, restricted_ns):
    """The enforcement this file relies on is real: a plain Pod is refused."""
    pod = {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "plain"},
           "spec": {"containers": [{"name": "c", "image": cluster.image}]}}
    out = cluster.kubectl("apply", "-n", restricted_ns, "--dry-run=server", "-f", "-",
                          input=json.dumps(pod), check=False)
    assert out.returncode != 0 and "violates PodSecurity" in out.stderr, out


def test_kernel_runs_restricted_with_a_read_only_root(cluster, restricted_ns, operator):
    ns = restricted_ns
    kid = apply_session(cluster, ns)
    ks = wait_ready(cluster, ns, kid)
    pod = core(cluster).read_namespaced_pod(ks["status"]["podName"], ns)
    assert pod.spec.security_context.run_as_non_root is True
    assert pod.spec.security_context.seccomp_profile.type == "RuntimeDefault"
    (container,) = pod.spec.containers
    assert container.security_context.read_only_root_filesystem is True

    seen = _probe(cluster, ns, ks)
    assert seen["home"] == "/home/jovyan"
    assert seen["write_home"] == "ok" and seen["write_tmp"] == "ok" and seen["tempfile"]
    assert seen["ipython_dir"]  # IPython made its profile in the writable home
    assert seen["root_read_only"]
    assert seen["write_root"] == "EROFS" and seen["write_image_home"] == "EROFS"
    assert (seen["uid"], seen["gid"]) == (1000, 0)


def test_a_kernel_spec_may_opt_out_of_the_read_only_root(cluster, restricted_ns, operator,
                                                         kernelspecs: Path):
    spec_dir = kernelspecs / "python3-writable-root"
    spec_dir.mkdir(exist_ok=True)
    spec_dir.joinpath("kernel.json").write_text(json.dumps({
        "display_name": "writable root", "language": "python",
        "argv": ["python", "-m", "ipykernel_launcher", "-f", "{connection_file}"],
        "metadata": {"kernelkeeper": {"readOnlyRootFilesystem": False}}}))
    time.sleep(6)  # the operator re-reads its kernel specs every 5 s
    ns = restricted_ns
    kid = apply_session(cluster, ns, "python3-writable-root")
    ks = wait_ready(cluster, ns, kid)
    seen = _probe(cluster, ns, ks)
    # Still admitted as restricted and still non-root; only the root filesystem is writable.
    assert not seen["root_read_only"]
    assert seen["write_root"] == "EACCES"  # the image's / belongs to root, not to uid 1000
    assert seen["write_home"] == "ok" and seen["write_tmp"] == "ok"
    assert (seen["uid"], seen["gid"]) == (1000, 0)
