"""One reader of /proc/<pid>/stat, for the local tools and the in-pod launcher alike."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True)
class ProcStat:
    state: str
    cpu_ticks: int  # user + system time, in clock ticks
    start_ticks: int  # start time since boot, in clock ticks: with the pid, names one process
    session: int = 0  # the session id (setsid): every process a local component started


def read(pid: int) -> ProcStat | None:
    """The process's stat from one read, or None if it is gone (or this is not Linux)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    # The command name may contain spaces and parentheses; fields start after the last ')'.
    rest = stat[stat.rindex(")") + 2 :].split()  # rest[0] is field 3 of proc(5)
    return ProcStat(state=rest[0], cpu_ticks=int(rest[11]) + int(rest[12]),
                    start_ticks=int(rest[19]), session=int(rest[3]))


def session_members(sid: int) -> list[int]:
    """Live pids whose session is `sid` (zombies excluded)."""
    out = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            st = read(int(entry.name))
            if st is not None and st.session == sid and st.state not in ("Z", "X"):
                out.append(int(entry.name))
    return out
