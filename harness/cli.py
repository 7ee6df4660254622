"""The ``harness`` command: parse options, call one library function, print.

This is the one error boundary: a :class:`~harness.errors.HarnessError` prints
``Error: <message>`` (and a ``hint:`` line) on stderr and exits with its code;
Ctrl-C exits 130; anything else is a bug and keeps its traceback. Heavy modules
(torch, tensorflow, matplotlib, docker, ray) are imported inside the commands
that need them, so ``harness --help`` stays fast.
"""

from __future__ import annotations

import json
import shutil
import sys
from pathlib import Path
from typing import Any, NoReturn

import click

from harness import __version__
from harness.errors import HarnessError, UsageError

CONTEXT_SETTINGS = {"help_option_names": ["-h", "--help"], "max_content_width": 100}


def _fail(err: HarnessError) -> NoReturn:
    message = " ".join(str(err).split("\n")[0].split()) if str(err) else type(err).__name__
    click.echo(f"Error: {message}", err=True)
    if err.hint:
        click.echo(f"hint: {err.hint}", err=True)
    sys.exit(err.exit_code)


class HarnessGroup(click.Group):
    """Click group that turns our errors into one line and Ctrl-C into exit 130."""

    def invoke(self, ctx: click.Context) -> Any:
        try:
            return super().invoke(ctx)
        except HarnessError as err:
            _fail(err)
        except click.UsageError as err:
            # click's own "Usage: ... Try ... Error: ..." block, as our one line and a hint.
            command = err.ctx.command_path if err.ctx else "harness"
            _fail(UsageError(err.format_message(), hint=f"see `{command} --help`"))
        except KeyboardInterrupt:
            click.echo("Interrupted.", err=True)
            sys.exit(130)


class SafePath(click.Path):
    """A folder path that the OS can take: no NUL, no component longer than the file system allows."""

    def convert(self, value: Any, param: click.Parameter | None, ctx: click.Context | None) -> Any:
        from harness.names import path_problem

        if path_problem(str(value)):
            self.fail(f"the path {path_problem(str(value))}", param, ctx)
        return super().convert(value, param, ctx)


FOLDER = SafePath(file_okay=False, path_type=Path)

experiment_option = click.option(
    "--experiment", "-e", "experiment_dir", type=FOLDER,
    help="Experiment folder (default: the one containing the current folder).",
)


def _experiment(experiment_dir: Path | None):
    from harness.experiment import find_experiment

    return find_experiment(experiment_dir)


@click.group("harness", cls=HarnessGroup, context_settings=CONTEXT_SETTINGS)
@click.version_option(__version__, "-V", "--version", prog_name="harness")
def cli() -> None:
    """Does your optimization of a training pipeline really help? Measure it honestly.

    harness scaffolds a competition folder, runs a baseline and an optimization
    mode of the same training code in isolated containers while sampling CPU,
    memory and GPU use inside them, and compares the runs with statistics.

    \b
    Typical session:
      harness new birdclef_2023 --framework pytorch
      cd experiments/kaggle_birdclef_2023
      harness run baseline optimization      # 3 seeds each, interleaved
      harness compare                        # verdict, tables, report.html
    """


# --------------------------------------------------------------------------- new
@cli.command()
@click.argument("name")
@click.option("--framework", "-f", type=click.Choice(["pytorch", "tensorflow"]), default="pytorch",
              show_default=True, help="Training framework of the generated code.")
@click.option("--root", type=FOLDER, default=Path("experiments"),
              show_default=True, help="Folder that receives kaggle_<name>/.")
@click.option("--force", is_flag=True,
              help="Regenerate an existing experiment's code; the old folder is moved aside to "
                   "kaggle_NAME.bak-<time> (data/ and results/ carried over). Refused on other folders.")
def new(name: str, framework: str, root: Path, force: bool) -> None:
    """Scaffold a competition folder: working baseline and optimization code.

    NAME is the competition, e.g. birdclef_2023 (lowercase letters, digits,
    '_' and '-'); the folder is ROOT/kaggle_NAME. The generated code trains a
    small BirdCLEF-style audio model on synthetic data until you put the real
    Kaggle data in its data/ folder.

    \b
    Examples:
      harness new birdclef_2023
      harness new rsna-2024 --framework tensorflow --root ~/kaggle
    """
    from harness.scaffold import create_experiment

    path = create_experiment(name=name, framework=framework, root=root, force=force, echo=click.echo)
    click.echo(f"Created {path}")
    click.echo(f"Next: cd {path} && harness run baseline optimization && harness compare")


