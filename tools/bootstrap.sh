#!/usr/bin/env bash
# Set up edgecnn on a fresh Debian or Ubuntu machine, then run the main job or the tests.
#
#   bash tools/bootstrap.sh run      # edgecnn run: train, evaluate, export, bench, report
#   bash tools/bootstrap.sh test     # the full test suite
#   bash tools/bootstrap.sh refresh  # newest allowed versions into constraints.txt, then test
#
# Installs what is missing with apt (Python's venv, the Fashion-MNIST package, a C
# compiler, and for the tests Chromium, GCC for Arm, QEMU and Ansible), creates .venv with every extra (and for the tests the development
# tools), and is safe to run again: each step is skipped once done. Extra arguments go
# to 'edgecnn run' or to pytest.
#
# Both modes install the exact versions in constraints.txt (pip install -c), the set CI
# runs; 'refresh' installs the newest versions pyproject.toml allows in a fresh temporary
# venv, freezes them into constraints.txt (only if that install succeeded), checks which
# Pythons have a wheel for every pin, and then does what 'test' does on the new set.
set -euo pipefail
cd "$(dirname "$0")/.."
mode=${1:-run}
shift || true
case "$mode" in run | test | refresh) ;; *)
    echo "usage: bash tools/bootstrap.sh run|test|refresh [extra arguments]" >&2
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
if [ "$mode" != run ]; then
    command -v chromium >/dev/null || packages+=(chromium) # the report's real-browser test
    # The C library on an emulated Cortex-M4: GCC for Arm, its C library, QEMU.
    command -v arm-none-eabi-gcc >/dev/null || packages+=(gcc-arm-none-eabi)
    [ -d /usr/lib/arm-none-eabi/newlib ] || packages+=(libnewlib-arm-none-eabi)
    command -v qemu-system-arm >/dev/null || packages+=(qemu-system-arm)
    command -v ffmpeg >/dev/null || packages+=(ffmpeg) # makes the videos the stream tests read
    command -v ansible-playbook >/dev/null || packages+=(ansible) # examples/fleet's playbooks on emulated devices
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
[ "$mode" != run ] && extras=all,dev
pip_install() { "$1" -m pip install -q --disable-pip-version-check "${@:2}"; }

# The Pythons constraints.txt was checked on (its '# pythons:' line, written by refresh).
pinned_pythons() { sed -n 's/^# pythons: //p' constraints.txt; }

if [ "$mode" = refresh ]; then
    fresh=$(mktemp -d)
    trap 'rm -rf "$fresh" constraints.txt.new' EXIT
    echo "==> refresh: pip install -e .[$extras] in a fresh venv, newest allowed versions"
    python3 -m venv "$fresh/venv"
    pip_install "$fresh/venv/bin/python" --upgrade pip
    pip_install "$fresh/venv/bin/python" -e ".[$extras]"
    "$fresh/venv/bin/python" -m pip freeze --exclude-editable --disable-pip-version-check >"$fresh/pins"
    # Which Pythons have a wheel for every pin on Linux x86_64 (glibc 2.35, Ubuntu 22.04,
    # or newer): pip resolves the whole set for each without installing anything.
    platforms=()
    for glibc in $(seq 35 -1 17); do platforms+=(--platform "manylinux_2_${glibc}_x86_64"); done
    platforms+=(--platform manylinux2014_x86_64 --platform manylinux2010_x86_64 --platform manylinux1_x86_64)
    pythons=()
    for version in 3.11 3.12 3.13; do
        if "$fresh/venv/bin/python" -m pip install -q --disable-pip-version-check --dry-run \
            --ignore-installed --only-binary=:all: --python-version "$version" "${platforms[@]}" \
            --target "$fresh/target" -c "$fresh/pins" ".[$extras]" >"$fresh/check.log" 2>&1; then
            pythons+=("$version")
        else
            echo "note: not every pin has a wheel for Python $version; bootstrap installs without constraints there"
        fi
    done
    "$fresh/venv/bin/python" - "$fresh/pins" "${pythons[*]}" >constraints.txt.new <<'PY'
import platform
import sys

pins, pythons = sys.argv[1], sys.argv[2]
libc = " ".join(platform.libc_ver()) or "no glibc"
print(f"""\
# Exact versions of every package in the venv that `bash tools/bootstrap.sh run|test` (and
# so CI) installs: `pip install -c constraints.txt -e ".[all,dev]"`. pyproject.toml keeps
# lower bounds only, for users; this file makes CI and a newcomer's setup install the same
# set, so an upstream release changes nothing here until this file changes.
#
# Frozen on Python {platform.python_version()}, {platform.system()} {platform.machine()} ({libc}), with
# `pip freeze --exclude-editable` (which leaves out pip, setuptools and wheel) of a fresh
# venv after `pip install -e ".[all,dev]"` without constraints. pyproject asks for
# tensorflow-cpu on Linux x86_64 and tensorflow elsewhere; only the first is pinned.
# Every pin has a wheel on Linux x86_64 for the Pythons below (checked with
# `pip install --dry-run --only-binary=:all: --python-version X`); on another Python or
# machine bootstrap.sh says so and installs without this file.
# pythons: {pythons}
#
# Refresh (newest versions pyproject allows, frozen here, then the full suite on them):
#   bash tools/bootstrap.sh refresh""")
sys.stdout.write(open(pins).read())
PY
    mv -f constraints.txt.new constraints.txt # a rename: the old file or the new, never half
    rm -rf "$fresh"
    trap - EXIT
    echo "==> constraints.txt refreshed ($(grep -c '==' constraints.txt) pins; git diff constraints.txt shows what moved)"
fi

# The exact versions, where they were checked to install: Linux x86_64 and a Python on
# the file's '# pythons:' line.
constraints=(-c constraints.txt)
version=$(.venv/bin/python -c 'import sys; print("%d.%d" % sys.version_info[:2])')
case " $(pinned_pythons) " in *" $version "*) ;; *) constraints=() ;; esac
[ "$(uname -s) $(uname -m)" = "Linux x86_64" ] || constraints=()
if [ ${#constraints[@]} -eq 0 ]; then
    echo "note: constraints.txt is checked for Python $(pinned_pythons) on Linux x86_64, not Python $version on $(uname -s) $(uname -m): installing the newest allowed versions instead"
fi
echo "==> pip install ${constraints[*]} -e .[$extras]"
pip_install .venv/bin/python --upgrade pip
pip_install .venv/bin/python "${constraints[@]}" -e ".[$extras]"

if [ "$mode" = run ]; then
    exec .venv/bin/edgecnn run "$@"
else
    echo "==> ruff check, ruff format --check, mypy"
    .venv/bin/ruff check .
    .venv/bin/ruff format --check .
    .venv/bin/mypy
    exec .venv/bin/pytest "$@"
fi
