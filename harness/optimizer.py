"""``PipelineOptimizer``: apply an optimization by patching functions, and always undo it.

The shape of CodeDAG's ``PipelineMigrator`` (seed 004, §3.1 and Q5): ``apply()``
returns statistics, ``restore()`` puts back exactly what was there, ``is_applied()``
says which state we are in, and the object is a context manager that restores even
when the body raises. A user's own optimizer (a migrator, a tracer-driven rewrite)
drops in unchanged as long as it has those three methods.

Runs inside the container: imports nothing host-side.

Example::

    class DataLoaderOptimizer(PipelineOptimizer):
        def optimize(self) -> None:
            self.patch(baseline, "make_dataloader", fast_dataloader)

    with DataLoaderOptimizer():
        baseline.main(mode="optimization")

Several optimizations are best applied as separate steps (:class:`OptimizationSteps`):
each says on its own log line what it did, or why it was skipped, so a comparison can
tell which part mattered.
"""

from __future__ import annotations

import inspect
from dataclasses import dataclass
from types import TracebackType
from typing import Any, Callable

from harness.errors import OptimizerError

_MISSING = object()
_UNDO = object()  # marks a _Patch whose owner is a callable to run


@dataclass
class _Patch:
    owner: Any
    attribute: str
    original: Any  # _MISSING when the owner had no attribute of its own
    label: str


class PipelineOptimizer:
    """Base class: subclasses override :meth:`optimize` and call :meth:`patch` in it."""

    #: Shown in the statistics apply() returns.
    name: str = "pipeline"

    def __init__(self) -> None:
        self._patches: list[_Patch] = []
        self._applied = False

    # -- what subclasses write -------------------------------------------------
    def optimize(self) -> dict[str, Any] | None:
        """Make the changes with :meth:`patch`; may return extra statistics for apply()."""
        raise NotImplementedError(f"{type(self).__name__} must override optimize()")

    def patch(self, target: Any, attribute: str, new: Any, *, create: bool = False) -> Any:
        """Set ``target.<attribute>`` to ``new`` and remember what was there; return the old value.

        ``attribute`` may be dotted (``"loader.collate"``): the last part is set on the
        object the others lead to. What is remembered is the owner's *own* attribute
        (its ``__dict__`` entry, e.g. a raw ``staticmethod``), so restore() puts back
        exactly that, or deletes the attribute when it was inherited or absent.

        Raises:
            OptimizerError: when called outside apply(), or the attribute does not
                exist and ``create`` is false.
        """
        if not self._applying:
            raise OptimizerError(f"{type(self).__name__}.patch() called outside apply()")
        *path, leaf = attribute.split(".")
        owner = target
        for part in path:
            try:
                owner = getattr(owner, part)
            except AttributeError:
                raise OptimizerError(f"cannot patch {attribute!r}: {_describe(owner)} has no {part!r}") from None
        own = vars(owner) if hasattr(owner, "__dict__") else {}
        static = inspect.getattr_static(type(owner), leaf, _MISSING)
        if static is not _MISSING and hasattr(type(static), "__set__"):
            # A property or slot: setattr goes through it, so restore sets the old value back.
            original = getattr(owner, leaf)
        elif leaf in own:
            original = own[leaf]
        elif hasattr(owner, leaf):
            # Inherited: setattr shadows it, and restore() removes the shadow.
            original = _MISSING
        elif create:
            original = _MISSING
        else:
            raise OptimizerError(f"cannot patch {attribute!r}: {_describe(owner)} has no {leaf!r}",
                                 hint="pass create=True to add a new attribute")
        old_value = getattr(owner, leaf, None)
        setattr(owner, leaf, new)
        self._patches.append(_Patch(owner, leaf, original, f"{_describe(owner)}.{leaf}"))
        return old_value

    def on_restore(self, undo: Callable[[], Any], label: str = "setting") -> None:
        """Register ``undo`` to run at restore(), for changes that are not attributes
        (``torch.set_num_threads``, an environment variable): pair every change with one.

        Raises:
            OptimizerError: when called outside apply().
        """
        if not self._applying:
            raise OptimizerError(f"{type(self).__name__}.on_restore() called outside apply()")
        self._patches.append(_Patch(undo, "", _UNDO, label))

    def skip_reason(self) -> str | None:
        """Why this optimizer should not be applied here (e.g. "no GPU"), or None to apply it.

        Only :class:`OptimizationSteps` asks; apply() itself always applies.
        """
        return None

    def describe(self, stats: dict[str, Any]) -> str:
        """One line for the log saying what apply() did; ``stats`` is what it returned."""
        extra = {k: v for k, v in stats.items() if k not in ("optimizer", "patched", "targets")}
        return ", ".join(f"{k} {v}" for k, v in extra.items()) or f"patched {', '.join(stats['targets'])}"

    # -- the migrator interface -----------------------------------------------
    _applying = False

    def apply(self) -> dict[str, Any]:
        """Apply the optimization; on any error undo what was done and re-raise.

        Returns:
            ``{"optimizer": name, "patched": count, "targets": [...]}`` plus whatever
            optimize() returned.

        Raises:
            OptimizerError: when already applied (restore() first).
        """
        if self._applied:
            raise OptimizerError(f"{type(self).__name__} is already applied; call restore() first")
        self._applying = True
        try:
            extra = self.optimize() or {}
        except BaseException:
            self._undo()
            raise
        finally:
            self._applying = False
        self._applied = True
        return {"optimizer": self.name, "patched": len(self._patches),
                "targets": [p.label for p in self._patches], **extra}

    def restore(self) -> None:
        """Put back every original, newest patch first; a no-op when not applied."""
        if not self._applied:
            return
        self._undo()

    def is_applied(self) -> bool:
        return self._applied

    def __enter__(self) -> "PipelineOptimizer":
        self.apply()
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.restore()

    def _undo(self) -> None:
        failures = []
        while self._patches:
            p = self._patches.pop()
            try:
                if p.original is _UNDO:
                    p.owner()
                elif p.original is _MISSING:
                    delattr(p.owner, p.attribute)
                else:
                    setattr(p.owner, p.attribute, p.original)
            except Exception as e:  # keep restoring the others; report at the end
                failures.append(f"{p.label}: {e}")
        self._applied = False
        if failures:
            raise OptimizerError(f"could not restore {len(failures)} attribute(s): {'; '.join(failures)}")