# --------------------------------------------------------------------------- run
def _parse_seeds(value: str | None) -> list[int] | None:
    if value is None:
        return None
    try:
        seeds = [int(s) for s in value.split(",") if s.strip()]
    except ValueError:
        shown = value if len(value) <= 40 else value[:40] + "..."
        raise UsageError(f"--seeds must be comma-separated integers like 0,1,2 (got {shown!r})") from None
    if not seeds or any(not 0 <= s <= 2**32 - 1 for s in seeds) or len(set(seeds)) != len(seeds):
        shown = value if len(value) <= 40 else value[:40] + "..."
        raise UsageError(f"--seeds must list distinct integers from 0 to 4294967295 (got {shown!r})")
    return seeds


@cli.command()
@click.argument("modes", nargs=-1)
@experiment_option
@click.option("--seeds", help="Comma-separated seeds, e.g. 0,1,2 (default: the config's seeds).")
@click.option("--backend", type=click.Choice(["auto", "docker", "local"]), default="auto", show_default=True,
              help="auto: Docker when an engine answers, else a local process.")
@click.option("--gpus", help="all, none, a count (count:2) or device ids (0,2). Default: the config's.")
@click.option("--cpus", type=float, help="CPU cores per run. Default: the config's.")
@click.option("--memory", help="Memory limit per run, e.g. 8g. Default: the config's.")
@click.option("--shm-size", help="Size of /dev/shm for DataLoader workers, e.g. 2g. Default: the config's.")
@click.option("--network", type=click.Choice(["none", "bridge", "host"]),
              help="Container network (default: the config's, normally none: Kaggle runs offline).")
@click.option("--ipc", type=click.Choice(["private", "host"]), default="private", show_default=True,
              help="IPC namespace; host shares the host's /dev/shm instead of --shm-size.")
@click.option("--timeout", type=float, help="Seconds before a run is stopped and recorded as timeout.")
@click.option("--pids", type=click.IntRange(min=1),
              help="Most processes + threads per run's container. Default: the config's (4096).")
@click.option("--dry-run", is_flag=True, help="Print the plan and exit.")
@click.option("--resume", "resume", is_flag=False, flag_value="latest", default=None, metavar="[PLAN]",
              help="Continue a plan after a crash or Ctrl-C (default: the latest plan).")
@click.option("--fail-fast", is_flag=True, help="Stop the plan at the first failed run.")
@click.option("--parallel", is_flag=True, help="Run one container per free GPU (or disjoint cpusets on CPUs).")
@click.option("--parallel-plans", is_flag=True,
              help="Start even though another plan of this experiment is running (compare then warns).")
@click.option("--executor", type=click.Choice(["local", "ray"]), default="local", show_default=True,
              help="Where runs execute: this machine, or a Ray cluster.")
@click.option("--address", help="Ray cluster address for --executor ray (e.g. 10.0.0.5:6379).")
@click.option("--rebuild", is_flag=True, help="Rebuild the experiment image even if it is up to date.")
@click.option("--until-confident", is_flag=True,
              help="Two modes: add seed pairs until the verdict is clear (sequential test, docs/statistics.md).")
@click.option("--max-seeds", type=int, help="With --until-confident: at most this many seeds a mode [default: 10].")
@click.option("--budget", help="With --until-confident: stop before a pair that would overrun this time, e.g. 2h.")
@click.option("--mode", "one_off", multiple=True, metavar="NAME='CMD'",
              help="Also run a one-off mode that is not in the config, e.g. amp='python main.py --amp' "
                   "(recorded in the plan; repeatable).")
