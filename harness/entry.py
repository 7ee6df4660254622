"""The ``harness`` console script: the CLI, or one line saying how to install its side when it is missing.

A plain ``pip install harness`` is the in-container core; the CLI needs the ``host`` extra.
"""

from __future__ import annotations

import sys

HOST_PACKAGES = {"click", "docker", "rich", "pydantic", "jinja2", "matplotlib"}


def main() -> None:
    try:
        from harness.cli import main as cli_main
    except ImportError as e:
        if (e.name or "").split(".")[0] not in HOST_PACKAGES:
            raise
        print(f"Error: the harness command needs {e.name}, part of the CLI's dependencies\n"
              "hint: pip install 'harness[host]'", file=sys.stderr)
        sys.exit(2)
    cli_main()


if __name__ == "__main__":
    main()
