"""kernelkeeper.client: a jupyter_client-compatible kernel manager and client for notebook runners
(nbclient, papermill) that talk to a kernelkeeper gateway and survive its failovers."""
