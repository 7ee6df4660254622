"""Where parallel runs of a plan go: one GPU (or GPU group) each, or disjoint cpusets on CPUs.

The assignment is pure functions over given GPU and CPU lists, so it is tested without the
hardware; only :func:`detect_gpus` and :func:`available_cpus` look at the machine.
"""

from __future__ import annotations

import math
import os
from dataclasses import dataclass

from harness.errors import PlanError, UsageError
from harness.host_gpus import GpuInfo, detect_gpus  # noqa: F401  (re-exported: ray_task, tests)
from harness.settings import GpuRequest, RunSettings

BANDWIDTH_NOTE = ("Note: parallel runs share the machine's memory bandwidth, caches and disk; their timings "
                  "are not those of a run alone. Compare runs made the same way.")


@dataclass
class Slot:
    """Where one run executes: a cpuset and/or GPU ids (both empty: the whole machine)."""

    cpuset: str | None = None
    gpu_ids: list[str] | None = None

    def describe(self) -> str:
        parts = []
        if self.gpu_ids:
            parts.append("GPU " + ",".join(self.gpu_ids))
        if self.cpuset:
            parts.append(f"cpuset {self.cpuset}")
        return " ".join(parts) or "whole machine"


def available_cpus() -> list[int]:
    """CPUs this process may use (its affinity mask: respects taskset and the cgroup's cpuset)."""
    return sorted(os.sched_getaffinity(0))


def format_cpuset(cpus: list[int]) -> str:
    """[0, 1, 2, 5] -> "0-2,5", the form Docker's --cpuset-cpus takes."""
    out: list[str] = []
    cpus = sorted(set(cpus))
    i = 0
    while i < len(cpus):
        j = i
        while j + 1 < len(cpus) and cpus[j + 1] == cpus[j] + 1:
            j += 1
        out.append(str(cpus[i]) if i == j else f"{cpus[i]}-{cpus[j]}")
        i = j + 1
    return ",".join(out)


def cpu_slots(cpus: list[int], runs: int, cores_per_run: float | None = None) -> list[str]:
    """Disjoint cpusets for up to ``runs`` parallel runs.

    With ``cores_per_run`` (the run's CPU limit) each set has that many cores (rounded up), as many
    sets as fit; without it the CPUs are split evenly over min(runs, CPUs) sets. Neighbouring ids
    stay together, since on most machines they share a core complex and its cache.

    Raises:
        UsageError: when one run asks for more cores than there are.
    """
    if runs <= 0 or not cpus:
        return []
    if cores_per_run is not None:
        size = max(1, math.ceil(cores_per_run - 1e-9))
        if size > len(cpus):
            raise UsageError(f"each run asks for {cores_per_run:g} CPUs but only {len(cpus)} are available",
                             hint="lower --cpus, or drop --parallel")
        count = min(runs, len(cpus) // size)
    else:
        count = min(runs, len(cpus))
        size = len(cpus) // count
    return [format_cpuset(cpus[k * size:(k + 1) * size]) for k in range(count)]


def gpu_groups(pool: list[str], per_run: int, busy: set[str] | None = None) -> list[list[str]]:
    """Disjoint groups of ``per_run`` GPUs from the free ones in ``pool``: never two runs on one GPU.

    Raises:
        UsageError: when not even one group fits.
    """
    free = [g for g in pool if g not in (busy or set())]
    if per_run <= 0:
        return []
    if len(free) < per_run:
        taken = f" ({len(pool) - len(free)} busy with other processes)" if busy and len(free) < len(pool) else ""
        raise UsageError(f"each run needs {per_run} GPU(s) but only {len(free)} are free{taken}",
                         hint="free a GPU, ask for fewer with --gpus, or drop --parallel")
    return [free[k * per_run:(k + 1) * per_run] for k in range(len(free) // per_run)]


def assign_slots(gpu_request: GpuRequest, gpus: list[GpuInfo], cpus: list[int], runs: int,
                 cores_per_run: float | None) -> tuple[list[Slot], list[str]]:
    """Pure core of :func:`plan_slots`: the slots and the notes to show the user."""
    if gpu_request.wanted:
        detected = [g.index for g in gpus]
        if not detected:
            raise UsageError("--parallel with GPUs needs an NVIDIA driver, and none answers",
                             hint="run with --gpus none for CPU runs on disjoint cpusets")
        pool, per_run = gpu_request.pool(detected)
        busy = {g.index for g in gpus if g.busy}
        groups = gpu_groups(pool, per_run, busy)[:runs]
        notes = [f"Parallel: {len(groups)} run(s) at a time, on GPU(s) "
                 + " | ".join(",".join(g) for g in groups)]
        if busy & set(pool):
            notes.append(f"Skipping busy GPU(s) {','.join(sorted(busy & set(pool)))}: other processes use them.")
        return [Slot(gpu_ids=g) for g in groups], notes
    sets = cpu_slots(cpus, runs, cores_per_run)
    if len(sets) <= 1:
        return [Slot()], ["Parallel: only one run fits at a time; running one after another."]
    return ([Slot(cpuset=s) for s in sets],
            [f"Parallel: {len(sets)} runs at a time on cpusets {' | '.join(sets)}.", BANDWIDTH_NOTE])


def plan_slots(settings: RunSettings, parallel: bool, runs: int) -> tuple[list[Slot], list[str]]:
    """Slots for a plan: one unconstrained slot, or with ``parallel`` one per free GPU group / cpuset.

    Raises:
        UsageError: when the GPU request cannot be met.
        PlanError: when GPUs are asked for and none answers.
    """
    if not parallel:
        return [Slot()], []
    gpus: list[GpuInfo] = []
    if settings.gpus.wanted:
        gpus, why = detect_gpus()
        if not gpus:
            raise PlanError(f"--parallel with --gpus {settings.gpus} needs GPUs, but {why}",
                            hint="use --gpus none for parallel CPU runs on disjoint cpusets")
    return assign_slots(settings.gpus, gpus, available_cpus(), runs, settings.cpus)
