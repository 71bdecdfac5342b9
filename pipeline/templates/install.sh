#!/bin/sh
# Installs edgecnn into a venv without any network access, then puts this bundle's model
# into the venv's store (VENV/models/NAME/VERSION, with `edgecnn models add`, which checks
# it on this device with `edgecnn verify` and makes it the current model), and links
# edgecnn into ~/.local/bin.
#
#   sh install.sh [VENV] [--service] [--allow-unsigned]        (default VENV: ~/edgecnn)
#
# --service also writes the systemd user unit ~/.config/systemd/user/edgecnn-serve.service
# (edgecnn serve on the store's current model, 127.0.0.1:8080) and says how to enable it;
# serve follows edgecnn update by itself. The store is the venv's: install.sh sets
# EDGECNN_HOME to VENV for what it runs, and so does the unit.
#
# Before it runs or installs anything, it checks the bundle: every file listed in
# SHA256SUMS must match its SHA-256 (sha256sum -c), no other file may be there, and none
# may be a symlink. This script cannot vouch for itself: compare the archive's SHA-256,
# which `edgecnn bundle` printed, before running it.
#
# Signed bundles (edgecnn bundle --key) carry keys/owner.pub and SHA256SUMS.sig, checked
# (ssh-keygen -Y verify) before anything is made or installed: SHA256SUMS.sig must be
# keys/owner.pub's signature, and on a venv with VENV/keys/allowed_signers, a key it trusts
# must have signed it. A venv without one gets one that trusts keys/owner.pub (edgecnn
# update then takes only update files that key signed). A venv that trusts an owner key
# refuses an unsigned bundle, before anything is installed, unless --allow-unsigned is
# given; a venv that trusts none installs it and trusts no key.
#
# Exit status: 0 installed and verified; 1 installed, but the model failed `edgecnn verify`
# here (the store's current model is unchanged); 2 the bundle is damaged, incomplete,
# signed by another key or unsigned for a venv that trusts a key, or something is missing
# from this system or cannot be written (the message says what to do).
#
# It needs GNU coreutils' sha256sum (for --strict), as Debian and Raspberry Pi OS have;
# BusyBox's will not do. Every Python it runs runs isolated (python3 -I): a json.py or an
# edgecnn/ folder in the current folder is never imported.
set -eu

fail() {
    echo "install.sh: $*" >&2
    exit 2
}

here=$(unset CDPATH; cd -P -- "$(dirname -- "$0")" >/dev/null && pwd) ||
    fail "cannot enter the bundle's folder"

usage="sh install.sh [VENV] [--service] [--allow-unsigned]"
venv=
service=0
allow_unsigned=0
for arg in "$@"; do
    case $arg in
        --service) service=1 ;;
        --allow-unsigned) allow_unsigned=1 ;;
        -*) fail "unknown option $arg ($usage)" ;;
        *)
            [ -z "$venv" ] || fail "one VENV only ($usage)"
            venv=$arg
            ;;
    esac
done
venv=${venv:-$HOME/edgecnn}

