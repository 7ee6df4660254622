"""PipelineOptimizer: patches are undone exactly, on success, on errors, and when misused."""

from __future__ import annotations

import types

import pytest

from harness.errors import OptimizerError
from harness.optimizer import OptimizationSteps, PipelineOptimizer


def original_loader() -> str:
    return "slow"


def fast_loader() -> str:
    return "fast"


class Base:
    def method(self) -> str:
        return "base"


class Child(Base):
    @staticmethod
    def helper() -> str:
        return "static"


def make_module() -> types.ModuleType:
    module = types.ModuleType("fake_baseline")
    module.make_dataloader = original_loader
    module.settings = types.SimpleNamespace(pipeline=types.SimpleNamespace(loader=original_loader))
    return module


class LoaderOptimizer(PipelineOptimizer):
    name = "loader"

    def __init__(self, module: types.ModuleType, fail: bool = False) -> None:
        super().__init__()
        self.module, self.fail = module, fail

    def optimize(self) -> dict[str, int]:
        self.patch(self.module, "make_dataloader", fast_loader)
        self.patch(self.module, "settings.pipeline.loader", fast_loader)
        if self.fail:
            raise RuntimeError("optimize failed half-way")
        return {"workers": 2}


def test_apply_and_restore() -> None:
    module = make_module()
    optimizer = LoaderOptimizer(module)
    assert not optimizer.is_applied()
    stats = optimizer.apply()
    assert stats == {"optimizer": "loader", "patched": 2, "workers": 2,
                     "targets": ["fake_baseline.make_dataloader", "SimpleNamespace.loader"]}
    assert optimizer.is_applied()
    assert module.make_dataloader() == "fast" and module.settings.pipeline.loader() == "fast"
    optimizer.restore()
    assert not optimizer.is_applied()
    assert module.make_dataloader is original_loader
    assert module.settings.pipeline.loader is original_loader


def test_context_manager_restores_on_exception() -> None:
    module = make_module()
    optimizer = LoaderOptimizer(module)
    with pytest.raises(ZeroDivisionError):
        with optimizer:
            assert module.make_dataloader is fast_loader
            1 / 0
    assert not optimizer.is_applied()
    assert module.make_dataloader is original_loader
    assert module.settings.pipeline.loader is original_loader


def test_failure_inside_optimize_undoes_the_patches_already_made() -> None:
    module = make_module()
    optimizer = LoaderOptimizer(module, fail=True)
    with pytest.raises(RuntimeError, match="half-way"):
        optimizer.apply()
    assert not optimizer.is_applied()
    assert module.make_dataloader is original_loader
    assert module.settings.pipeline.loader is original_loader


def test_double_apply_is_refused_and_keeps_the_true_originals() -> None:
    module = make_module()
    optimizer = LoaderOptimizer(module)
    optimizer.apply()
    with pytest.raises(OptimizerError, match="already applied"):
        optimizer.apply()
    optimizer.restore()
    assert module.make_dataloader is original_loader  # not the patched function recorded as "original"
    optimizer.restore()  # a second restore is a no-op
    assert optimizer.apply()["patched"] == 2  # and it can be applied again
    optimizer.restore()
    assert module.make_dataloader is original_loader


def test_missing_attribute_and_nested_path() -> None:
    module = make_module()

    class Typo(PipelineOptimizer):
        def optimize(self) -> None:
            self.patch(module, "settings.pipline.loader", fast_loader)

    with pytest.raises(OptimizerError, match="has no 'pipline'"):
        Typo().apply()

    class Create(PipelineOptimizer):
        def optimize(self) -> None:
            self.patch(module, "new_hook", fast_loader, create=True)

    with Create():
        assert module.new_hook is fast_loader
    assert not hasattr(module, "new_hook")