class OptimizationSteps(PipelineOptimizer):
    """Several optimizers applied as one: in order, each with its own log line.

    A step whose :meth:`~PipelineOptimizer.skip_reason` gives a reason is not applied,
    and its line says why. restore() undoes the applied steps newest first; if a step
    fails while applying, the steps before it are undone too. apply() returns each
    step's statistics under its name (``{"steps": {"dataloader": {...}, ...}}``).
    """

    name = "steps"

    def __init__(self, steps: list[PipelineOptimizer], *, echo: Callable[[str], Any] = print,
                 prefix: str = "") -> None:
        super().__init__()
        names = [step.name for step in steps]
        if len(set(names)) != len(names):
            raise OptimizerError(f"step names must differ (got {names})")
        self.steps = list(steps)
        self.echo, self.prefix = echo, prefix
        self.applied: list[str] = []

    def optimize(self) -> dict[str, Any]:
        report: dict[str, Any] = {}
        self.applied = []
        total = len(self.steps)
        for number, step in enumerate(self.steps, 1):
            head = f"{self.prefix}step {number}/{total} {step.name}"
            reason = step.skip_reason()
            if reason:
                report[step.name] = {"applied": False, "reason": reason}
                self.echo(f"{head}: skipped ({reason})")
                continue
            stats = step.apply()
            self.on_restore(step.restore, f"step {step.name}")
            self.applied.append(step.name)
            report[step.name] = stats
            self.echo(f"{head}: {step.describe(stats)}")
        return {"steps": report}


def _describe(obj: Any) -> str:
    name = getattr(obj, "__qualname__", None) or getattr(obj, "__name__", None)
    return name if isinstance(name, str) else type(obj).__name__
