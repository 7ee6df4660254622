"""Find the experiment a command acts on: ``--experiment DIR``, else the current folder or a parent."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from harness.config import CONFIG_FILENAME, ExperimentConfig, load_config
from harness.errors import ExperimentNotFoundError, UsageError


@dataclass(frozen=True)
class Experiment:
    """An experiment folder and its validated config."""

    path: Path
    config: ExperimentConfig

    @property
    def name(self) -> str:
        return self.config.competition

    @property
    def results_dir(self) -> Path:
        return self.path / "results"

    @property
    def data_dir(self) -> Path:
        return self.path / self.config.data_dir

    def script_for(self, mode: str) -> Path:
        """The script that runs ``mode``.

        Raises:
            UsageError: when the config names no such mode.
        """
        try:
            return self.path / self.config.modes[mode]
        except KeyError:
            known = ", ".join(self.config.modes)
            raise UsageError(f"unknown mode {mode!r}; this experiment has: {known}") from None


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
