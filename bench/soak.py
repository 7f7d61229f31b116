"""The chaos soak: nothing a client sent or a kernel printed is lost while replicas die.

N asyncio clients (bench/soak_client.py; half in v1.kernel.websocket.jupyter.org, half in the
legacy JSON protocol), each with a kernel of its own, execute cells that print numbered lines,
back to back, through the one URL. Meanwhile the chaos driver, every `kill_interval` seconds,
signals a random gateway replica (SIGKILL and SIGTERM in turn) and, as the replica's
supervisor, starts it again once it has exited; once per run it stops the API server (SIGSTOP)
for `apiserver_pause` seconds, and once it restarts etcd. The result counts executes sent,
answered, answered twice and re-sent after failover, and lines produced (by the kernel's own
record), received, missing, duplicated and out of order.

    result = run_soak(url, token, controls, duration=300, kill_interval=10, clients=10)
    print(result.table()); result.failures()  # [] when nothing was lost

`Controls` says how to reach the parts being broken, so the soak itself knows nothing of how
they run. tests/ha/test_soak.py runs it over the HA fleet (host-process replicas behind nginx,
kernels in Pods of the real node): a short form in `make test`, and the full form with

    python -m bench.soak          # 300 s, 10 clients, 3 replicas; bench/results/soak.{md,json}
"""

from __future__ import annotations

import argparse
import asyncio
import collections
import contextlib
import itertools
import json
import os
import random
import signal
import subprocess
import sys
import time
from collections.abc import Awaitable, Callable
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from bench.soak_client import ClientCounts, ClientFailed, SoakClient
from bench.wsclient import V1

LINES = 40
LINE_PAUSE = 0.05
EXEC_TIMEOUT = 180.0  # one cell (2 s) plus reconnects through an API-server stop
RECONNECT_BUDGET = 120.0
SIGTERM_GRACE = 30.0  # then SIGKILL, as a kubelet after terminationGracePeriodSeconds
SETTLE_TIMEOUT = 90.0


@dataclass
class Controls:
    """How the soak reaches what it breaks. Replicas are named slots: `start` puts a new
    process into a slot whose process has exited (a Deployment replacing its Pod).

    `alive` and `signal` must not block; the others may (they run on a worker thread).
    `heal` restarts anything else that exited meanwhile (the operator, whose Lease lapses while
    the API server is stopped) and returns what it restarted.
    """

    replicas: Callable[[], list[str]]
    alive: Callable[[str], bool]
    signal: Callable[[str, int], None]
    start: Callable[[str], None]
    websockets: Callable[[str], int] | None = None
    pause_apiserver: Callable[[], None] | None = None
    resume_apiserver: Callable[[], None] | None = None
    restart_etcd: Callable[[], None] | None = None
    heal: Callable[[], list[str]] | None = None


@dataclass
class ChaosCounts:
    kills: dict[str, int] = field(default_factory=dict)
    restarts: int = 0
    start_failures: int = 0
    exited_unprompted: int = 0  # replicas that exited without being signalled
    forced_after_sigterm: int = 0
    max_restart_s: float = 0.0  # signal sent until the new process was started
    apiserver_paused_at: float | None = None
    apiserver_paused_s: float | None = None
    etcd_restarted_at: float | None = None
    etcd_restart_s: float | None = None
    healed: list[str] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)
    events: list[str] = field(default_factory=list)


class Log:
    def __init__(self, verbose: bool) -> None:
        self.t0 = time.monotonic()
        self.verbose = verbose
        self.lines: list[str] = []

    def elapsed(self) -> float:
        return time.monotonic() - self.t0

    def __call__(self, msg: str) -> str:
        line = f"[soak +{self.elapsed():6.1f}s] {msg}"
        self.lines.append(line)
        if self.verbose:
            print(line, flush=True)
        return line


