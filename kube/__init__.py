"""Kubernetes plumbing shared by the operator and the gateway (and nothing else of theirs).

- `client`: one async client that speaks wire-form dicts, with a hard timeout on every
  request, an optional leader guard for writes, delete preconditions and one `ApiError`.
- `config`: kubeconfig or in-cluster configuration.
- `paths`: resource paths, so no caller assembles URLs by hand.
- `watch`: a watch reader that takes events of any size.
- `lease`: leader election on a coordination.k8s.io Lease.
"""