# The first thing wrong with the bundle in $here, or nothing. Call it in a subshell: it cds.
bundle_problem() {
    cd "$here" || { echo "cannot enter $here"; return; }
    if [ ! -f SHA256SUMS ] || [ -L SHA256SUMS ]; then
        echo "SHA256SUMS is missing"
        return
    fi
    # find and grep below read one name a line: a name with a line break in it could
    # pass for two listed files.
    if [ -n "$(LC_ALL=C find . -name '*
*' | sed -n 1p)" ]; then
        echo "a file name holds a line break, which no bundle's does"
        return
    fi
    # Each line: a digest, two spaces, a plain path at most one folder deep, no part of
    # which starts with a dot (never absolute, never "..") or a dash (never an option).
    # edgecnn bundle checks the same.
    bad=$(LC_ALL=C grep -v -E -e '^[0-9a-f]{64}  ([A-Za-z0-9_+][A-Za-z0-9._+-]*/)?[A-Za-z0-9_+][A-Za-z0-9._+-]*$' SHA256SUMS | sed -n 1p)
    if [ -n "$bad" ] || [ ! -s SHA256SUMS ]; then
        echo "SHA256SUMS holds a line that is not a SHA-256 and a plain path in the bundle: ${bad:-(empty)}"
        return
    fi
    link=$(find . -type l | sed -n 1p)
    if [ -n "$link" ]; then
        echo "${link#./} is a symlink, which no bundle holds"
        return
    fi
    listed=$(sed 's/^[0-9a-f]*  //' SHA256SUMS)
    if [ "$(echo "$listed" | LC_ALL=C sort -u | wc -l)" -ne "$(echo "$listed" | wc -l)" ]; then
        echo "SHA256SUMS lists a file twice"
        return
    fi
    for path in $listed; do  # plain paths, checked above: no spaces, no patterns
        if [ ! -f "$path" ]; then
            echo "$path is missing"
            return
        fi
    done
    if [ -e SHA256SUMS.sig ] && { [ ! -f SHA256SUMS.sig ] || [ ! -f keys/owner.pub ]; }; then
        echo "SHA256SUMS.sig is not a file, or keys/owner.pub, the key it names, is missing"
        return
    fi
    # Every file (anything but a folder: pipes and devices too) must be listed; the
    # signature of SHA256SUMS cannot be.
    extra=$(LC_ALL=C find . ! -type d ! -path ./SHA256SUMS ! -path ./SHA256SUMS.sig | sed 's|^\./||' |
        LC_ALL=C grep -v -x -F -e "$listed" | sed -n 1p) || true
    if [ -n "$extra" ]; then
        echo "$extra is not one of its files (SHA256SUMS does not list it)"
        return
    fi
    folder=$(find . -type d ! -path . ! -path ./wheels ! -path ./model ! -path ./keys ! -path ./sample | sed -n 1p)
    if [ -n "$folder" ]; then
        echo "${folder#./} is not one of its folders"
        return
    fi
    if ! failed=$(LC_ALL=C sha256sum -c --strict --quiet SHA256SUMS 2>&1); then
        first=$(echo "$failed" | sed -n 's/: FAILED.*$//p' | sed -n 1p)
        echo "${first:-a file} does not match its SHA-256 in SHA256SUMS (damaged or edited)"
    fi
}

# A path as a shell word: quoted when it holds anything but safe characters.
quoted() {
    case $1 in
        '' | *[!A-Za-z0-9_./:@%+=,-]*) printf "'%s'" "$(printf '%s' "$1" | sed "s/'/'\\\\''/g")" ;;
        *) printf '%s' "$1" ;;
    esac
}

command -v sha256sum >/dev/null 2>&1 || fail "sha256sum is missing: sudo apt install coreutils"
# BusyBox's sha256sum has no --strict: without this, every bundle would "not match".
echo "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855  /dev/null" |
    LC_ALL=C sha256sum -c --strict --quiet >/dev/null 2>&1 || {
    echo "install.sh needs GNU coreutils' sha256sum (this one has no --strict, like BusyBox's): sudo apt install coreutils" >&2
    exit 2
}
problem=$(bundle_problem)
[ -z "$problem" ] || fail "this bundle is damaged or incomplete: $problem; copy the bundle again"
command -v python3 >/dev/null 2>&1 || fail "python3 is missing: sudo apt install python3"

