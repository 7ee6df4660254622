"""Aggregate an ``events.jsonl`` stream into the results.json schema (docs/architecture.md).

The agent calls :func:`build_results` when the run ends; :func:`rebuild_from_events` does the
same for a run whose agent never got to (SIGKILL, OOM of the whole container, power loss).
The in-script monitor uses :func:`build_mode` for its own ``save_json``. Pure Python, no
numpy: this runs inside containers whose only guaranteed package is the harness.
"""

from __future__ import annotations

import datetime as _dt
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable

from harness.errors import ResultsError
from harness.results.events import finite, read_events
from harness.results.schema import EVENTS_FILENAME, SCHEMA_VERSION

_PER_MODE = {"batch", "loss", "accuracy", "metric", "phase", "sample", "mode_start", "mode_stop"}


def stats(values: list[float]) -> dict[str, float | None]:
    """mean, std (population, as numpy's default), min, max, median, p95 (linear interpolation)."""
    if not values:
        return {"mean": None, "std": None, "min": None, "max": None, "median": None, "p95": None}
    s = sorted(values)
    n = len(s)
    mean = math.fsum(s) / n
    var = math.fsum((v - mean) ** 2 for v in s) / n
    return {"mean": mean, "std": math.sqrt(var), "min": s[0], "max": s[-1],
            "median": _quantile(s, 0.5), "p95": _quantile(s, 0.95)}


def _quantile(sorted_values: list[float], q: float) -> float:
    pos = (len(sorted_values) - 1) * q
    lo = math.floor(pos)
    hi = min(lo + 1, len(sorted_values) - 1)
    return sorted_values[lo] + (sorted_values[hi] - sorted_values[lo]) * (pos - lo)


def split_by_mode(events: Iterable[dict[str, Any]], default_mode: str) -> dict[str, list[dict[str, Any]]]:
    """Per-mode event lists: a record belongs to the mode started last before it (else ``default_mode``).

    Events are ordered by their monotonic stamp first: the agent and the script flush
    independently, so file order is not time order.
    """
    ordered = sorted((e for e in events if e.get("type") in _PER_MODE), key=lambda e: e.get("m", 0.0))
    out: dict[str, list[dict[str, Any]]] = {default_mode: []}
    current = default_mode
    for e in ordered:
        if e["type"] == "mode_start":
            current = str(e.get("mode") or default_mode)
        out.setdefault(current, []).append(e)
        if e["type"] == "mode_stop":
            current = default_mode
    return out


@dataclass
class _ModeEvents:
    """One mode's events, sorted by kind (what :func:`build_mode` aggregates)."""

    config: dict[str, Any]
    batches: list[dict[str, Any]] = field(default_factory=list)
    losses: list[list[Any]] = field(default_factory=list)
    accuracies: list[list[Any]] = field(default_factory=list)
    custom: dict[str, list[list[Any]]] = field(default_factory=dict)
    phases: list[list[Any]] = field(default_factory=list)
    samples: list[dict[str, Any]] = field(default_factory=list)
    start_m: float | None = None
    stop_total: float | None = None
    allocator: float | None = None
    first_m: float | None = None
    last_m: float | None = None


def _collect(events: list[dict[str, Any]], config: dict[str, Any]) -> _ModeEvents:
    out = _ModeEvents(config=config)
    for e in events:
        kind = e.get("type")
        m = e.get("m")
        if isinstance(m, (int, float)):
            out.first_m = m if out.first_m is None else min(out.first_m, m)
            out.last_m = m if out.last_m is None else max(out.last_m, m)
        if kind == "batch":
            out.batches.append(e)
        elif kind == "loss":
            out.losses.append([e.get("epoch"), e.get("batch"), finite(e.get("value"))])
        elif kind == "accuracy":
            out.accuracies.append([e.get("epoch"), e.get("batch"), finite(e.get("value"))])
        elif kind == "metric":
            out.custom.setdefault(str(e.get("name")), []).append([e.get("step"), finite(e.get("value"))])
        elif kind == "phase":
            out.phases.append([e.get("t"), e.get("name")])
        elif kind == "sample":
            out.samples.append(e)
        elif kind == "mode_start":
            out.start_m = m
            if isinstance(e.get("config"), dict):
                out.config = e["config"]
        elif kind == "mode_stop":
            out.stop_total = e.get("total_time")
            out.allocator = e.get("gpu_allocator_peak_mb", out.allocator)
    return out


def _total_time(c: _ModeEvents, wall_time: float | None) -> float:
    if c.stop_total is not None:
        return c.stop_total
    if c.start_m is not None and c.last_m is not None:
        return c.last_m - c.start_m
    if wall_time is not None:
        return wall_time
    return (c.last_m - c.first_m) if c.first_m is not None and c.last_m is not None else 0.0


