"""The host side of the node's network: bridge, routes, a guard chain, sysctls, and their undoing.

The bridge carries the node's address (the API server and kubelet listen there) and the pods'
range; the Service range is routed to the bridge too, so a ClusterIP without a kube-proxy rule
goes nowhere instead of out of the default route. `setup` refuses to start when either range
would leave through the machine's default route or overlaps a route the machine already has.
"""

from __future__ import annotations

import ipaddress
import json
import shlex
import shutil
import subprocess
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from kernelkeeper.local.realnode import layout as L

# Host settings the node changes (the bridge plugin turns on forwarding, kubelet sets the
# panic and overcommit knobs, bridged pod traffic must pass through iptables for kube-proxy).
SYSCTLS = (
    "net/ipv4/ip_forward",
    "net/bridge/bridge-nf-call-iptables",
    "net/bridge/bridge-nf-call-ip6tables",
    "kernel/panic",
    "kernel/panic_on_oops",
    "vm/overcommit_memory",
    "net/ipv4/conf/all/route_localnet",
)
SET_SYSCTLS = {"net/ipv4/ip_forward": "1", "net/bridge/bridge-nf-call-iptables": "1",
               "net/bridge/bridge-nf-call-ip6tables": "1"}


class NetworkError(RuntimeError):
    """The machine's network does not allow the node to start safely; says why."""


def _run(args: Sequence[str], *, check: bool = True) -> subprocess.CompletedProcess[str]:
    out = subprocess.run(list(args), capture_output=True, text=True, check=False)
    if check and out.returncode != 0:
        raise NetworkError(f"`{' '.join(args)}` failed: {out.stderr.strip() or out.stdout.strip()}")
    return out


def need_tools() -> None:
    missing = [t for t in ("ip", "iptables", "ip6tables", "nft") if not shutil.which(t)]
    if missing:
        raise NetworkError(f"missing {', '.join(missing)}: apt-get install -y iproute2 iptables "
                           "nftables")


def default_route_devices() -> set[str]:
    out = _run(["ip", "-j", "route", "show", "default"], check=False)
    try:
        routes = json.loads(out.stdout or "[]")
    except ValueError:
        routes = []
    return {r["dev"] for r in routes if r.get("dev")}


def route_device(address: str) -> str | None:
    out = _run(["ip", "-j", "route", "get", address], check=False)
    if out.returncode != 0:
        return None
    try:
        routes = json.loads(out.stdout or "[]")
    except ValueError:
        return None
    return routes[0].get("dev") if routes else None


def _probe_addresses(cidr: str) -> list[str]:
    net = ipaddress.ip_network(cidr)
    # Not .1: that is the node's own address on the bridge, which routes via lo.
    return [str(net.network_address + 2), str(net.network_address + net.num_addresses // 2),
            str(net.broadcast_address - 1)]


def existing_overlaps(cidrs: Sequence[str]) -> list[str]:
    """Routes or addresses of the machine (other than ours) that overlap the node's ranges."""
    nets = [ipaddress.ip_network(c) for c in cidrs]
    found = []
    out = _run(["ip", "-j", "route", "show", "table", "all"], check=False)
    try:
        routes = json.loads(out.stdout or "[]")
    except ValueError:
        routes = []
    for r in routes:
        dst = r.get("dst")
        if not dst or dst == "default" or r.get("dev") == L.BRIDGE:
            continue
        try:
            net = ipaddress.ip_network(dst, strict=False)
        except ValueError:
            continue
        if net.version == 4 and net.prefixlen > 0 and any(net.overlaps(n) for n in nets):
            found.append(f"{dst} dev {r.get('dev')}")
    return found


def check_ranges_local() -> None:
    """Every probe address of the pod and Service ranges must route to our bridge."""
    defaults = default_route_devices()
    for cidr in (L.POD_CIDR, L.SERVICE_CIDR):
        for addr in _probe_addresses(cidr):
            dev = route_device(addr)
            if dev != L.BRIDGE or dev in defaults:
                raise NetworkError(f"{addr} (in {cidr}) routes via {dev or 'nothing'}, not the "
                                   f"node's bridge {L.BRIDGE}; refusing to start the node")


def snapshot(path: Path) -> dict[str, Any]:
    """Record the sysctls and host directories the node may change, unless already recorded."""
    if path.is_file():
        return dict(json.loads(path.read_text()))
    values = {}
    for key in SYSCTLS:
        p = Path("/proc/sys") / key
        if p.exists():
            values[key] = p.read_text().strip()
    dirs = {d: Path(d).exists() for d in HOST_DIRS}
    data = {"sysctls": values, "dirs": dirs, "nft_tables": sorted(nft_tables())}
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(data, indent=2))
    return data


