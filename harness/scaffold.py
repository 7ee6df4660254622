"""``harness new``: render a competition folder from ``templates/``.

The folder is rendered completely into a temporary folder beside the target and
only then renamed into place, so a failure never leaves half a folder and never
touches what the user already has. ``--force`` works only on a harness experiment: it
moves the old folder aside (``kaggle_<name>.bak-<time>``), carries its ``data/`` and
``results/`` into the new one, and says so; it regenerates the code and deletes nothing.

Templates: ``templates/common/`` holds files for every framework,
``templates/<framework>/`` adds or overrides files. A ``.j2`` suffix means "render
with Jinja" (the suffix is dropped); a ``dot-`` prefix becomes ``.`` (so the
repository's own git does not read ``dot-gitignore``); other files are copied.
"""

from __future__ import annotations

import os
import re
import shutil
import tempfile
import time
from pathlib import Path
from typing import Callable

from harness import __version__
from harness.config import CONFIG_FILENAME, ExperimentConfig, Resources, config_to_json
from harness.filemode import umask
from harness.errors import ScaffoldError, UsageError
from harness.package_data import templates_dir

FRAMEWORKS = ("pytorch", "tensorflow")
PREFIX = "kaggle_"
# Folders of an existing experiment that belong to the user, kept by --force.
USER_FOLDERS = ("data", "results")

_NAME_RE = re.compile(r"^[a-z0-9][a-z0-9_-]{0,63}$")

# Defaults of the generated experiment: sized so that one mode takes a minute or two
# on 2 CPU cores, with the input pipeline as the bottleneck (see docs/experiment.md).
PARAMETERS: dict[str, object] = {
    "num_clips": 3072,
    "num_classes": 12,
    "clip_seconds": 5.0,
    "sample_rate": 32000,
    "n_mels": 64,
    "learning_rate": 0.001,
    "num_workers": 0,
    "optimized_workers": None,
    "data_seed": 2023,
}


def competition_name(name: str) -> str:
    """Validate NAME and return the competition name (NAME without a ``kaggle_`` prefix).

    Raises:
        UsageError: when NAME is not 1-64 lowercase letters, digits, '_' or '-' starting
            with a letter or digit.
    """
    shown = name if len(name) <= 40 else name[:40] + "..."
    if not _NAME_RE.fullmatch(name):
        raise UsageError(
            f"invalid experiment name {shown!r}: use 1-64 lowercase letters, digits, '_' or '-', "
            "starting with a letter or digit (e.g. birdclef_2023)"
        )
    competition = name[len(PREFIX):] if name.startswith(PREFIX) else name
    if not _NAME_RE.fullmatch(competition):
        raise UsageError(f"invalid experiment name {shown!r}: nothing usable follows '{PREFIX}' "
                         "(e.g. kaggle_birdclef_2023 or birdclef_2023)")
    return competition


def default_config(competition: str, framework: str) -> ExperimentConfig:
    """The experiment_config.json that ``harness new`` writes (validated by construction)."""
    return ExperimentConfig(
        competition=competition,
        kaggle_slug=competition.replace("_", "-"),
        framework=framework,  # type: ignore[arg-type]
        seeds=[0, 1, 2],
        epochs=2,
        batch_size=32,
        data_dir="data",
        resources=Resources(cpus=None, memory="8g", gpus="auto", shm_size="2g"),
        sampling_interval=1.0,
        parameters=dict(PARAMETERS),
    )


def _template_files(root: Path, framework: str) -> dict[str, Path]:
    """Output name -> template file; the framework's folder overrides common/."""
    files: dict[str, Path] = {}
    for part in ("common", framework):
        folder = root / part
        if not folder.is_dir():
            raise ScaffoldError(f"harness is missing its templates/{part}/ folder; reinstall harness")
        for path in sorted(folder.rglob("*")):
            # _partials/ holds pieces the templates include (the baselines' shared data code), not files.
            if path.is_file() and "__pycache__" not in path.parts and "_partials" not in path.parts:
                rel = path.relative_to(folder)
                name = rel.name.removesuffix(".j2")
                if name.startswith("dot-"):
                    name = "." + name[4:]
                files[str(rel.with_name(name))] = path
    return files


def render_experiment(competition: str, framework: str, dest: Path) -> None:
    """Write the experiment's files into the existing, empty folder ``dest``.

    Raises:
        ScaffoldError: when a template cannot be rendered or a file cannot be written.
    """
    import jinja2

    root = templates_dir()
    config = default_config(competition, framework)
    context = {
        "competition": competition,
        "title": f"Kaggle {competition}",
        "kaggle_slug": config.kaggle_slug,
        "framework": framework,
        "harness_version": __version__,
        "base_image": f"harness/{framework}:{__version__}",
        "num_clips": PARAMETERS["num_clips"],
        "num_classes": PARAMETERS["num_classes"],
    }
    env = jinja2.Environment(undefined=jinja2.StrictUndefined, keep_trailing_newline=True,
                             autoescape=False, loader=jinja2.FileSystemLoader(str(root)))
    try:
        for out_name, template in _template_files(root, framework).items():
            target = dest / out_name
            target.parent.mkdir(parents=True, exist_ok=True)
            if template.name.endswith(".j2"):
                text = env.from_string(template.read_text(encoding="utf-8")).render(context)
                target.write_text(text, encoding="utf-8")
            else:
                shutil.copyfile(template, target)
        (dest / CONFIG_FILENAME).write_text(config_to_json(config), encoding="utf-8")
    except jinja2.TemplateError as e:
        raise ScaffoldError(f"template error in harness's templates: {e}; reinstall harness") from e
    except OSError as e:
        raise ScaffoldError(f"cannot write {e.filename or dest}: {e.strerror or e}") from e