# The signature, checked before anything is made or installed: SHA256SUMS.sig must be
# keys/owner.pub's, and a venv that trusts an owner key already takes only a bundle that
# key signed (an unsigned one only with --allow-unsigned).
allowed=$venv/keys/allowed_signers
signed=0
[ ! -f "$here/SHA256SUMS.sig" ] || signed=1
signed_by() {  # signed_by ALLOWED_SIGNERS: whether a key it trusts signed SHA256SUMS
    ssh-keygen -Y verify -f "$1" -I edgecnn-owner -n edgecnn-update \
        -s "$here/SHA256SUMS.sig" <"$here/SHA256SUMS" >/dev/null 2>&1
}
if [ "$signed" = 1 ]; then
    command -v ssh-keygen >/dev/null 2>&1 ||
        fail "this bundle is signed, and checking it needs ssh-keygen: sudo apt install openssh-client"
    # keys/owner.pub (its SHA-256 checked above): one OpenSSH public key line. The line
    # that trusts it is edgecnn.runtime.signing.allowed_signers_line's.
    pub=$here/keys/owner.pub
    if [ "$(grep -c '' "$pub")" != 1 ] ||
        ! LC_ALL=C grep -q -x -E '(ssh-ed25519|ecdsa-sha2-nistp[0-9]+|ssh-rsa) [A-Za-z0-9+/=]+( .*)?' "$pub"; then
        fail "keys/owner.pub is not an OpenSSH public key (damaged or edited); copy the bundle again"
    fi
    read -r kind blob _ <"$pub" || true
    owner_line="edgecnn-owner namespaces=\"edgecnn-update\" $kind $blob"
    signers=$(mktemp) || fail "cannot write a temporary file (mktemp failed)"
    printf '%s\n' "$owner_line" >"$signers" || { rm -f "$signers"; fail "cannot write $signers"; }
    good=1
    signed_by "$signers" || good=0
    rm -f "$signers"
    [ "$good" = 1 ] ||
        fail "SHA256SUMS.sig is not a signature by keys/owner.pub (damaged or edited); copy the bundle again"
    if [ -e "$allowed" ] && ! signed_by "$allowed"; then
        fail "this bundle is signed by a key that $allowed does not trust: make it with the owner's key (edgecnn bundle --key), or install it into another venv"
    fi
elif [ -e "$allowed" ] && [ "$allow_unsigned" = 0 ]; then
    fail "this device trusts an owner key ($allowed) and this bundle is not signed: make it with edgecnn bundle --key, or run install.sh --allow-unsigned"
fi