# Paths kubelet, libcni and libmount write no matter how they are configured.
HOST_DIRS = ("/var/lib/kubelet", "/var/log/containers", "/var/log/pods", "/var/lib/cni",
             "/run/mount", "/etc/cni", "/opt/cni")


def _write_sysctl(key: str, value: str) -> None:
    p = Path("/proc/sys") / key
    if p.exists():
        p.write_text(value + "\n")


def setup(lay: L.NodeLayout) -> None:
    """Bridge with the node address, routes for both ranges, guard rules, sysctls."""
    need_tools()
    overlaps = existing_overlaps([L.POD_CIDR, L.SERVICE_CIDR])
    if overlaps:
        raise NetworkError("the node's ranges overlap routes this machine already has ("
                           + "; ".join(overlaps) + "); refusing to start the node")
    if L.BRIDGE in links():
        raise NetworkError(f"a network device {L.BRIDGE} already exists: another local "
                           "environment with a real node is up (`kernelkeeper local down`)")
    snapshot(lay.host_snapshot)
    _run(["ip", "link", "add", L.BRIDGE, "type", "bridge"])
    prefix = ipaddress.ip_network(L.POD_CIDR).prefixlen
    _run(["ip", "addr", "add", f"{L.NODE_IP}/{prefix}", "dev", L.BRIDGE])
    _run(["ip", "link", "set", L.BRIDGE, "up"])
    _run(["ip", "route", "add", L.SERVICE_CIDR, "dev", L.BRIDGE, "src", L.NODE_IP])
    install_guard()
    for key, value in SET_SYSCTLS.items():
        _write_sysctl(key, value)
    check_ranges_local()


def links() -> set[str]:
    """Names of this machine's network devices."""
    out = _run(["ip", "-j", "link", "show"], check=False)
    try:
        return {x["ifname"] for x in json.loads(out.stdout or "[]")}
    except ValueError:
        return set()


def install_guard() -> None:
    """DROP any packet of the pod or Service range that would leave by the default route.

    Re-run after kube-proxy starts: it puts its own jumps first, and the guard must stay first.
    """
    defaults = sorted(default_route_devices())
    if _run(["iptables", "-w", "-n", "-L", L.GUARD_CHAIN], check=False).returncode != 0:
        _run(["iptables", "-w", "-N", L.GUARD_CHAIN])
    _run(["iptables", "-w", "-F", L.GUARD_CHAIN])
    for dev in defaults:
        for cidr in (L.POD_CIDR, L.SERVICE_CIDR):
            _run(["iptables", "-w", "-A", L.GUARD_CHAIN, "-o", dev, "-d", cidr, "-j", "DROP"])
        _run(["iptables", "-w", "-A", L.GUARD_CHAIN, "-o", dev, "-s", L.POD_CIDR, "-j", "DROP"])
    for hook in ("OUTPUT", "FORWARD"):
        while _run(["iptables", "-w", "-D", hook, "-j", L.GUARD_CHAIN], check=False).returncode == 0:
            pass
        _run(["iptables", "-w", "-I", hook, "1", "-j", L.GUARD_CHAIN])


def guard_drops() -> int:
    """Packets the guard has dropped so far (it should stay at zero)."""
    out = _run(["iptables", "-w", "-n", "-v", "-x", "-L", L.GUARD_CHAIN], check=False)
    total = 0
    for line in out.stdout.splitlines()[2:]:
        fields = line.split()
        if fields and fields[0].isdigit():
            total += int(fields[0])
    return total


