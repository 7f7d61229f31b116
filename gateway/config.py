"""Gateway settings: one traitlets Configurable, every option also read from environment variables.

Precedence: an explicit value (command line or constructor) wins over the environment, which wins
over the default. Each trait names its variables with ``.tag(env=(...))``: first the
``KERNELKEEPER_GATEWAY_*`` name, then Kernel Gateway / Enterprise Gateway names where one exists,
so a KG deployment's environment carries over. `kernelkeeper gateway --help-env` prints the table.
"""

from __future__ import annotations

import os
import socket
from typing import Any

from traitlets import Bool, Float, Integer, List, TraitType, Undefined, Unicode, default
from traitlets.config import Configurable


def _env(*names: str) -> dict[str, Any]:
    return {"env": names}


class GatewayConfig(Configurable):
    ip = Unicode("127.0.0.1", config=True, help="Address to listen on.").tag(
        **_env("KERNELKEEPER_GATEWAY_IP", "KG_IP"))
    port = Integer(8888, config=True, help="Port to listen on.").tag(
        **_env("KERNELKEEPER_GATEWAY_PORT", "KG_PORT"))
    base_url = Unicode("/", config=True, help="Path prefix for every route (keep it lower-case).").tag(
        **_env("KERNELKEEPER_GATEWAY_BASE_URL", "KG_BASE_URL"))
    auth_token = Unicode("", config=True,
                         help="When set, every request must carry it or a user's token "
                              "(Authorization: token <t> or bearer, or ?token=). Its holder is a "
                              "service caller with admin rights. Never passed to kernels.").tag(
        **_env("KERNELKEEPER_GATEWAY_AUTH_TOKEN", "KG_AUTH_TOKEN"))
    users_file = Unicode("", config=True,
                         help="YAML file of users (name, token, admin), usually a mounted Secret: "
                              "a user's token makes the kernels they start theirs, and they see "
                              "only those. The auth_token stays a service token with admin "
                              "rights.").tag(**_env("KERNELKEEPER_GATEWAY_USERS_FILE"))
    users_reload_interval = Float(10.0, config=True,
                                  help="Seconds between re-reads of users_file (0: never).").tag(
        **_env("KERNELKEEPER_GATEWAY_USERS_RELOAD_INTERVAL"))
    jupyterhub_api_url = Unicode("", config=True,
                                 help="JupyterHub's API (for example http://hub:8081/hub/api): a "
                                      "token that is neither the auth_token nor a users_file "
                                      "token is asked of the hub, and its user is the caller.").tag(
        **_env("KERNELKEEPER_GATEWAY_JUPYTERHUB_API_URL"))
    jupyterhub_cache_seconds = Float(60.0, config=True,
                                     help="Seconds a JupyterHub answer about a token is reused "
                                          "(a refusal: 5 s).").tag(
        **_env("KERNELKEEPER_GATEWAY_JUPYTERHUB_CACHE_SECONDS"))
    authorized_users = List(Unicode(), config=True,
                            help="When not empty, only these users may start kernels (a kernel "
                                 "spec's metadata.process_proxy.config.authorized_users narrows "
                                 "it per spec).").tag(
        **_env("KERNELKEEPER_GATEWAY_AUTHORIZED_USERS", "EG_AUTHORIZED_USERS"))
    unauthorized_users = List(Unicode(), ["root"], config=True,
                              help="Users who may never start kernels (a kernel spec's "
                                   "metadata.process_proxy.config.unauthorized_users adds to "
                                   "it).").tag(
        **_env("KERNELKEEPER_GATEWAY_UNAUTHORIZED_USERS", "EG_UNAUTHORIZED_USERS"))

    namespace = Unicode("default", config=True, help="Namespace of the KernelSessions.").tag(
        **_env("KERNELKEEPER_GATEWAY_NAMESPACE"))
    kubeconfig = Unicode("", config=True,
                         help="Kubeconfig file; empty means in-cluster config when running in a "
                              "Pod, else ~/.kube/config.").tag(
        **_env("KERNELKEEPER_GATEWAY_KUBECONFIG", "KUBECONFIG"))
    replica_id = Unicode(config=True,
                         help="This replica's name in status.activity.replicas (default: the "
                              "Pod name, else host-pid).").tag(
        **_env("KERNELKEEPER_GATEWAY_REPLICA_ID", "POD_NAME"))

    kernel_spec_path = List(Unicode(), config=True,
                            help="Extra kernel spec directories (os.pathsep-separated in the "
                                 "environment), searched before $KERNELKEEPER_KERNELSPEC_PATH and "
                                 "the built-in specs, as the operator does.").tag(
        **_env("KERNELKEEPER_GATEWAY_KERNELSPEC_PATH"))
    default_kernel_name = Unicode("python3", config=True,
                                  help="Kernel spec used when a start request names none.").tag(
        **_env("KERNELKEEPER_GATEWAY_DEFAULT_KERNEL_NAME", "KG_DEFAULT_KERNEL_NAME"))
    launch_timeout = Float(40.0, config=True,
                           help="Seconds to wait for a kernel to become ready (a client's "
                                "KERNEL_LAUNCH_TIMEOUT overrides it, up to max_launch_timeout).").tag(
        **_env("KERNELKEEPER_GATEWAY_LAUNCH_TIMEOUT", "KERNEL_LAUNCH_TIMEOUT"))
    max_launch_timeout = Float(600.0, config=True,
                               help="Upper bound for a client-requested launch timeout.").tag(
        **_env("KERNELKEEPER_GATEWAY_MAX_LAUNCH_TIMEOUT"))
    kernel_request_timeout = Float(10.0, config=True,
                                   help="Seconds to wait for the kernel to answer an interrupt or "
                                        "shutdown request.").tag(
        **_env("KERNELKEEPER_GATEWAY_KERNEL_REQUEST_TIMEOUT"))

    list_kernels = Bool(True, config=True,
                        help="Allow GET /api/kernels (jupyter_server polls it; keep it on).").tag(
        **_env("KERNELKEEPER_GATEWAY_LIST_KERNELS", "KG_LIST_KERNELS"))
    max_kernels = Integer(0, config=True, help="Kernels allowed in the namespace (0: no limit).").tag(
        **_env("KERNELKEEPER_GATEWAY_MAX_KERNELS", "KG_MAX_KERNELS"))
    max_kernels_per_user = Integer(0, config=True,
                                   help="Kernels allowed per KERNEL_USERNAME (0: no limit).").tag(
        **_env("KERNELKEEPER_GATEWAY_MAX_KERNELS_PER_USER", "EG_MAX_KERNELS_PER_USER"))
    allowed_envs = List(Unicode(), config=True,
                        help="Env names clients may pass besides KERNEL_* (comma-separated in "
                             "the environment).").tag(
        **_env("KERNELKEEPER_GATEWAY_ALLOWED_ENVS", "KG_ENV_WHITELIST", "EG_CLIENT_ENVS"))

    ws_ping_interval = Float(30.0, config=True, help="Seconds between websocket pings.").tag(
        **_env("KERNELKEEPER_GATEWAY_WS_PING_INTERVAL", "KG_WS_PING_INTERVAL_SECS"))
    ws_max_message_size = Integer(64 * 1024 * 1024, config=True,
                                  help="Largest websocket message accepted from a client.").tag(
        **_env("KERNELKEEPER_GATEWAY_WS_MAX_MESSAGE_SIZE"))
    ws_max_messages_per_second = Float(500.0, config=True,
                                       help="Messages a second one websocket may send on "
                                            "average (0: no limit); past it and its burst the "
                                            "websocket is closed with 1008 and the reason.").tag(
        **_env("KERNELKEEPER_GATEWAY_WS_MAX_MESSAGES_PER_SECOND"))
    ws_burst_messages = Integer(2000, config=True,
                                help="Messages one websocket may send at once above that "
                                     "rate.").tag(**_env("KERNELKEEPER_GATEWAY_WS_BURST_MESSAGES"))
    prefer_legacy_protocol = Bool(False, config=True,
                                  help="Never select v1.kernel.websocket.jupyter.org, even when "
                                       "offered.").tag(
        **_env("KERNELKEEPER_GATEWAY_PREFER_LEGACY_PROTOCOL"))
    buffer_max_messages = Integer(10000, config=True,
                                  help="Messages this replica keeps for a disconnected session "
                                       "(replayed only when the kernel Pod's journal does not "
                                       "answer); the oldest are dropped beyond this.").tag(
        **_env("KERNELKEEPER_GATEWAY_BUFFER_MAX_MESSAGES"))
    buffer_max_bytes = Integer(64 * 1024 * 1024, config=True,
                               help="Bytes this replica keeps for a disconnected session.").tag(
        **_env("KERNELKEEPER_GATEWAY_BUFFER_MAX_BYTES"))
    buffer_timeout = Float(300.0, config=True,
                           help="Seconds a disconnected session keeps its sockets and buffer "
                                "on this replica.").tag(
        **_env("KERNELKEEPER_GATEWAY_BUFFER_TIMEOUT"))

    activity_interval = Float(10.0, config=True,
                              help="At most one activity write per kernel per this many seconds.").tag(
        **_env("KERNELKEEPER_GATEWAY_ACTIVITY_INTERVAL"))
    heartbeat_interval = Float(30.0, config=True,
                               help="Re-write this replica's heartbeat at least this often while "
                                    "it has connections to a kernel.").tag(
        **_env("KERNELKEEPER_GATEWAY_HEARTBEAT_INTERVAL"))
    replica_stale_after = Float(120.0, config=True,
                                help="Another replica's counts are ignored when its heartbeat is "
                                     "older than this; entries older than 10x are pruned.").tag(
        **_env("KERNELKEEPER_GATEWAY_REPLICA_STALE_AFTER"))
    shutdown_timeout = Float(10.0, config=True,
                             help="Seconds SIGTERM waits for websockets to close.").tag(
        **_env("KERNELKEEPER_GATEWAY_SHUTDOWN_TIMEOUT"))

    availability_mode = Unicode(
        "active-active", config=True,
        help="active-active: every replica serves. active-passive: only the holder of the Lease "
             "serves, the others stand by hot and answer 503 with Retry-After. Enterprise "
             "Gateway's names replication/standalone are accepted as aliases.").tag(
        **_env("KERNELKEEPER_GATEWAY_AVAILABILITY_MODE", "EG_AVAILABILITY_MODE"))
    lease_name = Unicode("kernelkeeper-gateway", config=True,
                         help="Lease used in active-passive mode.").tag(
        **_env("KERNELKEEPER_GATEWAY_LEASE_NAME"))
    lease_namespace = Unicode("", config=True,
                              help="Namespace of that Lease (default: the KernelSession "
                                   "namespace).").tag(**_env("KERNELKEEPER_GATEWAY_LEASE_NAMESPACE"))
    lease_duration = Float(15.0, config=True,
                           help="Seconds a standby waits after the last renew it saw before taking "
                                "over. Longer: fewer false takeovers on a slow API server; "
                                "shorter: faster failover after a crash.").tag(
        **_env("KERNELKEEPER_GATEWAY_LEASE_DURATION"))
    renew_deadline = Float(10.0, config=True,
                           help="The holder stops serving when it has not renewed for this long "
                                "(must be below lease_duration: the gap absorbs request latency "
                                "and clock-rate drift, so two replicas never serve at once).").tag(
        **_env("KERNELKEEPER_GATEWAY_RENEW_DEADLINE"))
    retry_period = Float(2.0, config=True,
                         help="Seconds between renew attempts (and standby polls: a released "
                              "Lease is taken over within about this long).").tag(
        **_env("KERNELKEEPER_GATEWAY_RETRY_PERIOD"))

    allow_origin = Unicode("", config=True, help="Access-Control-Allow-Origin.").tag(
        **_env("KERNELKEEPER_GATEWAY_ALLOW_ORIGIN", "KG_ALLOW_ORIGIN"))
    allow_credentials = Unicode("", config=True, help="Access-Control-Allow-Credentials.").tag(
        **_env("KERNELKEEPER_GATEWAY_ALLOW_CREDENTIALS", "KG_ALLOW_CREDENTIALS"))
    allow_headers = Unicode("", config=True, help="Access-Control-Allow-Headers.").tag(
        **_env("KERNELKEEPER_GATEWAY_ALLOW_HEADERS", "KG_ALLOW_HEADERS"))
    allow_methods = Unicode("", config=True, help="Access-Control-Allow-Methods.").tag(
        **_env("KERNELKEEPER_GATEWAY_ALLOW_METHODS", "KG_ALLOW_METHODS"))
    expose_headers = Unicode("", config=True, help="Access-Control-Expose-Headers.").tag(
        **_env("KERNELKEEPER_GATEWAY_EXPOSE_HEADERS", "KG_EXPOSE_HEADERS"))
    max_age = Unicode("", config=True, help="Access-Control-Max-Age.").tag(
        **_env("KERNELKEEPER_GATEWAY_MAX_AGE", "KG_MAX_AGE"))

    @default("replica_id")
    def _default_replica_id(self) -> str:
        return f"{socket.gethostname()}-{os.getpid()}"

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        given = set(kwargs) | set(self.config.get(type(self).__name__, {}))
        for name, trait in self.traits(config=True).items():
            if name in given:
                continue
            for var in trait.metadata.get("env", ()):
                raw = os.environ.get(var)
                if raw is None or (raw == "" and var in _SKIP_EMPTY):
                    continue
                self.set_trait(name, parse(trait, raw))
                break

    @property
    def base_path(self) -> str:
        """The base URL as '/prefix' without a trailing slash ('' for the root)."""
        return "/" + self.base_url.strip("/") if self.base_url.strip("/") else ""

    @classmethod
    def env_table(cls) -> list[tuple[str, str, str, str]]:
        """(option, environment variables, default, help) for documentation."""
        rows = []
        for name, trait in sorted(cls.class_traits(config=True).items()):
            dflt = trait.default_value
            if isinstance(trait, List):
                shown = repr(list(trait.default() or []))
            else:
                shown = "host-pid" if name == "replica_id" or dflt is Undefined else repr(dflt)
            rows.append((name, ", ".join(trait.metadata.get("env", ())), shown, trait.help))
        return rows


# Some variables are commonly exported empty; an empty KUBECONFIG must not mean "no kubeconfig".
_SKIP_EMPTY = {"KUBECONFIG", "POD_NAME", "KERNEL_LAUNCH_TIMEOUT"}


def parse(trait: TraitType, raw: str) -> Any:
    """Turn an environment string into the trait's type (lists are comma or pathsep separated)."""
    if isinstance(trait, List):
        sep = os.pathsep if "PATH" in " ".join(trait.metadata.get("env", ())) else ","
        return [item.strip() for item in raw.split(sep) if item.strip()]
    if isinstance(trait, Bool):
        return raw.strip().lower() in ("1", "true", "yes", "on")
    return trait.from_string(raw)
