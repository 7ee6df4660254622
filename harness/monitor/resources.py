"""``ResourceMonitor``: a plain script's own resource sampling, run entirely off the training thread.

Split from ``experiment`` (the seed's ``ResourceMonitor`` name stays importable there). Under the
agent this is not used: the agent samples.
"""

from __future__ import annotations

import threading
import time
from typing import Any


class ResourceMonitor:
    """Background CPU / memory / GPU sampling (cgroup-aware); ``samples`` holds the raw records.

    Nothing of it runs on the caller's thread: the sampler thread opens the cgroup files, uses
    the process-wide NVML session (made once, on first use) and takes the first and the final
    sample. :meth:`stop` with ``wait=False`` only signals; :meth:`join` waits for the final one.
    """

    def __init__(self, interval: float = 1.0, gpus: bool = True) -> None:
        self.interval = interval
        self.gpus = gpus
        self.samples: list[dict[str, Any]] = []
        self._thread: threading.Thread | None = None
        self._stop: Any = None  # a StopSignal while the thread runs
        self._error: str | None = None
        self._sampler: Any = None

    def start(self) -> None:
        from harness.monitor.stopsignal import StopSignal  # tiny; the sampler module is imported on the thread

        self.join()
        self._stop = StopSignal()
        self._error = None
        self._thread = threading.Thread(target=self._main, args=(self._stop,), name="harness-sampler", daemon=True)
        self._thread.start()

    def _main(self, stop: Any) -> None:
        time.sleep(0.001)  # hand the GIL straight back to the caller of start_mode
        try:  # even the import happens here: the first one costs tens of ms on a slow machine
            from harness.monitor.sampler import ResourceSampler, SamplerThread
        except Exception as e:  # measuring must never stop training
            self._error = f"sampler failed to start: {e}"
            return
        own = self._sampler is None
        source = (lambda: ResourceSampler(gpus=self.gpus)) if own else self._sampler
        thread = SamplerThread(source, self.interval, lambda s: self.samples.append({"type": "sample", **s}),
                               close_sampler=own, stop=stop)
        thread.run()
        self._error = thread.error

    def stop(self, wait: bool = True) -> None:
        if self._thread is not None:
            self._stop.set()
            if wait:
                self.join()

    def join(self) -> None:
        """Wait for the thread's final sample (and note it when the sampler could not start)."""
        thread, self._thread = self._thread, None
        if thread is None:
            return
        thread.join(timeout=5)
        if self._error:
            self.samples.append({"type": "sample", "t": time.time(), "m": time.monotonic(),
                                 "unavailable": {"resources": self._error}})
            self._error = None

    def close(self, wait: bool = True) -> None:
        self.stop(wait=wait)
        if self._sampler is not None:
            self.join()
            self._sampler.close()
            self._sampler = None
