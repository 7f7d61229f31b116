"""One benchmark run: every scenario over every target, written to bench/results/.

    .venv/bin/python -m bench.run                       # everything (what `make bench` runs)
    .venv/bin/python -m bench.run --quick               # fewer runs, shorter deadlines
    .venv/bin/python -m bench.run --only latency,throughput --targets direct,eg

Targets are measured one after another (never two servers at once) so they do not compete for
the CPU. Results: latest.md (report), latest.json (raw numbers) and PNG plots.
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import functools
import json
import math
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import traceback
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from bench import kk, kk_scale, peers, plots, replication, report, scenarios
from bench.kernels import NO_CURVE_SPEC
from bench.machine import machine_info
from bench.targets import (
    PEER_STARTERS,
    KernelKeeperEnvironment,
    Target,
    TargetUnavailable,
    host_kill_misparses,
    start_jupyter_front,
)
from bench.wsclient import V1, ProtocolNotSelected

SCENARIOS = ("latency", "throughput", "start", "hydration", "failover", "memory", "scale",
             "present")
TARGETS = ("direct", "kernelkeeper", "eg", "jupyter_server", "kg")
TITLES = {"direct": "direct ZMQ", "kernelkeeper": "kernelkeeper", "eg": "Enterprise Gateway",
          "jupyter_server": "jupyter_server", "kg": "Kernel Gateway"}
# More ways to a target's kernels, measured in latency and throughput only (start is the
# target's own): every server over the v1 websocket protocol, kernelkeeper's pod over ZMQ.
TITLES.update({f"{k}_v1": f"{TITLES[k]} (v1 protocol)" for k in TARGETS if k != "direct"})
TITLES["kernelkeeper_pod"] = "kernelkeeper's kernel pod, direct ZMQ"
TITLES["kernelkeeper_nocurve"] = "kernelkeeper, CurveZMQ off"
# JupyterLab's path: the same jupyter_server (--gateway-url, from kernelkeeper's virtualenv) in
# front of a gateway, stock or with kernelkeeper.lab; the client's websocket goes to the front.
# Row suffix: (kernelkeeper.lab on, the websocket protocol the client offers). JupyterLab 4
# offers v1; the stock front answers legacy JSON whatever is offered.
FRONTED = ("kernelkeeper", "eg")
FRONT_ROWS: dict[str, tuple[bool, str | None]] = {
    "js": (False, None), "lab": (True, None), "lab_v1": (True, V1)}
FRONT_TITLES = {"js": "behind jupyter_server", "lab": "behind jupyter_server + kernelkeeper.lab",
                "lab_v1": "behind jupyter_server + kernelkeeper.lab (v1 browser)"}
TITLES.update({f"{k}_{row}": f"{TITLES[k]} {what}" for k in FRONTED
               for row, what in FRONT_TITLES.items()})
VARIANT_SCENARIOS = ("latency", "throughput")
RESULTS_DIR = Path(__file__).resolve().parent / "results"
MEMORY_COUNTS = [1, 50, 200]


_T0 = time.monotonic()


def _log(msg: str) -> None:
    print(f"[bench {time.monotonic() - _T0:6.1f}s] {msg}", file=sys.stderr, flush=True)


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="python -m bench.run", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--only", default=",".join(SCENARIOS),
                   help=f"comma-separated scenarios (default all: {','.join(SCENARIOS)})")
    p.add_argument("--targets", default=",".join(TARGETS),
                   help=f"comma-separated targets (default all: {','.join(TARGETS)})")
    p.add_argument("--quick", action="store_true",
                   help="50 latency runs, 1 throughput run, 2 starts, shorter failover deadline")
    p.add_argument("--runs", type=int, default=None, help="latency runs (default 300; quick 50)")
    p.add_argument("--out", type=Path, default=RESULTS_DIR, help="results directory")
    p.add_argument("--keep-workdir", action="store_true", help="keep server logs and state")
    p.add_argument("--render-only", action="store_true",
                   help="rewrite latest.md and the plots from <out>/latest.json (same run's data)")
    p.add_argument("--no-pid-namespace", action="store_true",
                   help="as root, do not run inside a PID namespace of its own (see README)")
    p.add_argument("--kk-scale", type=int, default=None, metavar="N",
                   help="kernelkeeper: N KernelSessions at once (scale), then 1/50/N of them "
                        "hydrated on a replica that never saw them (memory). Default 200 "
                        "(quick: 20); N=200 needs about 12 GB of RAM. 0 skips both")
    p.add_argument("--kk-present", type=int, default=None, metavar="M",
                   help="kernelkeeper: with M KernelSessions present, a fresh replica's start "
                        "until ready and hydration p99 (default 1000; quick: 100)")
    args = p.parse_args(argv)
    args.only = [s.strip() for s in args.only.split(",") if s.strip()]
    args.targets = [t.strip() for t in args.targets.split(",") if t.strip()]
    for s in args.only:
        if s not in SCENARIOS:
            p.error(f"unknown scenario {s!r}; choose from {', '.join(SCENARIOS)}")
    for t in args.targets:
        if t not in TARGETS:
            p.error(f"unknown target {t!r}; choose from {', '.join(TARGETS)}")
    args.latency_runs = args.runs or (50 if args.quick else 300)
    args.throughput_reps = 1 if args.quick else 3
    args.start_reps = 2 if args.quick else 5
    args.failover_deadline = 20.0 if args.quick else 30.0
    args.hydration_timeout = 10.0 if args.quick else 20.0
    if args.kk_scale is None:
        args.kk_scale = 20 if args.quick else 200
    if args.kk_present is None:
        args.kk_present = 100 if args.quick else 1000
    return args


class Run:
    def __init__(self, args: argparse.Namespace, workdir: Path) -> None:
        self.args = args
        self.workdir = workdir
        self.res: dict[str, Any] = {"targets": {}}
        for s in args.only:
            self.res[s] = {}
        self.sessions: list[scenarios.Session] = []
        self.servers: dict[str, Target] = {}
        self.fronts: list[Target] = []  # jupyter_servers in front of a gateway
        self.kk_env: KernelKeeperEnvironment | None = None

    def want(self, scenario: str) -> bool:
        return scenario in self.args.only

    def per_target(self) -> list[str]:
        return [s for s in ("latency", "throughput", "start") if self.want(s)]

    def unavailable(self, key: str, reason: str, extra: tuple[str, ...] = ()) -> None:
        self.res["targets"][key]["error"] = reason
        measured = self.per_target() if key in TARGETS else list(VARIANT_SCENARIOS)
        for s in [*measured, *extra]:
            if self.want(s):
                self.res[s][key] = scenarios.not_measured(reason)
        _log(f"{TITLES[key]}: {reason}")

    # ------------------------------------------------------------------ bring targets up

    def add_direct(self) -> None:
        self.res["targets"]["direct"] = {
            "title": TITLES["direct"],
            "notes": ["jupyter_client KernelManager + BlockingKernelClient sockets, zmq.Poller "
                      "(no polling interval)"],
            "versions": peers.versions(sys.executable, ("jupyter_client", "pyzmq", "ipykernel"))}
        try:
            session = scenarios.DirectSession()
        except Exception as exc:  # noqa: BLE001
            self.unavailable("direct", f"could not start a local kernel: {exc}")
            return
        self._add(session)

    def add_server(self, key: str, start: Any) -> Target | None:
        info: dict[str, Any] = {"title": TITLES[key]}
        self.res["targets"][key] = info
        _log(f"{TITLES[key]}: starting")
        try:
            target: Target = start()
        except (TargetUnavailable, OSError) as exc:
            self.unavailable(key, str(exc), ("memory",) if key != "kernelkeeper" else ())
            return None
        self.servers[key] = target
        info.update(versions=target.versions, notes=target.notes)
        try:
            session = scenarios.ServerSession(target)
        except Exception as exc:  # noqa: BLE001 - the peer then fails every scenario
            err = f"could not start a kernel and connect to it: {scenarios.describe(exc)}"
            info["error"] = err
            for s in self.per_target():
                self.res[s][key] = scenarios.failed(err)
            return target
        if not self._add(session):
            return target
        self.add_variant(f"{key}_v1", target, ["the same server; the websocket offers "
                                              f"{V1} and its figures need the server to "
                                              "select it"],
                         lambda: scenarios.ServerSession(target, f"{key}_v1", V1))
        if key == "kernelkeeper" and self.kk_env is not None:
            env = self.kk_env
            self.add_variant(
                "kernelkeeper_pod", target,
                ["a kernel started through kernelkeeper's gateway, reached straight over ZMQ "
                 "at its pod's address (KernelSession status and key Secret): the same kernel "
                 "path without the gateway"],
                lambda: scenarios.PodSession(target, "kernelkeeper_pod",
                                             kk.pod_connection_info(env)))
            self.add_variant(
                "kernelkeeper_nocurve", target,
                [f"a kernel of the {NO_CURVE_SPEC} spec (metadata.kernelkeeper.curve: false): "
                 "the same path unencrypted, the price of CurveZMQ"],
                lambda: scenarios.ServerSession(
                    dataclasses.replace(target, kernel_name=NO_CURVE_SPEC),
                    "kernelkeeper_nocurve", measures_start=False))
        if key in FRONTED:
            self.add_fronts(key, target)
        return target

    def add_fronts(self, key: str, gateway: Target) -> None:
        """JupyterLab's path to `gateway`'s kernels: a jupyter_server in front of it, stock and
        with kernelkeeper.lab, each row a kernel of its own started through that front."""
        if not any(self.want(s) for s in VARIANT_SCENARIOS):
            return
        fronts: dict[bool, Target | str] = {}
        for row, (with_lab, protocol) in FRONT_ROWS.items():
            if with_lab not in fronts:
                fronts[with_lab] = self.start_front(key, gateway, with_lab)
            front, name = fronts[with_lab], f"{key}_{row}"
            if isinstance(front, str):
                self.res["targets"][name] = {"title": TITLES[name]}
                self.unavailable(name, front)
                continue
            notes = [*front.notes, *([f"the client offers {V1}"] if protocol else [])]
            self.add_variant(name, front, notes, functools.partial(
                scenarios.ServerSession, front, name, protocol, measures_start=False))

    def start_front(self, key: str, gateway: Target, with_lab: bool) -> Target | str:
        """A front jupyter_server, or why it did not start."""
        which = "lab" if with_lab else "stock"
        _log(f"jupyter_server ({which}) in front of {TITLES[key]}: starting")
        try:
            front = start_jupyter_front(gateway, self.workdir / f"{key}-front-{which}",
                                        f"{key}-front-{which}", with_lab)
        except (TargetUnavailable, OSError) as exc:
            return f"front jupyter_server ({which}) did not start: {exc}"
        self.fronts.append(front)
        return front

    def add_variant(self, key: str, target: Target, notes: list[str],
                    start: Callable[[], scenarios.Session]) -> None:
        """Another way to `target`'s kernels, measured in latency and throughput only."""
        wanted = [s for s in VARIANT_SCENARIOS if self.want(s)]
        if not wanted:
            return
        self.res["targets"][key] = {"title": TITLES[key], "versions": target.versions,
                                    "notes": notes}
        try:
            session = start()
        except ProtocolNotSelected as exc:
            self.unavailable(key, f"the server does not speak it: {exc}")
            return
        except Exception as exc:  # noqa: BLE001 - shown as FAILED; the run goes on
            err = f"could not start a kernel and connect to it: {scenarios.describe(exc)}"
            self.res["targets"][key]["error"] = err
            for s in wanted:
                self.res[s][key] = scenarios.failed(err)
            return
        self._add(session)

    def _add(self, session: scenarios.Session) -> bool:
        info = self.res["targets"][session.key]
        try:
            info["kernel"] = session.identity()
        except Exception as exc:  # noqa: BLE001
            err = f"first execute failed: {scenarios.describe(exc)}"
            info["error"] = err
            for s in self.scenarios_of(session):
                self.res[s][session.key] = scenarios.failed(err)
            session.close()
            return False
        self.sessions.append(session)
        return True

    def scenarios_of(self, session: scenarios.Session) -> list[str]:
        return [s for s in self.per_target()
                if session.measures_start or s in VARIANT_SCENARIOS]

    # ------------------------------------------------------------------ measure

    def per_target_scenarios(self) -> None:
        if not self.sessions:
            return
        a = self.args
        names = ", ".join(TITLES[s.key] for s in self.sessions)
        _log(f"interleaving {names}")
        if self.want("latency"):
            self.res["latency"].update(
                scenarios.interleaved_latency(self.sessions, a.latency_runs, log=_log))
        if self.want("throughput"):
            self.res["throughput"].update(
                scenarios.interleaved_throughput(self.sessions, a.throughput_reps, log=_log))
        if self.want("memory"):
            for key, target in self.servers.items():
                if key == "kernelkeeper":
                    continue
                rss = target.rss_bytes()
                self.res["memory"][key] = (
                    {"status": "ok", "points": [{"kernels": 1, "rss_bytes": rss,
                                                 "label": "after latency and throughput"}]}
                    if rss else scenarios.not_measured("server pid unknown"))
        if self.want("start"):
            self.res["start"].update(
                scenarios.interleaved_start(self.sessions, a.start_reps, log=_log))

    def kernelkeeper_extras(self, target: Target) -> None:
        """Scenarios that need the local environment's internals, in an order that lets each
        run on what the previous left: the last one stops the operator."""
        env = self.kk_env
        assert env is not None
        if self.want("hydration"):
            _log("kernelkeeper: hydration")
            self.res["hydration"]["kernelkeeper"] = {"title": "kernelkeeper",
                                                     **kk.hydration(env, target)}
        if self.want("failover"):
            _log("kernelkeeper: failover (client turns to replica 2)")
            self.res["failover"]["kernelkeeper"] = {
                "title": "kernelkeeper active-active: SIGKILL of replica 1, client turns to "
                         "replica 2", "short": "kernelkeeper (to replica 2)",
                **kk.failover(env, target, self.args.failover_deadline)}
            _log("kernelkeeper: failover through the front URL (active-active)")
            self.res["failover"]["kernelkeeper_front"] = {
                "title": "kernelkeeper active-active behind nginx: SIGKILL of the serving "
                         "replica, client keeps the one URL", "short": "kernelkeeper (one URL)",
                **kk.front_failover(env, target, self.args.failover_deadline)}
        n = self.args.kk_scale
        scale_wanted = [s for s in ("scale", "memory", "present") if self.want(s)]
        if scale_wanted and n > 0:
            try:
                # The failover above killed a replica; its supervisor brings it back.
                kk.wait_replicas_up(env)
                replicas = [c for c in kk.gateway_components(env.status) if c["url"]]
                second = replicas[1] if len(replicas) > 1 else None
                pid = kk.component_process(env, second["name"]).pid if second else None
                out = kk_scale.run_all(
                    env, target,
                    Target("kernelkeeper", "kernelkeeper (replica 2)", second["url"],
                           target.token, target.kernel_name) if second else None,
                    pid, n, sorted({c for c in MEMORY_COUNTS if c <= n} | {n}),
                    self.args.kk_present if self.want("present") else 0, self.workdir, _log)
            except Exception as exc:  # noqa: BLE001 - shown as FAILED; the run goes on
                out = {s: scenarios.failed(scenarios.describe(exc)) for s in scale_wanted}
            for s in scale_wanted:
                if s in out:
                    self.res[s]["kernelkeeper"] = out[s]
        elif scale_wanted:
            for s in scale_wanted:
                self.res[s]["kernelkeeper"] = scenarios.not_measured("--kk-scale 0")

    def kernelkeeper_active_passive(self) -> None:
        """A second local environment in active-passive mode: SIGKILL, then SIGTERM, of the
        replica holding the Lease, measured through the one URL a user has."""
        env = KernelKeeperEnvironment(self.workdir / "kernelkeeper-active-passive", replicas=2,
                                      availability_mode="active-passive")
        base = {"title": "kernelkeeper active-passive (Lease 15/10/2 s)"}
        try:
            _log("kernelkeeper: active-passive environment")
            try:
                front = env.up()
            except Exception as exc:  # noqa: BLE001 - shown as not measured, with why
                reason = f"active-passive environment did not start: {scenarios.describe(exc)}"
                self.res["failover"]["kernelkeeper_ap_kill"] = {**base,
                                                               **scenarios.failed(reason)}
                return
            for sig, key, what in ((signal.SIGKILL, "kernelkeeper_ap_kill", "SIGKILL"),
                                   (signal.SIGTERM, "kernelkeeper_ap_term", "SIGTERM")):
                _log(f"kernelkeeper: active-passive, {what} of the Lease holder")
                self.res["failover"][key] = {
                    "title": f"kernelkeeper active-passive behind nginx (Lease 15/10/2 s): "
                             f"{what} of the Lease holder", "short": f"kernelkeeper A/P {what}",
                    **kk.front_failover(env, front, self.args.failover_deadline, sig=sig)}
        finally:
            env.down()

    # ------------------------------------------------------------------ EG replication

    def eg_replication(self) -> None:
        if "eg" not in self.args.targets:
            return
        if not peers.is_ready(peers.PEERS["eg"]):
            for s in ("hydration", "failover"):
                if self.want(s):
                    self.res[s]["eg"] = {"title": "Enterprise Gateway",
                                         **scenarios.not_measured("EG virtualenv missing")}
            return
        variants = [
            (False, "EG 3.3.0 replication, local kernels as shipped",
             "EG's LocalProcessProxy launches the kernel on 127.0.0.1 but persists the host's "
             "public IP as the kernel's address, and ipykernel exits when the EG that launched "
             "it dies."),
            (True, "EG 3.3.0 replication, kernel pod-like (reachable at the persisted address, "
             "outlives its gateway)",
             "The bench kernelspec makes the kernel listen on all interfaces and drops "
             "JPY_PARENT_PID, which is what a kernel in its own pod gives EG on Kubernetes: "
             "what remains is EG's own hydration and failover path."),
        ]
        for pod_like, title, explain in variants:
            suffix = "pod_like" if pod_like else "as_shipped"
            short = f"EG 3.3.0 ({suffix.replace('_', '-')})"
            if self.want("hydration"):
                _log(f"EG hydration ({suffix})")
                r = replication.eg_hydration(self.workdir / f"eg-hydration-{suffix}",
                                             pod_like=pod_like,
                                             exec_timeout=self.args.hydration_timeout)
                self.res["hydration"][f"eg_{suffix}"] = {"title": title, "short": short,
                                                         "explain": explain, **r}
            if self.want("failover"):
                _log(f"EG failover ({suffix})")
                r = replication.eg_failover(self.workdir / f"eg-failover-{suffix}",
                                            pod_like=pod_like,
                                            deadline_s=self.args.failover_deadline)
                self.res["failover"][f"eg_{suffix}"] = {"title": title, "short": short,
                                                        "explain": explain, **r}

    # ------------------------------------------------------------------ all

    def execute(self) -> None:
        a = self.args
        needed = [k for k in ("eg", "jupyter_server", "kg") if k in a.targets]
        failed_envs = peers.ensure_all(needed) if needed else {}
        kk_target = None
        try:
            if "direct" in a.targets:
                self.add_direct()
            if "kernelkeeper" in a.targets:
                # Two replicas: hydration and memory need one that never saw the kernel.
                self.kk_env = KernelKeeperEnvironment(self.workdir / "kernelkeeper-local",
                                                      replicas=2)
                kk_target = self.add_server("kernelkeeper", self.kk_env.up)
                if kk_target is None:
                    reason = self.res["targets"]["kernelkeeper"]["error"]
                    for s in ("hydration", "failover", "memory", "scale", "present"):
                        if self.want(s):
                            self.res[s]["kernelkeeper"] = {"title": "kernelkeeper",
                                                           **scenarios.not_measured(reason)}
            for key in ("eg", "jupyter_server", "kg"):
                if key not in a.targets:
                    continue
                if key in failed_envs:
                    self.res["targets"][key] = {"title": TITLES[key]}
                    self.unavailable(key, f"did not install: {failed_envs[key]}", ("memory",))
                    continue
                if not self.per_target() and not self.want("memory"):
                    self.res["targets"][key] = {"title": TITLES[key]}
                    continue
                wd = self.workdir / key
                self.add_server(key, functools.partial(PEER_STARTERS[key], wd))
            self.per_target_scenarios()
        finally:
            for session in self.sessions:
                with contextlib.suppress(Exception):
                    session.close()
            self.sessions = []
            for front in self.fronts:
                front.stop()
            self.fronts = []
            for key, target in list(self.servers.items()):
                if key != "kernelkeeper":
                    target.stop()
                    del self.servers[key]
        try:
            if kk_target is not None:
                self.kernelkeeper_extras(kk_target)
        finally:
            if self.kk_env is not None:
                _log("kernelkeeper: local down")
                self.kk_env.down()
        if kk_target is not None and self.want("failover"):
            self.kernelkeeper_active_passive()
        if self.want("hydration") or self.want("failover"):
            self.eg_replication()
        if self.want("scale"):
            for key in a.targets:
                if key not in ("kernelkeeper", "direct"):
                    self.res["scale"].setdefault(key, scenarios.not_measured(
                        "kernelkeeper-only scenario"))


