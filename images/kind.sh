#!/usr/bin/env bash
# `make kind`: kernelkeeper on a kind cluster, for users with Docker and kind (and kubectl, helm).
#
# Creates the cluster (unless it exists), builds the image with `docker build`, loads it into
# the cluster's node with `kind load docker-image`, installs the chart into a namespace that
# enforces the `restricted` Pod Security Standard, runs `helm test`, and prints how to point
# JupyterLab at the gateway. This path is not exercised by the repository's tests (they run
# where there is no Docker engine, on the local real node).
#
#   KIND_CLUSTER=kernelkeeper NAMESPACE=jupyter MODE=active-active images/kind.sh
set -euo pipefail

cluster="${KIND_CLUSTER:-kernelkeeper}"
namespace="${NAMESPACE:-jupyter}"
mode="${MODE:-active-active}"
root="$(cd "$(dirname "$0")/.." && pwd)"
version="$(sed -n 's/^appVersion: *"\{0,1\}\([^"]*\)"\{0,1\}$/\1/p' "$root/charts/kernelkeeper/Chart.yaml")"
image="kernelkeeper:${version}"

for tool in docker kind kubectl helm; do
  command -v "$tool" >/dev/null || { echo "make kind needs $tool on PATH" >&2; exit 1; }
done

if ! kind get clusters | grep -qx "$cluster"; then
  kind create cluster --name "$cluster" --wait 120s
fi
kubectl config use-context "kind-${cluster}" >/dev/null

docker build -t "$image" "$root"
kind load docker-image "$image" --name "$cluster"

kubectl get namespace "$namespace" >/dev/null 2>&1 || kubectl create namespace "$namespace"
kubectl label namespace "$namespace" --overwrite pod-security.kubernetes.io/enforce=restricted

# The image is on the node only (kind load): never pull it.
helm upgrade --install kernelkeeper "$root/charts/kernelkeeper" --namespace "$namespace" \
  --set image.repository=kernelkeeper --set-string image.tag="$version" \
  --set image.pullPolicy=Never --set gateway.availabilityMode="$mode" --wait --timeout 300s
helm test kernelkeeper --namespace "$namespace" --timeout 300s

token="$(kubectl get secret -n "$namespace" kernelkeeper-gateway-token -o jsonpath='{.data.token}' | base64 -d)"
cat <<DONE

kernelkeeper runs on kind cluster ${cluster}, namespace ${namespace} (${mode}).
Reach the gateway (keep this running):
  kubectl port-forward -n ${namespace} svc/kernelkeeper-gateway 8888:8888
Start JupyterLab against it:
  jupyter lab --gateway-url=http://127.0.0.1:8888 --GatewayClient.auth_token=${token}
Remove it all: kind delete cluster --name ${cluster}
DONE
