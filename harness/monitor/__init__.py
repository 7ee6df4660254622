"""In-container measurement: import this from training scripts (seed 004 §3.3).

    from harness.monitor import ExperimentMonitor

    monitor = ExperimentMonitor("birdclef_2023", save_dir="./results")
    with monitor.mode("baseline", config=cfg):
        for x, y in monitor.batches(loader, epoch=epoch):
            ...
            monitor.log_loss(epoch, i, loss.item())

Importing is cheap: no torch, no NVML, no matplotlib until they are needed.
"""

from __future__ import annotations

from typing import Any

from harness.monitor.experiment import ExperimentMonitor, MetricsLogger, ResourceMonitor, Timer

__all__ = ["ExperimentMonitor", "Timer", "ResourceMonitor", "MetricsLogger", "KerasMonitorCallback"]


def __getattr__(name: str) -> Any:
    # the Keras callback subclasses keras.callbacks.Callback, so tensorflow is imported only on use
    if name == "KerasMonitorCallback":
        from harness.monitor.keras import KerasMonitorCallback

        return KerasMonitorCallback
    raise AttributeError(f"module 'harness.monitor' has no attribute {name!r}")
