"""One plan at a time per experiment, unless asked: two plans at once skew both.

Two ``harness run`` started in one experiment ran side by side, and ``compare`` then pooled
runs that had shared the CPU. A running plan holds an exclusive ``flock`` on its
``results/plans/<plan_id>/lock`` (with its pid in the file), so a new plan can see it: a lock it
cannot share is a plan that is running. The check and the taking of the new plan's own lock
happen under one experiment-wide start lock, so two plans started at the same moment cannot
both pass. The kernel drops a flock when its process dies: a SIGKILLed plan never blocks the next.
"""

from __future__ import annotations

import fcntl
import os
from contextlib import ExitStack, contextmanager
from pathlib import Path
from typing import ContextManager, Iterator

from harness.errors import PlanRunningError
from harness.plan.state import LOCK_FILENAME

START_LOCK = ".start.lock"


@contextmanager
def _flock(path: Path) -> Iterator[None]:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)  # closing drops the lock


def running_plans(plans_dir: Path, exclude: str | None = None) -> list[tuple[str, int | None]]:
    """(plan id, pid) of every plan of the experiment whose lock is held right now."""
    out: list[tuple[str, int | None]] = []
    if not plans_dir.is_dir():
        return out
    for lock in sorted(plans_dir.glob(f"*/{LOCK_FILENAME}")):
        plan_id = lock.parent.name
        if plan_id == exclude:
            continue
        try:
            fd = os.open(lock, os.O_RDONLY)
        except OSError:
            continue
        try:
            fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
            fcntl.flock(fd, fcntl.LOCK_UN)
        except BlockingIOError:
            text = os.pread(fd, 32, 0).decode(errors="replace").strip()
            out.append((plan_id, int(text) if text.isdigit() else None))
        finally:
            os.close(fd)
    return out


@contextmanager
def exclusive_plan(plans_dir: Path, plan_id: str, plan_lock: ContextManager[object], *,
                   allow_parallel: bool = False) -> Iterator[None]:
    """Hold ``plan_lock`` (the plan's own lock) for the block, refusing to start beside a running plan.

    Raises:
        PlanRunningError: another plan of the experiment is running and ``allow_parallel`` is False.
        PlanError: from ``plan_lock`` (this very plan is being run by another process).
    """
    with ExitStack() as stack:
        with _flock(plans_dir / START_LOCK):
            if not allow_parallel:
                running = running_plans(plans_dir, exclude=plan_id)
                if running:
                    other, pid = running[0]
                    who = f"pid {pid}" if pid is not None else "another harness process"
                    raise PlanRunningError(
                        f"plan {other} is running in this experiment ({who}); a second plan at the same time "
                        "would share the machine with it and skew both", plan_id=other, pid=pid,
                        hint="wait for it to finish, or pass --parallel-plans to run both anyway "
                             "(compare then warns about the overlapping runs)")
            stack.enter_context(plan_lock)
        yield
