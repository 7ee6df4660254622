#!/usr/bin/env bash
# Front door of harness: install, demo, test, and seed 004's check | build | setup | run.
# Every subcommand answers -h. Fails loudly, naming the step that failed.
set -Eeuo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
VENV="${HARNESS_VENV:-$ROOT/.venv}"
PYTHON_BIN="${PYTHON:-python3}"
STEP="starting"

on_error() {
    local code=$?
    echo "setup_environment.sh: step failed: ${STEP} (exit ${code})" >&2
    exit "$code"
}
trap on_error ERR

say() { printf '\033[1m==> %s\033[0m\n' "$*"; }
step() { STEP="$*"; say "$*"; }

usage() {
    cat <<'EOF'
Usage: ./setup_environment.sh COMMAND [ARGS]

Set-up:
  install            make .venv and install harness with what the demo and tests need
  demo               install if needed, bring up a Docker engine (as test does), scaffold a
                     demo competition, run baseline and optimization (3 seeds each) in
                     containers, compare, print where the report is
  test               install dev dependencies, bring up a Docker engine where one can be
                     had, build the images, run the whole test suite

Seed 004's interface (forwarded to the harness CLI):
  check              check Docker, GPUs, disk, cgroups, images (harness check)
  build              build the framework images (harness build)
  setup EXPERIMENT   build an experiment's image (harness setup)
  run MODE...        run modes of the experiment in the current folder (harness run)

Each command answers -h. Environment: HARNESS_VENV (default .venv), PYTHON (default python3),
HARNESS_BUILD_FLAGS (extra flags for `harness build`; detected when unset).
EOF
}

# ------------------------------------------------------------------ helpers
activate() {
    # shellcheck disable=SC1091
    source "$VENV/bin/activate"
}

have_venv() { [ -x "$VENV/bin/harness" ]; }

ensure_installed() {
    if have_venv; then activate; else cmd_install; fi
}

# Builds on hosts without registry access need the bootstrap base image, a local
# wheel folder for torch, the host's CA bundle (TLS interception) and host networking.
detect_build_flags() {
    if [ -n "${HARNESS_BUILD_FLAGS:-}" ]; then echo "$HARNESS_BUILD_FLAGS"; return; fi
    local flags=""
    if ! timeout 15 "$PYTHON_BIN" - <<'PY' >/dev/null 2>&1
import urllib.request, urllib.error
try:
    urllib.request.urlopen("https://registry-1.docker.io/v2/", timeout=10)
except urllib.error.HTTPError as e:
    raise SystemExit(0 if e.code == 401 else 1)
except Exception:
    raise SystemExit(1)
PY
    then
        flags="--bootstrap --build-network host"
        local links cert
        links=$(pip config list 2>/dev/null | sed -n "s/^global.find-links='\(.*\)'$/\1/p" | head -n1)
        cert=$(pip config list 2>/dev/null | sed -n "s/^global.cert='\(.*\)'$/\1/p" | head -n1)
        cert="${PIP_CERT:-$cert}"
        [ -n "$links" ] && [ -d "$links" ] && flags="$flags --wheelhouse $links"
        [ -n "$cert" ] && [ -f "$cert" ] && flags="$flags --ca-bundle $cert"
    fi
    echo "$flags"
}


# `harness build --bootstrap` makes its base image with mmdebstrap (Debian's package).
ensure_bootstrap_tool() {
    case " $1 " in *" --bootstrap "*) ;; *) return 0;; esac
    command -v mmdebstrap >/dev/null 2>&1 && return 0
    local sudo=""
    [ "$(id -u)" -ne 0 ] && sudo="sudo -n"
    step "install mmdebstrap (bootstrap base image without a registry)"
    DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq mmdebstrap >/dev/null \
        || { $sudo apt-get update -qq && DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq mmdebstrap >/dev/null; }
}

# Build the framework images, with the offline flags where no registry answers.
build_images() {
    local framework="$1" flags
    flags="$(detect_build_flags)"
    ensure_bootstrap_tool "$flags"
    step "build the framework images ($framework)"
    # shellcheck disable=SC2086
    harness build --framework "$framework" $flags
}

docker_answers() { command -v docker >/dev/null 2>&1 && docker info >/dev/null 2>&1; }

# ENGINE_REASON / ENGINE_FIX: why no engine could be had and the command that fixes it,
# set by bring_up_engine when it fails; `demo` prints them at its start and in its summary.
ENGINE_REASON=""
ENGINE_FIX=""
no_engine() { ENGINE_REASON="$1"; ENGINE_FIX="$2"; return 1; }

