"""A Keras callback that feeds ``model.fit`` into an :class:`ExperimentMonitor`.

    model.fit(ds, epochs=2, callbacks=[KerasMonitorCallback(monitor)])

Each train batch is timed between ``on_train_batch_begin`` and ``on_train_batch_end``; the
time between one batch's end and the next one's begin is the wait for ``tf.data``. Loss and
accuracy (``accuracy``, ``acc``, ``sparse_categorical_accuracy``, ...) come from ``logs``.
Importing this module imports Keras (TensorFlow's, or Keras 3).
"""

from __future__ import annotations

from typing import Any

try:
    from tensorflow import keras as _keras  # type: ignore[import-not-found]
except ImportError:  # Keras 3 without TensorFlow
    import keras as _keras  # type: ignore[import-not-found,no-redef]

from harness.monitor.experiment import ExperimentMonitor

_ACCURACY_KEYS = ("accuracy", "acc", "sparse_categorical_accuracy", "categorical_accuracy", "binary_accuracy")


class KerasMonitorCallback(_keras.callbacks.Callback):
    """Times train batches and logs loss/accuracy (per batch) and validation metrics (per epoch)."""

    def __init__(self, monitor: ExperimentMonitor, batch_size: int | None = None) -> None:
        super().__init__()
        self.monitor = monitor
        self.batch_size = batch_size
        self._epoch = 0

    def on_epoch_begin(self, epoch: int, logs: dict[str, Any] | None = None) -> None:
        self._epoch = epoch
        self.monitor.set_epoch(epoch)
        self.monitor.current.timer.break_wait()  # type: ignore[union-attr]

    def on_train_batch_begin(self, batch: int, logs: dict[str, Any] | None = None) -> None:
        self.monitor.start_batch()

    def on_train_batch_end(self, batch: int, logs: dict[str, Any] | None = None) -> None:
        self.monitor.end_batch(self.batch_size)
        logs = logs or {}
        if "loss" in logs:
            self.monitor.log_loss(self._epoch, batch, float(logs["loss"]))
        for key in _ACCURACY_KEYS:
            if key in logs:
                self.monitor.log_accuracy(self._epoch, batch, float(logs[key]))
                break

    def on_epoch_end(self, epoch: int, logs: dict[str, Any] | None = None) -> None:
        for key, value in (logs or {}).items():
            if key.startswith("val_"):
                try:
                    self.monitor.log_metric(key, float(value), step=epoch)
                except (TypeError, ValueError):
                    pass
