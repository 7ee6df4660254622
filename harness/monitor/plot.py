"""``ExperimentMonitor.plot_metrics``: one PNG per document, matplotlib imported only here (Agg)."""

from __future__ import annotations

from pathlib import Path
from typing import Any


def plot_results(doc: dict[str, Any], path: Path) -> Path:
    """Batch time, loss, accuracy, CPU % and memory % for each mode, overlaid for comparison."""
    try:
        import matplotlib
    except ImportError as e:  # training images carry harness's core only
        raise ImportError("plot_metrics needs matplotlib: add it to the experiment's requirements.txt "
                          "(or pip install 'harness[host]')") from e

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    panels = [("Batch time (s)", lambda m: m["batch_times"], 0, 1),
              ("Loss", lambda m: [[i, v[2]] for i, v in enumerate(m["metrics"]["losses"])], 0, 1),
              ("Accuracy", lambda m: [[i, v[2]] for i, v in enumerate(m["metrics"]["accuracies"])], 0, 1),
              ("CPU (% of limit)", lambda m: _relative(m["resource_usage"]["cpu_usage"]), 0, 1),
              ("Memory (% of limit)", lambda m: _relative(m["resource_usage"]["memory_usage"]), 0, 1)]
    fig, axes = plt.subplots(len(panels), 1, figsize=(9, 2.4 * len(panels)), squeeze=False)
    for ax, (title, get, xi, yi) in zip(axes[:, 0], panels):
        for name, mode in doc.get("modes", {}).items():
            points = [p for p in get(mode) if p[yi] is not None]
            if points:
                ax.plot([p[xi] for p in points], [p[yi] for p in points], label=name, linewidth=1)
        ax.set_title(title, fontsize=9)
        if ax.has_data():
            ax.legend(fontsize=7)
    axes[-1, 0].set_xlabel("batch / seconds since start")
    fig.suptitle(doc.get("experiment_name", ""))
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return path


def _relative(series: list[list[Any]]) -> list[list[Any]]:
    if not series:
        return []
    t0 = series[0][0]
    return [[t - t0, v] for t, v in series]
