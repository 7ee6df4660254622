"""What a plan shows while it runs: runs done of total, an ETA, and each run's live epoch and batch."""

from __future__ import annotations

import json
import os
import sys
import threading
from pathlib import Path
from typing import TYPE_CHECKING, Callable

from harness.nofollow import open_file
from harness.results.schema import EVENTS_FILENAME

if TYPE_CHECKING:
    from harness.plan.model import PlannedRun
    from harness.plan.slots import Slot

Echo = Callable[[str], None]


class Progress:
    """Runs done of total, an ETA, and the live epoch/batch of each run in flight.

    On a terminal this is a rich progress display; otherwise plain lines (logs, CI) — one when a run
    starts and one when it ends, since redrawing a bar into a file only makes noise.
    """

    def __init__(self, total: int, done: int, slots: int, echo: Echo | None) -> None:
        self.total, self.done, self.slots, self.echo = total, done, max(1, slots), echo
        self.durations: list[float] = []
        self.started = done
        self._lock = threading.Lock()
        self._tails: dict[str, EventTail] = {}
        self._rich = None
        self._task = None
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def __enter__(self) -> "Progress":
        if self.echo is not None and _is_tty():
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
            self._tails[run.run_id or ""] = EventTail(run_dir / EVENTS_FILENAME, run.label, remote=remote)
            self.started += 1
            number = self.started
        where = f" on {slot.describe()}" if slot is not None and (slot.cpuset or slot.gpu_ids) else ""
        self._plain(f"[{number}/{self.total}] {run.label}: started {run.run_id}{where}")

    def end_run(self, run: "PlannedRun") -> None:
        with self._lock:
            tail = self._tails.pop(run.run_id or "", None)
            if run.status == "pending":  # never really started (a plan-level error)
                self.started -= 1
                return
            self.done += 1
            if run.started and run.ended and run.status == "completed":
                self.durations.append(run.ended - run.started)
        live = tail.describe() if tail else ""
        text = f"[{self.done}/{self.total}] {run.label}: {run.status}"
        if run.wall_time is not None:
            text += f" in {run.wall_time:.1f}s"
        if run.message and run.status != "completed" and run.message != run.status:
            text += f" ({run.message})"
        if live and run.status != "completed":
            text += f", last seen at {live}"
        eta = self.eta()
        if eta is not None and self.done < self.total:
            text += f"; ETA {_fmt_duration(eta)}"
        if self._rich is not None:
            self._rich.console.print(text, markup=False, highlight=False)
            self._refresh()
        else:
            self._plain(text)

    def eta(self) -> float | None:
        """Seconds left: mean duration of the runs completed so far × runs left ÷ runs at a time."""
        if not self.durations:
            return None
        left = self.total - self.done
        return sum(self.durations) / len(self.durations) * left / self.slots

    def _plain(self, text: str) -> None:
        if self.echo is not None and self._rich is None:
            self.echo(text)

    def _refresh_loop(self) -> None:
        while not self._stop.wait(0.5):
            self._refresh()

    def _refresh(self) -> None:
        if self._rich is None or self._task is None:
            return
        with self._lock:
            live = "  ".join(f"{t.label}: {t.poll()}" for t in self._tails.values())
            eta = self.eta()
            done = self.done
        self._rich.update(self._task, completed=done, live=live,
                          eta=f"ETA {_fmt_duration(eta)}" if eta is not None else "ETA …")


class EventTail:
    """Follows a run's events.jsonl from where it last read, keeping the latest epoch and batch."""

    def __init__(self, path: Path, label: str, remote: bool = False) -> None:
        self.path, self.label, self.remote = path, label, remote
        self.offset = 0
        self.epoch: int | None = None
        self.batch: int | None = None
        self.phase: str | None = None
        self._partial = b""

    def poll(self) -> str:
        if self.remote:
            return "on the cluster"
        try:
            # The run folder is the run's to write: never follow a link or wait on a FIFO there.
            with os.fdopen(open_file(self.path), "rb") as f:
                f.seek(self.offset)
                chunk = f.read(1 << 20)
        except OSError:
            return "starting"
        self.offset += len(chunk)
        data = self._partial + chunk
        lines = data.split(b"\n")
        self._partial = lines.pop()  # an unfinished last line waits for its end
        for line in lines:
            self._take(line)
        return self.describe() or "starting"

    def _take(self, line: bytes) -> None:
        try:
            event = json.loads(line)
        except ValueError:
            return
        kind = event.get("type") if isinstance(event, dict) else None
        if kind == "batch":
            self.epoch, self.batch = event.get("epoch", self.epoch), event.get("i", self.batch)
        elif kind == "phase":
            self.phase = event.get("name")

    def describe(self) -> str:
        if self.batch is None:
            return self.phase or ""
        epoch = f"epoch {self.epoch} " if self.epoch is not None else ""
        return f"{epoch}batch {self.batch}"


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