# Only now, every file checked, does anything read bundle.json. What this bundle installs
# on this system's Python: nine lines (numpy from the OS or not, whether pip may use the
# package index, edgecnn's wheel, the other requirements, the model file, the interpreter
# with no wheel here, the model's name and version in the store, the sample picture), or
# one line starting with "error:".
plan=$(python3 -I - "$here" <<'PY' 2>/dev/null
import json, os, platform, re, struct, sys

def plain(name):
    """A file or package name: no dash first (never an option), no space, no pattern."""
    pattern = r"[A-Za-z0-9_+][A-Za-z0-9._+-]*"
    return isinstance(name, str) and re.fullmatch(pattern, name) is not None

def check(m):
    """bundle.json must list what SHA256SUMS lists (which covers bundle.json itself)."""
    with open(os.path.join(sys.argv[1], "SHA256SUMS")) as f:
        sums = dict(reversed(line.rstrip("\n").split("  ", 1)) for line in f)
    del sums["bundle.json"]
    if m["files"] != sums:
        return "bundle.json and SHA256SUMS list other files"
    names = [m["edgecnn_wheel"], m["model"]] + [e["model"] for e in m["pythons"].values()]
    if not all(plain(n) for n in names):
        return "bundle.json names a file that is not a plain name"
    store = r"[A-Za-z0-9][A-Za-z0-9._-]{0,63}"
    if not all(isinstance(m[k], str) and re.fullmatch(store, m[k]) for k in ("name", "version")):
        return "bundle.json's name or version is not one a store takes"
    sample = m["sample"]
    if sample is not None and not (isinstance(sample, str) and sample.startswith("sample/")
                                   and plain(sample[7:]) and sample in sums):
        return "bundle.json names a sample picture it does not hold"
    requirements = [e["requirements"] for e in m["pythons"].values()]
    if not all(isinstance(rs, list) and all(map(plain, rs)) for rs in requirements):
        return "bundle.json names a requirement that is not a plain package name"
    if "wheels/" + m["edgecnn_wheel"] not in sums:
        return "bundle.json names a wheel it does not hold"
    for name in [m["model"]] + [e["model"] for e in m["pythons"].values()]:
        for path in ("model/" + name, "model/" + name + ".reference.npz"):
            if path not in sums:
                return "bundle.json names %s, which it does not hold" % path
    return None

try:
    m = json.load(open(os.path.join(sys.argv[1], "bundle.json")))
    version = "%d.%d" % sys.version_info[:2]
    machine = platform.machine()
    # 32-bit Raspberry Pi OS on a Pi 4 or 5 runs a 64-bit kernel: uname says aarch64,
    # this Python (and every wheel it takes) is 32-bit ARM. edgecnn update says the same.
    if struct.calcsize("P") == 4 and machine in ("aarch64", "arm64", "armv8l"):
        machine = "armv7l"
    problem = check(m)
    if problem:
        print("error: this bundle is damaged: %s; copy the bundle again" % problem)
    elif sys.version_info < (3, 10):
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
        print(m["name"])
        print(m["version"])
        print(m["sample"] or "")
except Exception as e:  # a damaged bundle: one line, not a traceback
    print("error: %s/bundle.json is unreadable (%s); copy the bundle again"
          % (os.path.basename(sys.argv[1]), type(e).__name__))
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
name=$(line 7)
version=$(line 8)
sample=$(line 9)

venv_args=
if [ "$system_numpy" = 1 ]; then
    python3 -I -c "import numpy" 2>/dev/null ||
        fail "numpy is missing: sudo apt install python3-numpy (no numpy wheel exists for this system)"
fi
if [ "$system_numpy" = 1 ] || [ "$use_index" = index ]; then
    # The venv sees the system's packages: numpy, and an interpreter if one is installed.
    venv_args=--system-site-packages
fi
if [ -e "$venv" ]; then
    "$venv/bin/python" -I -m pip --version >/dev/null 2>&1 ||
        fail "$venv exists and is not a working venv; remove it or name another: sh install.sh DIR"
    if [ -n "$venv_args" ] && ! grep -q "^include-system-site-packages = true" "$venv/pyvenv.cfg"; then
        fail "$venv does not see the system's numpy (made without --system-site-packages); remove it or name another"
    fi
else
    if ! python3 -I -m venv $venv_args "$venv" >/dev/null 2>&1; then
        rm -rf "$venv"  # half made: a rerun must not take it for a venv
        fail "cannot create a venv in $venv: sudo apt install python3-venv"
    fi
fi
venv=$(unset CDPATH; cd -P -- "$venv" >/dev/null && pwd) ||  # absolute: links and units name it
    fail "cannot enter $venv"
allowed=$venv/keys/allowed_signers
# The store and the keys are the venv's, whatever EDGECNN_HOME the user's shell has: every
# edgecnn below (and the unit) uses VENV/models and VENV/keys.
EDGECNN_HOME=$venv
export EDGECNN_HOME
pip() { "$venv/bin/python" -I -m pip --disable-pip-version-check "$@"; }
index_args=--no-index
[ "$use_index" != index ] || index_args=  # generic: numpy and Typer may come from the index
# The same version with other code must replace the installed one.
pip uninstall -q -y edgecnn >/dev/null 2>&1 || true
# edgecnn by its path, never by name: a package index must not offer another edgecnn.
# The requirements are plain names (python3 checked them, and this again): after "--",
# none can be an option.
for requirement in $requirements; do
    case $requirement in
        -* | *[!A-Za-z0-9._+-]*) fail "this bundle is damaged: it names $requirement as a requirement; copy the bundle again" ;;
    esac