def create_experiment(name: str, framework: str, root: Path = Path("experiments"),
                      force: bool = False, echo: Callable[[str], None] | None = None) -> Path:
    """Create ``root/kaggle_<name>/`` with working baseline and optimization code.

    With ``force``, an existing harness experiment of that name is moved aside to
    ``kaggle_<name>.bak-<time>`` (its data/ and results/ carried over into the new folder) and
    ``echo`` is told where; anything else of that name is refused, never touched.

    Raises:
        UsageError: for a bad name or framework.
        ScaffoldError: when the folder exists (and ``force`` is off, or it is not a harness
            experiment), ``root`` is not a folder, or writing fails; nothing of the user's is
            changed then.
    """
    competition = competition_name(name)
    if framework not in FRAMEWORKS:
        raise UsageError(f"unknown framework {framework!r}; use one of: {', '.join(FRAMEWORKS)}")
    root = Path(root).expanduser()
    target = root / f"{PREFIX}{competition}"
    _check_target(root, target, force)

    # The folders `mkdir -p` is about to make, deepest first: a failure removes exactly these.
    created = [p for p in (root, *root.parents) if not os.path.lexists(p)]
    try:
        root.mkdir(parents=True, exist_ok=True)
        staging = Path(tempfile.mkdtemp(prefix=f".{target.name}.new-", dir=root))
    except OSError as e:
        for folder in created:
            try:
                folder.rmdir()
            except OSError:
                break
        raise ScaffoldError(f"cannot create a folder in {root}: {e.strerror or e}") from e
    try:
        render_experiment(competition, framework, staging)
        os.chmod(staging, 0o777 & ~umask())  # mkdtemp made it private; make it a normal folder
        if os.path.lexists(target):
            aside = _swap_in(staging, target)
            if echo:
                echo(f"Moved the old folder to {aside} (its data/ and results/ are in the new one)")
        else:
            os.rename(staging, target)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        for folder in created:
            try:
                folder.rmdir()
            except OSError:
                break
        raise
    return target


def _check_target(root: Path, target: Path, force: bool) -> None:
    """Refuse, before anything is written, a target that exists (without --force, or not an experiment).

    Raises:
        ScaffoldError: naming what is in the way.
    """
    try:
        exists = os.path.lexists(target)
        if exists and not force:
            kind = "folder" if target.is_dir() else "file"
            raise ScaffoldError(f"{target} already exists (a {kind}); nothing was written",
                                hint="pass --force to regenerate its code (the old folder is kept aside)")
        if exists:
            _check_replaceable(target)
        if root.exists() and not root.is_dir():
            raise ScaffoldError(f"{root} is not a folder", hint="pass --root with a folder")
    except OSError as e:
        raise ScaffoldError(f"cannot use {root}: {e.strerror or e}") from e


def is_experiment_folder(path: Path) -> bool:
    """True when ``path`` is a real folder holding a config harness wrote (what --force may replace)."""
    config = path / CONFIG_FILENAME
    if path.is_symlink() or not path.is_dir() or config.is_symlink() or not config.is_file():
        return False
    from harness.safe_json import JsonInputError, parse

    try:
        data = parse(config.read_bytes(), allow_nan=True)
    except (OSError, JsonInputError):
        return False
    return isinstance(data, dict) and {"competition", "kaggle_slug", "framework"} <= set(data)


def _check_replaceable(target: Path) -> None:
    """Refuse --force on anything that is not a harness experiment: the user's files are never touched.

    Raises:
        ScaffoldError: naming what is there.
    """
    if target.is_symlink():
        raise ScaffoldError(f"{target} is a symbolic link; --force replaces only a harness experiment folder",
                            hint="move it away yourself, or pick another name or --root")
    if not is_experiment_folder(target):
        kind = "folder" if target.is_dir() else "file"
        raise ScaffoldError(f"{target} is not a harness experiment (a {kind} without harness's "
                            f"{CONFIG_FILENAME}); --force replaces only an experiment, so nothing was touched",
                            hint="move it away yourself, or pick another name or --root")


def _aside_name(target: Path) -> Path:
    stamp = time.strftime("%Y%m%dT%H%M%S", time.gmtime())
    aside = target.with_name(f"{target.name}.bak-{stamp}")
    n = 1
    while os.path.lexists(aside):
        aside = target.with_name(f"{target.name}.bak-{stamp}-{n}")
        n += 1
    return aside


def _swap_in(staging: Path, target: Path) -> Path:
    """Move ``target`` aside, carry its data/ and results/ into ``staging``, and put ``staging`` in place.

    Returns where the old folder went. Any failure before the end puts everything back as it was.
    """
    aside = _aside_name(target)
    moved: list[str] = []
    try:
        os.rename(target, aside)
        try:
            for folder in USER_FOLDERS:
                if os.path.lexists(aside / folder):
                    os.rename(aside / folder, staging / folder)
                    moved.append(folder)
            os.rename(staging, target)
        except BaseException:
            for folder in moved:
                os.rename(staging / folder, aside / folder)
            os.rename(aside, target)
            raise
    except OSError as e:
        raise ScaffoldError(f"cannot replace {target}: {e.strerror or e}; it was left as it was") from e
    return aside
