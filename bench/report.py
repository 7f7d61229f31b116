"""bench/results/latest.md from one run's results dict (and nothing else)."""

from __future__ import annotations

import math
from typing import Any

# A gateway's rows through a jupyter_server in front of it (bench.run.FRONT_ROWS).
FRONT_SUFFIXES = ["js", "lab", "lab_v1"]
ORDER = ["direct", "kernelkeeper_pod", "kernelkeeper", "kernelkeeper_nocurve", "kernelkeeper_v1",
         *(f"kernelkeeper_{s}" for s in FRONT_SUFFIXES), "eg", "eg_v1",
         *(f"eg_{s}" for s in FRONT_SUFFIXES), "jupyter_server", "jupyter_server_v1", "kg", "kg_v1"]
# The acceptance for the JupyterLab path: `pass` p50 through jupyter_server with
# kernelkeeper.lab at most this many times direct ZMQ's, in the same run.
LAB_PATH_TARGET = 1.5
# The acceptance for CurveZMQ: `pass` p50 with Curve on at most this many times the
# same path with Curve off, in the same run.
CURVE_TARGET = 1.2
# The ratio columns: the baselines and each server over the legacy protocol. A v1 row is read
# against its own server's legacy row.
RATIO_REFERENCES = ["direct", "kernelkeeper_pod", "kernelkeeper", "eg", "jupyter_server", "kg"]


def _num(v: Any) -> float | None:
    return float(v) if isinstance(v, int | float) and not math.isnan(v) else None


def _fmt(v: float | None, unit: str, digits: int = 3) -> str:
    if v is None:
        return "—"
    if unit == "ms":
        return f"{v:.2f} ms" if v < 100 else f"{v:.0f} ms"
    if unit == "s":
        if v < 1:
            return f"{v * 1000:.1f} ms"
        return f"{v:.2f} s" if v < 100 else f"{v:.0f} s"
    if unit == "MB/s":
        return f"{v:.2f} MB/s"
    if unit == "MiB":
        return f"{v:.1f} MiB"
    return f"{v:.{digits}g}"


def _status_cell(res: dict[str, Any] | None) -> str:
    if not res:
        return "not measured"
    st = res.get("status")
    if st == "ok":
        return "ok"
    if st == "not measured":
        return f"not measured: {res.get('reason', '')}"
    return f"**FAILED**: {_one_line(res.get('error', ''))}"


def _one_line(text: str, limit: int = 260) -> str:
    text = " ".join(str(text).split()).replace("|", "\\|")
    return text if len(text) <= limit else text[:limit] + "…"


def ratio_table(metric: dict[str, dict[str, Any]], key: str, unit: str, titles: dict[str, str],
                keys: list[str], note: str = "") -> list[str]:
    """Rows: the targets measured here; columns: the figure, then its ratio to direct ZMQ and
    to each server."""
    keys = [k for k in keys if k in metric]
    refs = [k for k in keys if k in RATIO_REFERENCES
            and _num(metric[k].get(key)) is not None and metric[k].get("status") == "ok"]
    label = {"p50_ms": "p50", "p99_ms": "p99", "mb_per_s": "MB/s", "median_s": "median"}
    head = ["target", label.get(key, key), "status"] + [f"÷ {titles[r]}" for r in refs]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for k in keys:
        res = metric.get(k)
        v = _num((res or {}).get(key))
        ok = (res or {}).get("status") == "ok"
        cells = [titles[k], _fmt(v, unit) if v is not None else "—", _status_cell(res)]
        for r in refs:
            rv = _num(metric[r].get(key))
            cells.append("—" if v is None or not ok or r == k or not rv
                         else f"{v / rv:.2f}×")
        lines.append("| " + " | ".join(cells) + " |")
    if note:
        lines += ["", note]
    return lines


