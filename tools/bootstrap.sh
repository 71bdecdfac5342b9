#!/usr/bin/env bash
# Set up edgecnn on a fresh Debian or Ubuntu machine, then run the main job or the tests.
#
#   bash tools/bootstrap.sh run    # edgecnn run: train, evaluate, export, bench, report
#   bash tools/bootstrap.sh test   # the full test suite
#
# Installs what is missing with apt (Python's venv, the Fashion-MNIST package, and for the
# tests Chromium), creates .venv with every extra (and for the tests the development
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
if [ "$mode" = test ] && ! command -v chromium >/dev/null; then
    packages+=(chromium) # the report's real-browser test
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