def run(modes: tuple[str, ...], experiment_dir: Path | None, seeds: str | None, backend: str,
        gpus: str | None, cpus: float | None, memory: str | None, shm_size: str | None,
        network: str | None, ipc: str, timeout: float | None, pids: int | None, dry_run: bool, resume: str | None,
        fail_fast: bool, parallel: bool, parallel_plans: bool, executor: str, address: str | None, rebuild: bool,
        until_confident: bool, max_seeds: int | None, budget: str | None, one_off: tuple[str, ...]) -> None:
    """Run modes of the experiment, each seed in its own container.

    MODES are names from experiment_config.json (or 'all'). A mode there is a
    script ("baseline.py") or a command line ({"command": "python main.py --amp"},
    never run through a shell). Each (mode, seed) run writes
    results/<mode>/<run-id>/. Modes are interleaved per seed so that drift of the
    machine hits both alike. Exit code 1 if any run failed.

    \b
    Examples:
      harness run baseline                      # the config's seeds
      harness run baseline optimization --seeds 0,1,2
      harness run baseline --mode bs80='python main.py --batch_size 80'
      harness run all --dry-run
      harness run --resume                      # after a crash or Ctrl-C
      harness run optimization --backend local --timeout 600
      harness run baseline optimization --until-confident --budget 2h
    """
    from harness.modes import parse_cli_mode
    from harness.overrides import check_flags
    from harness.settings import RunOptions

    seed_list = _parse_seeds(seeds)
    check_flags(backend=backend, gpus=gpus, cpus=cpus, memory=memory, shm_size=shm_size, network=network,
                ipc=ipc, timeout=timeout, rebuild=rebuild, pids=pids)
    experiment = _experiment(experiment_dir)
    extra = dict(parse_cli_mode(text) for text in one_off)
    if extra and resume is not None:
        raise UsageError("--resume runs the plan's own modes; drop --mode")
    experiment = experiment.with_one_off_modes(extra)
    modes = (*modes, *(name for name in extra if name not in modes))
    if not modes and resume is None:
        raise UsageError("name at least one mode (e.g. `harness run baseline`), 'all', or --resume")
    options = RunOptions(backend=backend, gpus=gpus, cpus=cpus, memory=memory, shm_size=shm_size,
                         network=network, ipc=ipc, timeout=timeout, rebuild=rebuild, pids=pids)
    from harness.compare.cache import warm
    from harness.compare.sequential_runs import design_for, look_at_runs
    from harness.plan import SequentialRequest, execute, render_plan_result

    if not until_confident and (max_seeds is not None or budget is not None):
        raise UsageError("--max-seeds and --budget belong to --until-confident", hint="add --until-confident")
    sequential = SequentialRequest(design_for(max_seeds), budget) if until_confident else None
    result = execute(experiment=experiment, modes=list(modes), seeds=seed_list,
                     options=options, dry_run=dry_run, resume=resume, fail_fast=fail_fast,
                     parallel=parallel, executor=executor, address=address, echo=click.echo,
                     on_run_completed=warm, sequential=sequential, decide=look_at_runs,
                     parallel_plans=parallel_plans)
    click.echo(render_plan_result(result))
    if result.failed:
        sys.exit(1)


# --------------------------------------------------------------------------- compare
@cli.command()
@click.argument("targets", nargs=-1, metavar="[BASELINE CANDIDATE | EXPERIMENTS...]")
@click.option("--baseline", help="Mode compared against.  [default: baseline]")
@click.option("--candidate", help="Mode under test.  [default: optimization]")
@click.option("--runs", help="Comma-separated run ids to use (default: every completed run).")
@click.option("--format", "fmt", type=click.Choice(["table", "json", "markdown", "latex"]), default="table",
              show_default=True, help="What to print; the report files are written in every case.")
@click.option("--noise-band", type=float, default=2.0, show_default=True,
              help="Percent change treated as noise: inside it a significant change reads 'within noise'.")
@click.option("--fail-if-slower", is_flag=True, help="Exit 1 when the candidate is significantly slower.")
@click.option("--fail-if-worse", is_flag=True,
              help="Exit 1 when the candidate learns worse (accuracy, loss or the config's quality_metric).")
@click.option("--all-runs", is_flag=True,
              help="Pool every completed run, also those of older code or other settings (with a warning).")
@click.option("--no-plots", is_flag=True, help="Skip the plots and HTML report (faster).")
def compare(targets: tuple[str, ...], baseline: str | None, candidate: str | None, runs: str | None, fmt: str,
            noise_band: float, fail_if_slower: bool, fail_if_worse: bool, all_runs: bool,
            no_plots: bool) -> None:
    """Compare two modes' runs: verdict, statistics, diagnosis, report.

    Compares the experiment you are in: baseline against optimization, or the
    two modes you name (BASELINE CANDIDATE). With results of more than two
    modes and none named, prints one line per mode against baseline, then the
    full report of the first. With several EXPERIMENTS (folders), prints one
    summary table across competitions.
    Each mode uses the runs of its newest code and settings (fingerprint);
    older runs are listed as left out, with what changed. --all-runs pools
    them anyway.

    \b
    Writes results/comparison/: comparison.json, report.md, report.html, *.png
    Examples:
      harness compare
      harness compare baseline amp             # = --baseline baseline --candidate amp
      harness compare --format markdown > RESULTS.md
      harness compare --fail-if-slower --fail-if-worse   # in CI
      harness compare experiments/*
    """
    from harness.compare import compare_and_report, render_result
    from harness.compare.session import split_targets
    from harness.names import refuse_unsafe_names, refuse_unsafe_paths

    refuse_unsafe_paths(targets)
    experiments, modes = split_targets(list(targets))
    run_ids = [r.strip() for r in runs.split(",") if r.strip()] if runs else None
    refuse_unsafe_names(baseline=baseline, candidate=candidate, runs=run_ids or [])
    result = compare_and_report(experiments=experiments, baseline=baseline, candidate=candidate, modes=modes,
                                run_ids=run_ids, noise_band=noise_band / 100.0, plots=not no_plots,
                                all_runs=all_runs)
    # Wide enough for the verdict table; CliRunner and pipes fall back to COLUMNS or 120.
    text, problems = render_result(result, fmt, max(100, shutil.get_terminal_size((120, 24)).columns))
    for line in problems:
        click.echo(line, err=True)
    click.echo(text)
    sys.exit(1 if (fail_if_slower and result.slower) or (fail_if_worse and result.worse) else 0)