def render(res: dict[str, Any], images: dict[str, str]) -> str:
    meta, targets = res["meta"], res["targets"]
    keys = [k for k in ORDER if k in targets]
    titles = {k: targets[k]["title"] for k in keys}
    m = meta["machine"]
    out: list[str] = []
    w = out.append
    w("# kernelkeeper benchmarks: side by side with the peers")
    w("")
    w(f"Written by `{meta['command']}` on {meta['date']} (the run took {meta['duration_s']:.0f} s; "
      f"options: {meta['options']}). **Every figure in this file comes from that run**; a peer that "
      "failed a scenario is shown failing, with its error. Absolute times depend on the machine; "
      "compare the ratios.")
    w("")
    w("## Machine")
    w("")
    mem = m.get("memory_bytes")
    w(f"- CPU: {m['cpu_model']}; {m['cores']} cores ({m.get('usable_cores')} usable by this run)")
    w(f"- Memory: {mem / 2**30:.1f} GiB" if mem else "- Memory: unknown")
    w(f"- OS: {m['os']}; Python {m['python']}; load average at start: "
      f"{m.get('load_average_at_start')}")
    w("- The machine is shared: other work running at the same time widens the tails.")
    w("")
    if meta.get("host_kill_misparses"):
        w("## Safety note: Enterprise Gateway and this host's `kill`")
        w("")
        w("EG signals a kernel it did not launch itself (a hydrated one) by running "
          "`kill -SIG -PGID`. This host's `kill` (procps-ng 4.0.x) misparses a negative pid "
          "that has no `--` before it and signals **every process** instead: running as root, EG "
          "shutting down a hydrated kernel killed the whole machine's processes during the "
          "development of this benchmark. The harness therefore puts a `kill` shim first on EG's "
          "PATH that inserts `--` and refuses broadcast targets, and checks it before starting EG. "
          "The figures below are with that shim; without it EG's hydration and failover "
          "scenarios are not safe to run on this host.")
        w("")
    w("## What was measured")
    w("")
    w("| target | server versions | kernel that answered | configuration |")
    w("|---|---|---|---|")
    for k in keys:
        t = targets[k]
        vers = ", ".join(f"{n} {v}" for n, v in t.get("versions", {}).items()) or "—"
        kern = t.get("kernel")
        kern_s = (", ".join(f"{n} {v}" for n, v in kern.items()) if isinstance(kern, dict)
                  else "—")
        conf = "; ".join(t.get("notes", [])) or "—"
        if t.get("error"):
            conf = f"**not available**: {_one_line(t['error'])}"
        w(f"| {titles[k]} | {vers} | {kern_s} | {_one_line(conf, 400)} |")
    w("")
    w("Every peer server runs the same kernelspec: the same interpreter and ipykernel as direct "
      "ZMQ (kernelkeeper's own virtualenv), so the differences are the path between client and "
      "kernel; kernelkeeper's kernels run in its kernel image (the table above lists what "
      "answered each). The websocket client sets TCP_NODELAY on its own socket; whatever Nagle delay "
      "remains is on the server's side. *(v1 protocol)* rows are the same server with the "
      "websocket in `v1.kernel.websocket.jupyter.org` instead of the legacy JSON protocol; "
      "*kernel pod, direct ZMQ* is a kernel started through kernelkeeper's gateway and reached "
      "over ZMQ at its pod's address, so set against kernelkeeper's row it is the gateway's "
      "share. *behind jupyter_server* rows are JupyterLab's path: the client's websocket goes to "
      "a jupyter_server in gateway mode (`--gateway-url`, the same jupyter_server and options in "
      "front of kernelkeeper and of EG), stock or with kernelkeeper.lab's connection class; "
      "each row is a kernel of its own started through that front. Every row is measured by "
      "the same loop (bench/measure.py).")
    w("")

    lat, thr, start = res.get("latency", {}), res.get("throughput", {}), res.get("start", {})
    if lat or thr or start:
        w("## Summary")
        w("")
        w("| target | `pass` p50 | `pass` p99 | 20 MB stream | bytes received | start → first execute |")
        w("|---|---|---|---|---|---|")
        for k in keys:
            lr, tr, sr = lat.get(k, {}), thr.get(k, {}), start.get(k, {})
            rec = tr.get("received_bytes")
            if isinstance(rec, list) and rec and len(set(rec)) == 1:
                rec_s = f"{rec[0]:,} of {tr['expected_bytes']:,} ({len(rec)} runs)"
            elif isinstance(rec, list) and rec:
                rec_s = ", ".join(f"{b:,}" for b in rec) + f" of {tr['expected_bytes']:,}"
            else:
                rec_s = "—"

            def cell(r: dict[str, Any], key: str, unit: str) -> str:
                if not r:
                    return "—"  # a v1 or pod row has no start of its own
                v = _num(r.get(key))
                if r.get("status") == "ok":
                    return _fmt(v, unit)
                if r.get("status") == "FAILED":
                    return "**FAILED**" + (f" ({_fmt(v, unit)})" if v is not None else "")
                return "not measured"
            w(f"| {titles[k]} | {cell(lr, 'p50_ms', 'ms')} | {cell(lr, 'p99_ms', 'ms')} | "
              f"{cell(tr, 'mb_per_s', 'MB/s')} | {rec_s} | {cell(sr, 'median_s', 's')} |")
        w("")

    if lat:
        runs = max((v.get("n", 0) for v in lat.values()), default=0)
        w("## 1. Execute round trip of `pass`")
        w("")
        w(f"Send `execute_request`, wait for `execute_reply` **and** `status: idle`; {runs} runs "
          "after 10 warm-up runs, one websocket (or one ZMQ client) per target, one request at a "
          "time. The targets run side by side and are measured in interleaved blocks of 50 "
          "runs, so load from other work drifts over all of them alike. Percentiles are "
          "nearest-rank.")
        w("")
        w("### p50")
        w("")
        out.extend(ratio_table(lat, "p50_ms", "ms", titles, keys))
        w("")
        w("### p99")
        w("")
        out.extend(ratio_table(lat, "p99_ms", "ms", titles, keys))
        w("")
        if "latency" in images:
            w(f"![latency]({images['latency']})")
            w("")

    if thr:
        w("## 2. Output throughput: a 20 MB stream")
        w("")
        w("The kernel writes 200,000 lines of 100 bytes (20,000,000 bytes) to stdout. The client "
          "counts the bytes of `stream` output it receives for that request and times until "
          "`execute_reply` and idle; a run with any byte missing is **FAILED** (and not "
          "repeated). MB/s is the median over the runs, taken round-robin over the targets.")
        w("")
        out.extend(ratio_table(thr, "mb_per_s", "MB/s", titles, keys))
        w("")
        w("| target | runs: bytes received / expected | seconds (median) | websocket payload bytes |")
        w("|---|---|---|---|")
        for k in [k for k in keys if k in thr]:
            tr = thr[k]
            if "runs" not in tr:
                w(f"| {titles[k]} | {_status_cell(tr)} | — | — |")
                continue
            got = "; ".join(f"{r['received_bytes']:,} / {r['expected_bytes']:,}"
                            + ("" if r["complete"] else " **MISSING**") for r in tr["runs"])
            wire = ("ZMQ" if k in ("direct", "kernelkeeper_pod")
                    else "; ".join(f"{r['wire_bytes']:,}" for r in tr["runs"]))
            w(f"| {titles[k]} | {got} | {_fmt(_num(tr.get('seconds')), 's')} | {wire} |")
        w("")
        if "throughput" in images:
            w(f"![throughput]({images['throughput']})")
            w("")

    if any(k in lat or k in thr for k in _front_keys(keys)):
        out.extend(lab_path_section(lat, thr, titles, keys))
    if "kernelkeeper_nocurve" in lat:
        out.extend(curve_section(lat, titles))

    if start:
        w("## 3. Kernel start until the first execute answers")
        w("")
        w("Servers: `POST /api/kernels`, open the websocket, execute `pass`, until reply and idle. "
          "Direct: `KernelManager.start_kernel`, `wait_for_ready`, execute `pass`. Median over the "
          "runs; every run's figure is listed.")
        w("")
        out.extend(ratio_table(start, "median_s", "s", titles, keys))
        w("")
        w("| target | runs (s) | of which POST /api/kernels (s) |")
        w("|---|---|---|")
        for k in [k for k in keys if k in start]:
            sr = start[k]
            runs_s = ", ".join(f"{x:.2f}" for x in sr.get("samples_s", [])) or _status_cell(sr)
            post = ", ".join(f"{x:.2f}" for x in sr.get("post_s", [])) or "—"
            w(f"| {titles[k]} | {runs_s} | {post} |")
        w("")

    hyd = res.get("hydration", {})
    if hyd:
        w("## 4. Hydration: first request for an unknown kernel id on a fresh replica")
        w("")
        w("The kernel is started (and given state, `x = 41`) through replica A, which stays up. "
          "A replica B that has never seen the kernel then gets its first "
          "`GET /api/kernels/{id}` and its first execute (`x += 1; print(x)`: `42` proves it "
          "reached the same kernel). For Enterprise Gateway: two instances in "
          "`availability_mode=replication` sharing one FileKernelSessionManager directory.")
        w("")
        w("| variant | status | first GET on B | model state | first execute through B | same kernel state |")
        w("|---|---|---|---|---|---|")
        for v in hyd.values():
            get = (f"{v['get_status']} in {_fmt(_num(v.get('get_s')), 's')}"
                   if "get_status" in v else "—")
            ex = v.get("execute") or {}
            ex_s = (_fmt(_num(v.get("execute_s")), "s") if v.get("status") == "ok"
                    else (f"failed after {ex['seconds']:.1f} s" if "seconds" in ex else "—"))
            same = {True: "yes", False: "no"}.get(v.get("state_preserved"), "—")
            w(f"| {v['title']} | {_status_cell(v)} | {get} | {v.get('get_state') or '—'} | "
              f"{ex_s} | {same} |")
        w("")
        _server_errors(w, hyd)
        for v in hyd.values():
            if v.get("explain"):
                w(f"- {v['title']}: {v['explain']}")
        w("")

    fo = res.get("failover", {})
    if fo:
        w("## 5. Failover: the gateway serving a kernel goes away")
        w("")
        w("A kernel with state is started through a gateway, then that gateway is signalled. "
          "The client then does what jupyter_server's gateway client does: "
          "`GET /api/kernels/{id}`, then it reconnects its websocket and executes "
          "`x += 1; print(x)`, retrying every 0.5 s until an execute succeeds or the deadline "
          "passes. Times are from the signal. Variants:")
        w("")
        w("- *client turns to replica 2* / EG: two gateways, `kill -9` of A, the client "
          "retries on B's own URL (EG has no other way).")
        w("- kernelkeeper *behind nginx*: what `make run` and the Helm chart give a user: one "
          "URL. Active-active: `kill -9` of the replica that served the kernel. Active-passive "
          "(Lease duration 15 s, renew deadline 10 s, retry 2 s): `kill -9` of the Lease holder "
          "(the standby must wait for the Lease to expire), then `SIGTERM` of the new holder (a "
          "rollout: it hands the Lease over before it exits).")
        w("")
        w("| variant | status | time to first successful execute | same kernel state | kernel process survived A | attempts |")
        w("|---|---|---|---|---|---|")
        for v in fo.values():
            rec = _fmt(_num(v.get("recovery_s")), "s") if v.get("status") == "ok" else "—"
            same = {True: "yes", False: "no"}.get(v.get("state_preserved"), "—")
            surv = {True: "yes", False: "no"}.get(v.get("kernel_survived_gateway"), "—")
            w(f"| {v['title']} | {_status_cell(v)} | {rec} | {same} | {surv} | "
              f"{v.get('attempts', '—')} |")
        w("")
        for v in fo.values():
            if v.get("events"):
                w(f"**{v['title']}** timeline:")
                w("")
                for ev in v["events"]:
                    t = ev.get("t")
                    dur = f" ({ev['dur']:.2f} s)" if "dur" in ev else ""
                    when = f"t={t:.2f} s" if t is not None else "after"
                    w(f"- {when}: {_one_line(ev['event'], 300)}{dur}")
                w("")
            if v.get("explain"):
                w(f"{v['explain']}")
                w("")
        _server_errors(w, fo)
        if "failover" in images:
            w(f"![failover]({images['failover']})")
            w("")

    mem = res.get("memory", {})
    if mem:
        w("## 6. Gateway memory (RSS)")
        w("")
        w("kernelkeeper: RSS of gateway replica 2 with 0, 1, 50 and 200 idle kernels hydrated on "
          "it: the kernels come from the scale scenario (section 7), which replica 2 never "
          "served; each is hydrated by a websocket execute of `pass`, then the websocket "
          "closes and the replica keeps its connection to the kernel. Median of 5 samples per "
          "point. Peers: RSS of the server process (kernels excluded) with one kernel, after "
          "the latency and throughput runs, for scale.")
        w("")
        w("| target | status | points |")
        w("|---|---|---|")
        for k in [k for k in keys if k in mem]:
            v = mem.get(k)
            pts = (", ".join(f"{p['kernels']} kernel(s): {p['rss_bytes'] / 2**20:.1f} MiB"
                             + (f" ({p['label']})" if p.get("label") else "")
                             for p in v.get("points", [])) if v else "—")
            w(f"| {titles[k]} | {_status_cell(v)} | {pts or '—'} |")
        kk_pts = (mem.get("kernelkeeper") or {}).get("points") or []
        if len(kk_pts) > 1 and kk_pts[-1]["kernels"] > 0:
            per = (kk_pts[-1]["rss_bytes"] - kk_pts[0]["rss_bytes"]) / kk_pts[-1]["kernels"]
            w("")
            w(f"kernelkeeper's replica grows by {per / 2**10:.0f} KiB per hydrated idle kernel "
              f"(from 0 to {kk_pts[-1]['kernels']}).")
        w("")
        if "memory" in images:
            w(f"![memory]({images['memory']})")
            w("")

    sc = res.get("scale", {})
    if sc:
        v = sc.get("kernelkeeper") or {}
        w(f"## 7. Scale: {v.get('count', 'N')} KernelSessions created at once")
        w("")
        w("kernelkeeper only. The KernelSessions are created through the Kubernetes API, 32 "
          "requests in flight (what `kubectl apply` or the gateway does); a watch records when "
          "each is first Ready (kernel answering on its ports). Start latency is from each "
          "create call to its Ready. Operator CPU is user + system time of the operator "
          "process over the whole burst. Everything runs on the same 2 cores: API server, "
          "etcd, the node (kubelet, containerd) and the kernels themselves.")
        w("")
        if v.get("count"):
            pm = v.get("kernel_pod_memory") or {}
            other = v.get("other_cpu_s") or {}
            w("| sessions | all Ready? | creates sent in | all Ready after | start p50 | "
              "start p95 | start p99 | operator CPU | per kernel | API server CPU | "
              "node CPU |")
            w("|---|---|---|---|---|---|---|---|---|---|---|")
            w(f"| {v['count']} | {'yes' if v.get('ready') == v['count'] else 'no'}: "
              f"{v.get('ready')} Ready, {v.get('failed')} failed, {v.get('not_ready')} "
              f"pending | {_fmt(_num(v.get('create_burst_s')), 's')} | "
              f"{_fmt(_num(v.get('wall_s')), 's')} | {_fmt(_num(v.get('p50_s')), 's')} | "
              f"{_fmt(_num(v.get('p95_s')), 's')} | {_fmt(_num(v.get('p99_s')), 's')} | "
              f"{_fmt(_num(v.get('operator_cpu_s')), 's')} | "
              f"{_fmt(_num(v.get('operator_cpu_per_kernel_ms')), 'ms')} | "
              f"{_fmt(_num(other.get('kube-apiserver')), 's')} | "
              f"{_fmt(_num(other.get('node')), 's')} |")
            if pm.get("median_private_bytes"):
                w("")
                w(f"Each kernel pod (launcher + ipykernel) uses "
                  f"{pm['median_private_bytes'] / 2**20:.1f} MiB of private memory (median "
                  f"over {pm['pods']} pods, USS).")
        if v.get("status") not in ("ok", None):
            w("")
            w(f"Status: {_status_cell(v)}")
        w("")
        if "scale" in images:
            w(f"![scale]({images['scale']})")
            w("")

    pr = (res.get("present") or {}).get("kernelkeeper")
    if pr:
        w(f"## 8. With {pr.get('sessions_present', 'M')} KernelSessions present")
        w("")
        if pr.get("status") == "not measured":
            w(f"Not measured: {pr.get('reason')}")
        else:
            w("A fresh gateway replica (a new process) is started and timed until `/readyz` "
              "answers 200, which needs its watch to have listed every KernelSession. It then "
              "gets its first `GET /api/kernels/{id}` and its first websocket execute of "
              "`pass` for each running kernel, one after another (hydration).")
            w("")
            w("| sessions present | running kernels | start until ready | the same with "
              "only the running kernels' sessions | `GET /api/kernels` (all) | first GET "
              "p50 / p99 | hydration (first execute) p50 / p99 |")
            w("|---|---|---|---|---|---|---|")
            w(f"| {pr.get('sessions_present')} | {pr.get('running_kernels')} | "
              f"{_fmt(_num(pr.get('start_until_ready_s')), 's')} | "
              f"{_fmt(_num(pr.get('start_until_ready_before_s')), 's')} "
              f"({pr.get('sessions_before')} sessions) | "
              f"{pr.get('listed')} listed in {_fmt(_num(pr.get('list_s')), 's')} | "
              f"{_fmt(_num(pr.get('get_p50_s')), 's')} / {_fmt(_num(pr.get('get_p99_s')), 's')} | "
              f"{_fmt(_num(pr.get('hydrate_p50_s')), 's')} / "
              f"{_fmt(_num(pr.get('hydrate_p99_s')), 's')} |")
            w("")
            w(f"Only {pr.get('running_kernels')} of the sessions have a running kernel: "
              f"{pr.get('why_not_all_running', '')}. The others were created while the operator "
              "was stopped, so they stay without a Pod; they are full KernelSessions to the "
              "gateway's watch and list. The operator being stopped is itself part of the "
              "test: the running kernels and their hydration need nothing from it.")
            if pr.get("status") != "ok":
                w("")
                w(f"Status: {_status_cell(pr)}")
        w("")

    w("## How to reproduce")
    w("")
    w("`make bench` (or `.venv/bin/python -m bench.run --help`); see bench/README.md. Raw numbers, "
      "including every latency sample, are in `latest.json` next to this file.")
    w("")
    return "\n".join(out)


