"""Find the experiment a command acts on: ``--experiment DIR``, else the current folder or a parent."""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from pathlib import Path

from harness.config import CONFIG_FILENAME, ExperimentConfig, load_config
from harness.errors import ExperimentNotFoundError, UsageError
from harness.modes import ModeSpec, check_mode_files, mode_spec


@dataclass(frozen=True)
class Experiment:
    """An experiment folder and its validated config (plus one-off modes of this invocation)."""

    path: Path
    config: ExperimentConfig
    # `harness run --mode NAME='CMD'`: modes not in the config, recorded in the plan
    one_off_modes: dict[str, ModeSpec] = field(default_factory=dict, hash=False, compare=False)

    @property
    def name(self) -> str:
        return self.config.competition

    @property
    def results_dir(self) -> Path:
        return self.path / "results"

    @property
    def data_dir(self) -> Path:
        return self.path / self.config.data_dir

    def mode_spec(self, mode: str) -> ModeSpec:
        """What ``mode`` runs: its command, extra environment and whether steps are timed automatically.

        Raises:
            UsageError: when the config names no such mode.
        """
        try:
            return mode_spec(self.config.modes[mode])
        except KeyError:
            known = ", ".join(self.config.modes)
            raise UsageError(f"unknown mode {mode!r}; this experiment has: {known}") from None

    def with_one_off_modes(self, modes: dict[str, ModeSpec]) -> "Experiment":
        """This experiment plus modes given on the command line (``--mode NAME='CMD'``).

        Raises:
            UsageError: when a name is already a mode of the config.
        """
        if not modes:
            return self
        for name in modes:
            if name in self.config.modes and self.one_off_modes.get(name) != modes[name]:
                raise UsageError(f"--mode {name}: the config already has a mode {name!r}",
                                 hint="pick another name for the one-off mode")
        config = self.config.model_copy(update={"modes": {**self.config.modes, **modes}})
        return replace(self, config=config, one_off_modes={**self.one_off_modes, **modes})

    def check_modes(self, modes: list[str]) -> None:
        """Each mode's program and the ``.py`` files it names exist in the folder (before anything runs).

        Raises:
            ConfigError: naming the field (``experiment_config.json: modes.NAME.command: ...``).
        """
        for name in modes:
            value = self.config.modes[name]
            if name in self.one_off_modes:
                check_mode_files(name, value, self.path, field=f"--mode {name}")
            else:
                check_mode_files(name, value, self.path, where=f"{CONFIG_FILENAME}: modes")


def load_experiment(path: Path) -> Experiment:
    """Load the experiment in ``path``.

    Raises:
        ExperimentNotFoundError: when ``path`` holds no experiment_config.json.
        ConfigError: when the config is invalid.
    """
    path = path.resolve()
    if not (path / CONFIG_FILENAME).is_file():
        raise ExperimentNotFoundError(f"{path} is not an experiment (no {CONFIG_FILENAME})",
                                      hint="run `harness new NAME` or pass --experiment DIR")
    return Experiment(path=path, config=load_config(path / CONFIG_FILENAME))


def find_experiment(explicit: Path | None = None, start: Path | None = None) -> Experiment:
    """The experiment named by ``explicit``, else the one containing ``start`` (the current folder).

    Raises:
        ExperimentNotFoundError: when no experiment is found.
        ConfigError: when its config is invalid.
    """
    if explicit is not None:
        return load_experiment(explicit)
    here = (start or Path.cwd()).resolve()
    for folder in (here, *here.parents):
        if (folder / CONFIG_FILENAME).is_file():
            return load_experiment(folder)
    raise ExperimentNotFoundError(
        f"not inside an experiment folder ({here} has no {CONFIG_FILENAME} above it)",
        hint="cd into experiments/kaggle_NAME, or pass --experiment DIR",
    )
