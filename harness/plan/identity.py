"""A plan measures one thing per mode: a run whose fingerprint differs from the plan's first is an error.

A file edited while a plan runs gives the plan's later runs other code than its earlier ones.
They are recorded as such (state.json message, errors.log, a line on the console) and compare
leaves them out (compare/identity.py); the fix is to start a new plan after the edit.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from harness.errors import HarnessError
from harness.fingerprint import differences, identity_keys


def run_fingerprint(run_dir: Path) -> dict[str, Any] | None:
    """The fingerprint the agent recorded in a finished run's results.json, or None."""
    from harness.results.load import load_results_file
    from harness.results.schema import RESULTS_FILENAME

    try:
        data = load_results_file(run_dir / RESULTS_FILENAME)
    except HarnessError:
        return None
    fp = data.get("run", {}).get("fingerprint")
    return fp if isinstance(fp, dict) and isinstance(fp.get("hash"), str) else None


def check_run_fingerprint(fingerprints: dict[str, Any], mode: str, run_dir: Path,
                          across_machines: bool = False) -> str | None:
    """Remember the first fingerprint of ``mode`` in ``fingerprints``; describe a later one that differs.

    ``across_machines`` (a Ray plan): each node runs its own image or interpreter and picks its
    own backend and GPUs, so only the code, command, config and the user's settings must agree.
    """
    fp = run_fingerprint(run_dir)
    if fp is None:
        return None
    first = fingerprints.get(mode)
    if first is None:
        fingerprints[mode] = fp
        return None
    if first.get("hash") == fp.get("hash"):
        return None
    if across_machines and identity_keys(first)[0] == identity_keys(fp)[0]:
        return None
    what = "; ".join(differences(first, fp))
    return (f"the code or settings changed while this plan ran ({what}): this run measured something else than "
            "the plan's earlier runs, and compare leaves it out; start a new plan after an edit")
