"""Sequential plans' looks at real runs: per-run speeds from results, then the pure rule in ``sequential``.

``harness run --until-confident`` passes :func:`look_at_runs` to the plan (which never imports
compare), as it passes the cache warmer: the plan says which runs form the pairs, this module
reads them and decides.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from harness.compare import sequential as seq
from harness.errors import UsageError


def design_for(max_seeds: int | None, noise_band: float = 0.02) -> dict[str, Any]:
    """The design of a new sequential plan, as state.json keeps it.

    Raises:
        UsageError: for a maximum below the first look.
    """
    first = seq.Design().first_look
    maximum = 10 if max_seeds is None else max_seeds
    if maximum < first:
        raise UsageError(f"--max-seeds must be at least {first}: the first look is after {first} seeds a mode "
                         f"(got {maximum})")
    return seq.Design(max_seeds=maximum, noise_band=noise_band).to_dict()


def speeds(experiment_dir: Path, mode: str, run_ids: list[str]) -> list[float]:
    """Each run's headline speed: steady-state throughput, else 1 / end-to-end time (compare's headline).

    Raises:
        UsageError: when a run gives no speed (no batches logged and no total time).
    """
    from harness.compare.analysis import load_mode_runs

    runs, _, problems = load_mode_runs(Path(experiment_dir), mode, run_ids)
    by_id = {r.run_id: r for r in runs}
    out = []
    for run_id in run_ids:
        values = by_id[run_id].values if run_id in by_id else {}
        tput, total = values.get("throughput"), values.get("total_time")
        if tput and tput > 0:
            out.append(float(tput))
        elif total and total > 0:
            out.append(1.0 / float(total))
        else:
            why = problems[0] if problems else "it logged no batches and no total time"
            raise UsageError(f"run {run_id} of mode {mode!r} gives no speed to decide on: {why}")
    return out


def look_at_runs(experiment_dir: Path, modes: list[str], pairs: list[tuple[Any, str, str]],
                 design: dict[str, Any]) -> dict[str, Any]:
    """The look after ``len(pairs)`` seeds: the Look's fields, plus ``stop``, ``resolved``, ``line``, ``summary``.

    ``pairs``: (seed, baseline run id, candidate run id) of the seeds both modes completed.
    """
    d = seq.Design.from_dict(design)
    base = speeds(experiment_dir, modes[0], [p[1] for p in pairs])
    cand = speeds(experiment_dir, modes[1], [p[2] for p in pairs])
    look = seq.decide(base, cand, d)
    return {**look.to_dict(), "stop": look.stop, "resolved": look.resolved, "line": seq.progress_line(look, d),
            "summary": f"{look.state}, speed {seq.interval_text(look)} after {look.seeds} seeds a mode"}
