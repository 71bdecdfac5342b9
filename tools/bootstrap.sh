#!/usr/bin/env bash
# Set up edgecnn on a fresh Debian or Ubuntu machine, then run the main job or the tests.
#
#   bash tools/bootstrap.sh run    # edgecnn run: train, evaluate, export, bench, report
#   bash tools/bootstrap.sh test   # the full test suite
#
# Installs what is missing with apt (Python's venv, the Fashion-MNIST package, a C
# compiler, and for the tests Chromium, GCC for Arm and QEMU), creates .venv with every extra (and for the tests the development
# tools), and is safe to run again: each step is skipped once done. Extra arguments go
# to 'edgecnn run' or to pytest.
set -euo pipefail
cd "$(dirname "$0")/.."
mode=${1:-run}
shift || true
case "$mode" in run | test) ;; *)
    echo "usage: bash tools/bootstrap.sh run|test [extra arguments]" >&2
    exit 2
    ;;
esac

as_root() { if [ "$(id -u)" -eq 0 ]; then "$@"; else sudo "$@"; fi; }

packages=()
command -v python3 >/dev/null || packages+=(python3)
python3 -c 'import ensurepip, venv' 2>/dev/null || packages+=(python3-venv python3-pip)
if [ -z "${EDGECNN_DATA_DIR:-}" ] && [ ! -f /usr/share/datasets/fashion-mnist/t10k-labels-idx1-ubyte.gz ]; then
    packages+=(dataset-fashion-mnist)
fi
command -v cc >/dev/null || packages+=(gcc) # builds the generated C library
if [ "$mode" = test ]; then
    command -v chromium >/dev/null || packages+=(chromium) # the report's real-browser test
    # The C library on an emulated Cortex-M4: GCC for Arm, its C library, QEMU.
    command -v arm-none-eabi-gcc >/dev/null || packages+=(gcc-arm-none-eabi)
    [ -d /usr/lib/arm-none-eabi/newlib ] || packages+=(libnewlib-arm-none-eabi)
    command -v qemu-system-arm >/dev/null || packages+=(qemu-system-arm)
fi
if [ ${#packages[@]} -gt 0 ]; then
    echo "==> apt-get install ${packages[*]}"
    as_root apt-get update -qq
    as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${packages[@]}"
fi

if [ ! -x .venv/bin/python ]; then
    echo "==> creating .venv"
    python3 -m venv .venv
fi
extras=all
[ "$mode" = test ] && extras=all,dev
echo "==> pip install -e .[$extras]"
.venv/bin/python -m pip install -q --disable-pip-version-check --upgrade pip
.venv/bin/python -m pip install -q --disable-pip-version-check -e ".[$extras]"

if [ "$mode" = run ]; then
    exec .venv/bin/edgecnn run "$@"
else
    echo "==> ruff check, ruff format --check, mypy"
    .venv/bin/ruff check .
    .venv/bin/ruff format --check .
    .venv/bin/mypy
    exec .venv/bin/pytest "$@"
fi