def teardown(lay: L.NodeLayout) -> list[str]:
    """Remove the bridge, routes, every chain the node's components made, restore sysctls."""
    notes = []
    if L.BRIDGE in links():
        _run(["ip", "link", "del", L.BRIDGE], check=False)
        notes.append(f"removed {L.BRIDGE}")
    # veths left by pods whose netns died with their containers go with the bridge; any
    # stray one still attached elsewhere is named by the bridge plugin `veth*` and peerless.
    _remove_chains()
    before = json.loads(lay.host_snapshot.read_text()) if lay.host_snapshot.is_file() else {}
    for key, value in (before.get("sysctls") or {}).items():
        try:
            _write_sysctl(key, value)
        except OSError as exc:
            notes.append(f"could not restore {key}: {exc}")
    if "nft_tables" in before:
        _remove_new_nft_tables(list(before["nft_tables"]))
    for d, existed in (before.get("dirs") or {}).items():
        if not existed and Path(d).exists():
            shutil.rmtree(d, ignore_errors=True)
    return notes


def _remove_chains() -> None:
    """Every KUBE-*, CNI-* and guard chain in every table, IPv4 and IPv6, and their jumps."""
    for tool in ("iptables", "ip6tables"):
        saved = _run([f"{tool}-save"], check=False).stdout
        table = None
        ours: dict[str, list[str]] = {}
        for line in saved.splitlines():
            if line.startswith("*"):
                table = line[1:]
                ours.setdefault(table, [])
            elif line.startswith(":") and table:
                chain = line[1:].split()[0]
                if _is_ours(chain):
                    ours[table].append(chain)
        for table, chains in ours.items():
            if not chains:
                continue
            for line in saved.split(f"*{table}\n", 1)[1].split("COMMIT", 1)[0].splitlines():
                if line.startswith("-A "):
                    parts = shlex.split(line)
                    if not _is_ours(parts[1]) and any(_is_ours(p) for p in parts):
                        _run([tool, "-w", "-t", table, "-D", *parts[1:]], check=False)
            for chain in chains:
                _run([tool, "-w", "-t", table, "-F", chain], check=False)
            for chain in chains:
                _run([tool, "-w", "-t", table, "-X", chain], check=False)
    _remove_empty_nft_tables()


def nft_tables() -> set[str]:
    """`family name` of every nft table (iptables-nft makes one per table it touches)."""
    out = _run(["nft", "-j", "list", "tables"], check=False)
    try:
        items = json.loads(out.stdout or "{}").get("nftables", [])
    except ValueError:
        return set()
    return {f"{i['table']['family']} {i['table']['name']}" for i in items if "table" in i}


def _remove_new_nft_tables(before: list[str]) -> None:
    """Tables that were not there before and hold no rule any more (only empty base chains)."""
    for table in sorted(nft_tables() - set(before)):
        family, name = table.split(" ", 1)
        out = _run(["nft", "-j", "list", "table", family, name], check=False)
        try:
            items = json.loads(out.stdout or "{}").get("nftables", [])
        except ValueError:
            continue
        if not any("rule" in i for i in items):
            _run(["nft", "delete", "table", family, name], check=False)


def _is_ours(chain: str) -> bool:
    return chain.startswith(("KUBE-", "CNI-")) or chain == L.GUARD_CHAIN


def _remove_empty_nft_tables() -> None:
    """kubelet's canary tables (`kube-proxy`, `kubelet`...) in nft, where iptables-save is blind."""
    out = _run(["nft", "-j", "list", "tables"], check=False)
    try:
        items = json.loads(out.stdout or "{}").get("nftables", [])
    except ValueError:
        return
    for item in items:
        t = item.get("table")
        if t and t.get("name") in ("kube-proxy", "kubelet"):
            _run(["nft", "delete", "table", t["family"], t["name"]], check=False)
