"""PNG plots of one run's results (matplotlib, Agg backend: no display needed)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

COLORS = {
    "direct": "#444444",
    "kernelkeeper": "#1b9e77",
    "eg": "#d95f02",
    "jupyter_server": "#7570b3",
    "kg": "#e7298a",
    "kernelkeeper_pod": "#888888",
    "kernelkeeper_nocurve": "#a6d854",
    "kernelkeeper_v1": "#66c2a5",
    "eg_v1": "#fc8d62",
    "jupyter_server_v1": "#8da0cb",
    "kg_v1": "#f4a3c8",
}


def _plt() -> Any:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def latency(results: dict[str, Any], titles: dict[str, str], out: Path) -> Path | None:
    series = {k: v["samples_ms"] for k, v in results.items()
              if v.get("status") == "ok" and v.get("samples_ms")}
    if not series:
        return None
    plt = _plt()
    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(12, 4.5))
    for key, samples in series.items():
        data = sorted(samples)
        n = len(data)
        ax1.step(data, [(i + 1) / n for i in range(n)], where="post",
                 label=f"{titles.get(key, key)} (n={n})", color=COLORS.get(key))
    ax1.set_xscale("log")
    ax1.set_xlabel("execute round trip of `pass` (ms, log scale)")
    ax1.set_ylabel("fraction of runs")
    ax1.set_title("Latency CDF")
    ax1.grid(True, which="both", alpha=0.3)
    ax1.legend(fontsize=8)
    keys = list(series)
    ax2.boxplot([series[k] for k in keys], whis=(1, 99), showfliers=True)
    ax2.set_xticks(range(1, len(keys) + 1), [titles.get(k, k) for k in keys], rotation=15,
                   fontsize=8)
    ax2.set_yscale("log")
    ax2.set_ylabel("ms (log scale); whiskers p1-p99")
    ax2.set_title("Latency distribution")
    ax2.grid(True, axis="y", which="both", alpha=0.3)
    fig.tight_layout()
    path = out / "latency.png"
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def bars(results: dict[str, Any], titles: dict[str, str], value_key: str, ylabel: str,
         title: str, out: Path, filename: str) -> Path | None:
    """One bar per target; failed targets drawn hatched with the figure they reached."""
    keys = [k for k, v in results.items() if isinstance(v.get(value_key), int | float)]
    if not keys:
        return None
    plt = _plt()
    fig, ax = plt.subplots(figsize=(8, 4))
    for i, key in enumerate(keys):
        v = results[key]
        ok = v.get("status") == "ok"
        ax.bar(i, v[value_key], color=COLORS.get(key, "#999999"),
               hatch=None if ok else "//", edgecolor="black" if not ok else None)
        ax.text(i, v[value_key], f"{v[value_key]:.3g}" + ("" if ok else "\nFAILED"),
                ha="center", va="bottom", fontsize=8)
    ax.set_xticks(range(len(keys)), [titles.get(k, k) for k in keys], rotation=10, fontsize=8)
    ax.set_ylabel(ylabel)
    ax.set_title(title)
    ax.grid(True, axis="y", alpha=0.3)
    fig.tight_layout()
    path = out / filename
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def failover(results: dict[str, Any], out: Path) -> Path | None:
    """One row per variant: each attempt as a bar from its start to its end, green/red."""
    rows = [(v.get("short") or v.get("title", k), v) for k, v in results.items()
            if v.get("events")]
    if not rows:
        return None
    plt = _plt()
    fig, ax = plt.subplots(figsize=(11, 1.2 + 0.9 * len(rows)))
    for y, (_label, v) in enumerate(rows):
        for ev in v["events"]:
            t = ev.get("t")
            if t is None:
                continue
            if "dur" in ev:
                ax.barh(y, max(ev["dur"], 0.05), left=t, height=0.5,
                        color="#2ca02c" if ev.get("ok") else "#d62728", alpha=0.8)
            else:
                ax.plot([t], [y], marker="|", markersize=14, color="black")
        end = v.get("recovery_s")
        label = f"recovered {end:.2f}s" if end is not None else "FAILED"
        last = max((e["t"] + e.get("dur", 0) for e in v["events"] if e.get("t") is not None),
                   default=0)
        ax.text(last + 0.4, y, label, va="center", fontsize=8)
    ax.set_yticks(range(len(rows)), [t for t, _ in rows], fontsize=8)
    ax.set_xlabel("seconds since the signal to the serving gateway (green: request "
                  "succeeded, red: failed; |: the signal, then the kernel check)")
    ax.set_title("Failover: client requests after the serving gateway is signalled")
    ax.grid(True, axis="x", alpha=0.3)
    fig.tight_layout()
    path = out / "failover.png"
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def memory(results: dict[str, Any], titles: dict[str, str], out: Path) -> Path | None:
    series = {k: v["points"] for k, v in results.items()
              if v.get("status") == "ok" and len(v.get("points") or []) > 1}
    if not series:
        return None
    plt = _plt()
    fig, ax = plt.subplots(figsize=(7, 4))
    for key, points in series.items():
        ax.plot([p["kernels"] for p in points], [p["rss_bytes"] / 2**20 for p in points],
                marker="o", label=titles.get(key, key), color=COLORS.get(key))
    ax.set_xlabel("idle kernels hydrated")
    ax.set_ylabel("gateway RSS (MiB)")
    ax.set_title("Gateway memory by kernel count")
    ax.grid(True, alpha=0.3)
    ax.legend(fontsize=8)
    fig.tight_layout()
    path = out / "memory.png"
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def scale(results: dict[str, Any], out: Path) -> Path | None:
    """Start latency of the scale scenario as a CDF: how many sessions were Ready after t."""
    v = results.get("kernelkeeper") or {}
    data = v.get("latencies_s") or []
    if not data:
        return None
    plt = _plt()
    fig, ax = plt.subplots(figsize=(7, 4))
    ax.step(data, range(1, len(data) + 1), where="post", color=COLORS["kernelkeeper"])
    ax.set_xlabel("seconds from create to Ready")
    ax.set_ylabel("KernelSessions Ready")
    ax.set_title(f"{v.get('count', len(data))} KernelSessions created at once")
    ax.grid(True, alpha=0.3)
    fig.tight_layout()
    path = out / "scale.png"
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path