def _clean(obj: Any) -> Any:
    """JSON without NaN (not valid JSON): NaN becomes null."""
    if isinstance(obj, float) and math.isnan(obj):
        return None
    if isinstance(obj, dict):
        return {k: _clean(v) for k, v in obj.items()}
    if isinstance(obj, list):
        return [_clean(v) for v in obj]
    return obj


def write(res: dict[str, Any], out: Path) -> Path:
    out.mkdir(parents=True, exist_ok=True)
    titles = {k: v["title"] for k, v in res["targets"].items()}
    images: dict[str, str] = {}
    makers = {
        "latency": lambda: plots.latency(res.get("latency", {}), titles, out),
        "throughput": lambda: plots.bars(res.get("throughput", {}), titles, "mb_per_s", "MB/s",
                                         "20 MB stream: stdout bytes received per second", out,
                                         "throughput.png"),
        "start": lambda: plots.bars(res.get("start", {}), titles, "median_s", "seconds",
                                    "Kernel start until the first execute answers (median)",
                                    out, "start.png"),
        "failover": lambda: plots.failover(res.get("failover", {}), out),
        "memory": lambda: plots.memory(res.get("memory", {}), titles, out),
        "scale": lambda: plots.scale(res.get("scale", {}), out),
    }
    for name, make in makers.items():
        if name not in res:
            continue
        try:
            path = make()
        except Exception:  # noqa: BLE001 - a plot must not cost the numbers
            _log(f"plot {name} failed:\n{traceback.format_exc()}")
            continue
        if path is not None:
            images[name] = path.name
    (out / "latest.json").write_text(json.dumps(_clean(res), indent=1, default=str) + "\n")
    md = out / "latest.md"
    md.write_text(report.render(res, images))
    return md