class Chaos:
    """The chaos driver and the replicas' supervisor."""

    def __init__(self, controls: Controls, log: Log, *, duration: float, kill_interval: float,
                 apiserver_pause: float, pause_at: float, etcd_at: float,
                 rng: random.Random, prefer_busy: bool) -> None:
        self.c, self.log = controls, log
        self.duration, self.kill_interval = duration, kill_interval
        self.apiserver_pause, self.pause_at, self.etcd_at = apiserver_pause, pause_at, etcd_at
        self.rng, self.prefer_busy = rng, prefer_busy
        self.counts = ChaosCounts()
        self.signals = itertools.cycle([signal.SIGKILL, signal.SIGTERM])
        self.signalled: dict[str, tuple[float, int]] = {}
        self.starting: set[str] = set()
        self.paused = False
        self.healing = False
        self.background: set[asyncio.Task[None]] = set()

    def _event(self, msg: str) -> None:
        self.counts.events.append(self.log(msg))

    def _spawn(self, coro: Awaitable[None]) -> None:
        task = asyncio.ensure_future(coro)
        self.background.add(task)
        task.add_done_callback(self.background.discard)

    async def _guarded(self, what: str, fn: Callable[[], None]) -> bool:
        try:
            await asyncio.to_thread(fn)
            return True
        except Exception as exc:  # noqa: BLE001 - a failed action is reported, not fatal
            self.counts.errors.append(f"{what}: {exc!r}")
            self._event(f"{what} FAILED: {exc!r}")
            return False

    # ------------------------------------------------------------------ the schedule

    async def run(self, start: float) -> None:
        schedule: list[tuple[float, str]] = [
            (self.kill_interval * k, "kill")
            for k in range(1, int(self.duration / self.kill_interval) + 1)
            if self.kill_interval * k < self.duration]
        if self.c.pause_apiserver and self.c.resume_apiserver:
            schedule += [(self.pause_at, "pause"), (self.pause_at + self.apiserver_pause, "resume")]
        if self.c.restart_etcd:
            schedule.append((self.etcd_at, "etcd"))
        try:
            for at, action in sorted(schedule):
                await asyncio.sleep(max(0.0, start + at - time.monotonic()))
                if action == "kill":
                    await self._kill()
                elif action == "pause":
                    self._pause()
                elif action == "resume":
                    self.resume_apiserver()
                else:
                    self._spawn(self._restart_etcd())
            while self.background:
                await asyncio.gather(*list(self.background), return_exceptions=True)
        finally:
            self.resume_apiserver()

    async def _kill(self) -> None:
        alive = [n for n in self.c.replicas() if self.c.alive(n) and n not in self.signalled]
        if not alive:
            self._event("no live replica to kill")
            return
        held: dict[str, int] = {}
        if self.c.websockets is not None:
            counts = await asyncio.gather(*(asyncio.to_thread(self._websockets, n)
                                            for n in alive))
            held = dict(zip(alive, counts, strict=True))
        busy = [n for n in alive if held.get(n, 0) > 0]
        victim = self.rng.choice(busy if self.prefer_busy and busy else alive)
        sig = next(self.signals)
        name = signal.Signals(sig).name
        self.c.signal(victim, sig)
        self.signalled[victim] = (time.monotonic(), sig)
        self.counts.kills[name] = self.counts.kills.get(name, 0) + 1
        holding = f" (holding {held[victim]} websockets)" if victim in held else ""
        self._event(f"{name} to replica {victim}{holding}")

    def _websockets(self, name: str) -> int:
        assert self.c.websockets is not None
        try:
            return self.c.websockets(name)
        except Exception:  # noqa: BLE001 - a replica too busy to answer counts as idle
            return 0

    def _pause(self) -> None:
        assert self.c.pause_apiserver is not None
        self.c.pause_apiserver()
        self.paused = True
        self.counts.apiserver_paused_at = self.log.elapsed()
        self._event(f"SIGSTOP to the API server for {self.apiserver_pause:g}s")

    def resume_apiserver(self) -> None:
        if not self.paused or self.c.resume_apiserver is None:
            return
        self.c.resume_apiserver()
        self.paused = False
        assert self.counts.apiserver_paused_at is not None
        self.counts.apiserver_paused_s = self.log.elapsed() - self.counts.apiserver_paused_at
        self._event(f"SIGCONT to the API server after {self.counts.apiserver_paused_s:.1f}s")

    async def _restart_etcd(self) -> None:
        assert self.c.restart_etcd is not None
        t0, at = time.monotonic(), self.log.elapsed()
        self._event("restarting etcd")
        if await self._guarded("etcd restart", self.c.restart_etcd):
            self.counts.etcd_restarted_at = at
            self.counts.etcd_restart_s = time.monotonic() - t0
            self._event(f"etcd restarted in {self.counts.etcd_restart_s:.1f}s")

    # ------------------------------------------------------------------ the supervisor

    async def supervise(self, stop: asyncio.Event) -> None:
        last_heal = 0.0
        while not stop.is_set():
            now = time.monotonic()
            for name in self.c.replicas():
                if name in self.starting:
                    continue
                if not self.c.alive(name):
                    self.starting.add(name)
                    self._spawn(self._start(name))
                elif name in self.signalled:
                    at, sig = self.signalled[name]
                    if sig == signal.SIGTERM and now - at > SIGTERM_GRACE:
                        self.c.signal(name, signal.SIGKILL)
                        self.counts.forced_after_sigterm += 1
                        self._event(f"replica {name} ignored SIGTERM for {SIGTERM_GRACE:.0f}s: "
                                    "SIGKILL")
            if self.c.heal is not None and not self.healing and not self.paused \
                    and now - last_heal > 1.0:
                last_heal = now
                self.healing = True
                self._spawn(self._heal())
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), 0.2)

    async def _start(self, name: str) -> None:
        signalled = self.signalled.pop(name, None)
        if signalled is None:
            self.counts.exited_unprompted += 1
            self._event(f"replica {name} exited on its own")
        try:
            if await self._guarded(f"start of replica {name}", lambda: self.c.start(name)):
                self.counts.restarts += 1
                if signalled is not None:
                    took = time.monotonic() - signalled[0]
                    self.counts.max_restart_s = max(self.counts.max_restart_s, took)
                self._event(f"replica {name} started again")
            else:
                self.counts.start_failures += 1
                await asyncio.sleep(1.0)  # a failed start is retried by the next round
        finally:
            self.starting.discard(name)

    async def _heal(self) -> None:
        heal = self.c.heal
        assert heal is not None
        try:
            done = await asyncio.to_thread(heal)
            for what in done:
                self.counts.healed.append(what)
                self._event(f"{what} had exited; started it again")
        except Exception as exc:  # noqa: BLE001 - retried on the next round
            self._event(f"restarting what had exited failed (retried): {exc!r}")
        finally:
            self.healing = False

    async def settle(self, timeout: float) -> None:
        """Every replica running again (the supervisor keeps going meanwhile)."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if not self.starting and all(self.c.alive(n) for n in self.c.replicas()):
                return
            await asyncio.sleep(0.2)
        self.counts.errors.append(f"replicas not all running {timeout:.0f}s after the chaos")


# ---------------------------------------------------------------------- the result


# (label, field of the totals) that must be 0: about executes, then about output.
EXECUTE_ZERO_ROWS = [
    ("executes unanswered", "unanswered"),
    ("executes answered twice", "answered_twice"),
    ("re-sent executes answered anyway", "resent_answered"),
    ("execute replies after the barrier's reply", "late_replies"),
    ("cells the kernel ran twice", "executed_twice"),
    ("executes answered with an error", "answered_with_error"),
    ("status idle missing", "idle_missing"),
]
LINE_ZERO_ROWS = [
    ("lines missing", "lines_missing"),
    ("lines duplicated", "lines_duplicated"),
    ("lines out of order", "lines_out_of_order"),
    ("unexpected output", "unexpected_output"),
    ("journal overflow notices", "journal_notices"),
]
ZERO_ROWS = EXECUTE_ZERO_ROWS + LINE_ZERO_ROWS
SUMMED = ["executes_sent", "answered", "answered_twice", "answered_with_error", "resent",
          "resent_answered", "late_replies", "unanswered", "executed_twice", "idle_missing", "lines_produced",
          "lines_received", "lines_missing", "lines_duplicated", "lines_out_of_order",
          "unexpected_output", "journal_notices", "disconnects", "reconnects"]


@dataclass
class SoakResult:
    duration_s: float
    kill_interval_s: float
    replicas: int
    lines_per_cell: int
    seed: int
    started: str
    wall_s: float
    clients: list[ClientCounts]
    chaos: ChaosCounts
    errors: list[str] = field(default_factory=list)
    log: list[str] = field(default_factory=list)

    def totals(self) -> dict[str, Any]:
        out: dict[str, Any] = {k: sum(getattr(c, k) for c in self.clients) for k in SUMMED}
        out["max_reconnect_s"] = max((c.max_reconnect_s for c in self.clients), default=0.0)
        out["max_websocket_open_s"] = max((c.max_websocket_open_s for c in self.clients),
                                          default=0.0)
        out["client_errors"] = sum(c.error is not None for c in self.clients)
        refused: collections.Counter[str] = collections.Counter()
        codes: collections.Counter[str] = collections.Counter()
        for c in self.clients:
            refused.update(c.refused)
            codes.update(c.close_codes)
        out["refused"], out["close_codes"] = dict(refused), dict(codes)
        return out

    def failures(self) -> list[str]:
        """What was lost, doubled or reordered: empty when nothing was."""
        t = self.totals()
        out = [f"{label}: {t[key]}" for label, key in ZERO_ROWS if t[key]]
        out += [f"client {c.index}: {c.error}" for c in self.clients if c.error]
        out += self.errors
        return out

    def vacuous(self) -> list[str]:
        """Why a clean result would prove nothing: too little work, or chaos that did not
        happen. Empty when the soak did what it claims."""
        t = self.totals()
        out = []
        if t["answered"] < len(self.clients) * 2:
            out.append(f"only {t['answered']} executes answered by {len(self.clients)} clients")
        if not t["lines_received"]:
            out.append("no output line received")
        for sig in ("SIGKILL", "SIGTERM"):
            if not self.chaos.kills.get(sig):
                out.append(f"no replica got {sig}")
        if not t["disconnects"]:
            out.append("no client ever lost its websocket")
        if self.chaos.apiserver_paused_s is None:
            out.append("the API server was not stopped")
        if self.chaos.etcd_restarted_at is None:
            out.append("etcd was not restarted")
        out += [f"chaos: {e}" for e in self.chaos.errors]
        return out

    def table(self) -> str:
        t, ch = self.totals(), self.chaos
        kills = ", ".join(f"{k} {v}" for k, v in sorted(ch.kills.items())) or "none"
        rows: list[tuple[str, Any, str]] = [
            ("executes sent", t["executes_sent"], ""),
            ("executes answered", t["answered"], ""),
            ("executes re-sent after failover", t["resent"], ""),
            *((label, t[key], "0") for label, key in EXECUTE_ZERO_ROWS),
            ("lines produced (the kernels' own record)", t["lines_produced"], ""),
            ("lines received", t["lines_received"], ""),
            *((label, t[key], "0") for label, key in LINE_ZERO_ROWS),
            ("client errors", t["client_errors"], "0"),
            ("replica kills", kills, "both"),
            ("replicas started again", ch.restarts, ""),
            ("replicas that exited unsignalled", ch.exited_unprompted, ""),
            ("SIGTERM ignored for 30 s (then SIGKILL)", ch.forced_after_sigterm, ""),
            ("longest signal to restarted process", f"{ch.max_restart_s:.2f} s", ""),
            ("API server stopped (SIGSTOP)", _at(ch.apiserver_paused_at,
                                                 f"{ch.apiserver_paused_s or 0:.1f} s"), "once"),
            ("etcd restarted", _at(ch.etcd_restarted_at, f"took {ch.etcd_restart_s or 0:.1f} s"),
             "once"),
            ("restarted after the outage", ", ".join(ch.healed) or "nothing", ""),
            ("websockets lost (seen by clients)", t["disconnects"], ""),
            ("reconnects", t["reconnects"], ""),
            ("longest reconnect (drop until the barrier's reply)",
             f"{t['max_reconnect_s']:.2f} s", ""),
            ("longest until a websocket was open again", f"{t['max_websocket_open_s']:.2f} s",
             ""),
            ("upgrades refused, by reason", _kv(t["refused"]), ""),
            ("websocket close codes", _kv(t["close_codes"]), ""),
        ]
        verdict = "nothing lost" if not self.failures() else "LOSSES: " + "; ".join(
            self.failures()[:8])
        head = (f"Chaos soak: {len(self.clients)} clients, {self.replicas} replicas, "
                f"{self.duration_s:g} s, a kill every {self.kill_interval_s:g} s "
                f"(seed {self.seed}) -> {verdict}")
        lines = [head, "", "| | count | must be |", "|---|---:|---|"]
        lines += [f"| {label} | {value} | {want} |" for label, value, want in rows]
        lines += ["", "| client | protocol | sent | answered | re-sent | unanswered | lines "
                  "missing | dup | out of order | reconnects | longest | error |",
                  "|---:|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---|"]
        for c in self.clients:
            lines.append(f"| {c.index} | {c.protocol} | {c.executes_sent} | {c.answered} | "
                         f"{c.resent} | {c.unanswered} | {c.lines_missing} | "
                         f"{c.lines_duplicated} | {c.lines_out_of_order} | {c.reconnects} | "
                         f"{c.max_reconnect_s:.2f} s | {c.error or ''} |")
        return "\n".join(lines)

    def first_problems(self) -> list[str]:
        """The first few things each client saw go wrong, to start a diagnosis from."""
        return [f"client {c.index}: {e}" for c in self.clients for e in c.examples]

    def markdown(self) -> str:
        examples = [f"- {e}" for e in self.first_problems()]
        parts = ["# Chaos soak", "",
                 f"Run {self.started}, {self.wall_s:.0f} s wall clock. Written by `python -m "
                 "bench.soak` (bench/README.md, section 'Chaos soak').", "",
                 self.table(), "", "## Chaos timeline", "",
                 *(f"    {e}" for e in self.chaos.events)]
        if examples:
            parts += ["", "## First problems seen, per client", "", *examples]
        return "\n".join(parts) + "\n"

    def to_json(self) -> dict[str, Any]:
        return {**asdict(self), "totals": self.totals(), "failures": self.failures(),
                "vacuous": self.vacuous()}

    def write(self, directory: Path) -> tuple[Path, Path]:
        directory.mkdir(parents=True, exist_ok=True)
        md, js = directory / "soak.md", directory / "soak.json"
        md.write_text(self.markdown())
        js.write_text(json.dumps(self.to_json(), indent=1) + "\n")
        return md, js


def _at(when: float | None, what: str) -> str:
    return "no" if when is None else f"at +{when:.0f} s, {what}"


def _kv(counts: dict[str, int]) -> str:
    return ", ".join(f"{k}: {v}" for k, v in sorted(counts.items())) or "none"


# ---------------------------------------------------------------------- the run


def run_soak(url: str, token: str, controls: Controls, *, duration: float = 300.0,
             kill_interval: float = 10.0, clients: int = 10, apiserver_pause: float = 15.0,
             pause_at: float | None = None, etcd_at: float | None = None, lines: int = LINES,
             line_pause: float = LINE_PAUSE, seed: int | None = None, prefer_busy: bool = True,
             verbose: bool = True) -> SoakResult:
    """Run the soak against the gateway at `url`; blocks for about `duration` seconds plus the
    clients' set-up and their last cell. `pause_at`/`etcd_at` (seconds into the run) default
    to 30% and 70% of it. With `prefer_busy` the victim is a random replica among those that
    hold a websocket (when `controls.websockets` can tell), so every kill hits clients."""
    pause_at = duration * 0.3 if pause_at is None else pause_at
    etcd_at = duration * 0.7 if etcd_at is None else etcd_at
    if controls.pause_apiserver and controls.restart_etcd and \
            pause_at <= etcd_at < pause_at + apiserver_pause:
        raise ValueError("the etcd restart must not fall into the API server's stop")
    seed = random.randrange(1 << 31) if seed is None else seed
    return asyncio.run(_soak(url, token, controls, duration=duration, kill_interval=kill_interval,
                             clients=clients, apiserver_pause=apiserver_pause, pause_at=pause_at,
                             etcd_at=etcd_at, lines=lines, line_pause=line_pause, seed=seed,
                             prefer_busy=prefer_busy, verbose=verbose))


async def _soak(url: str, token: str, controls: Controls, *, duration: float,
                kill_interval: float, clients: int, apiserver_pause: float, pause_at: float,
                etcd_at: float, lines: int, line_pause: float, seed: int, prefer_busy: bool,
                verbose: bool) -> SoakResult:
    log = Log(verbose)
    wall0 = time.monotonic()
    started = datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC")
    soakers = [SoakClient(i, url, token, protocol=V1 if i % 2 == 0 else None, lines=lines,
                          line_pause=line_pause, exec_timeout=EXEC_TIMEOUT,
                          reconnect_budget=RECONNECT_BUDGET, log=log)
               for i in range(clients)]
    chaos = Chaos(controls, log, duration=duration, kill_interval=kill_interval,
                  apiserver_pause=apiserver_pause, pause_at=pause_at, etcd_at=etcd_at,
                  rng=random.Random(seed), prefer_busy=prefer_busy)
    errors: list[str] = []
    try:
        prepared = await asyncio.gather(*(c.prepare() for c in soakers), return_exceptions=True)
        failed = [r for r in prepared if isinstance(r, BaseException)]
        if failed:
            raise RuntimeError(f"{len(failed)} client(s) could not start: {failed[0]!r}")
        start = log.t0 = time.monotonic()  # the timeline counts from the chaos' start
        log(f"{clients} clients ready; chaos for {duration:g}s")
        stop_supervising = asyncio.Event()
        supervisor = asyncio.create_task(chaos.supervise(stop_supervising))
        cap = int(duration / (lines * line_pause)) + 10
        try:
            driver = asyncio.create_task(chaos.run(start))
            work = asyncio.gather(*(_guard(c, c.work(start + duration, cap)) for c in soakers))
            overran = duration + EXEC_TIMEOUT + RECONNECT_BUDGET + 60
            try:
                await asyncio.wait_for(asyncio.gather(driver, work), overran)
            except TimeoutError:
                errors.append(f"the soak overran its bound of {overran:.0f}s")
            await chaos.settle(SETTLE_TIMEOUT)
            log("chaos over; every client reads its kernel's record")
            await asyncio.gather(*(_guard(c, c.report()) for c in soakers if c.error is None))
        finally:
            chaos.resume_apiserver()
            stop_supervising.set()
            await supervisor
            while chaos.background:
                await asyncio.gather(*list(chaos.background), return_exceptions=True)
    finally:
        for c in soakers:
            await c.close()
        await asyncio.gather(*(c.shutdown_kernel() for c in soakers), return_exceptions=True)
    return SoakResult(duration, kill_interval, len(controls.replicas()), lines, seed, started,
                      time.monotonic() - wall0, [c.counts() for c in soakers], chaos.counts, errors,
                      log.lines)


async def _guard(client: SoakClient, step: Awaitable[None]) -> None:
    try:
        await step
    except ClientFailed as exc:
        client.error = str(exc)
        client.log(f"{client.name} FAILED: {exc}")


# ---------------------------------------------------------------------- the full form


def main(argv: list[str] | None = None) -> int:
    """The full soak: tests/ha/test_soak.py brings up the fleet (real control plane, real node,
    operator, gateway replicas behind nginx) and writes bench/results/soak.{md,json}."""
    parser = argparse.ArgumentParser(prog="python -m bench.soak", description=__doc__.split(
        "\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seconds", type=float, default=300.0)
    parser.add_argument("--clients", type=int, default=10)
    parser.add_argument("--replicas", type=int, default=3)
    parser.add_argument("--kill-interval", type=float, default=10.0)
    parser.add_argument("--seed", type=int, default=None)
    parser.add_argument("--out", type=Path, default=Path(__file__).parent / "results")
    args = parser.parse_args(argv)
    root = Path(__file__).resolve().parent.parent
    env = {**os.environ, "KK_SOAK_SECONDS": str(args.seconds), "KK_SOAK_CLIENTS": str(args.clients),
           "KK_SOAK_REPLICAS": str(args.replicas), "KK_SOAK_KILL_INTERVAL": str(args.kill_interval),
           "KK_SOAK_RESULTS": str(args.out.resolve())}
    if args.seed is not None:
        env["KK_SOAK_SEED"] = str(args.seed)
    cmd = [sys.executable, "-m", "pytest", "-s", "-q", "-p", "no:cacheprovider",
           "tests/ha/test_soak.py"]
    return subprocess.call(cmd, cwd=root, env=env)


if __name__ == "__main__":
    sys.exit(main())