# Make a Docker engine answer: install Debian's docker.io when dockerd is missing, start it,
# wait for it. Needs root or passwordless sudo to install or start; never touches an engine
# that DOCKER_HOST names (it may be another machine's).
ensure_engine() {
    docker_answers && return 0
    case "${DOCKER_HOST:-unix:///var/run/docker.sock}" in
        unix:///var/run/docker.sock|unix:///run/docker.sock) ;;
        *) no_engine "DOCKER_HOST=$DOCKER_HOST does not answer" \
                     "start the engine it names, or \`unset DOCKER_HOST\` to use this machine's own"; return 1;;
    esac
    if [ -S /var/run/docker.sock ] && docker info 2>&1 | grep -qi "permission denied"; then
        no_engine "user $(id -un) may not use /var/run/docker.sock" \
                  "sudo usermod -aG docker $(id -un), then log in again"; return 1
    fi
    local sudo=""
    if [ "$(id -u)" -ne 0 ]; then
        if sudo -n true 2>/dev/null; then sudo="sudo -n"; else
            no_engine "no Docker engine answers, and installing or starting one needs root (no passwordless sudo)" \
                      "sudo apt-get install -y docker.io && sudo systemctl start docker && sudo usermod -aG docker $(id -un)"
            return 1
        fi
    fi
    if ! command -v dockerd >/dev/null 2>&1; then
        if ! command -v apt-get >/dev/null 2>&1; then
            no_engine "no Docker engine is installed, and this system has no apt-get to install docker.io" \
                      "install Docker Engine (https://docs.docker.com/engine/install/), then rerun"; return 1
        fi
        step "install the Docker engine (Debian package docker.io)"
        if ! { $sudo apt-get update -qq && DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq docker.io; } \
                >/tmp/harness-apt.log 2>&1; then
            no_engine "installing docker.io failed (see /tmp/harness-apt.log)" "sudo apt-get install -y docker.io"
            return 1
        fi
    fi
    start_engine "$sudo"
}

start_engine() {
    local sudo="$1"
    step "start the Docker engine"
    if command -v systemctl >/dev/null 2>&1 && $sudo systemctl start docker >/dev/null 2>&1 && docker_answers; then
        return 0
    fi
    # Sandboxes and CI containers have no systemd, and often no iptables.
    $sudo sh -c 'nohup dockerd --iptables=false --ip6tables=false >/tmp/harness-dockerd.log 2>&1 &'
    say "waiting for dockerd (up to 60 s)"
    for _ in $(seq 1 60); do
        docker_answers && return 0
        sleep 1
    done
    if $sudo docker info >/dev/null 2>&1; then
        no_engine "dockerd runs, but user $(id -un) may not use its socket" \
                  "sudo usermod -aG docker $(id -un), then log in again"; return 1
    fi
    no_engine "dockerd did not come up within 60 s (its log: /tmp/harness-dockerd.log)" \
              "read /tmp/harness-dockerd.log; \`harness check\` says what else is missing"
}

# The one engine bring-up that `demo` and `test` share: engine, then the framework images
# (built with the no-registry flags where no registry answers).
bring_up_engine() {
    local framework="$1"
    ensure_engine || return 1
    # A failed build is a real error, not a missing engine: stop here, naming the step.
    build_images "$framework" || { echo "setup_environment.sh: step failed: $STEP" >&2; exit 1; }
}

# ------------------------------------------------------------------ commands
cmd_install() {
    case "${1:-}" in -h|--help)
        echo "Usage: ./setup_environment.sh install [--dev]"
        echo "Make $VENV and install harness (editable), PyTorch (CPU) and, with --dev, TensorFlow,"
        echo "Ray and the test tools."
        return 0;;
    esac
    local extras="host,pytorch"
    [ "${1:-}" = "--dev" ] && extras="host,pytorch,tensorflow,ray,dev"
    step "create the virtual environment $VENV"
    [ -x "$VENV/bin/python" ] || "$PYTHON_BIN" -m venv "$VENV"
    activate
    step "install harness[$extras] into $VENV"
    python -m pip install -q --upgrade pip >/dev/null
    python -m pip install -q -e "$ROOT[$extras]"
    say "installed: $(harness --version)"
}

# A warning nobody can miss: a framed block on stderr (red when stderr is a terminal).
loud() {
    local on="" off=""
    [ -t 2 ] && on=$'\033[1;31m' && off=$'\033[0m'
    {
        printf '%s%s%s\n' "$on" "!!! ==================================================================== !!!" "$off"
        local line
        for line in "$@"; do printf '%s!!! %s%s\n' "$on" "$line" "$off"; done
        printf '%s%s%s\n' "$on" "!!! ==================================================================== !!!" "$off"
    } >&2
}