def _reexec_in_pid_namespace(argv: list[str]) -> int | None:
    """As root, run the whole benchmark in a PID namespace of its own.

    Enterprise Gateway shells out to `kill`, and a misparsing `kill` signals every process it
    can see (see the safety note in the report). In a fresh PID namespace "every process" is
    only the benchmark's own; and when the run ends, the kernel stops whatever it left behind.
    """
    if os.geteuid() != 0 or os.environ.get("KK_BENCH_IN_PIDNS") or not shutil.which("unshare"):
        return None
    probe = subprocess.run(["unshare", "--pid", "--fork", "--mount-proc", "true"],
                           capture_output=True, check=False)
    if probe.returncode != 0:
        _log("cannot create a PID namespace; running without one")
        return None
    env = {**os.environ, "KK_BENCH_IN_PIDNS": "1"}
    cmd = ["unshare", "--pid", "--fork", "--mount-proc", "--kill-child",
           sys.executable, "-m", "bench.run", *argv]
    # bench/ is not installed: `-m bench.run` finds it from the repository root.
    root = Path(__file__).resolve().parent.parent
    return subprocess.run(cmd, env=env, cwd=root, check=False).returncode


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    args = parse_args(argv)
    if args.render_only:
        res = json.loads((args.out / "latest.json").read_text())
        _log(f"rewrote {write(res, args.out)} from latest.json")
        return 0
    if not args.no_pid_namespace:
        rc = _reexec_in_pid_namespace(argv)
        if rc is not None:
            return rc
    if os.environ.get("KK_BENCH_IN_PIDNS"):
        # PID 1 of a namespace ignores signals it has no handler for: without this, SIGTERM
        # would not stop the run, and nothing would take the local environment down.
        signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    t0 = time.monotonic()
    started = datetime.now(UTC)
    machine = machine_info()
    workdir = Path(tempfile.mkdtemp(prefix="kk-bench-"))
    run = Run(args, workdir)
    try:
        run.execute()
    finally:
        if args.keep_workdir:
            _log(f"server logs and state kept in {workdir}")
        else:
            shutil.rmtree(workdir, ignore_errors=True)
    opts = []
    if args.quick:
        opts.append("--quick")
    if args.only != list(SCENARIOS):
        opts.append(f"--only {','.join(args.only)}")
    if args.targets != list(TARGETS):
        opts.append(f"--targets {','.join(args.targets)}")
    if args.runs:
        opts.append(f"--runs {args.runs}")
    if args.kk_scale != (20 if args.quick else 200):
        opts.append(f"--kk-scale {args.kk_scale}")
    if args.kk_present != (100 if args.quick else 1000):
        opts.append(f"--kk-present {args.kk_present}")
    run.res["meta"] = {
        "date": started.strftime("%Y-%m-%d %H:%M UTC"),
        "duration_s": time.monotonic() - t0,
        "command": "python -m bench.run" + ("" if not opts else " " + " ".join(opts)),
        "options": " ".join(opts) or "defaults",
        "latency_runs": args.latency_runs,
        "machine": machine,
        "host_kill_misparses": host_kill_misparses(),
    }
    md = write(run.res, args.out)
    _log(f"wrote {md} in {time.monotonic() - t0:.0f}s")
    return report_failures(run.res)


def report_failures(res: dict[str, Any]) -> int:
    """List every FAILED result on stderr. Exit 3 if a latency or throughput run lost data
    (bytes missing, a reply that never came): those figures would otherwise look fine."""
    lost = False
    for scenario in SCENARIOS:
        for key, v in (res.get(scenario) or {}).items():
            if isinstance(v, dict) and v.get("status") == "FAILED":
                title = v.get("title") or TITLES.get(key, key)
                _log(f"FAILED {scenario} / {title}: {str(v.get('error'))[:300]}")
                lost = lost or scenario in ("latency", "throughput")
    if lost:
        _log("a target dropped output or stopped answering in latency/throughput: exit 3")
    return 3 if lost else 0


if __name__ == "__main__":
    sys.exit(main())
