#!/bin/sh
# Make /opt/venv the Python that has the framework and harness.
#   install_framework.sh MODULE PACKAGE
# MODULE is what `import` needs (torch, tensorflow); PACKAGE what pip installs (torch, tensorflow-cpu).
# Runs inside the classic builder (no BuildKit), from the framework Dockerfiles.
set -eu
MODULE="$1"
PACKAGE="$2"
WHEELS=/tmp/harness-build/wheelhouse
CA=/tmp/harness-build/ca/ca-bundle.crt

if [ -s "$CA" ]; then
    # A TLS-intercepting proxy: pip (here and in experiment images built on this one) trusts its CA.
    mkdir -p /etc/harness
    cp "$CA" /etc/harness/ca-bundle.crt
    printf '[global]\ncert = /etc/harness/ca-bundle.crt\n' > /etc/pip.conf
fi

if python3 -c "import $MODULE" >/dev/null 2>&1; then
    echo "harness: $MODULE is already in the base image; not installing it"
    # Keep the base's framework (CUDA builds) visible from the venv.
    if ! python3 -m venv --system-site-packages /opt/venv; then
        # No venv module (some distro Pythons): use the base Python itself.
        mkdir -p /opt/venv/bin
        ln -sf "$(command -v python3)" /opt/venv/bin/python3
        ln -sf "$(command -v python3)" /opt/venv/bin/python
    fi
    exit 0
fi

python3 -m venv /opt/venv
/opt/venv/bin/python3 -m pip install --no-cache-dir --upgrade pip >/dev/null 2>&1 || true
# A wheel of the framework in the wheelhouse wins over the index (it is why the user passed it).
local_wheel=""
for w in "$WHEELS"/*.whl; do
    [ -e "$w" ] || continue
    name=$(basename "$w" | cut -d- -f1 | tr 'A-Z-' 'a-z_')
    want=$(echo "$PACKAGE" | cut -d= -f1 | cut -d'<' -f1 | cut -d'>' -f1 | tr 'A-Z-' 'a-z_')
    if [ "$name" = "$want" ]; then local_wheel="$w"; fi
done
if [ -n "$local_wheel" ]; then
    echo "harness: installing $local_wheel from the wheelhouse"
    /opt/venv/bin/python3 -m pip install --no-cache-dir --find-links "$WHEELS" "$local_wheel"
else
    echo "harness: installing $PACKAGE from the package index"
    /opt/venv/bin/python3 -m pip install --no-cache-dir --find-links "$WHEELS" "$PACKAGE"
fi
/opt/venv/bin/python3 -c "import $MODULE; print('harness: $MODULE', $MODULE.__version__)"