done
# shellcheck disable=SC2086 # one requirement per word
pip install -q $index_args --find-links "$here/wheels" -- "$wheel" $requirements ||
    fail "pip install from $here/wheels failed (its message is above)"
echo "Installed edgecnn into $venv (edgecnn${requirements:+ $requirements})"
[ -z "$missing" ] ||
    echo "No $missing wheel exists for this Python: the numpy backend runs $model."

# Exit 3: no interpreter for the file's format here (not a damaged file: verify says that).
unavailable=0
"$venv/bin/python" -I -c "import sys
from edgecnn.runtime import load_classifier
from edgecnn.runtime.errors import BackendUnavailable
try:
    load_classifier(sys.argv[1])
except BackendUnavailable:
    sys.exit(3)
except Exception:
    pass" "$here/model/$model" 2>/dev/null || unavailable=$?
if [ "$unavailable" = 3 ] && [ -f "$here/model/weights.npz" ] && [ "$model" != weights.npz ]; then
    echo "No interpreter here loads $model: the numpy backend runs weights.npz instead."
    model=weights.npz
fi

# A reference edgecnn verify cannot read is the bundle's fault (exit 2, as verify's own),
# not the model's: say so before the store is touched.
"$venv/bin/python" -I -c "import sys
from edgecnn.runtime.verify import read_reference, reference_path
read_reference(reference_path(sys.argv[1]))" "$here/model/$model" 2>/dev/null ||
    fail "edgecnn is installed, but edgecnn verify could not check model/$model here: model/$model.reference.npz is unreadable"

# The version names the file the store gets: weights.npz when it runs instead.
version=${version%-*}-$(sha256sum <"$here/model/$model" | cut -c1-8)

# The owner's key, on the first signed install: the allowed_signers line its signature
# was checked with above.
if [ "$signed" = 1 ]; then
    key=$(ssh-keygen -l -f "$here/keys/owner.pub" 2>/dev/null | cut -d' ' -f2)
    if [ -e "$allowed" ]; then
        echo "Signed by the owner's key ($key), which $allowed trusts"
    else
        mkdir -p "$venv/keys" || fail "cannot make $venv/keys"
        printf '%s\n' "$owner_line" >"$allowed.new" || fail "cannot write $allowed.new"
        mv "$allowed.new" "$allowed" || fail "cannot write $allowed"
        echo "This venv now takes updates signed by the owner's key $key ($allowed)"
    fi
elif [ -e "$allowed" ]; then
    echo "This bundle is not signed (--allow-unsigned); $allowed is left as it is"
fi

# Into the store: edgecnn models add copies the model, its sidecar and reference into
# VENV/models/NAME/VERSION, checks them there with edgecnn verify (exit 1: failed, the
# current model unchanged; 2: could not check) and makes them the current model.
store=$venv/models/$name/$version
status=0
if [ -f "$store/$model" ] &&
    [ "$(sha256sum <"$store/$model")" = "$(sha256sum <"$here/model/$model")" ]; then
    echo "Checking model/$model on this device: $name $version is in the store already; edgecnn verify"
    "$venv/bin/edgecnn" verify "$store/$model" || status=$?
    if [ "$status" -eq 0 ]; then
        "$venv/bin/edgecnn" models use "$version" --name "$name" >/dev/null ||
            fail "edgecnn is installed, but edgecnn models use $version could not make it the current model"
    fi
else
    echo "Checking model/$model on this device: edgecnn models add puts it into the store as $name $version and runs edgecnn verify"
    "$venv/bin/edgecnn" models add "$here/model/$model" --name "$name" --version "$version" ||
        status=$?
fi
if [ "$status" -eq 2 ]; then  # could not read the model or its reference, or install them
    fail "edgecnn is installed, but edgecnn could not check model/$model here and put it into the store (the message above says why)"
elif [ "$status" -ne 0 ]; then
    echo "install.sh: edgecnn is installed, but model/$model did not pass edgecnn verify here; the store's current model is unchanged" >&2
    exit 1
