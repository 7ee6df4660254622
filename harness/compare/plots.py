"""matplotlib (Agg) plots of a Comparison, written as PNG files.

matplotlib is imported inside :func:`make_plots` so that ``harness --help`` and ``--no-plots``
never pay for it. Long runs are thinned before plotting (strided samples, windowed
throughput): a 200,000-point line looks the same as a 2,000-point one and draws 100x faster.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

if TYPE_CHECKING:
    from harness.compare.analysis import Comparison, RunData

MAX_POINTS = 2000
MAX_HIST_SAMPLES = 50_000
COLORS = ("#1f77b4", "#d62728")

# Section titles and their files, in report order. GPU is drawn only when a run has GPU samples.
PLOT_FILES = {
    "Batch-time distributions": "batch_times.png",
    "Throughput over time": "throughput.png",
    "CPU over time": "cpu.png",
    "Memory over time": "memory.png",
    "GPU over time": "gpu.png",
    "Loss and accuracy": "learning_curves.png",
    "Across modes": "modes.png",
}


def _thin(x: np.ndarray, y: np.ndarray, n: int = MAX_POINTS) -> tuple[np.ndarray, np.ndarray]:
    if x.size <= n:
        return x, y
    idx = np.linspace(0, x.size - 1, n).astype(int)
    return x[idx], y[idx]


def _series(pairs: Any, t0: float | None) -> tuple[np.ndarray, np.ndarray]:
    from harness.compare.reduce import as_array as _as_array

    arr = _as_array(pairs, 2)
    if arr.size == 0:
        return np.empty(0), np.empty(0)
    t = arr[:, 0] - (t0 if t0 is not None else arr[0, 0])
    return t, arr[:, 1]


def _mode_runs(comp: Comparison) -> list[tuple[str, str, list[RunData]]]:
    return [(comp.baseline, COLORS[0], comp.runs[comp.baseline]),
            (comp.candidate, COLORS[1], comp.runs[comp.candidate])]


def _save(fig: Any, path: Path) -> None:
    fig.tight_layout()
    fig.savefig(path, dpi=90)
    import matplotlib.pyplot as plt

    plt.close(fig)


def _batch_times(comp: Comparison, plt: Any, path: Path) -> bool:
    fig, ax = plt.subplots(figsize=(8, 4))
    drawn = False
    for mode, color, runs in _mode_runs(comp):
        parts = [r.step_times[r.steps.warmup_batches:] for r in runs if r.steps is not None]
        if not parts:
            continue
        values = np.concatenate(parts)
        if values.size > MAX_HIST_SAMPLES:
            values = values[np.linspace(0, values.size - 1, MAX_HIST_SAMPLES).astype(int)]
        hi = np.percentile(values, 99.5)
        ax.hist(values[values <= hi] * 1000, bins=60, alpha=0.5, color=color, label=f"{mode} (steady state)")
        for r in runs:
            if r.steps is not None:
                ax.axvline(r.steps.median_s * 1000, color=color, linewidth=1, linestyle="--")
        drawn = True
    ax.set_xlabel("step time (ms), dashed: each run's median")
    ax.set_ylabel("batches")
    if drawn:
        ax.legend()
    _save(fig, path)
    return drawn


def _throughput(comp: Comparison, plt: Any, path: Path) -> bool:
    fig, ax = plt.subplots(figsize=(8, 4))
    drawn = False
    for mode, color, runs in _mode_runs(comp):
        for k, r in enumerate(runs):
            if r.step_times.size < 2:
                continue
            n = r.step_times.size
            window = max(1, n // 200)
            m = n // window
            steps = r.step_times[: m * window].reshape(m, window).sum(axis=1)
            sizes = r.batch_sizes[: m * window]
            samples = (sizes.reshape(m, window).sum(axis=1) if np.all(np.isfinite(sizes)) and sizes.size
                       else np.full(m, float(window)))
            elapsed = np.cumsum(steps)
            ax.plot(elapsed, samples / np.maximum(steps, 1e-12), color=color, alpha=0.7, linewidth=1,
                    label=mode if k == 0 else None)
            drawn = True
    ax.set_xlabel("seconds of training (sum of step times)")
    ax.set_ylabel("samples / s")
    if drawn:
        ax.legend()
    _save(fig, path)
    return drawn


def _resource(comp: Comparison, plt: Any, path: Path, keys: list[tuple[str, str, float]], ylabel: str) -> bool:
    fig, ax = plt.subplots(figsize=(8, 4))
    drawn = False
    for mode, color, runs in _mode_runs(comp):
        first = True
        for r in runs:
            for key, suffix, scale in keys:
                t, v = _series(r.resource_usage.get(key), r.started_at)
                if t.size:
                    t, v = _thin(t, v)
                    ax.plot(t, v * scale, color=color, alpha=0.7, linewidth=1,
                            label=f"{mode}{suffix}" if first else None)
                    first = False
                    drawn = True
                    break
    ax.set_xlabel("seconds since run start")
    ax.set_ylabel(ylabel)
    if drawn:
        ax.legend()
    _save(fig, path)
    return drawn


def _gpu(comp: Comparison, plt: Any, path: Path) -> bool:
    if not any(r.resource_usage.get("gpu_usage") for _, _, runs in _mode_runs(comp) for r in runs):
        return False
    fig, (ax1, ax2) = plt.subplots(2, 1, figsize=(8, 6), sharex=True)
    for mode, color, runs in _mode_runs(comp):
        first = True
        for r in runs:
            for name, series in (r.resource_usage.get("gpu_usage") or {}).items():
                t, v = _thin(*_series(series, r.started_at))
                ax1.plot(t, v, color=color, alpha=0.7, linewidth=1, label=mode if first else None)
                first = False
            for name, series in (r.resource_usage.get("gpu_memory") or {}).items():
                t, v = _thin(*_series(series, r.started_at))
                ax2.plot(t, v, color=color, alpha=0.7, linewidth=1)
    ax1.set_ylabel("GPU utilization (%)")
    ax2.set_ylabel("GPU memory (MB)")
    ax2.set_xlabel("seconds since run start")
    ax1.legend()
    _save(fig, path)
    return True


def _learning(comp: Comparison, plt: Any, path: Path) -> bool:
    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(10, 4))
    drawn = False
    for mode, color, runs in _mode_runs(comp):
        for k, r in enumerate(runs):
            for ax, arr in ((ax1, r.losses), (ax2, r.accuracies)):
                if arr.size:
                    x, y = _thin(np.arange(arr.shape[0], dtype=float), arr[:, 2])
                    ax.plot(x, y, color=color, alpha=0.7, linewidth=1, label=mode if k == 0 else None)
                    drawn = True
    ax1.set_title("loss")
    ax2.set_title("accuracy")
    for ax in (ax1, ax2):
        ax.set_xlabel("logged step")
        if ax.lines:
            ax.legend()
    _save(fig, path)
    return drawn


def _modes(comp: Comparison, plt: Any, path: Path) -> bool:
    from harness.compare import stats

    keys = [("throughput", "samples/s", 1.0), ("step_median", "median step (ms)", 1000.0),
            ("total_time", "end-to-end (s)", 1.0), ("mem_peak", "peak memory (MB)", 1 / 1024**2)]
    keys = [k for k in keys if comp.metric(k[0]) is not None]
    if not keys:
        return False
    fig, axes = plt.subplots(1, len(keys), figsize=(3 * len(keys), 3.5))
    axes = np.atleast_1d(axes)
    for ax, (key, label, scale) in zip(axes, keys):
        m = comp.metric(key)
        for i, (mode, values) in enumerate(((comp.baseline, m.baseline), (comp.candidate, m.candidate))):
            v = np.asarray(values, float) * scale
            if v.size == 0:
                continue
            # Error bars: 95 % t interval of the mean across runs (none with a single run).
            err = (float(stats.t_ppf(0.975, v.size - 1)) * v.std(ddof=1) / np.sqrt(v.size)) if v.size > 1 else 0
            ax.bar(i, v.mean(), yerr=err, color=COLORS[i], alpha=0.7, capsize=6)
            ax.scatter(np.full(v.size, i), v, color="black", s=10, zorder=3)
        ax.set_xticks([0, 1], [comp.baseline, comp.candidate], rotation=15)
        ax.set_title(label, fontsize=10)
    _save(fig, path)
    return True


def make_plots(comp: Comparison, out_dir: Path) -> dict[str, str]:
    """Draw every plot the data allows into ``out_dir``; returns {section title: file name}."""
    import matplotlib

    matplotlib.use("Agg", force=True)
    import matplotlib.pyplot as plt

    out_dir.mkdir(parents=True, exist_ok=True)
    drawers = {
        "Batch-time distributions": lambda p: _batch_times(comp, plt, p),
        "Throughput over time": lambda p: _throughput(comp, plt, p),
        "CPU over time": lambda p: _resource(comp, plt, p, [("cpu_cores", " (cores)", 1.0),
                                                            ("cpu_usage", " (% of limit)", 1.0)], "CPU"),
        "Memory over time": lambda p: _resource(comp, plt, p, [("memory_bytes", "", 1 / 1024**2),
                                                               ("memory_usage", " (% of limit)", 1.0)],
                                                "memory (MB)"),
        "GPU over time": lambda p: _gpu(comp, plt, p),
        "Loss and accuracy": lambda p: _learning(comp, plt, p),
        "Across modes": lambda p: _modes(comp, plt, p),
    }
    made: dict[str, str] = {}
    for title, draw in drawers.items():
        path = out_dir / PLOT_FILES[title]
        if draw(path):
            made[title] = path.name
        elif path.exists():
            path.unlink()  # a stale plot from an earlier comparison must not pass for this one
    return made
