"""operator/rbac.yaml is enough: the operator runs on its ServiceAccount's token alone."""

from __future__ import annotations

import re
import time
from pathlib import Path

from kernelkeeper.crds import model as crd
from kernelkeeper.operator import settings as operator_settings
from tests.helpers import (
    apply_session,
    events,
    execute,
    get_session,
    kernel_client,
    set_idle_timeout,
    token_kubeconfig,
    wait_ready,
    wait_until,
)

# kernelkeeper.operator is a namespace package (no __file__): find the folder through a module.
RBAC = Path(operator_settings.__file__).with_name("rbac.yaml")
FORBIDDEN = re.compile(r"(?<![\w.-])403(?![\w.-])")
SA, SA_NS = "kernelkeeper-operator", "kernelkeeper"


def _sa_kubeconfig(cluster, path: Path) -> Path:
    token = cluster.kubectl("create", "token", SA, "-n", SA_NS, "--duration", "1h").stdout.strip()
    return token_kubeconfig(cluster, path, token, SA)


def _can(cluster, kubeconfig: Path, *args: str) -> bool:
    out = cluster.kubectl("--kubeconfig", str(kubeconfig), "auth", "can-i", *args, check=False)
    return out.stdout.strip() == "yes"


def test_operator_runs_with_least_privilege_service_account(cluster, node, operator,
                                                            operator_replicas, tmp_path):
    cluster.kubectl("apply", "-f", str(RBAC))
    kubeconfig = _sa_kubeconfig(cluster, tmp_path / "sa.kubeconfig")
    # Least privilege, not just enough: no listing of Secrets, no access to other Leases.
    assert not _can(cluster, kubeconfig, "list", "secrets", "-A")
    assert not _can(cluster, kubeconfig, "update", "leases/other", "-n", SA_NS)
    assert not _can(cluster, kubeconfig, "patch", "kernelsessions.kernelkeeper.io", "-A")
    assert _can(cluster, kubeconfig, "create", "pods", "-n", "anywhere")

    ns = cluster.new_namespace("rbac")
    with operator.paused():
        op = operator.spawn("rbac", "--kubeconfig", str(kubeconfig), "--lease-namespace", SA_NS)
        operator_replicas.append(op)
        try:
            op.wait_leading()
            kid = apply_session(cluster, ns, username="rbac")
            ks = wait_ready(cluster, ns, kid)
            kc = kernel_client(cluster, ns, ks)
            try:
                assert execute(kc, "40+2")["result"] == "42"
            finally:
                kc.stop_channels()
            # Pod replacement, status writes and Events all within the role.
            cluster.kubectl("delete", "pod", "-n", ns, ks["status"]["podName"], "--wait=false")
            wait_ready(cluster, ns, kid, timeout=120,
                       extra=lambda k: k["status"]["podName"] != ks["status"]["podName"])
            reasons = {e["reason"] for e in events(cluster, ns, kid)}
            assert {crd.REASON_RUNNING, crd.REASON_POD_LOST} <= reasons
            # Culling deletes the session.
            set_idle_timeout(cluster, ns, kid, 1)
            wait_until(lambda: get_session(cluster, ns, kid) is None, 60, "culled")
            time.sleep(1)
            log = op.output()
            # A status code, not three digits inside a kernel id ("...-4037-...").
            assert not FORBIDDEN.search(log) and "Forbidden" not in log, log[-3000:]
            assert op.terminate() == 0 and "released lease" in op.output()
        finally:
            op.terminate()