def _front_keys(keys: list[str]) -> list[str]:
    return [k for k in keys if any(k.endswith(f"_{s}") for s in FRONT_SUFFIXES)]


def _ok_value(section: dict[str, Any], key: str, field: str) -> float | None:
    res = section.get(key) or {}
    return _num(res.get(field)) if res.get("status") == "ok" else None


def _ratio(v: float | None, ref: float | None) -> str:
    return f"{v / ref:.2f}×" if v is not None and ref else "—"


def _delivered(tr: dict[str, Any]) -> str:
    runs = tr.get("runs") or []
    if not runs:
        return _status_cell(tr) if tr else "—"
    got = sum(1 for r in runs if r["complete"])
    return (f"{got} of {len(runs)} runs complete ("
            + ", ".join(f"{r['received_bytes']:,}" for r in runs)
            + f" of {tr['expected_bytes']:,} bytes)")


def lab_path_section(lat: dict[str, Any], thr: dict[str, Any], titles: dict[str, str],
                     keys: list[str]) -> list[str]:
    """JupyterLab's path: each gateway straight and through the fronts, against direct ZMQ;
    then the issue's acceptance, checked on this run's numbers."""
    direct = _ok_value(lat, "direct", "p50_ms")
    out = ["## 2b. JupyterLab's path: through jupyter_server, with and without kernelkeeper.lab",
           "",
           "The same figures as sections 1 and 2 for the rows that reach a gateway through a "
           "jupyter_server in front of it (as JupyterLab users run it), next to the gateway "
           "straight. *v1 browser*: the client offers v1.kernel.websocket.jupyter.org to the "
           "front, as JupyterLab 4 does.",
           "",
           "| target | `pass` p50 | p95 | p99 | p50 ÷ direct ZMQ | p50 ÷ the gateway straight "
           "| 20 MB stream | bytes delivered |",
           "|---|---|---|---|---|---|---|---|"]
    for k in keys:
        gateway = next((g for g in ("kernelkeeper", "eg") if k == g or k.startswith(f"{g}_")),
                       None)
        if gateway is None or k.endswith("_pod") or (k not in lat and k not in thr):
            continue
        lr, tr = lat.get(k) or {}, thr.get(k) or {}
        p50 = _ok_value(lat, k, "p50_ms")
        straight = "—" if k == gateway else _ratio(p50, _ok_value(lat, gateway, "p50_ms"))
        cells = [titles[k], _fmt(p50, "ms") if p50 is not None else _status_cell(lr or None),
                 _fmt(_ok_value(lat, k, "p95_ms"), "ms"), _fmt(_ok_value(lat, k, "p99_ms"), "ms"),
                 _ratio(p50, direct), straight,
                 _fmt(_num(tr.get("mb_per_s")), "MB/s") if tr.get("status") == "ok"
                 else _status_cell(tr or None), _delivered(tr)]
        out.append("| " + " | ".join(cells) + " |")
    out += ["", *_lab_path_verdict(lat, thr, titles), ""]
    return out


