"""How a run ended, decided in one place from every witness there is.

The agent is the first witness (it saw the script's exit, its own stop request, the cgroup's OOM
counter); the backend may add what only it saw (the user pressed Ctrl-C, the engine's OOMKilled
flag, the agent itself died and left no record). Both call :func:`decide_status`; the backend
passes the agent's recorded status as one more piece of evidence.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Evidence:
    """What a witness knows about how a run ended.

    ``exit_code`` follows the container convention (128 + signal number for a signal).
    ``recorded`` is the status the agent wrote (``None`` when the agent itself is deciding);
    the backend passes ``"failed"`` for a run whose agent left no record.
    """

    exit_code: int | None
    stop_reason: str | None = None  # "interrupted" | "timeout": why the agent stopped the script
    user_stopped: bool = False  # the user pressed Ctrl-C on harness (backend)
    oom_counter_rose: bool = False  # the cgroup's OOM-kill counter rose during the run
    killed_at_memory_limit: bool = False  # SIGKILL with memory at >= 95 % of the limit
    engine_oom: bool = False  # the engine's OOMKilled flag (misses kills of a child of PID 1)
    recorded: str | None = None


def decide_status(e: Evidence) -> str:
    """``completed``, ``failed``, ``interrupted``, ``oom_killed`` or ``timeout``.

    The cgroup's OOM counter is the first witness of an OOM kill, the engine's flag a second,
    a SIGKILL with memory at the limit a third (the counter is missing in some child cgroups).
    """
    if e.user_stopped:
        return "interrupted"
    if e.recorded in ("oom_killed", "timeout"):
        return e.recorded
    if e.stop_reason == "timeout":
        return "timeout"
    if e.recorded == "completed" and e.exit_code == 0:
        return "completed"
    failed_exit = e.exit_code is not None and e.exit_code != 0
    if (e.oom_counter_rose and (e.recorded is None or failed_exit)) or (e.engine_oom and failed_exit):
        return "oom_killed"
    if e.stop_reason == "interrupted":
        return "interrupted"
    if e.recorded in ("failed", "interrupted"):
        return e.recorded
    if e.recorded is None and e.exit_code == 0:
        return "completed"
    if e.killed_at_memory_limit:
        return "oom_killed"
    return "failed"
