"""The chart's gateway Role is enough, and no more: a gateway on its ServiceAccount's token
alone holds its Lease and starts, runs, restarts and deletes kernels; `kubectl auth can-i`
says what it may not do."""

from __future__ import annotations

from pathlib import Path

from kernelkeeper.local.chart import CHART
from tests.fixtures.chart import run_helm
from tests.gateway.client import KernelWS, http
from tests.helpers import token_kubeconfig, wait_until

SA = "kernelkeeper-gateway"


def test_the_gateway_runs_on_its_own_service_account(gateways, kk_namespace, cluster, helm,
                                                     tmp_path: Path):
    rendered = run_helm(helm, "template", "kernelkeeper", str(CHART), "--namespace",
                        kk_namespace, "--show-only", "templates/gateway-rbac.yaml").stdout
    cluster.kubectl("apply", "-n", kk_namespace, "-f", "-", input=rendered)
    token = cluster.kubectl("create", "token", SA, "-n", kk_namespace,
                            "--duration", "1h").stdout.strip()
    kubeconfig = token_kubeconfig(cluster, tmp_path / "gateway.kubeconfig", token, SA)

    def can(*args: str) -> bool:
        out = cluster.kubectl("--kubeconfig", str(kubeconfig), "auth", "can-i", *args,
                              check=False)
        return out.stdout.strip() == "yes"

    ns = ("-n", kk_namespace)
    assert can("update", "leases.coordination.k8s.io/kernelkeeper-gateway", *ns)
    assert can("create", "kernelsessions.kernelkeeper.io", *ns)
    for denied in [("update", "leases.coordination.k8s.io/kernelkeeper-operator"),
                   ("update", "leases.coordination.k8s.io/anything-else"),
                   ("delete", "leases.coordination.k8s.io/kernelkeeper-gateway"),
                   ("list", "secrets"), ("create", "secrets"), ("create", "pods"),
                   ("delete", "pods"), ("get", "pods"), ("update", "kernelsessions.kernelkeeper.io"),
                   ("create", "rolebindings.rbac.authorization.k8s.io")]:
        assert not can(*denied, *ns), denied
    assert not can("create", "kernelsessions.kernelkeeper.io", "-n", "default")
    assert not can("get", "secrets", "-n", "kube-system")

    gw = gateways.start(kk_namespace, kubeconfig=kubeconfig, env={
        "KERNELKEEPER_GATEWAY_AVAILABILITY_MODE": "active-passive",
        "KERNELKEEPER_GATEWAY_LEASE_NAME": "kernelkeeper-gateway"})
    wait_until(lambda: cluster.kubectl("get", "lease", "kernelkeeper-gateway", *ns, "-o",
                                       "jsonpath={.spec.holderIdentity}",
                                       check=False).stdout.startswith(gw.replica_id),
               60, "the gateway holds its Lease")
    status, model = http("POST", f"{gw.url}/api/kernels", {"name": "python3"}, timeout=180)
    assert status == 201, (model, gw.log_text()[-2000:])
    kid = model["id"]
    ws = KernelWS(gw.ws_url, kid)
    try:
        reply, out, _ = ws.execute("print(6 * 7)")
        assert out.strip() == "42"
    finally:
        ws.close()
    assert http("POST", f"{gw.url}/api/kernels/{kid}/restart", timeout=180)[0] == 200
    assert http("POST", f"{gw.url}/api/kernels/{kid}/interrupt")[0] == 204
    assert http("DELETE", f"{gw.url}/api/kernels/{kid}")[0] == 204
    assert " 403 " not in gw.log_text() and "Forbidden" not in gw.log_text()
