"""What a plan shows while it runs: runs done of total, an ETA, and a live view of each run in flight.

The live view (steps done, step rate, data-wait share, GPU utilization) comes from the tail of
each run's events.jsonl (``harness.plan.live``); the ETA uses the measured step rate of the runs
in flight and the durations of the runs completed.
"""

from __future__ import annotations

import sys
import threading
import time
from pathlib import Path
from typing import TYPE_CHECKING, Callable

from harness.plan.live import LiveRun, plan_eta
from harness.results.schema import EVENTS_FILENAME

if TYPE_CHECKING:
    from harness.plan.model import PlannedRun
    from harness.plan.slots import Slot

Echo = Callable[[str], None]
PLAIN_INTERVAL = 30.0  # seconds between live lines when stdout is not a terminal


class Progress:
    """Runs done of total, an ETA, and the live view of each run in flight.

    On a terminal this is a rich progress display, redrawn twice a second; otherwise plain lines
    (logs, CI): one when a run starts, one when it ends (with its steps, step rate, data wait and
    GPU use), and a live line per run in flight every ``plain_interval`` seconds.
    """

    def __init__(self, total: int, done: int, slots: int, echo: Echo | None,
                 plain_interval: float = PLAIN_INTERVAL) -> None:
        self.total, self.done, self.slots, self.echo = total, done, max(1, slots), echo
        self.plain_interval = plain_interval
        self.durations: list[float] = []
        self.started = done
        self._lock = threading.Lock()
        self._live: dict[str, tuple[LiveRun, float]] = {}  # run id -> (its live view, when it started)
        self._rich = None
        self._task = None
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def __enter__(self) -> "Progress":
        if self.echo is None:
            return self
        if _is_tty():
            from rich.console import Console
            from rich.progress import BarColumn, MofNCompleteColumn, TextColumn
            from rich.progress import Progress as RichProgress

            self._rich = RichProgress(TextColumn("[bold]runs"), BarColumn(), MofNCompleteColumn(),
                                      TextColumn("{task.fields[eta]}"), TextColumn("{task.fields[live]}"),
                                      console=Console(), transient=False)
            self._rich.start()
            self._task = self._rich.add_task("runs", total=self.total, completed=self.done, eta="", live="")
        self._thread = threading.Thread(target=self._refresh_loop, name="harness-progress", daemon=True)
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=2)
        if self._rich is not None:
            self._refresh()
            self._rich.stop()

    def log(self, line: str) -> None:
        """Backend log lines (image builds, notes), printed above the bar."""
        if self.echo is None:
            return
        if self._rich is not None:
            self._rich.console.print(line, markup=False, highlight=False)
        else:
            self.echo(line)

    def start_run(self, run: "PlannedRun", run_dir: Path, slot: "Slot | None" = None, remote: bool = False) -> None:
        with self._lock:
            self._live[run.run_id or ""] = (LiveRun(run_dir / EVENTS_FILENAME, run.label, remote=remote),
                                            time.monotonic())
            self.started += 1
            number = self.started
        where = f" on {slot.describe()}" if slot is not None and (slot.cpuset or slot.gpu_ids) else ""
        self._plain(f"[{number}/{self.total}] {run.label}: started {run.run_id}{where}")

    def end_run(self, run: "PlannedRun") -> None:
        with self._lock:
            live, _ = self._live.pop(run.run_id or "", (None, 0.0))
            if run.status == "pending":  # never really started (a plan-level error)
                self.started -= 1
                return
            self.done += 1
            if run.started and run.ended and run.status == "completed":
                self.durations.append(run.ended - run.started)
        if live is not None:
            live.poll()  # the last lines the run wrote
        text = f"[{self.done}/{self.total}] {run.label}: {run.status}"
        if run.wall_time is not None:
            text += f" in {run.wall_time:.1f}s"
        if run.message and run.status != "completed" and run.message != run.status:
            text += f" ({run.message})"
        if live is not None and run.status == "completed" and live.summary():
            text += f" ({live.summary()})"
        elif live is not None and live.describe():
            text += f", last seen at {live.describe()}"
        eta = self.eta()
        if eta is not None and self.done < self.total:
            text += f"; ETA {_fmt_duration(eta)}"
        if self._rich is not None:
            self._rich.console.print(text, markup=False, highlight=False)
            self._refresh()
        else:
            self._plain(text)

    def eta(self) -> float | None:
        """Seconds left (see ``plan_eta``): the runs in flight at their measured step rate, then the rest."""
        now = time.monotonic()
        with self._lock:
            in_flight = [(now - started, live.remaining()) for live, started in self._live.values()]
            pending = max(0, self.total - self.done - len(in_flight))
            return plan_eta(pending=pending, durations=list(self.durations), in_flight=in_flight, slots=self.slots)

    def live_lines(self) -> list[str]:
        """One line per run in flight: its label and live view (reading what its events.jsonl gained)."""
        with self._lock:
            views = [live for live, _ in self._live.values()]
        return [f"{live.label}: {live.poll()}" for live in views]

    def _plain(self, text: str) -> None:
        if self.echo is not None and self._rich is None:
            self.echo(text)

    def _refresh_loop(self) -> None:
        last_plain = time.monotonic()
        while not self._stop.wait(0.5):
            if self._rich is not None:
                self._refresh()
            elif time.monotonic() - last_plain >= self.plain_interval:
                last_plain = time.monotonic()
                self._plain_live()

    def _plain_live(self) -> None:
        lines = self.live_lines()
        eta = self.eta()
        suffix = f"; ETA {_fmt_duration(eta)}" if eta is not None else ""
        for line in lines:
            self._plain(f"  {line}{suffix}")

    def _refresh(self) -> None:
        if self._rich is None or self._task is None:
            return
        live = "  ".join(self.live_lines())
        eta = self.eta()
        with self._lock:
            done = self.done
        self._rich.update(self._task, completed=done, live=live,
                          eta=f"ETA {_fmt_duration(eta)}" if eta is not None else "ETA …")


def _is_tty() -> bool:
    # sys.stdout, not fd 1: click's test runner and redirections replace the stream.
    try:
        return sys.stdout.isatty()
    except (AttributeError, ValueError):
        return False


def _fmt_duration(seconds: float) -> str:
    seconds = int(round(seconds))
    h, rest = divmod(seconds, 3600)
    m, s = divmod(rest, 60)
    return f"{h}h{m:02d}m" if h else (f"{m}m{s:02d}s" if m else f"{s}s")
