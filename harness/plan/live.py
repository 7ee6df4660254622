"""The live view of a run in flight, read from the tail of its ``events.jsonl``.

The agent and the script already stream every batch (``dt``, ``wait``) and a resource sample
per interval (GPU utilization among it) into the run's folder; following that file from
where it was last read costs a ``read()`` of the new bytes, nothing inside the container.
From it come the steps done, the step rate and the data-wait share over the last
:data:`WINDOW` steps, the GPU utilization of the last sample, and, once the first epoch is
over, how many steps the run will take: so the ETA can use the measured step rate.
"""

from __future__ import annotations

import json
import math
import os
from collections import deque
from pathlib import Path
from typing import Any

from harness.nofollow import open_file

WINDOW = 50  # steps the rate and the data-wait share are measured over


class LiveRun:
    """Follows one run's events.jsonl from where it last read."""

    def __init__(self, path: Path, label: str, remote: bool = False) -> None:
        self.path, self.label, self.remote = path, label, remote
        self.offset = 0
        self._partial = b""
        self.steps = 0
        self.epoch: int | None = None
        self.batch: int | None = None
        self.phase: str | None = None
        self.epochs: int | None = None  # from the mode's config, when it says
        self.steps_per_epoch: int | None = None  # known once the first epoch is over
        self.gpu_util: float | None = None
        self.recent: deque[tuple[float, float]] = deque(maxlen=WINDOW)  # (step seconds, data wait seconds)
        self._epoch_steps = 0

    def poll(self) -> str:
        """Read what was appended since the last poll; return :meth:`describe` (or "starting")."""
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
        lines = (self._partial + chunk).split(b"\n")
        self._partial = lines.pop()  # an unfinished last line waits for its end
        for line in lines:
            self._take(line)
        return self.describe() or "starting"

    def _take(self, line: bytes) -> None:
        try:
            event = json.loads(line)
        except ValueError:
            return
        if not isinstance(event, dict):
            return
        kind = event.get("type")
        if kind == "batch":
            self._take_batch(event)
        elif kind == "sample":
            utils = [g.get("util") for g in (event.get("gpus") or {}).values() if isinstance(g, dict)]
            utils = [float(u) for u in utils if isinstance(u, (int, float))]
            if utils:
                self.gpu_util = sum(utils) / len(utils)
        elif kind == "phase":
            self.phase = event.get("name")
        elif kind == "mode_start":
            epochs = (event.get("config") or {}).get("epochs")
            if isinstance(epochs, int) and epochs > 0:
                self.epochs = epochs

    def _take_batch(self, event: dict[str, Any]) -> None:
        epoch = event.get("epoch", self.epoch)
        if epoch != self.epoch and self.epoch is not None and self.steps_per_epoch is None:
            self.steps_per_epoch = self._epoch_steps  # the first epoch is over: its length is known
        if epoch != self.epoch:
            self._epoch_steps = 0
        self.epoch, self.batch = epoch, event.get("i", self.batch)
        self.steps += 1
        self._epoch_steps += 1
        dt, wait = event.get("dt"), event.get("wait")
        if isinstance(dt, (int, float)) and math.isfinite(dt):
            self.recent.append((float(dt), float(wait) if isinstance(wait, (int, float)) else 0.0))

    # -- what it shows -------------------------------------------------------
    def step_rate(self) -> float | None:
        """Steps per second over the last WINDOW steps (step time plus the data wait before each)."""
        busy = sum(dt + wait for dt, wait in self.recent)
        return len(self.recent) / busy if busy > 0 else None

    def wait_share(self) -> float | None:
        """The share of the last WINDOW steps' time spent waiting for data."""
        busy = sum(dt + wait for dt, wait in self.recent)
        return sum(wait for _, wait in self.recent) / busy if busy > 0 else None

    def expected_steps(self) -> int | None:
        """Steps the whole run takes: the first epoch's length times the epochs, once both are known."""
        if self.steps_per_epoch and self.epochs:
            return self.steps_per_epoch * self.epochs
        return None

    def remaining(self) -> float | None:
        """Seconds of training left at the measured step rate, when the run's length is known."""
        expected, rate = self.expected_steps(), self.step_rate()
        if expected is None or rate is None:
            return None
        return max(0, expected - self.steps) / rate

    def describe(self) -> str:
        """``epoch 1, step 120/172, 9.4 steps/s, data wait 55 %, GPU 3 %``; the phase before the first step."""
        if not self.steps:
            return self.phase or ""
        expected = self.expected_steps()
        parts = [f"epoch {self.epoch}"] if self.epoch is not None else []
        parts.append(f"step {self.steps}/{expected}" if expected else f"step {self.steps}")
        return ", ".join(parts + self._figures())

    def summary(self) -> str:
        """The end-of-run figures: ``172 steps, 9.4 steps/s, data wait 55 %, GPU 3 %`` (empty without steps)."""
        return ", ".join([f"{self.steps} steps", *self._figures()]) if self.steps else ""

    def _figures(self) -> list[str]:
        parts = []
        rate, wait = self.step_rate(), self.wait_share()
        if rate is not None:
            parts.append(f"{rate:.3g} steps/s")
        if wait is not None:
            parts.append(f"data wait {wait * 100:.0f} %")
        if self.gpu_util is not None:
            parts.append(f"GPU {self.gpu_util:.0f} %")
        return parts


def plan_eta(*, pending: int, durations: list[float], in_flight: list[tuple[float, float | None]],
             slots: int) -> float | None:
    """Seconds until the plan is done, or None while nothing is known yet.

    ``durations``: the completed runs' wall times; ``in_flight``: (seconds elapsed, seconds left
    at the measured step rate or None) per running run; ``pending``: runs not started. A run's
    expected duration is the completed runs' mean, else the in-flight runs' projection
    (elapsed + left); a running run without a projection has the expected duration left.
    """
    per_run = sum(durations) / len(durations) if durations else None
    if per_run is None:
        projected = [elapsed + left for elapsed, left in in_flight if left is not None]
        per_run = sum(projected) / len(projected) if projected else None
    left_now = 0.0
    for elapsed, left in in_flight:
        if left is None:
            if per_run is None:
                return None
            left = max(0.0, per_run - elapsed)
        left_now += left
    if pending and per_run is None:
        return None
    return (left_now + pending * (per_run or 0.0)) / max(1, slots)
