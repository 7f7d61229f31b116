"""One container's life: configure, start, watch, probe, restart with back-off, stop.

A ContainerRunner owns at most one process at a time and reports every state change to its
pod (``pod.changed()``), which decides when status is written. Cancelling the runner's task
never touches the process: only ``stop()`` kills, so a node that exits leaves pods running.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import shutil
import signal
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any

from kernelkeeper.local.node import envvars, probes, volumes
from kernelkeeper.local.node.envvars import ConfigError, SpecError
from kernelkeeper.local.node.events import now_rfc3339
from kernelkeeper.local.node.procs import Exit, Process
from kernelkeeper.local.node.state import ContainerRecord

if TYPE_CHECKING:
    from kernelkeeper.local.node.pod import PodWorker

log = logging.getLogger(__name__)

MOUNTEXEC = str(Path(__file__).with_name("mountexec.py"))
START_ERROR_PREFIX = "kernelkeeper node: cannot start container: "  # as in mountexec.py
TERMINATION_MESSAGE_LIMIT = 4096


def helper(*args: str) -> list[str]:
    """The mount helper, run by this interpreter in isolated mode (no site, no cwd imports)."""
    return [sys.executable, "-I", "-S", MOUNTEXEC, *args]


class ContainerRunner:
    def __init__(self, pod: PodWorker, spec: dict[str, Any], rec: ContainerRecord, *,
                 init: bool = False) -> None:
        self.pod = pod
        self.spec = spec
        self.name: str = spec["name"]
        self.rec = rec
        self.init = init
        self.process: Process | None = None
        self.state: dict[str, Any] = {"waiting": {"reason": "ContainerCreating"}}
        self.stopping = False
        self.finished = asyncio.Event()  # set when the container will not run again
        self._wake = asyncio.Event()
        self._probers: list[asyncio.Task[None]] = []
        self._live_kill = False
        self._env: dict[str, str] = {}
        self._mounts: list[tuple[str, str, bool]] = []
        self._backoff = 0.0
        self._final_on_stop = True
        self._interrupted = False

    # ----------------------------------------------------------------- helpers

    @property
    def ready(self) -> bool:
        return self.rec.ready

    @property
    def log_path(self) -> Path:
        """One file per run, as the kubelet keeps them: <container>/<restartCount>.log."""
        return self.pod.log_dir / self.name / f"{self.rec.restart_count}.log"

    @property
    def termination_path(self) -> Path:
        return self.pod.pod_dir / "termination" / self.name

    def _set(self, state: dict[str, Any]) -> None:
        self.state = state
        self.pod.changed()

    async def _sleep(self, seconds: float) -> None:
        """Sleep, but wake early when stop() is called."""
        self._wake.clear()
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._wake.wait(), seconds)

    def _next_backoff(self) -> float:
        cfg = self.pod.node.cfg
        self._backoff = cfg.backoff_initial if not self._backoff else min(
            self._backoff * 2, cfg.backoff_max)
        return self._backoff

    # ----------------------------------------------------------------- start

    async def _configure(self) -> list[str]:
        node = self.pod.node
        pod = self.pod.pod
        env = await envvars.resolve_env(pod, self.spec, pod_ip=self.pod.ip, host_ip=node.host_ip,
                                        service_env=node.service_env, fetch=node.fetch,
                                        allocatable=node.allocatable)
        argv = envvars.command_line(self.spec, env)
        self._mounts = volumes.mounts_for(self.spec, self.pod.volumes, env)
        base = {"PATH": node.cfg.path_env, "HOME": str(self.pod.home),
                "HOSTNAME": pod["metadata"]["name"]}
        self._env = {**base, **env}
        return argv

    def _cwd(self) -> str:
        return str(self.spec.get("workingDir") or self.pod.pod_dir)

    def _spawn(self, argv: list[str]) -> Process:
        self.termination_path.parent.mkdir(parents=True, exist_ok=True)
        self.termination_path.unlink(missing_ok=True)
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        join, nice = self.pod.node.cpu.placement(self.pod.pod)
        if self._mounts:
            spec = {"mounts": self._mounts, "argv": argv, "cwd": self._cwd(),
                    "termination": str(self.termination_path)}
            return Process.spawn(helper("run", json.dumps(spec)), env=self._env,
                                 cwd=str(self.pod.pod_dir), log=self.log_path, nice=nice,
                                 before_exec=join)
        return Process.spawn(argv, env=self._env, cwd=self._cwd(), log=self.log_path, nice=nice,
                             before_exec=join)

    def exec_context(self) -> probes.ExecContext:
        pid = self.process.pid if self.process else 0
        nsenter = shutil.which("nsenter")
        if self._mounts and nsenter:
            # nsenter is a small C program: cheaper than starting the Python helper per probe.
            # -w without a directory: the container's own working directory.
            def wrap(cmd: list[str]) -> list[str]:
                return [nsenter, "-t", str(pid), "-m", "-w", "--", *cmd]
        elif self._mounts:
            def wrap(cmd: list[str]) -> list[str]:
                return helper("enter", str(pid), json.dumps({"argv": cmd, "cwd": self._cwd()}))
        else:
            def wrap(cmd: list[str]) -> list[str]:
                return cmd
        cwd = self._cwd() if not self._mounts else str(self.pod.pod_dir)
        return probes.ExecContext(env=self._env or {"PATH": self.pod.node.cfg.path_env},
                                  cwd=cwd, wrap=wrap)

    # ----------------------------------------------------------------- run loop

    async def run(self) -> None:
        """Run until the container is final (restartPolicy says so) or stop() is called."""
        if self.finished.is_set():
            # Final already (decided before this node process started): never run it again.
            return
        try:
            await self._run()
        finally:
            self._stop_probers()

    async def _run(self) -> None:
        policy = self.pod.restart_policy
        while not self.stopping:
            if self.process is None:
                started = await self._start()
                if started is None:
                    continue
                if not started:
                    # A spec the node can never run: the pod fails.
                    return
            if isinstance(self.process, _NotStarted):
                exit_ = Exit(128)
            else:
                self.rec.pid, self.rec.ticks = self.process.pid, self.process.ticks
                self.pod.save()
                self._set({"running": {"startedAt": self.rec.started_at}})
                self._start_probers()
                exit_ = await self.process.wait()
                self._stop_probers()
                self.process.kill_leftovers()
            self._record_exit(exit_)
            if self.stopping:
                self._interrupted = True
                break
            code = self.rec.last_terminated["exitCode"]  # type: ignore[index]
            restart = (policy == "Always" and not self.init) or (
                policy != "Never" and code != 0)
            if self.init and code == 0:
                restart = False
            if not restart:
                self._final()
                return
            delay = self._next_backoff()
            self.rec.restart_count += 1
            self.rec.ready = self.rec.started = False
            self.pod.save()
            msg = (f"back-off {delay:g}s restarting failed container={self.name} "
                   f"pod={self.pod.name}_{self.pod.namespace}({self.pod.uid})")
            self._set({"waiting": {"reason": "CrashLoopBackOff", "message": msg}})
            self.pod.event("Warning", "BackOff",
                           f"Back-off restarting failed container {self.name} in pod "
                           f"{self.pod.name}_{self.pod.namespace}({self.pod.uid})", self.name)
            await self._sleep(delay)
        if self._final_on_stop:
            self._final()
        else:
            self.rec.needs_decision = self._interrupted
            self.pod.save()

    async def _start(self) -> bool | None:
        """Configure and spawn. True: running; None: retry later; False: can never start."""
        try:
            argv = await self._configure()
        except ConfigError as exc:
            self._set({"waiting": {"reason": "CreateContainerConfigError", "message": str(exc)}})
            self.pod.event("Warning", "Failed", f"Error: {exc}", self.name)
            await self._sleep(self._next_backoff())
            return None
        except SpecError as exc:
            self.pod.fail(exc.reason, str(exc), self.name)
            return False
        self.rec.started_at = now_rfc3339()
        try:
            self.process = self._spawn(argv)
        except OSError as exc:
            # The kubelet reports a command that cannot be executed as StartError, exit 128.
            self.rec.last_terminated = {"exitCode": 128, "reason": "StartError",
                                        "message": f"exec {argv[0]!r}: {exc.strerror or exc}",
                                        "startedAt": self.rec.started_at,
                                        "finishedAt": now_rfc3339()}
            self.pod.event("Warning", "Failed", f"Error: {self.rec.last_terminated['message']}",
                           self.name)
            self.process = _NotStarted()
            return True
        self.pod.event("Normal", "Started", f"Started container {self.name}", self.name)
        log.info("pod %s/%s container %s started: pid %s", self.pod.namespace, self.pod.name,
                 self.name, self.process.pid)
        self.pod.note_pids()
        return True

    def adopt(self, process: Process) -> None:
        self.process = process

    def _record_exit(self, exit_: Exit) -> None:
        finished = now_rfc3339()
        if isinstance(self.process, _NotStarted):
            term = dict(self.rec.last_terminated or {})
        else:
            code = exit_.exit_code
            term = {"exitCode": code, "startedAt": self.rec.started_at, "finishedAt": finished}
            if exit_.signal:
                term["signal"] = exit_.signal
            if exit_.code is None and not exit_.signal:
                term["reason"] = "ContainerStatusUnknown"
                term["message"] = ("the process was adopted after a node restart; "
                                   "its exit code is unknown")
            else:
                term["reason"] = "Completed" if code == 0 else "Error"
            message = self._termination_message(code)
            if message:
                term["message"] = message
            if code == 128 and message.startswith(START_ERROR_PREFIX):
                # The mount helper could not exec the command: as the kubelet, a StartError.
                term["reason"] = "StartError"
                term["message"] = message[len(START_ERROR_PREFIX):]
                self.pod.event("Warning", "Failed", f"Error: {term['message']}", self.name)
            if self._live_kill:
                term["reason"] = "Error"
        self._live_kill = False
        log.info("pod %s/%s container %s exited: %s", self.pod.namespace, self.pod.name,
                 self.name, term)
        self.rec.last_terminated = term
        self.rec.pid = self.rec.ticks = None
        self.rec.ready = False
        self.process = None
        if self.rec.started_at and term.get("startedAt") and self._ran_long():
            self._backoff = 0.0

    def _ran_long(self) -> bool:
        import datetime as dt

        try:
            t0 = dt.datetime.strptime(self.rec.started_at or "", "%Y-%m-%dT%H:%M:%SZ")
        except ValueError:
            return False
        ran = (dt.datetime.now(dt.UTC).replace(tzinfo=None) - t0).total_seconds()
        return ran >= self.pod.node.cfg.backoff_reset

    def _termination_message(self, code: int) -> str:
        with contextlib.suppress(OSError):
            text = self.termination_path.read_text(errors="replace")[:TERMINATION_MESSAGE_LIMIT]
            if text.strip():
                return text.strip()
        if code != 0 and self.spec.get("terminationMessagePolicy") == "FallbackToLogsOnError":
            with contextlib.suppress(OSError), self.log_path.open("rb") as f:
                f.seek(0, 2)
                f.seek(max(f.tell() - 2048, 0))
                return f.read().decode(errors="replace").strip()
        return ""

    def _final(self) -> None:
        term = self.rec.last_terminated or {"exitCode": 0, "reason": "Completed"}
        self.rec.terminated = term
        self.rec.ready = False
        self.pod.save()
        self.finished.set()
        self._set({"terminated": term})

    def lost(self) -> None:
        """The node restarted and the recorded process is gone: its exit code is unknown."""
        self.rec.last_terminated = {
            "exitCode": 137, "reason": "ContainerStatusUnknown",
            "message": "The container could not be located when the node restarted",
            "startedAt": self.rec.started_at, "finishedAt": now_rfc3339()}
        self.rec.pid = self.rec.ticks = None
        self.rec.ready = self.rec.started = False
        self.rec.needs_decision = True

    # ----------------------------------------------------------------- probes

    def _start_probers(self) -> None:
        self._stop_probers()
        if self.init:
            self._mark_started(True)
            return
        ctx = self.exec_context()
        startup = self.spec.get("startupProbe")
        if startup and not self.rec.started:
            self._spawn_prober("startup", startup, ctx, False)
        else:
            self._mark_started(True)
            self._start_main_probers(ctx)

    def _start_main_probers(self, ctx: probes.ExecContext) -> None:
        readiness = self.spec.get("readinessProbe")
        if readiness:
            self._spawn_prober("readiness", readiness, ctx, self.rec.ready)
        elif not self.rec.ready:
            self.rec.ready = True
            self.pod.save()
            self.pod.changed()
        liveness = self.spec.get("livenessProbe")
        if liveness:
            self._spawn_prober("liveness", liveness, ctx, True)

    def _spawn_prober(self, kind: str, spec: dict[str, Any], ctx: probes.ExecContext,
                      initial: bool) -> None:
        prober = probes.Prober(kind, spec, self.spec, self.pod.ip, ctx, initial=initial,
                               on_result=self._on_probe, on_failure=self._on_probe_failure)
        self._probers.append(asyncio.get_running_loop().create_task(prober.run()))

    def _stop_probers(self) -> None:
        for t in self._probers:
            t.cancel()
        self._probers = []

    def _mark_started(self, value: bool) -> None:
        if self.rec.started != value:
            self.rec.started = value
            self.pod.save()
            self.pod.changed()

    def _on_probe(self, kind: str, ok: bool) -> None:
        if kind == "startup":
            if ok:
                self._mark_started(True)
                self._start_main_probers(self.exec_context())
            else:
                self._kill_for_probe("startup")
        elif kind == "readiness":
            self.rec.ready = ok
            self.pod.save()
            self.pod.changed()
        elif kind == "liveness" and not ok:
            self._kill_for_probe("liveness")

    def _kill_for_probe(self, kind: str) -> None:
        self.pod.event("Normal", "Killing",
                       f"Container {self.name} failed {kind} probe, will be restarted", self.name)
        self._live_kill = True
        grace = self.pod.grace_period(self.spec.get(f"{kind}Probe", {}).get(
            "terminationGracePeriodSeconds"))
        asyncio.get_running_loop().create_task(self._terminate(grace))

    def _on_probe_failure(self, kind: str, message: str) -> None:
        label = kind.capitalize()
        self.pod.event("Warning", "Unhealthy", f"{label} probe failed: {message}", self.name)

    # ----------------------------------------------------------------- stop

    async def _terminate(self, grace: float) -> None:
        proc = self.process
        if proc is None or isinstance(proc, _NotStarted):
            return
        proc.signal(signal.SIGTERM)
        loop = asyncio.get_running_loop()
        deadline = loop.time() + grace
        while proc.alive() and loop.time() < deadline:
            await asyncio.sleep(0.05)
        if proc.alive():
            proc.signal(signal.SIGKILL)

    async def stop(self, grace: float, *, final: bool = True) -> None:
        """Kill the container (SIGTERM, grace, SIGKILL) and let the run loop end.

        `final=False` (node shutdown with --stop-pods-on-exit) keeps the container restartable:
        the next node start treats it as lost and applies the restart policy.
        """
        self.stopping = True
        self._final_on_stop = final
        self._wake.set()
        self._stop_probers()
        if self.process is not None and not isinstance(self.process, _NotStarted):
            self.pod.event("Normal", "Killing", f"Stopping container {self.name}", self.name)
            await self._terminate(grace)


class _NotStarted(Process):
    """Stands in for a process whose exec failed, so the run loop handles it as an exit."""

    def __init__(self) -> None:
        super().__init__(0, None)

    def alive(self) -> bool:
        return False

    async def wait(self) -> Exit:
        return Exit(128)

    def signal(self, sig: int) -> None:
        return None

    def kill_leftovers(self) -> None:
        return None