# --------------------------------------------------------------------------- images
@cli.command()
@click.option("--framework", type=click.Choice(["pytorch", "tensorflow", "all"]), default="all",
              show_default=True, help="Which framework image to build.")
@click.option("--bootstrap", is_flag=True,
              help="No registry? Make a Debian base image with Python from apt's sources (mmdebstrap).")
@click.option("--base-image", help="Build on this image instead of the pinned default.")
@click.option("--wheelhouse", type=click.Path(exists=True, file_okay=False, path_type=Path),
              help="Install wheels (e.g. torch) from this local folder.")
@click.option("--ca-bundle", type=click.Path(exists=True, dir_okay=False, path_type=Path),
              help="Trust this CA bundle during the build (a TLS-intercepting proxy).")
@click.option("--build-network", type=click.Choice(["default", "host", "none"]), default="default",
              show_default=True, help="Network the build's RUN steps use.")
@click.option("--no-cache", is_flag=True, help="Ignore the build cache.")
def build(framework: str, bootstrap: bool, base_image: str | None, wheelhouse: Path | None,
          ca_bundle: Path | None, build_network: str, no_cache: bool) -> None:
    """Build the framework images harness/pytorch and harness/tensorflow.

    \b
    Examples:
      harness build
      harness build --framework pytorch --base-image pytorch/pytorch:2.4.1-cuda12.1-cudnn9-runtime
      # air-gapped host behind a TLS proxy:
      harness build --bootstrap --wheelhouse /opt/wheels --ca-bundle /etc/ssl/certs/ca-certificates.crt \\
                    --build-network host
    """
    from harness.images import build_framework_images

    frameworks = ["pytorch", "tensorflow"] if framework == "all" else [framework]
    tags = build_framework_images(frameworks=frameworks, bootstrap=bootstrap, base_image=base_image,
                                  wheelhouse=wheelhouse, ca_bundle=ca_bundle, network=build_network,
                                  no_cache=no_cache, echo=click.echo)
    for tag in tags:
        click.echo(f"Built {tag}")


@cli.command()
@experiment_option
@click.option("--rebuild", is_flag=True, help="Rebuild even if the image is up to date.")
def setup(experiment_dir: Path | None, rebuild: bool) -> None:
    """Build the experiment image harness-<competition>:<hash> (requirements and code).

    `harness run` does this by itself when the image is missing or stale.
    """
    from harness.images import ensure_experiment_image

    tag = ensure_experiment_image(_experiment(experiment_dir), rebuild=rebuild, echo=click.echo)
    click.echo(f"Image {tag} is ready")


# --------------------------------------------------------------------------- check / ps / clean
@cli.command()
@click.option("--json", "as_json", is_flag=True, help="Print the checks as JSON.")
def check(as_json: bool) -> None:
    """Check the environment: Docker, GPU runtime, GPUs, disk, cgroups, images, Python packages.

    Exits 1 when something required is missing, and says how to fix each.
    """
    from harness.check import render_checks, run_checks

    results = run_checks()
    if as_json:
        click.echo(json.dumps([r.to_dict() for r in results], indent=2))
    else:
        click.echo(render_checks(results))
    if any(r.required and not r.ok for r in results):
        sys.exit(1)


@cli.command()
@click.option("--all", "show_all", is_flag=True, help="Show exited containers too.")
def ps(show_all: bool) -> None:
    """List running (and with --all, leftover) harness containers."""
    from harness.engine import list_containers, render_containers

    click.echo(render_containers(list_containers(include_stopped=True if show_all else False)))


@cli.command()
@click.option("--yes", "-y", is_flag=True, help="Do not ask for confirmation.")
def clean(yes: bool) -> None:
    """Remove leftover harness containers (by label; nothing else is touched)."""
    from harness.engine import clean_containers, list_containers

    leftovers = [c for c in list_containers(include_stopped=True) if c.status != "running"]
    if not leftovers:
        click.echo("No leftover harness containers.")
        return
    if not yes:
        click.confirm(f"Remove {len(leftovers)} leftover harness container(s)?", abort=True)
    removed = clean_containers(leftovers)
    click.echo(f"Removed {removed} container(s).")


def main() -> None:
    """Entry point of the ``harness`` console script."""
    cli(prog_name="harness")


if __name__ == "__main__":
    main()
