"""Run the bad-input catalogue (tests/bad_inputs_catalogue.py) and print how each input was met.

    python benchmarks/bad_inputs_audit.py [--docker] [-v]

Each case is classed, first match wins:
  wrote outside  something changed outside the experiment folder (in its parent, beside it);
  changed a file the experiment folder or its parent differs from before (paths, sizes, modes, mtimes);
  traceback      an exception other than SystemExit escaped, or "Traceback" was printed;
  accepted       exit 0;
  unclear        refused, but not as one ``Error:`` line (+ ``hint:``) with the expected exit code;
  clean          refused as the rules say.
The same checks tests/test_bad_inputs.py makes; this prints the counts for the issue's closing note.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
from collections import Counter
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent / "tests"))
sys.path.insert(0, str(HERE.parent))


def classify(case, runner, cli) -> str:  # noqa: ANN001 - test-side objects
    import test_bad_inputs as t
    from bad_inputs_catalogue import fill

    with tempfile.TemporaryDirectory(prefix="harness-audit-") as tmp:
        tmp_path = Path(tmp)
        parent, exp = t.make_world(tmp_path, case.world)
        if case.mutate is not None:
            case.mutate(exp)
        cwd = os.getcwd()
        os.chdir(tmp_path / "outside")
        try:
            before = t.listing(tmp_path)
            result = runner.invoke(cli, fill(case.argv, tmp_path, parent, exp), input="n\n")
        finally:
            os.chdir(cwd)
        after = t.listing(tmp_path)
        changed = {k for k in set(before) | set(after) if before.get(k) != after.get(k)}
        inside = str(exp.relative_to(tmp_path))
        if any(not (k == "." or k == inside or k.startswith(inside + os.sep)) for k in changed):
            return "wrote outside"
        if changed:
            return "changed a file"
        if (result.exception is not None and not isinstance(result.exception, SystemExit)) \
                or "Traceback" in result.output:
            return "traceback"
        if result.exit_code == 0:
            return "accepted"
        try:
            t.assert_one_line_refusal(result, case)
        except AssertionError:
            return "unclear"
        return "clean"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--docker", action="store_true", help="also the cases that need the engine")
    parser.add_argument("-v", "--verbose", action="store_true", help="print every case that is not clean")
    args = parser.parse_args()
    from click.testing import CliRunner

    from bad_inputs_catalogue import CASES
    from harness.cli import cli

    os.environ.setdefault("MPLBACKEND", "Agg")
    counts: Counter[str] = Counter()
    by_kind: dict[str, Counter[str]] = {}
    for case in CASES:
        if case.docker and not args.docker:
            continue
        outcome = classify(case, CliRunner(), cli)
        counts[outcome] += 1
        by_kind.setdefault(case.id.split("-")[0], Counter())[outcome] += 1
        if args.verbose and outcome != "clean":
            print(f"  {outcome:<15} {case.id}")
    columns = ("clean", "accepted", "traceback", "unclear", "changed a file", "wrote outside")
    print(f"{'kind':<10} {'tried':>6} " + " ".join(f"{c:>14}" for c in columns))
    for kind, c in sorted(by_kind.items()):
        print(f"{kind:<10} {sum(c.values()):>6} " + " ".join(f"{c[col]:>14}" for col in columns))
    print(f"{'total':<10} {sum(counts.values()):>6} " + " ".join(f"{counts[col]:>14}" for col in columns))


if __name__ == "__main__":
    main()