def _batch_summary(batches: list[dict[str, Any]], config: dict[str, Any]) -> dict[str, Any]:
    """num_batches, batch_time, data_wait_fraction and throughput (samples/s over dt + wait)."""
    dts = [float(b["dt"]) for b in batches if isinstance(b.get("dt"), (int, float))]
    wait_sum = math.fsum(float(b["wait"]) for b in batches if isinstance(b.get("wait"), (int, float)))
    busy = math.fsum(dts) + wait_sum
    default_n = config.get("batch_size") if isinstance(config.get("batch_size"), int) else None
    n_total = 0
    n_known = bool(batches)
    for b in batches:
        n = b.get("n") if b.get("n") is not None else default_n
        if n is None:
            n_known = False
            break
        n_total += n
    return {"num_batches": len(batches), "batch_time": stats(dts),
            "data_wait_fraction": (wait_sum / busy) if busy > 0 else None,
            "throughput": (n_total / busy) if n_known and busy > 0 else None}


def _quality_summary(c: _ModeEvents) -> dict[str, Any]:
    loss_values = [v[2] for v in c.losses if v[2] is not None]
    acc_values = [v[2] for v in c.accuracies if v[2] is not None]
    loss = {"initial": loss_values[0], "final": loss_values[-1], "min": min(loss_values),
            "max": max(loss_values)} if loss_values else {"initial": None, "final": None, "min": None, "max": None}
    accuracy = {"initial": acc_values[0], "final": acc_values[-1], "best": max(acc_values)} \
        if acc_values else {"initial": None, "final": None, "best": None}
    return {"loss": loss, "accuracy": accuracy}


def build_mode(events: list[dict[str, Any]], config: dict[str, Any] | None = None,
               wall_time: float | None = None) -> dict[str, Any]:
    """One ``modes.<mode>`` object (seed 004 §6.1, extended) from that mode's events."""
    c = _collect(events, config or {})
    batches = c.batches
    summary: dict[str, Any] = {"total_time": _total_time(c, wall_time), **_batch_summary(batches, c.config),
                               **_quality_summary(c)}
    summary.update(resource_summary(c.samples))
    if c.allocator is not None:
        summary.setdefault("gpu_allocator_peak_mb", c.allocator)
    return {
        "config": c.config,
        "batch_times": [[b.get("i"), b.get("dt")] for b in batches],
        "data_wait_times": [[b.get("i"), b.get("wait")] for b in batches if b.get("wait") is not None],
        "batch_sizes": [[b.get("i"), b.get("n")] for b in batches if b.get("n") is not None],
        "resource_usage": resource_usage(c.samples),
        "metrics": {"losses": c.losses, "accuracies": c.accuracies, "custom": c.custom},
        "phases": c.phases,
        "summary": summary,
    }


def resource_usage(samples: list[dict[str, Any]]) -> dict[str, Any]:
    """The seed's ``resource_usage`` time series, plus cores, throttling, bytes, limits, attribution."""
    cpu_usage, memory_usage, cpu_cores, cpu_throttled, memory_bytes = [], [], [], [], []
    gpu_usage: dict[str, list[list[Any]]] = {}
    gpu_memory: dict[str, list[list[Any]]] = {}
    unavailable: dict[str, str] = {}
    limits: dict[str, Any] = {"cpu_cores": None, "memory_bytes": None}
    attribution = None
    prev = None
    for s in samples:
        t = s.get("t")
        cpu = s.get("cpu") or {}
        mem = s.get("memory") or {}
        if cpu.get("percent_of_limit") is not None:
            cpu_usage.append([t, cpu["percent_of_limit"]])
        if cpu.get("cores") is not None:
            cpu_cores.append([t, cpu["cores"]])
        if prev is not None and "nr_periods" in cpu and "nr_periods" in prev:
            periods = cpu["nr_periods"] - prev["nr_periods"]
            throttled = cpu.get("nr_throttled", 0) - prev.get("nr_throttled", 0)
            cpu_throttled.append([t, (throttled / periods) if periods > 0 else 0.0])
        if cpu:
            prev = cpu
        if mem.get("percent_of_limit") is not None:
            memory_usage.append([t, mem["percent_of_limit"]])
        if mem.get("working_set") is not None:
            memory_bytes.append([t, mem["working_set"]])
        if cpu.get("limit_cores") is not None:
            limits["cpu_cores"] = cpu["limit_cores"]
        if "limit" in mem:
            limits["memory_bytes"] = mem["limit"]
        for uuid, g in (s.get("gpus") or {}).items():
            if g.get("util") is not None:
                gpu_usage.setdefault(uuid, []).append([t, g["util"]])
            used = g.get("proc_mem_used", g.get("mem_used"))
            if used is not None:
                gpu_memory.setdefault(uuid, []).append([t, used])
        attribution = s.get("gpu_memory_attribution", attribution)
        unavailable.update(s.get("unavailable") or {})
    out: dict[str, Any] = {"cpu_usage": cpu_usage, "memory_usage": memory_usage, "gpu_usage": gpu_usage,
                           "gpu_memory": gpu_memory, "cpu_cores": cpu_cores, "cpu_throttled": cpu_throttled,
                           "memory_bytes": memory_bytes, "limits": limits}
    if attribution:
        out["gpu_memory_attribution"] = attribution
    if unavailable:
        out["unavailable"] = unavailable
    return out


