"""Words for what the numbers show: diagnosis, fairness warnings, quality flags, unstable runs.

Each rule fires only when the data supports it (a threshold on a measured value), so silence
means "nothing notable", never "not checked".
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING, Any

import numpy as np

from harness.compare import nodes, stats

if TYPE_CHECKING:
    from harness.compare.analysis import Comparison, RunData

WAIT_NOTABLE = 0.10  # a mode waiting for data more than this of each step is worth a sentence
THROTTLE_NOTABLE = 0.05
CPU_BOUND_PERCENT = 90.0
GPU_IDLE_PERCENT = 50.0
MEMORY_CHANGE = 0.10
IGNORED_CONFIG_KEYS = frozenset({"seed", "mode", "run_id"})


def _mean(runs: list[RunData], key: str) -> float | None:
    vals = [r.values.get(key) for r in runs]
    vals = [v for v in vals if v is not None]
    return float(np.mean(vals)) if vals else None


def _pct(x: float) -> str:
    return f"{x * 100:.0f} %"


def _size(nbytes: float) -> str:
    for unit, factor in (("GB", 1024**3), ("MB", 1024**2), ("KB", 1024)):
        if nbytes >= factor:
            return f"{nbytes / factor:.2f} {unit}"
    return f"{nbytes:.0f} B"


def diagnose(comp: Comparison) -> None:
    """Fill ``comp.diagnosis``, ``warnings``, ``fairness``, ``quality_flags`` and ``outlier_runs``."""
    _bottlenecks(comp)
    _warmup(comp)
    _resolution(comp)
    _stability(comp)
    _fairness(comp)
    nodes.node_fairness(comp)
    _quality(comp)


def _bottlenecks(comp: Comparison) -> None:
    b, c = comp.baseline, comp.candidate
    rb, rc = comp.runs[b], comp.runs[c]
    wb, wc = _mean(rb, "data_wait_fraction"), _mean(rc, "data_wait_fraction")
    if wb is not None and wc is not None and max(wb, wc) > WAIT_NOTABLE:
        if abs(wb - wc) > 0.05:
            comp.diagnosis.append(f"{b} waited for data {_pct(wb)} of each step; {c} {_pct(wc)}.")
        else:
            comp.diagnosis.append(f"Both modes waited for data about {_pct((wb + wc) / 2)} of each step: "
                                  "the input pipeline is the bottleneck in both.")
    for mode, runs in ((b, rb), (c, rc)):
        thr = _mean(runs, "cpu_throttled")
        if thr is not None and thr > THROTTLE_NOTABLE:
            comp.diagnosis.append(f"{mode} was CPU-throttled in {_pct(thr)} of periods: it needed more CPU "
                                  "than its limit allowed.")
        pct = _mean(runs, "cpu_percent")
        cores = _mean(runs, "cpu_cores")
        if pct is not None and pct > CPU_BOUND_PERCENT:
            used = f" ({cores:.1f} cores)" if cores is not None else ""
            comp.diagnosis.append(f"{mode} used {pct:.0f} % of its CPU limit{used}: CPU-bound.")
        gpu = _mean(runs, "gpu_util")
        if gpu is not None and gpu < GPU_IDLE_PERCENT:
            comp.diagnosis.append(f"{mode}'s GPU utilization averaged {gpu:.0f} %: the GPU waited for input "
                                  "or for the CPU.")
        ooms = sum(int((r.summary.get("memory") or {}).get("oom_kills") or 0) for r in runs
                   if isinstance(r.summary.get("memory"), dict))
        if ooms:
            comp.diagnosis.append(f"{mode} had {ooms} OOM kill(s) inside its container.")
    mb, mc = _mean(rb, "mem_peak"), _mean(rc, "mem_peak")
    if mb and mc and abs(mc / mb - 1) > MEMORY_CHANGE:
        word = "higher" if mc > mb else "lower"
        comp.diagnosis.append(f"{c}'s peak memory is {abs(mc / mb - 1) * 100:.0f} % {word} "
                              f"({_size(mc)} against {_size(mb)}).")


def _warmup(comp: Comparison) -> None:
    parts = []
    costs = {}
    for mode in (comp.baseline, comp.candidate):
        runs = [r for r in comp.runs[mode] if r.steps is not None]
        if not runs:
            continue
        w = np.mean([r.steps.warmup_batches for r in runs])  # type: ignore[union-attr]
        cost = float(np.mean([r.steps.warmup_cost_s for r in runs]))  # type: ignore[union-attr]
        costs[mode] = cost
        parts.append(f"{mode} {w:.0f} batches ({cost:.2f} s beyond steady pace)")
    if parts:
        comp.diagnosis.append("Warm-up dropped from steady-state figures (MSER-5, mean per run): "
                              + "; ".join(parts) + ". End-to-end time keeps it.")
    thr, e2e = comp.metric("throughput"), comp.metric("total_time")
    if thr and e2e and thr.verdict and e2e.verdict and {thr.verdict, e2e.verdict} == {stats.FASTER, stats.SLOWER}:
        cb, cc = costs.get(comp.baseline), costs.get(comp.candidate)
        extra = f" ({comp.candidate}'s warm-up costs {cc:.2f} s against {cb:.2f} s)" if cb is not None and \
            cc is not None else ""
        comp.diagnosis.append(f"Steady state is {thr.verdict} but end-to-end time is {e2e.verdict}: cost moved "
                              f"into or out of the warm-up (compilation, caching){extra}. Judge by the "
                              "length of your real runs.")
    from harness.compare.headline import payback_sentence

    payback = payback_sentence(comp)
    if payback:
        comp.diagnosis.append(payback)


def _resolution(comp: Comparison) -> None:
    h = comp.headline
    if h is None or h.test is None:
        return
    if h.verdict == stats.INCONCLUSIVE:
        few = [m for m in (comp.baseline, comp.candidate) if len(comp.runs[m]) < 2]
        comp.warnings.append(f"INCONCLUSIVE: only one run of {' and '.join(few)}; the interval shown is "
                             "within-run and ignores run-to-run noise. Run at least 2 (better 3) seeds per mode.")
        return
    if h.verdict in (stats.NO_DIFFERENCE, stats.WITHIN_NOISE) and h.runs_needed:
        change = (h.test.ratio - 1) * 100
        n = h.runs_needed
        have = min(h.test.n_baseline, h.test.n_candidate)
        if n > have:
            more = f"{n}" if n < 1000 else "more than 1000"
            comp.diagnosis.append(f"To resolve the observed {change:+.1f} % change in "
                                  f"{h.spec.label.lower()} at 80 % power you would need about {more} runs "
                                  f"per mode (you have {have}).")


def _stability(comp: Comparison) -> None:
    for mode in (comp.baseline, comp.candidate):
        runs = comp.runs[mode]
        for r in runs:
            if r.unstable and r.steps is not None:
                comp.warnings.append(f"{mode} run {r.run_id} is unstable: its step times spread "
                                     f"{r.steps.spread * 100:.0f} % of their median (over 10 %).")
            if r.rebuilt:
                comp.warnings.append(f"{mode} run {r.run_id} was rebuilt from events.jsonl (no results.json).")
        with_steps = [r for r in runs if r.steps is not None]
        n_out = sum(r.steps.outliers for r in with_steps)  # type: ignore[union-attr]
        n_all = sum(r.steps.steady_batches for r in with_steps)  # type: ignore[union-attr]
        if n_out and n_all and n_out / n_all > 0.01:
            biggest = max((r.steps.outlier_max_s or 0) for r in with_steps)  # type: ignore[union-attr]
            comp.warnings.append(f"{mode}: {n_out} of {n_all} steady-state batches are outliers (Tukey fences), "
                                 f"the largest {biggest:.3g} s; kept (the median is robust to them).")
        h = comp.headline
        if h is not None and len(runs) >= 4:
            vals = np.array([r.values.get(h.spec.key) or math.nan for r in runs])
            mask = stats.outlier_mask(vals)
            for r, out in zip(runs, mask):
                if out:
                    comp.outlier_runs.append(r.run_id)
                    comp.warnings.append(f"{mode} run {r.run_id} is an outlier among its mode's runs in "
                                         f"{h.spec.label.lower()}; kept.")


def _env_facts(r: RunData) -> dict[str, Any]:
    env = r.environment or {}
    fw = env.get("framework") or {}
    cg = env.get("cgroup") or {}
    gpus = env.get("gpus") or []
    gpu_names = tuple(sorted(str(g.get("name", g)) if isinstance(g, dict) else str(g) for g in gpus))
    limits = r.record.get("limits") or {}
    enforced = limits.get("enforced") if isinstance(limits, dict) else None
    return {
        "image": r.image,
        "backend": r.backend,
        "CPU source": r.record.get("cpu_source") or (cg.get("cpu_source") if isinstance(cg, dict) else None),
        "enforced limits": tuple(sorted(f"{k}={v}" for k, v in enforced.items())) if isinstance(enforced, dict)
        else None,
        "hardware": (env.get("cpu_model"), env.get("cpu_count"), gpu_names,
                     cg.get("cpu_limit_cores") if isinstance(cg, dict) else None,
                     cg.get("memory_limit_bytes") if isinstance(cg, dict) else None),
        "host": r.node or env.get("hostname"),
        "framework version": (fw.get("name"), fw.get("version")) if isinstance(fw, dict) else fw,
        "Python version": env.get("python"),
        "CUDA/driver": (env.get("cuda"), env.get("driver")),
        "harness version": env.get("harness_version"),
    }


def _show(value: Any) -> str:
    if isinstance(value, tuple):
        return "/".join("-" if v is None else str(v) for v in value)
    return "-" if value is None else str(value)


def _fairness(comp: Comparison) -> None:
    b, c = comp.baseline, comp.candidate
    rb, rc = comp.runs[b], comp.runs[c]
    sb = sorted({r.seed for r in rb}, key=lambda s: (s is None, s))
    sc = sorted({r.seed for r in rc}, key=lambda s: (s is None, s))
    if sb != sc:
        comp.fairness.append(f"Modes ran different seeds: {b} {sb}, {c} {sc}.")
    shared = sorted({r.mode for r in (*rb, *rc) if r.parallel and (r.parallel.get("runs_at_once") or 1) > 1})
    if shared:
        comp.fairness.append(f"Runs of {', '.join(shared)} ran in parallel with other runs (--parallel): they "
                             f"shared memory bandwidth and caches, so their times are not those of a lone run.")
    facts_b = [_env_facts(r) for r in rb]
    facts_c = [_env_facts(r) for r in rc]
    for key in facts_b[0]:
        vb = {_show(f[key]) for f in facts_b}
        vc = {_show(f[key]) for f in facts_c}
        if vb != vc:
            comp.fairness.append(f"Modes differ in {key}: {b} {', '.join(sorted(vb))}; "
                                 f"{c} {', '.join(sorted(vc))}.")
            if key == "image":
                comp.fairness.extend(_code_files_note(rb, rc))
        elif len(vb) > 1:
            comp.fairness.append(f"Runs within each mode differ in {key}: {', '.join(sorted(vb))}.")
    cfg_b = _merged_config(rb)
    cfg_c = _merged_config(rc)
    differ = sorted(k for k in set(cfg_b) | set(cfg_c)
                    if k not in IGNORED_CONFIG_KEYS and cfg_b.get(k) != cfg_c.get(k))
    if differ:
        shown = ", ".join(f"{k} ({cfg_b.get(k, '-')!s} vs {cfg_c.get(k, '-')!s})" for k in differ[:5])
        more = f" and {len(differ) - 5} more" if len(differ) > 5 else ""
        comp.fairness.append(f"Modes differ in config (expected where this is the optimization itself): "
                             f"{shown}{more}.")


def _code_files_note(rb: list[RunData], rc: list[RunData]) -> list[str]:
    """Which files make the modes' images differ, from the per-file digests the runs recorded."""
    from harness.code import differing_files

    def files(runs: list[RunData]) -> dict[str, str] | None:
        for r in runs:
            code = r.record.get("code")
            if isinstance(code, dict) and isinstance(code.get("files"), dict):
                return code["files"]
        return None

    fb, fc = files(rb), files(rc)
    if fb is None or fc is None:
        return []
    changed = differing_files(fb, fc)
    if not changed:
        return ["The modes' code is identical; their images differ in the framework image or harness."]
    more = f" and {len(changed) - 10} more" if len(changed) > 10 else ""
    return [f"Files that differ between the modes' code: {', '.join(changed[:10])}{more}."]


def _merged_config(runs: list[RunData]) -> dict[str, Any]:
    merged: dict[str, Any] = {}
    for r in runs:
        for k, v in r.config.items():
            merged.setdefault(k, v)
    return merged


def _quality(comp: Comparison) -> None:
    """A faster run that learns worse is flagged, not praised (compare/quality.py)."""
    from harness.compare import quality

    comp.quality = quality.assess(comp, comp.quality_metric)
    comp.quality_flags += quality.flags(comp, comp.quality)