cmd_demo() {
    case "${1:-}" in -h|--help)
        echo "Usage: ./setup_environment.sh demo [--backend auto|docker|local]"
        echo "Install if needed, bring up a Docker engine as \`test\` does (install docker.io when dockerd is"
        echo "missing and you are root or have sudo, start it, build the images), scaffold"
        echo "experiments/kaggle_demo_birdclef, run baseline and optimization (3 seeds each, interleaved) in"
        echo "containers, compare them, and print where the report is. When no engine can be had, the runs"
        echo "are local processes and the demo says so, with the reason and the fix, at its start and end."
        return 0;;
    esac
    local backend="auto" started=$SECONDS isolation
    [ "${1:-}" = "--backend" ] && backend="${2:?--backend needs a value}"
    case "$backend" in auto|docker|local) ;; *)
        echo "setup_environment.sh demo: --backend must be auto, docker or local (got '$backend')" >&2; exit 2;;
    esac
    ensure_installed
    if [ "$backend" = "local" ]; then
        isolation="as local processes (--backend local): no container isolation"
    elif bring_up_engine pytorch; then
        backend="docker"
        isolation="in Docker containers (engine $(docker version --format '{{.Server.Version}}' 2>/dev/null || echo '?'))"
    elif [ "$backend" = "docker" ]; then
        echo "Error: no Docker engine: $ENGINE_REASON" >&2
        echo "hint: $ENGINE_FIX (or run the demo with --backend local)" >&2
        exit 1
    else
        backend="local"
        isolation="as local processes: no container isolation, because $ENGINE_REASON; fix: $ENGINE_FIX"
        loud "NO DOCKER ENGINE: the demo will run as local processes, with no container isolation," \
             "because $ENGINE_REASON." \
             "fix: $ENGINE_FIX; then rerun ./setup_environment.sh demo"
    fi
    local exp="$ROOT/experiments/kaggle_demo_birdclef"
    if [ -d "$exp" ]; then
        say "reusing $exp (delete it for a fresh demo)"
    else
        step "scaffold the demo competition"
        harness new demo_birdclef --framework pytorch --root "$ROOT/experiments"
    fi
    cd "$exp"
    step "run baseline and optimization (the config's seeds, interleaved; backend $backend)"
    harness run baseline optimization --backend "$backend"
    step "compare"
    harness compare
    local took=$((SECONDS - started))
    say "Demo finished in $((took / 60)) min $((took % 60)) s."
    if [ "$backend" = "local" ] && [ -n "$ENGINE_REASON" ]; then
        loud "the demo ran $isolation"
    else
        say "The runs ran $isolation."
    fi
    say "Report: $exp/results/comparison/report.html"
}

cmd_test() {
    case "${1:-}" in -h|--help)
        echo "Usage: ./setup_environment.sh test [PYTEST ARGS]"
        echo "Install dev dependencies, start a Docker engine where one can be started, build the"
        echo "framework images, and run the whole test suite. With CI=true, Docker tests fail instead"
        echo "of skipping when no engine answers."
        return 0;;
    esac
    cmd_install --dev
    if bring_up_engine all; then
        export HARNESS_REQUIRE_DOCKER=1
    else
        echo "No Docker engine: $ENGINE_REASON; fix: $ENGINE_FIX. Docker tests will be skipped." >&2
        if [ "${CI:-}" = "true" ]; then
            export HARNESS_REQUIRE_DOCKER=1  # CI promised an engine: its tests must fail, not skip
        fi
    fi
    step "run the test suite"
    cd "$ROOT"
    python -m pytest -q -p no:cacheprovider "$@"
}

forward() {
    ensure_installed
    harness "$@"
}

cmd_setup() {
    case "${1:-}" in -h|--help|"")
        echo "Usage: ./setup_environment.sh setup EXPERIMENT   (e.g. kaggle_birdclef_2023)"
        echo "Build the experiment's image (harness setup)."
        [ -n "${1:-}" ] && return 0 || return 2;;
    esac
    local dir="$1"; shift
    [ -d "$dir" ] || dir="$ROOT/experiments/$1"
    forward setup --experiment "$dir" "$@"
}

main() {
    local cmd="${1:-}"
    [ $# -gt 0 ] && shift
    case "$cmd" in
        install) cmd_install "$@";;
        demo) cmd_demo "$@";;
        test) cmd_test "$@";;
        check) forward check "$@";;
        build)
            case "${1:-}" in -h|--help) forward build --help; return 0;; esac
            ensure_installed
            local flags; flags="$(detect_build_flags)"
            ensure_bootstrap_tool "$flags"
            # shellcheck disable=SC2086
            harness build "$@" $flags;;
        setup) cmd_setup "$@";;
        run) forward run "$@";;
        -h|--help|help) usage;;
        "") usage; exit 2;;
        *) echo "setup_environment.sh: unknown command '$cmd'" >&2; usage >&2; exit 2;;
    esac
}

main "$@"