def resource_summary(samples: list[dict[str, Any]]) -> dict[str, Any]:
    """``summary.cpu``, ``summary.memory`` and ``summary.gpu`` from raw counters (first to last sample)."""
    cpus = [s["cpu"] for s in samples if s.get("cpu")]
    mems = [s["memory"] for s in samples if s.get("memory")]
    out: dict[str, Any] = {}
    cores = [c["cores"] for c in cpus if c.get("cores") is not None]
    pct = [c["percent_of_limit"] for c in cpus if c.get("percent_of_limit") is not None]
    throttled = None
    with_periods = [c for c in cpus if "nr_periods" in c]
    if len(with_periods) >= 2:
        periods = with_periods[-1]["nr_periods"] - with_periods[0]["nr_periods"]
        nthr = with_periods[-1].get("nr_throttled", 0) - with_periods[0].get("nr_throttled", 0)
        throttled = nthr / periods if periods > 0 else 0.0
    throttled_s = None
    with_ns = [c for c in cpus if "throttled_ns" in c]
    if len(with_ns) >= 2:
        throttled_s = (with_ns[-1]["throttled_ns"] - with_ns[0]["throttled_ns"]) / 1e9
    out["cpu"] = {"mean_cores": _mean(cores), "mean_percent_of_limit": _mean(pct),
                  "throttled_fraction": throttled, "throttled_seconds": throttled_s}
    working = [m["working_set"] for m in mems if m.get("working_set") is not None]
    peaks = [m["peak"] for m in mems if m.get("peak") is not None]
    ooms = [m["oom_kill"] for m in mems if m.get("oom_kill") is not None]
    out["memory"] = {"peak_bytes": max(working) if working else None,
                     "cgroup_peak_bytes": max(peaks) if peaks else None,
                     "mean_bytes": _mean(working),
                     "oom_kills": (ooms[-1] - ooms[0]) if ooms else None}
    gpus: dict[str, dict[str, Any]] = {}
    for s in samples:
        for uuid, g in (s.get("gpus") or {}).items():
            acc = gpus.setdefault(uuid, {"utils": [], "mems": []})
            if g.get("util") is not None:
                acc["utils"].append(g["util"])
            used = g.get("proc_mem_used", g.get("mem_used"))
            if used is not None:
                acc["mems"].append(used)
    out["gpu"] = {uuid: {"mean_util": _mean(a["utils"]), "peak_memory_mb": max(a["mems"]) if a["mems"] else None}
                  for uuid, a in gpus.items()}
    return out


def _mean(values: list[float]) -> float | None:
    return math.fsum(values) / len(values) if values else None


def oom_increase(events: Iterable[dict[str, Any]]) -> bool:
    """Whether the cgroup's OOM-kill counter rose between the first and last sample."""
    counts = [e["memory"]["oom_kill"] for e in events
              if e.get("type") == "sample" and isinstance((e.get("memory") or {}).get("oom_kill"), int)]
    return len(counts) >= 2 and counts[-1] > counts[0]


def incomplete_reason(events: Iterable[dict[str, Any]]) -> str | None:
    """Why some events were never written (a writer's ``dropped`` record), or None."""
    for e in events:
        if e.get("type") == "dropped":
            return str(e.get("reason") or "events were dropped")
    return None


