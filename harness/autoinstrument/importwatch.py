"""Run a function right after a module is first imported, without importing it ourselves.

Importing torch or TensorFlow costs seconds, so the bootstrap cannot import them to install
hooks; it puts a finder first on ``sys.meta_path`` that lets the normal machinery find the
module and wraps that one module's ``exec_module``: the callback runs once the module's body
has finished, before the importing statement returns. Any import the finder does not watch
costs one dictionary lookup.
"""

from __future__ import annotations

import sys

TYPE_CHECKING = False  # typing and importlib.abc cost milliseconds at every instrumented start-up
if TYPE_CHECKING:
    import importlib.machinery
    from types import ModuleType
    from typing import Callable, Sequence

    Callback = Callable[[ModuleType], None]


class PostImportWatcher:
    """A ``sys.meta_path`` finder (the protocol needs only ``find_spec``) that calls ``callbacks[name](module)`` after ``name`` is imported.

    Errors in a callback are handed to ``on_error(name, exc)``; they never fail the import.
    """

    def __init__(self, callbacks: dict[str, Callback], on_error: Callable[[str, BaseException], None]) -> None:
        self.callbacks = dict(callbacks)
        self.on_error = on_error

    def find_spec(self, fullname: str, path: Sequence[str] | None = None,
                  target: ModuleType | None = None) -> importlib.machinery.ModuleSpec | None:
        callback = self.callbacks.get(fullname)
        if callback is None:
            return None
        spec = self._find_elsewhere(fullname, path, target)
        loader = spec.loader if spec is not None else None
        if loader is None or not hasattr(loader, "exec_module"):
            return spec
        original = loader.exec_module

        def exec_module(module: ModuleType) -> None:
            try:
                original(module)
            finally:
                # The loader instance belongs to this one module: undo our wrapper on it.
                try:
                    del loader.exec_module
                except AttributeError:
                    pass
            self.callbacks.pop(fullname, None)
            try:
                callback(module)
            except Exception as e:  # instrumentation must never break the user's import
                self.on_error(fullname, e)

        try:
            loader.exec_module = exec_module  # type: ignore[method-assign]
        except (AttributeError, TypeError):  # a loader with __slots__: leave this module alone
            return spec
        return spec

    def _find_elsewhere(self, fullname: str, path: Sequence[str] | None,
                        target: ModuleType | None) -> importlib.machinery.ModuleSpec | None:
        """The spec the rest of ``sys.meta_path`` would return."""
        for finder in sys.meta_path:
            if finder is self or not hasattr(finder, "find_spec"):
                continue
            spec = finder.find_spec(fullname, path, target)
            if spec is not None:
                return spec
        return None


def watch(callbacks: dict[str, Callback], on_error: Callable[[str, BaseException], None]) -> PostImportWatcher:
    """Install a watcher first on ``sys.meta_path``; a module already imported gets its callback now."""
    watcher = PostImportWatcher({}, on_error)
    for name, callback in callbacks.items():
        module = sys.modules.get(name)
        if module is None:
            watcher.callbacks[name] = callback
            continue
        try:
            callback(module)
        except Exception as e:
            on_error(name, e)
    sys.meta_path.insert(0, watcher)
    return watcher


def unwatch(watcher: PostImportWatcher) -> None:
    """Remove a watcher (tests)."""
    try:
        sys.meta_path.remove(watcher)
    except ValueError:
        pass
