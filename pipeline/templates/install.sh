#!/bin/sh
# Installs edgecnn and this bundle's model into a venv without any network access, then
# checks the model on this device with `edgecnn verify`.
#
#   sh install.sh [VENV]        (default VENV: ~/edgecnn)
#
# Exit status: 0 installed and verified; 1 installed, but the model failed `edgecnn verify`
# here; 2 something is missing from this system (the message says what to install).
set -eu
here=$(unset CDPATH; cd -P -- "$(dirname -- "$0")" >/dev/null && pwd)
venv=${1:-$HOME/edgecnn}

fail() {
    echo "install.sh: $*" >&2
    exit 2
}

command -v python3 >/dev/null 2>&1 || fail "python3 is missing: sudo apt install python3"

# What this bundle installs on this system's Python, from bundle.json: six lines (numpy
# from the OS or not, whether pip may use the package index, edgecnn's wheel, the other
# requirements, the model file, the interpreter with no wheel here), or one line starting
# with "error:".
plan=$(python3 - "$here/bundle.json" <<'PY' 2>/dev/null
import json, platform, sys

try:
    m = json.load(open(sys.argv[1]))
    version = "%d.%d" % sys.version_info[:2]
    machine = platform.machine()
    if sys.version_info < (3, 10):
        print("error: edgecnn needs Python 3.10 or newer; this system has " + version)
    elif m["machine"] and machine != m["machine"]:
        print("error: this bundle is for %s (%s); this system is %s"
              % (m["target_name"], m["machine"], machine))
    elif m["machine"] and version not in m["pythons"]:
        print("error: this bundle has wheels for Python %s; this system has %s (edgecnn "
              "bundle --python %s makes one for it)"
              % (", ".join(m["pythons"]), version, version))
    else:
        entry = m["pythons"].get(version, {"requirements": ["edgecnn"], "model": m["model"]})
        print(int(m["system_numpy"]))
        print("" if m["machine"] else "index")
        print(m["edgecnn_wheel"])
        print(" ".join(r for r in entry["requirements"] if r != "edgecnn"))
        print(entry["model"])
        print(entry.get("missing", ""))
except Exception as e:  # a damaged bundle: one line, not a traceback
    print("error: %s/bundle.json is unreadable (%s); copy the bundle again"
          % (sys.argv[1].rsplit("/", 2)[-2], type(e).__name__))
PY
) || fail "python3 cannot read bundle.json"
case $plan in error:*) fail "${plan#error: }" ;; esac
line() { echo "$plan" | sed -n "$1p"; }
system_numpy=$(line 1)
use_index=$(line 2)
wheel=$here/wheels/$(line 3)
requirements=$(line 4)
model=$(line 5)
missing=$(line 6)
[ -f "$wheel" ] || fail "$wheel is missing; copy the bundle again"

venv_args=
if [ "$system_numpy" = 1 ]; then
    python3 -c "import numpy" 2>/dev/null ||
        fail "numpy is missing: sudo apt install python3-numpy (no numpy wheel exists for this system)"
fi
if [ "$system_numpy" = 1 ] || [ "$use_index" = index ]; then
    # The venv sees the system's packages: numpy, and an interpreter if one is installed.
    venv_args=--system-site-packages
fi
if [ -e "$venv" ]; then
    "$venv/bin/python" -m pip --version >/dev/null 2>&1 ||
        fail "$venv exists and is not a working venv; remove it or name another: sh install.sh DIR"
    if [ -n "$venv_args" ] && ! grep -q "^include-system-site-packages = true" "$venv/pyvenv.cfg"; then
        fail "$venv does not see the system's numpy (made without --system-site-packages); remove it or name another"
    fi
else
    if ! python3 -m venv $venv_args "$venv" >/dev/null 2>&1; then
        rm -rf "$venv"  # half made: a rerun must not take it for a venv
        fail "cannot create a venv in $venv: sudo apt install python3-venv"
    fi
fi
pip() { "$venv/bin/python" -m pip --disable-pip-version-check "$@"; }
index_args=--no-index
[ "$use_index" != index ] || index_args=  # generic: numpy and Typer may come from the index
# The same version with other code must replace the installed one.
pip uninstall -q -y edgecnn >/dev/null 2>&1 || true
# edgecnn by its path, never by name: a package index must not offer another edgecnn.
# shellcheck disable=SC2086 # one requirement per word
pip install -q $index_args --find-links "$here/wheels" "$wheel" $requirements ||
    fail "pip install from $here/wheels failed (its message is above)"
echo "Installed edgecnn into $venv (edgecnn${requirements:+ $requirements})"
[ -z "$missing" ] ||
    echo "No $missing wheel exists for this Python: the numpy backend runs $model."

if [ ! -e "$here/model/$model" ]; then
    fail "model/$model is missing from this bundle"
fi
# Exit 3: no interpreter for the file's format here (not a damaged file: verify says that).
unavailable=0
"$venv/bin/python" -c "import sys
from edgecnn.runtime import load_classifier
from edgecnn.runtime.errors import BackendUnavailable
try:
    load_classifier(sys.argv[1])
except BackendUnavailable:
    sys.exit(3)
except Exception:
    pass" "$here/model/$model" 2>/dev/null || unavailable=$?
if [ "$unavailable" = 3 ] && [ -e "$here/model/weights.npz" ] && [ "$model" != weights.npz ]; then
    echo "No interpreter here loads $model: the numpy backend runs weights.npz instead."
    model=weights.npz
fi

echo "Checking model/$model on this device: edgecnn verify"
status=0
"$venv/bin/edgecnn" verify "$here/model/$model" || status=$?
if [ "$status" -ne 0 ]; then
    echo "install.sh: edgecnn is installed, but model/$model did not pass edgecnn verify here" >&2
    exit 1
fi
"$venv/bin/python" -c "import PIL" 2>/dev/null ||
    echo "For picture files (PNG, JPEG) install Pillow: sudo apt install python3-pil"
echo
echo "Classify a picture:"
echo "  $venv/bin/edgecnn predict $here/model/$model picture.png"
