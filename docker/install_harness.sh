#!/bin/sh
# Install harness's dependencies (own layer: they change rarely) or harness itself (from its wheel).
#   install_harness.sh deps | wheel
set -eu
B=/tmp/harness-build
if [ ! -f /opt/venv/pyvenv.cfg ]; then
    # /opt/venv links to the base image's own Python (no venv module there): allow pip to install into it.
    export PIP_BREAK_SYSTEM_PACKAGES=1
fi
if [ "$1" = deps ]; then
    /opt/venv/bin/python3 -m pip install --no-cache-dir --find-links "$B/wheelhouse" -r "$B/requirements.txt"
else
    /opt/venv/bin/python3 -m pip install --no-cache-dir --no-deps --force-reinstall "$B"/dist/harness-*.whl
    # The agent must import here, or every run would fail later.
    /opt/venv/bin/python3 -c "import harness, harness.agent, harness.monitor; print('harness', harness.__version__)"
fi