def build_results(events: list[dict[str, Any]], run_info: dict[str, Any]) -> dict[str, Any]:
    """The whole results.json document.

    ``run_info`` holds what only the agent knows (status, exit_code, signal, error,
    wall_time, started_at, ended_at, backend, image, ...); what it lacks is taken from the
    ``run_start`` / ``env`` / ``run_end`` events.
    """
    start = next((e for e in events if e.get("type") == "run_start"), {})
    env = next((e for e in events if e.get("type") == "env"), {})
    end = next((e for e in reversed(events) if e.get("type") == "run_end"), {})
    mode = str(run_info.get("mode") or start.get("mode") or
               next((e.get("mode") for e in events if e.get("type") == "mode_start"), None) or "baseline")
    started_at = run_info.get("started_at", start.get("t"))
    run: dict[str, Any] = {
        "run_id": run_info.get("run_id") or start.get("run_id") or "unknown",
        "mode": mode,
        "seed": run_info.get("seed", start.get("seed")),
        "status": run_info.get("status") or end.get("status") or "interrupted",
        "exit_code": run_info.get("exit_code", end.get("exit_code")),
        "signal": run_info.get("signal", end.get("signal")),
        "error": run_info.get("error", end.get("error")),
        "wall_time": run_info.get("wall_time", end.get("wall_time")),
        "started_at": started_at,
        "ended_at": run_info.get("ended_at", end.get("t")),
        "command": run_info.get("command", start.get("command")),
        "backend": run_info.get("backend", start.get("backend")),
        "image": run_info.get("image", start.get("image")),
        "gpus": run_info.get("gpus", start.get("gpus", [])),
        "plan_id": run_info.get("plan_id", start.get("plan_id")),
        "node": run_info.get("node", start.get("node")),
    }
    notes = list(dict.fromkeys(str(e.get("text")) for e in events if e.get("type") == "note"))
    if notes:  # said once each (automatic step timing: "no optimizer steps seen: ...")
        run["notes"] = notes
    reason = incomplete_reason(events)
    if reason and not run_info.get("results_incomplete"):
        run["results_incomplete"] = reason  # the measurements have holes: compare must not use the run
    for key, value in run_info.items():  # extensions (rebuilt_from_events, dropped_lines, ...)
        if key not in run and key not in ("environment", "config", "experiment_name"):
            run[key] = value
    if "fingerprint" not in run and isinstance(start.get("fingerprint"), dict):
        run["fingerprint"] = start["fingerprint"]  # a rebuilt run still says what ran
    environment = run_info.get("environment") or env.get("environment") or {}
    per_mode = split_by_mode(events, mode)
    modes = {name: build_mode(evts, config=run_info.get("config") if name == mode else None,
                              wall_time=run["wall_time"] if name == mode else None)
             for name, evts in per_mode.items() if name == mode or evts}
    ts = started_at if isinstance(started_at, (int, float)) else 0
    return {
        "schema_version": SCHEMA_VERSION,
        "experiment_name": run_info.get("experiment_name") or start.get("experiment") or "",
        "timestamp": int(ts),
        "datetime": _dt.datetime.fromtimestamp(ts).isoformat(timespec="seconds"),
        "run": run,
        "environment": environment,
        "modes": modes,
    }


def rebuild_from_events(run_dir: Path | str) -> dict[str, Any]:
    """results.json rebuilt from a run folder's ``events.jsonl`` (nothing is written).

    Status comes from ``run_end`` when the agent got that far; otherwise ``oom_killed``
    when the cgroup's OOM counter rose over the run, else ``interrupted``.

    Raises:
        ResultsError: when events.jsonl is missing or holds no record.
    """
    run_dir = Path(run_dir)
    path = run_dir / EVENTS_FILENAME
    try:
        events, dropped = read_events(path)
    except FileNotFoundError as e:
        raise ResultsError(path, "not found") from e
    except OSError as e:
        raise ResultsError(path, f"cannot be read ({e.__class__.__name__})") from e
    if not events:
        raise ResultsError(path, "holds no events", hint="the run died before it started; run it again")
    start = next((e for e in events if e.get("type") == "run_start"), None)
    end = next((e for e in reversed(events) if e.get("type") == "run_end"), None)
    ms = [e["m"] for e in events if isinstance(e.get("m"), (int, float))]
    ts = [e["t"] for e in events if isinstance(e.get("t"), (int, float))]
    info: dict[str, Any] = {"rebuilt_from_events": True, "dropped_lines": dropped}
    if start is None:
        info["run_id"] = run_dir.name
        info["mode"] = next((e.get("mode") for e in events if e.get("type") == "mode_start"), None) \
            or run_dir.parent.name
        info["started_at"] = min(ts) if ts else None
    if end is None:
        info["status"] = "oom_killed" if oom_increase(events) else "interrupted"
        info["exit_code"] = None
        info["signal"] = None
        info["error"] = "the agent did not finish; rebuilt from events.jsonl"
        first_m = start["m"] if start and "m" in start else (min(ms) if ms else 0.0)
        info["wall_time"] = (max(ms) - first_m) if ms else None
        info["ended_at"] = max(ts) if ts else None
    try:
        return build_results(events, info)
    except (TypeError, AttributeError, KeyError, IndexError, ValueError, OverflowError) as e:
        # A record of the right type with a field of the wrong kind: the file is broken, not harness.
        raise ResultsError(path, f"holds a record harness cannot use ({e.__class__.__name__}: "
                                 f"{' '.join(str(e).split())[:80]})", hint="the run cannot be compared") from e