def curve_section(lat: dict[str, Any], titles: dict[str, str]) -> list[str]:
    """What CurveZMQ between gateway and kernel Pod costs: the same path, on and off."""
    on, off = _ok_value(lat, "kernelkeeper", "p50_ms"), _ok_value(lat, "kernelkeeper_nocurve",
                                                                  "p50_ms")
    out = ["## 2c. CurveZMQ between the gateway and the kernel Pod", "",
           "| target | `pass` p50 | p95 | p99 |", "|---|---|---|---|"]
    for k in ("kernelkeeper", "kernelkeeper_nocurve"):
        out.append(f"| {titles[k]} | {_fmt(_ok_value(lat, k, 'p50_ms'), 'ms')} | "
                   f"{_fmt(_ok_value(lat, k, 'p95_ms'), 'ms')} | "
                   f"{_fmt(_ok_value(lat, k, 'p99_ms'), 'ms')} |")
    if on is None or off is None:
        verdict = "not measured (a row is missing)"
    else:
        verdict = (f"Curve on {on / off:.2f}× Curve off (target ≤ {CURVE_TARGET}×): "
                   + ("met" if on / off <= CURVE_TARGET else "**missed**"))
    return [*out, "", f"Acceptance (this run): {verdict}.", ""]


def _lab_path_verdict(lat: dict[str, Any], thr: dict[str, Any],
                      titles: dict[str, str]) -> list[str]:
    direct = _ok_value(lat, "direct", "p50_ms")
    lines = [f"Acceptance (this run): `pass` p50 through jupyter_server with kernelkeeper.lab "
             f"≤ {LAB_PATH_TARGET}× direct ZMQ; every byte of the stream delivered."]
    for k in ("kernelkeeper_lab", "kernelkeeper_lab_v1"):
        if k not in lat and k not in thr:
            continue
        p50 = _ok_value(lat, k, "p50_ms")
        if p50 is None or direct is None:
            lat_s = "latency not measured here (direct or this row missing)"
        else:
            ratio = p50 / direct
            lat_s = (f"p50 {_fmt(p50, 'ms')} = {ratio:.2f}× direct ZMQ's {_fmt(direct, 'ms')} "
                     f"(target ≤ {LAB_PATH_TARGET}×): "
                     + ("met" if ratio <= LAB_PATH_TARGET else "**missed**"))
        tr = thr.get(k) or {}
        runs = tr.get("runs") or []
        thr_s = ("stream: not measured" if not runs else
                 "stream: every byte delivered" if tr.get("status") == "ok"
                 else "stream: **bytes missing**")
        lines.append(f"- {titles.get(k, k)}: {lat_s}; {thr_s}.")
    return lines


def _server_errors(w: Any, section: dict[str, Any]) -> None:
    for v in section.values():
        kills = v.get("kill_calls")
        if kills:
            w(f"`kill` commands EG ran in **{v['title']}** (pgids/pids are the kernels'; "
              "negative = process group): " + ", ".join(f"`{k}`" for k in kills[:8])
              + (f" and {len(kills) - 8} more" if len(kills) > 8 else ""))
            w("")
        errs = v.get("server_errors")
        if not errs:
            continue
        w(f"Errors logged by the servers in **{v['title']}**:")
        w("")
        for name, lines in errs.items():
            for line in lines:
                w(f"- {name}: `{_one_line(line, 220).replace('`', '')}`")
        w("")