fi
echo "The current model is $name $version ($store)"

# edgecnn on the PATH: ~/.local/bin, which Debian's ~/.profile puts on it when it exists.
edgecnn=$venv/bin/edgecnn
bin=$HOME/.local/bin
if [ -e "$bin/edgecnn" ] && [ ! -L "$bin/edgecnn" ]; then
    echo "$bin/edgecnn exists and is not a link: left as it is"
elif mkdir -p "$bin" 2>/dev/null && ln -sfn "$venv/bin/edgecnn" "$bin/edgecnn" 2>/dev/null; then
    echo "Linked $bin/edgecnn to $venv/bin/edgecnn"
    case ":${PATH:-}:" in
        *":$bin:"*) edgecnn=edgecnn ;;
        *) echo "$bin is not on your PATH: log in again (~/.profile adds it), or: export PATH=\"\$HOME/.local/bin:\$PATH\"" ;;
    esac
else
    echo "Could not link $bin/edgecnn; run $venv/bin/edgecnn"
fi

# --service: a systemd user unit for edgecnn serve on the store's current model.
if [ "$service" = 1 ]; then
    units=${XDG_CONFIG_HOME:-$HOME/.config}/systemd/user
    unit=$units/edgecnn-serve.service
    mkdir -p "$units" || fail "cannot make $units"
    # The venv's path in the unit's quoted ExecStart and Environment: % is systemd's (and $
    # in ExecStart, not in Environment), \ and " quote.
    if ! "$venv/bin/python" -I - "$here/edgecnn-serve.service" "$venv" >"$unit.new" 2>/dev/null <<'PY'; then
import sys
venv = sys.argv[2]
if "\n" in venv or "\r" in venv:
    sys.exit("a line break in the venv's path")
for a, b in (("\\", "\\\\"), ('"', '\\"'), ("%", "%%")):
    venv = venv.replace(a, b)
with open(sys.argv[1]) as f:
    text = f.read().replace("@HOME@", venv)
sys.stdout.write(text.replace("@VENV@", venv.replace("$", "$$")))
PY
        rm -f "$unit.new"
        fail "cannot write $unit"
    fi
    mv "$unit.new" "$unit" || fail "cannot write $unit"
    echo "Wrote $unit (edgecnn serve on the current model, http://127.0.0.1:8080/; it follows edgecnn update by itself)"
    echo "Start it now and at every login:"
    echo "  systemctl --user daemon-reload && systemctl --user enable --now edgecnn-serve"
    echo "Start it at boot, without logging in:"
    echo "  sudo loginctl enable-linger $(id -un)"
fi
# Videos need PyAV and Pillow (which resizes the frames); pictures need Pillow.
has_av=1
"$venv/bin/python" -I -c "import av" 2>/dev/null || has_av=0
if ! "$venv/bin/python" -I -c "import PIL" 2>/dev/null; then
    if [ "$has_av" = 1 ]; then
        echo "For picture files (PNG, JPEG) and videos install Pillow: sudo apt install python3-pil"
    else
        echo "For picture files (PNG, JPEG) install Pillow: sudo apt install python3-pil"
    fi
fi
if [ "$has_av" = 0 ]; then
    if [ -n "$venv_args" ]; then  # the venv sees the system's packages
        echo "For videos, cameras and streams install PyAV: sudo apt install python3-av (or make the bundle with edgecnn bundle --video)"
    else
        echo "For videos, cameras and streams: a bundle made with edgecnn bundle --video carries PyAV"
    fi
fi
echo
if [ -n "$sample" ]; then
    echo "Classify the sample picture with the current model:"
    echo "  $(quoted "$edgecnn") predict $(quoted "$here/$sample")"
    echo "and a picture of yours:"
else
    echo "Classify a picture with the current model:"
fi
echo "  $(quoted "$edgecnn") predict picture.png"
