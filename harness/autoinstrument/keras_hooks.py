"""Keras step timing from outside the script: ``Model.fit`` gets harness's Keras callback.

Installed when ``keras`` is imported (TensorFlow's ``tf.keras`` is Keras 3 and imports it). The
callback is :class:`harness.monitor.keras.KerasMonitorCallback` feeding an
:class:`~harness.monitor.ExperimentMonitor` made on the first ``fit``, so batches are timed
exactly as in a script that adds the callback itself; each of its methods is guarded here, so a
failure turns the timing off instead of stopping ``fit``. A ``fit`` that already has the callback
is left alone.
"""

from __future__ import annotations

import functools
import inspect
import math
from types import ModuleType
from typing import Any, Callable

from harness.autoinstrument.recorder import AutoRecorder

KERAS_DEFAULT_BATCH = 32  # what Model.fit uses for arrays when batch_size is not given


def batch_sizes(arguments: dict[str, Any]) -> Callable[[int], int | None]:
    """Samples in train batch ``b`` of an epoch, from ``fit``'s arguments (``None``: unknown).

    Arrays: ``batch_size`` (default 32), the last batch of an epoch holding the rest, after
    ``validation_split`` took its share as Keras does. A ``tf.data`` dataset: its static batch
    dimension, when it has one.
    """
    x = arguments.get("x")
    size = arguments.get("batch_size")
    total = _array_len(x)
    if total is not None:
        size = size or KERAS_DEFAULT_BATCH
        split = float(arguments.get("validation_split") or 0.0)
        train = int(math.floor(total * (1.0 - split))) if split else total

        def array_batch(b: int) -> int | None:
            left = train - b * size
            return min(size, left) if left > 0 else size

        return array_batch
    static = size or _dataset_batch(x)
    return lambda b: static


def _array_len(x: Any) -> int | None:
    if isinstance(x, dict) and x:
        x = next(iter(x.values()))
    elif isinstance(x, (list, tuple)) and x and hasattr(x[0], "shape"):
        x = x[0]
    shape = getattr(x, "shape", None)
    if shape is None or not hasattr(x, "__len__") or hasattr(x, "element_spec"):
        return None
    try:
        return int(shape[0])
    except (TypeError, ValueError, IndexError):
        return None


def _dataset_batch(x: Any) -> int | None:
    spec = getattr(x, "element_spec", None)
    while isinstance(spec, (tuple, list)) and spec:
        spec = spec[0]
    if isinstance(spec, dict) and spec:
        spec = next(iter(spec.values()))
    shape = getattr(spec, "shape", None)
    try:
        dim = shape[0] if shape is not None and len(shape) > 0 else None
    except (TypeError, ValueError):
        return None
    return int(dim) if isinstance(dim, int) or (dim is not None and hasattr(dim, "__index__")) else None


def _callback_class(recorder: AutoRecorder) -> type:
    """A KerasMonitorCallback whose methods never raise into ``fit`` (imported here: it imports Keras)."""
    from harness.monitor.keras import KerasMonitorCallback

    def guarded(name: str) -> Callable[..., None]:
        method = getattr(KerasMonitorCallback, name)

        def call(self: Any, *args: Any, **kwargs: Any) -> None:
            if not recorder.on:
                return
            try:
                method(self, *args, **kwargs)
            except Exception as e:  # never stop training
                recorder.fail("the Keras callback", e)

        return call

    class AutoKerasCallback(KerasMonitorCallback):
        def __init__(self, monitor: Any, size_of: Callable[[int], int | None]) -> None:
            super().__init__(monitor)
            self._size_of = size_of

        on_epoch_begin = guarded("on_epoch_begin")
        on_train_batch_begin = guarded("on_train_batch_begin")
        on_epoch_end = guarded("on_epoch_end")
        _end = guarded("on_train_batch_end")

        def on_train_batch_end(self, batch: int, logs: dict[str, Any] | None = None) -> None:
            if not recorder.on:
                return
            try:
                self.batch_size = self._size_of(batch)
                recorder.external_batches += 1
            except Exception as e:
                recorder.fail("the Keras callback", e)
            self._end(batch, logs)

    return AutoKerasCallback


def _own_monitor(recorder: AutoRecorder) -> Any:
    if recorder.own_monitor is None:
        from harness.monitor import ExperimentMonitor

        recorder.creating_monitor = True  # not the script's monitor: do not step aside for it
        try:
            recorder.own_monitor = ExperimentMonitor()
        finally:
            recorder.creating_monitor = False
    return recorder.own_monitor


def _add_callback(recorder: AutoRecorder, signature: inspect.Signature, model: Any,
                  args: tuple[Any, ...], kwargs: dict[str, Any]) -> tuple[tuple[Any, ...], dict[str, Any]]:
    from harness.monitor.keras import KerasMonitorCallback

    bound = signature.bind(model, *args, **kwargs)
    callbacks = bound.arguments.get("callbacks")
    if callbacks is None:
        callbacks = []
    elif not isinstance(callbacks, (list, tuple)):
        return args, kwargs  # a CallbackList or something of the script's own: leave it be
    if any(isinstance(c, KerasMonitorCallback) for c in callbacks):
        return args, kwargs
    callback = _callback_class(recorder)(_own_monitor(recorder), batch_sizes(bound.arguments))
    bound.arguments["callbacks"] = [*callbacks, callback]
    return bound.args[1:], bound.kwargs


def install(keras: ModuleType, recorder: AutoRecorder) -> Callable[[], None]:
    """Wrap ``keras.Model.fit``; returns a function that undoes it (tests)."""
    model_class = keras.Model
    original = model_class.fit
    signature = inspect.signature(original)

    @functools.wraps(original)
    def fit(self: Any, *args: Any, **kwargs: Any) -> Any:
        if recorder.on:
            try:
                args, kwargs = _add_callback(recorder, signature, self, args, kwargs)
            except Exception as e:  # never stop training
                recorder.fail("the Model.fit hook", e)
        return original(self, *args, **kwargs)

    model_class.fit = fit
    recorder.frameworks.append("keras")

    def remove() -> None:
        model_class.fit = original

    return remove