def test_inherited_and_descriptor_attributes_are_put_back_exactly() -> None:
    raw_static = vars(Child)["helper"]

    class Patcher(PipelineOptimizer):
        def optimize(self) -> None:
            self.patch(Child, "method", lambda self: "patched")  # inherited from Base
            self.patch(Child, "helper", staticmethod(lambda: "patched"))  # own staticmethod

    with Patcher():
        assert Child().method() == "patched" and Child.helper() == "patched"
        assert Base().method() == "base"
    assert "method" not in vars(Child)  # the shadow is removed, not a copy of Base's left behind
    assert vars(Child)["helper"] is raw_static
    assert Child().method() == "base" and Child.helper() == "static"


def test_patch_outside_apply_is_refused() -> None:
    with pytest.raises(OptimizerError, match="outside apply"):
        LoaderOptimizer(make_module()).patch(make_module(), "make_dataloader", fast_loader)


def test_base_class_needs_optimize() -> None:
    with pytest.raises(NotImplementedError):
        PipelineOptimizer().apply()


def test_on_restore_undoes_settings_in_reverse_order() -> None:
    state = {"threads": 2, "log": []}
    module = make_module()

    class Threads(PipelineOptimizer):
        def optimize(self) -> None:
            old = state["threads"]
            state["threads"] = 1
            self.on_restore(lambda: (state.__setitem__("threads", old), state["log"].append("threads")))
            self.patch(module, "make_dataloader", fast_loader)
            self.on_restore(lambda: state["log"].append("second"))

    with pytest.raises(KeyError):
        with Threads() as optimizer:
            assert state["threads"] == 1 and optimizer.is_applied()
            raise KeyError("boom")
    assert state["threads"] == 2
    assert state["log"] == ["second", "threads"]
    assert module.make_dataloader is original_loader


class Setting(PipelineOptimizer):
    """A step that sets ``module.<attribute>``; skipped with ``skip`` as its reason, failing with ``fail``."""

    def __init__(self, module: types.ModuleType, attribute: str, value: str, *, skip: str | None = None,
                 fail: bool = False) -> None:
        super().__init__()
        self.name = attribute
        self.module, self.attribute, self.value, self.skip, self.fail = module, attribute, value, skip, fail

    def skip_reason(self) -> str | None:
        return self.skip

    def optimize(self) -> dict[str, str]:
        self.patch(self.module, self.attribute, self.value, create=True)
        if self.fail:
            raise RuntimeError(f"{self.attribute} failed")
        return {"set to": self.value}


def test_steps_apply_in_order_log_each_and_skip_with_a_reason() -> None:
    module = make_module()
    lines: list[str] = []
    steps = OptimizationSteps([Setting(module, "loader", "fast"), Setting(module, "device", "cuda", skip="no GPU"),
                               Setting(module, "precision", "bf16")], echo=lines.append, prefix="optimization: ")
    with steps:
        assert (module.loader, module.precision) == ("fast", "bf16") and not hasattr(module, "device")
        assert steps.applied == ["loader", "precision"]
    assert lines == ["optimization: step 1/3 loader: set to fast",
                     "optimization: step 2/3 device: skipped (no GPU)",
                     "optimization: step 3/3 precision: set to bf16"]
    assert not hasattr(module, "loader") and not hasattr(module, "precision")


def test_steps_report_each_step_and_a_failing_step_undoes_the_earlier_ones() -> None:
    module = make_module()
    steps = OptimizationSteps([Setting(module, "loader", "fast"), Setting(module, "device", "cpu", skip="off")],
                              echo=lambda _: None)
    stats = steps.apply()
    assert stats["steps"]["loader"]["set to"] == "fast" and stats["steps"]["loader"]["patched"] == 1
    assert stats["steps"]["device"] == {"applied": False, "reason": "off"}
    steps.restore()

    first = Setting(module, "loader", "fast")
    failing = OptimizationSteps([first, Setting(module, "precision", "fp16", fail=True)], echo=lambda _: None)
    with pytest.raises(RuntimeError, match="precision failed"):
        failing.apply()
    assert not first.is_applied() and not failing.is_applied()
    assert not hasattr(module, "loader") and not hasattr(module, "precision")


def test_step_names_must_differ() -> None:
    module = make_module()
    with pytest.raises(OptimizerError, match="step names must differ"):
        OptimizationSteps([Setting(module, "loader", "a"), Setting(module, "loader", "b")])
